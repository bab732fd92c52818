"""The coordinator and its generator processes, over real pipes: what a process says
is read whenever it says it, whatever phase the others are in."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any

import pytest

from fanout.lab.config import BenchConfig
from fanout.lab.runner import Coordinator, RunError

# Many times a pipe's buffer, as a long run's ticks are (each tick carries a latency
# histogram, tens of KB under a spread of latencies).
TICK_PADDING = 32 * 1024
TICKS = 60


def _tick(index: int) -> tuple[Any, ...]:
    report: dict[str, Any] = {"t": index * 0.5, "sent": 0, "skipped": 0, "acked": 0, "delivered": 0}
    report |= {"lost_holes": 0, "cpu": 1.0, "latency": {"counts": {}}}
    return ("tick", index, {**report, "padding": "x" * TICK_PADDING})


def _receivers_only(pipe: Pipe, ticked: threading.Event) -> None:
    """A process with receivers only: it has sent nothing, says so at once, and ticks on
    with a non-blocking pipe (a generator's pipe is on its event loop); a full pipe
    kills it, as it kills a generator."""
    assert pipe.recv()[0] == "start"
    pipe.send(("sent", {}))
    os.set_blocking(pipe.fileno(), False)
    try:
        for index in range(1, TICKS + 1):
            pipe.send(_tick(index))
            time.sleep(0.002)
    except BlockingIOError:
        pipe.close()
        return
    finally:
        ticked.set()
    os.set_blocking(pipe.fileno(), True)
    assert pipe.recv()[0] == "drain"
    pipe.send(("final", {"receivers": 1}))


def _sender(pipe: Pipe, ticked: threading.Event) -> None:
    """A process with the run's only sender: it is done once the other has ticked."""
    assert pipe.recv()[0] == "start"
    ticked.wait(10)
    with contextlib.suppress(OSError):  # the run failed and closed the pipes
        pipe.send(("sent", {0: 5}))
        assert pipe.recv()[0] == "drain"
        pipe.send(("final", {"senders": 1}))


def test_a_process_without_senders_keeps_being_read_while_another_still_sends() -> None:
    config = BenchConfig(url="ws://127.0.0.1:9/ws", processes=2, duration_s=1.0, drain_s=1.0)
    coordinator = Coordinator(config)
    ends = [mp.Pipe() for _ in range(2)]
    coordinator.pipes = [ours for ours, _ in ends]
    ticked = threading.Event()
    threads = [
        threading.Thread(target=_sender, args=(ends[0][1], ticked), daemon=True),
        threading.Thread(target=_receivers_only, args=(ends[1][1], ticked), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        coordinator.run_phase()
    except RunError as exc:
        pytest.fail(f"the receivers-only process's pipe filled up: {exc}")
    finally:
        for ours, theirs in ends:
            ours.close()
            theirs.close()
    assert coordinator.sent == {0: 5}
    assert coordinator.finals == [{"senders": 1}, {"receivers": 1}]
    assert len(coordinator.timeline.pending) == TICKS  # every tick read, none lost
