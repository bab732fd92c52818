"""The coordinator of a run: generator processes, phases, timeline, the results document.

It runs in the caller's thread, synchronously: start the generator processes (spawned,
each with its own event loop), wait until every connection is open, give one start
time to all of them, gather their ticks into the timeline (and the progress display),
tell them the senders' totals once sending is over, let them drain, collect every
connection's accounting, and build the ``fanout.lab.run/1`` document.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait
from typing import Any

from fanout.lab import generator
from fanout.lab.config import BenchConfig
from fanout.lab.histogram import Histogram
from fanout.lab.plan import plan

ProgressFn = Callable[[dict[str, Any]], None]

_START_DELAY_S = 0.3
_CONNECT_GRACE_S = 30.0


class RunError(RuntimeError):
    """The run could not take place (a generator died, nothing could connect...)."""


@dataclass
class Timeline:
    processes: int
    pending: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    _delivered: int = 0
    _t: float = 0.0

    def add(self, index: int, report: dict[str, Any]) -> dict[str, Any] | None:
        reports = self.pending.setdefault(index, [])
        reports.append(report)
        if len(reports) < self.processes:
            return None
        del self.pending[index]
        hist = Histogram()
        for r in reports:
            hist.merge(Histogram.from_json(r["latency"]))
        delivered = sum(int(r["delivered"]) for r in reports)
        t = max(float(r["t"]) for r in reports)
        entry = {
            "t": round(t, 3),
            "sent": sum(int(r["sent"]) for r in reports),
            "skipped": sum(int(r["skipped"]) for r in reports),
            "acked": sum(int(r["acked"]) for r in reports),
            "delivered": delivered,
            "lost_holes": sum(int(r["lost_holes"]) for r in reports),
            "deliveries_per_s": round((delivered - self._delivered) / max(0.01, t - self._t), 1),
            "p50_ms": hist.percentile_us(50) / 1000,
            "p99_ms": hist.percentile_us(99) / 1000,
            "max_ms": hist.max_us / 1000,
            "generator_cpu": [round(float(r["cpu"]), 1) for r in reports],
        }
        self._delivered = delivered
        self._t = t
        self.entries.append(entry)
        return entry


class Coordinator:
    def __init__(
        self,
        config: BenchConfig,
        progress: ProgressFn | None = None,
        on_start: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.on_start = on_start
        self.assignments = plan(config)
        self.pipes: list[Pipe] = []
        self.procs: list[mp.process.BaseProcess] = []
        self.timeline = Timeline(config.processes)
        self.connected: list[dict[str, Any]] = []
        self.sent: dict[int, int] = {}
        self.finals: list[dict[str, Any]] = []
        self.t0_mono = 0.0
        self.sending_s = 0.0
        self._phase = "connecting"
        # A report that came while the coordinator still gathered an earlier one.
        self._early: dict[int, tuple[Any, ...]] = {}

    # -- processes ----------------------------------------------------------------------

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        for a in self.assignments:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=generator.main,
                args=(child, self.config, a),
                name=f"fanout-lab-generator-{a.process}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def stop(self, *, at_once: bool = False) -> None:
        """Ask every generator process to exit and wait for it (5 s, then SIGKILL).
        ``at_once``: terminate them now (the run was interrupted or failed): a process
        in the middle of a phase reads its pipe only at the phase's end."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        if at_once:
            for proc in self.procs:
                proc.terminate()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for pipe in self.pipes:
            pipe.close()

    def _gather(self, kind: str, deadline: float) -> list[tuple[Any, ...]]:
        """One ``kind`` message from every process, handling ticks meanwhile.

        Every process is read until all have reported, those that reported first
        included: a process without senders reports ``sent`` at once and goes on
        ticking while the others send, and its pipe (a few hundred KB; a tick's latency
        histogram can be tens of KB) must not fill up meanwhile.
        """
        got: dict[int, tuple[Any, ...]] = {}
        for k, early in list(self._early.items()):
            if early[0] == kind:
                got[k] = early
                del self._early[k]
        listening = {id(p): k for k, p in enumerate(self.pipes)}
        while len(got) < len(self.pipes):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [k for k in range(len(self.pipes)) if k not in got]
                raise RunError(f"generator processes {missing} did not report {kind!r} in time")
            ready = wait([self.pipes[k] for k in listening.values()], timeout=left)
            for ready_one in ready:
                k = listening[id(ready_one)]
                try:
                    message: tuple[Any, ...] = self.pipes[k].recv()
                except (EOFError, OSError) as exc:
                    if k in got:  # it reported; a death shows at the next phase
                        del listening[id(ready_one)]
                        continue
                    code = self.procs[k].exitcode
                    raise RunError(f"generator process {k} died (exit code {code})") from exc
                if message[0] == "tick":
                    self._tick(int(message[1]), message[2])
                elif message[0] == kind and k not in got:
                    got[k] = message
                else:  # the next phase's report, from a process already past this one
                    self._early[k] = message
        return [got[k] for k in range(len(self.pipes))]

    def _tick(self, index: int, report: dict[str, Any]) -> None:
        entry = self.timeline.add(index, report)
        if entry is not None and self.progress is not None:
            self.progress({"phase": self._phase, **entry})

    # -- phases -------------------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        c = self.config
        timeout = c.connect_timeout_s + _CONNECT_GRACE_S + 30  # image generation included
        messages = self._gather("connected", time.monotonic() + timeout)
        self.connected = [m[1] for m in messages]
        ports: dict[int, str] = {}
        errors: dict[str, int] = {}
        for report in self.connected:
            ports.update({int(p): str(k) for p, k in report["ports"].items()})
            for kind, n in report["connect_errors"].items():
                errors[kind] = errors.get(kind, 0) + int(n)
        return {
            "receivers": sum(int(r["receivers"]) for r in self.connected),
            "senders": sum(int(r["senders"]) for r in self.connected),
            "connect_errors": errors,
            "ports": ports,
        }

    def run_phase(self) -> None:
        c = self.config
        t0_ns = time.monotonic_ns() + int(_START_DELAY_S * 1e9)
        self.t0_mono = t0_ns / 1e9
        if self.on_start is not None:
            self.on_start(self.t0_mono)
        for pipe in self.pipes:
            pipe.send(("start", t0_ns))
        self._phase = "sending"
        messages = self._gather("sent", time.monotonic() + _START_DELAY_S + c.duration_s + 30)
        self.sending_s = time.monotonic() - self.t0_mono
        for m in messages:
            self.sent.update({int(s): int(n) for s, n in m[1].items()})
        self._phase = "draining"
        # Churning receivers finish their last reconnect before they can catch up.
        churn_s = c.churn_every_s + c.connect_timeout_s if c.churn else 0.0
        deadline_ns = time.monotonic_ns() + int((c.drain_s + churn_s) * 1e9)
        for pipe in self.pipes:
            pipe.send(("drain", self.sent, deadline_ns))
        finals = self._gather("final", time.monotonic() + c.drain_s + churn_s + 60)
        self.finals = [m[1] for m in finals]


def run(
    config: BenchConfig,
    progress: ProgressFn | None = None,
    *,
    on_connected: Callable[[dict[int, str]], None] | None = None,
    on_start: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Run one load test against ``config.url``; return the raw outcome (no diagnosis).

    ``on_connected`` gets every connection's local port and kind (the server observer
    attributes socket queues with it); ``on_start`` the ``time.monotonic()`` at which
    sending starts (``t = 0`` of the timeline).
    """
    coordinator = Coordinator(config, progress, on_start)
    try:
        coordinator.start()
        connected = coordinator.connect()
        if on_connected is not None:
            on_connected(connected["ports"])
        if progress is not None:
            progress({"phase": "connected", **connected})
        coordinator.run_phase()
    except BaseException:  # Ctrl-C, SIGTERM (fanout.lab.interrupt) or a failure
        coordinator.stop(at_once=True)
        raise
    coordinator.stop()
    return {
        "connected": connected,
        "sent": coordinator.sent,
        "finals": coordinator.finals,
        "timeline": coordinator.timeline.entries,
        "t0_mono": coordinator.t0_mono,
        "sending_s": coordinator.sending_s,
    }
