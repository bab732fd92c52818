"""``fanout serve --workers N``: N real processes on one port behave as one hub through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from fanout.settings import ENV_PREFIX
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess, free_port, start_hub_process
from tests.support.wsclient import (
    connect_v1,
    read_until_closed,
    recv_json,
    send_json,
    subscribe,
)

WORKERS = 2
CONNECTIONS = 8
MAX_ATTEMPTS = 500  # connections opened at most while waiting for the kernel to use every worker
SPREAD_TIMEOUT_S = 15.0
SHUTDOWN_FLUSH_S = 2.0
CLOSE_TIMEOUT_S = 1.0
SHUTDOWN_SLACK_S = 3.0
# After its graceful stop the parent re-raises the signal, as the single-process server does.
TERMINATED = -signal.SIGTERM


@dataclass
class Workers:
    """A running ``fanout serve --workers N`` and the clients connected to it."""

    server: HubProcess
    port: int
    clients: list[ClientConnection] = field(default_factory=list)
    owner: dict[ClientConnection, int] = field(default_factory=dict)  # client -> worker pid

    @property
    def parent(self) -> psutil.Process:
        return psutil.Process(self.server.pid)

    def worker_pids(self) -> set[int]:
        """The children that hold the listening socket: uvicorn's workers (not the
        multiprocessing resource tracker)."""
        pids = set()
        for child in self.parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(self._is_listener(c) for c in child.net_connections("tcp")):
                    pids.add(child.pid)
        return pids

    def _is_listener(self, conn: Any) -> bool:
        return bool(conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port)

    def pid_serving(self, ws: ClientConnection) -> int | None:
        """The worker whose socket is the other end of ``ws``."""
        client_port = ws.local_address[1]
        for pid in self.worker_pids():
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.laddr.port == self.port and conn.raddr and conn.raddr.port == client_port:
                    return pid
        return None

    def on(self, pid: int) -> list[ClientConnection]:
        return [ws for ws in self.clients if self.owner[ws] == pid]

    async def connect_spread(self) -> None:
        """Open ``CONNECTIONS`` fanout.v1 clients, then more until every worker serves at
        least one. Which worker accepts is the kernel's choice and often lopsided (and a
        worker still starting takes none), so extra connections landing on an already
        served worker are closed again: at most one client more than ``CONNECTIONS``."""
        deadline = time.monotonic() + SPREAD_TIMEOUT_S
        for _ in range(MAX_ATTEMPTS):
            ws = await connect_v1(self.server.ws)
            pid = self.pid_serving(ws)
            assert pid is not None, "no worker holds the connection"
            served = set(self.owner.values())
            if len(self.clients) >= CONNECTIONS and pid in served:
                await ws.close()
                await asyncio.sleep(0.02)
            else:
                self.clients.append(ws)
                self.owner[ws] = pid
            if len(self.clients) >= CONNECTIONS and len(set(self.owner.values())) == WORKERS:
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"connections not spread over {WORKERS} workers: {self.owner}")


@contextlib.asynccontextmanager
async def serving_workers(
    redis: RedisServer, tmp_path: Path, args: Sequence[str] = ()
) -> AsyncIterator[Workers]:
    """``fanout serve --broker <redis> --workers 2``; at the end every client is closed and
    the whole process tree is gone (SIGTERM, then SIGKILL), whatever the test did."""
    cmd = ["--broker", redis.url, "--workers", str(WORKERS), "--log-level", "warning", *args]
    server = await asyncio.to_thread(start_hub_process, cmd, tmp_path / "workers.log")
    port = int(server.url.rsplit(":", 1)[1])
    tree = [psutil.Process(server.pid)]
    running = Workers(server, port)
    try:
        yield running
    finally:
        for ws in running.clients:
            await ws.close()
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += tree[0].children(recursive=True)
        with contextlib.suppress(psutil.NoSuchProcess):
            tree[0].terminate()
        _, alive = await asyncio.to_thread(psutil.wait_procs, tree, 20)
        for proc in alive:
            proc.kill()
        await asyncio.to_thread(server.proc.wait)
        print(f"--- fanout serve --workers {WORKERS} (exit {server.proc.returncode}) ---")
        print(server.log())


async def _messages(ws: ClientConnection, count: int, acks: int = 0) -> list[tuple[str, int, Any]]:
    """The next ``count`` messages as (epoch, offset, data), and ``acks`` acks besides.
    Every frame sent is read: a websockets client with more than 16 unread frames stops
    reading, and its close then waits 10 s for a close reply it does not read."""
    got: list[tuple[str, int, Any]] = []
    while len(got) < count or acks:
        frame = await recv_json(ws)
        if frame["type"] == "message":
            got.append((frame["epoch"], frame["offset"], frame["data"]))
        else:
            assert frame["type"] == "ack", frame
            assert acks, f"more acks than publishes: {frame}"
            acks -= 1
    return got


async def test_connections_spread_over_two_workers_all_receive_every_message_with_the_same_offsets(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with serving_workers(redis_server, tmp_path) as running:
        await running.connect_spread()
        for ws in running.clients:
            await subscribe(ws, "room")
        # One publisher on each worker, so messages cross between workers both ways.
        publishers = [running.on(pid)[0] for pid in sorted(set(running.owner.values()))]
        per_publisher = 25
        for i in range(per_publisher):
            for p, ws in enumerate(publishers):
                await send_json(
                    ws, {"type": "publish", "room": "room", "data": f"{p}-{i}", "id": f"{p}-{i}"}
                )
        total = per_publisher * len(publishers)
        seen = await asyncio.gather(
            *(
                _messages(ws, total, acks=per_publisher if ws in publishers else 0)
                for ws in running.clients
            )
        )

        first = seen[0]
        assert [offset for _, offset, _ in first] == list(range(1, total + 1))
        assert len({epoch for epoch, _, _ in first}) == 1
        assert sorted(data for _, _, data in first) == sorted(
            f"{p}-{i}" for p in range(len(publishers)) for i in range(per_publisher)
        )
        for i, messages in enumerate(seen):
            assert messages == first, f"client {i} (worker {running.owner[running.clients[i]]})"


async def test_one_scrape_of_metrics_counts_the_connections_of_every_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with serving_workers(redis_server, tmp_path) as running:
        await running.connect_spread()  # clients on both workers
        wanted = len(running.clients)
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 10
            while True:  # each worker writes its numbers every second
                text = (await http.get(running.server.url + "/metrics")).text
                samples = {
                    s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                }
                if samples["fanout_connections"] == wanted or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            openmetrics = await http.get(
                running.server.url + "/metrics",
                headers={"Accept": "application/openmetrics-text"},
            )
        assert samples["fanout_processes"] == WORKERS
        assert samples["fanout_connections"] == wanted
        assert samples["fanout_connections_opened_total"] >= wanted
        families = {f.name for f in openmetrics_families(openmetrics.text)}  # type: ignore[no-untyped-call]
        assert {"fanout_connections", "fanout_connections_opened"} <= families


async def test_flags_given_on_the_command_line_reach_every_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A limit only the app applies (not uvicorn), so only a worker built from the flags has it.
    args = ["--max-rooms-per-connection", "1"]
    async with serving_workers(redis_server, tmp_path, args) as running:
        await running.connect_spread()
        for pid in sorted(set(running.owner.values())):
            ws = running.on(pid)[0]
            await subscribe(ws, "a")
            await send_json(ws, {"type": "subscribe", "room": "b"})
            reply = await recv_json(ws)
            assert reply["type"] == "error", f"worker {pid}: {reply}"
            assert reply["code"] == "too_many_rooms", f"worker {pid}: {reply}"


async def test_sigterm_to_the_parent_closes_every_client_of_every_worker_with_1001_and_all_processes_exit(  # noqa: E501
    redis_server: RedisServer, tmp_path: Path
) -> None:
    args = ["--shutdown-flush-s", str(SHUTDOWN_FLUSH_S), "--close-timeout-s", str(CLOSE_TIMEOUT_S)]
    async with serving_workers(redis_server, tmp_path, args) as running:
        await running.connect_spread()
        for ws in running.clients:
            await subscribe(ws, "room")
        await send_json(running.clients[0], {"type": "publish", "room": "room", "data": "hi"})
        await asyncio.gather(*(_messages(ws, 1) for ws in running.clients))
        tree = [running.parent, *running.parent.children(recursive=True)]
        assert running.worker_pids() <= {p.pid for p in tree}

        started = time.monotonic()
        os.kill(running.server.pid, signal.SIGTERM)
        codes = await asyncio.gather(*(read_until_closed(ws) for ws in running.clients))
        assert codes == [1001] * len(running.clients)
        assert await asyncio.to_thread(running.server.proc.wait, 20) == TERMINATED
        _, alive = await asyncio.to_thread(
            psutil.wait_procs, tree, SHUTDOWN_FLUSH_S + SHUTDOWN_SLACK_S
        )
        assert alive == []
        assert time.monotonic() - started < SHUTDOWN_FLUSH_S + SHUTDOWN_SLACK_S


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    """``fanout serve`` with the in-memory broker (no FANOUT_* from the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    cmd = [sys.executable, "-m", "fanout.cli", "serve", "--port", str(free_port()), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()  # a supervisor that did start stops its workers on SIGTERM
        out, err = proc.communicate(timeout=20)
        raise AssertionError(f"fanout serve {' '.join(args)} was not refused:\n{err}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_two_workers_with_the_memory_broker_are_refused_with_exit_code_2_and_the_reason() -> None:
    result = _serve("--workers", "2")
    assert result.returncode == 2, result
    assert "--workers 2 needs a shared broker" in result.stderr
    assert "in-memory broker" in result.stderr
    assert "--broker redis://" in result.stderr


def test_zero_workers_are_refused_with_exit_code_2() -> None:
    result = _serve("--workers", "0", "--broker", "redis://127.0.0.1:1/0")
    assert result.returncode == 2, result
    assert "argument --workers: expected a number of processes >= 1, got '0'" in result.stderr
