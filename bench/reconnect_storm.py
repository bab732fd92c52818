"""Reconnect storm (issue 15, item 4): N ``fanout.v1`` clients resuming on node B after
node A's SIGTERM, next to the article's server and websockets' own server, in one run.

Everything runs on this machine, servers on 127.0.0.1: a private ``redis-server`` on a
free port (never 6379, no persistence) and pairs of servers this script starts; the
clients are its own raw WebSocket connections (a small ``asyncio.Protocol`` on uvloop, no
library object per frame) in ``--workers`` processes, spread over the source addresses
127.0.0.2, 127.0.0.3, ... (``--per-address`` clients each, under fanout's default limit
of 1,000 connections per address, which stays on).

Scenarios (``--only``), each with freshly started servers "old" and "new":

- ``fanout``: two ``fanout serve --broker redis://...`` nodes A (old) and B (new), the
  server HTTP API on. N clients connect to A with ``fanout.v1`` and each subscribes to one
  of ``--rooms`` rooms; ``--messages`` messages per room are published (``POST
  /api/broadcast`` on node B, one room offset after the other) and every client records
  its offsets; then publishing goes on at ``--rate`` messages per room per second and A
  gets SIGTERM. A flushes and closes every client with 1001; each client reconnects to B
  the way fanout's own client does (``fanout.client``'s backoff: 50-100 ms after a
  connection that ended, growing after failures) and resumes its room with ``since``
  {epoch, offset}. Measured: the time from SIGTERM until every client got ``subscribed``
  with ``recovered: true`` from B, handshakes per second, node B's CPU seconds meanwhile
  (``/proc/PID/stat``) and so handshakes per second per core; then, after publishing
  stopped, that every client got every message of its room exactly once, in order.
- ``fanout-handshake``: the same storm with ``fanout.v1`` clients that subscribe to
  nothing (handshake only), to compare like with like.
- ``article``: the article's server (``fanout baseline``: FastAPI + uvicorn, uvicorn's
  defaults), plain clients; its SIGTERM closes them with 1012; they reconnect to a fresh
  instance the same way.
- ``websockets``: websockets' own server (``websockets.asyncio.server.serve`` on uvloop):
  ``bench/websockets_server.py`` (its handler keeps each connection open until the client
  leaves), or, where that file is missing, this script's own minimal handler that waits
  for the connection to close (backlog 2048, as uvicorn's); SIGTERM closes the clients
  with 1001.

The new server of each pair is pinned to CPU 0 and everything else (the old server,
Redis, the client workers, this script) to the other CPUs, so the new server's CPU is its
own. Progress lines while running; every process is stopped at the end.

    .venv/bin/python bench/reconnect_storm.py [--clients 10000] [--quick]
        [--only fanout,fanout-handshake,article,websockets] [--json FILE]
        [--results bench/RESULTS.md | -]

Writes ``bench/out/reconnect_storm-<time>.json`` (and ``--json FILE``) and the section
``reconnect_storm`` of ``bench/RESULTS.md``. About 3 minutes with the defaults on two
quiet cores, plus up to ``--quiet-wait`` (30 s) for other processes to leave the CPUs
(``--quick``: 1,000 clients, under a minute); every wait is bounded and the run stops by
itself within ``--budget`` seconds. Exits with 1 when fanout lost, repeated or reordered a
message, did not resume a client, or a fanout storm could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

import orjson
import uvloop

import nodes
import results_md
from fanout.backoff import Backoff
from fanout.client.reconnects import Reconnects
from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import free_port, wait_for_port
from fanout.lab.wsclient import client_frame_header
from nodes import SYSTEM_REDIS_PORT, Started, redis_server, redis_version
from results_md import HOST, OTHER_LOAD_FLAG, percentiles

CLIENTS = 10_000
QUICK_CLIENTS = 1_000
ROOMS = 100
MESSAGES = 20  # per room, before the SIGTERM
RATE = 2.0  # messages per room per second while the storm goes on
AFTER_S = 2.0  # publishing goes on this long after the last client resumed
PRE_STORM_S = 2.0  # publishing only, before the SIGTERM: node B's CPU for publishing
PER_ADDRESS = 500  # clients per source address (fanout's default limit: 1,000)
OPEN_TIMEOUT_S = 5.0  # fanout's client: open_timeout_s
CONNECT_WINDOW = 200  # handshakes in flight per worker while the clients first connect
CONNECT_TIMEOUT_S = 120.0
OFFSET_TIMEOUT_S = 30.0
API_KEY = "bench-api-key-reconnect-storm"
ROOM_PREFIX = "storm."
SCENARIOS = ("fanout", "fanout-handshake", "article", "websockets")
NAME = "reconnect_storm"
BACKLOG = 2048  # uvicorn's default listen backlog, given to websockets' server too
_TICK = os.sysconf("SC_CLK_TCK")
_CLOSE = 0x8


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str
    v1: bool  # offer the fanout.v1 subprotocol


def source_address(ident: int, per_address: int) -> str:
    """127.0.0.2, 127.0.0.3, ...: ``per_address`` clients each."""
    return f"127.0.0.{2 + ident // per_address}"


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from ``/proc/PID/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_pressure_s() -> float | None:
    """Seconds in which some runnable task waited for a CPU (``/proc/pressure/cpu``)."""
    try:
        text = Path("/proc/pressure/cpu").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            return int(fields["total"]) / 1e6
    return None


def raise_open_files() -> int:
    """Soft open-files limit up to the hard one (the servers and workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return int(target)


# -- the clients (in the worker processes) -------------------------------------------------


class Conn(asyncio.Protocol):
    """One WebSocket connection of a client: handshake, server frames, close, pings."""

    def __init__(self, client: Client, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        self.client = client
        self.endpoint = endpoint
        self.started_at = time.monotonic()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.closed = False
        self.sent_since = False
        self.close_code = 0
        self.lost_at = 0.0
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        ep = self.endpoint
        offer = "Sec-WebSocket-Protocol: fanout.v1\r\n" if ep.v1 else ""
        t.write(
            (
                f"GET {ep.path} HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost_at = time.monotonic()
        self._fail(f"closed during the handshake ({type(exc).__name__ if exc else 'EOF'})")
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
            self.ready.exception()  # retrieved: nobody may be waiting any more

    def send(self, frame: dict[str, Any]) -> None:
        payload = orjson.dumps(frame)
        if self.transport is not None and not self.closed:
            self.transport.write(client_frame_header(0x1, len(payload)) + payload)

    def close(self) -> None:
        """A clean close from our side: close frame 1000, then the TCP connection."""
        if self.transport is not None and not self.closed:
            self.transport.write(client_frame_header(_CLOSE, 2) + (1000).to_bytes(2, "big"))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(f"handshake: {status.decode(errors='replace')[:40]}")
                self.abort()
                return
            self.open = True
            buf = buf[end + 4 :]
            self.ready.set_result(None)
            self.client.opened(self)
        n, pos = len(buf), 0
        while n - pos >= 2 and not self.closed:
            length, start = buf[pos + 1] & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if start + length > n:
                break
            opcode, payload = buf[pos] & 0x0F, buf[start : start + length]
            pos = start + length
            if opcode == 0x1:
                self.client.frame(self, payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame_header(0xA, len(payload)) + payload)
            elif opcode == _CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._fail(f"closed {self.close_code} during the handshake")
                if self.transport is not None:
                    self.transport.write(client_frame_header(_CLOSE, 2) + payload[:2])
                    self.transport.close()
        self._buf = buf[pos:]


class Client:
    """One client over its connections: where it is in its room, what it received, and
    when it lost the old server and was back on the new one."""

    def __init__(self, worker: Worker, ident: int, room: str, src: str) -> None:
        self.w = worker
        self.ident = ident
        self.room = room
        self.src = src
        self.conn: Conn | None = None
        # fanout's client defaults: 0.1 s doubling up to 5 s, jitter 0.5.
        self.reconnects = Reconnects(Backoff())
        self.epoch = ""
        self.base = 0  # the room's offset when the client first subscribed
        self.last = 0
        self.received = 0
        self.seen = bytearray()
        self.dups = self.out_of_order = self.bad_data = self.epoch_changes = 0
        self.gap_frames = self.recovered = self.not_recovered = self.replayed = 0
        self.resume_latest = 0
        self.is_ready = False
        self.reached = 0
        self.lost_at = self.first_attempt_at = self.opened_at = self.resumed_at = 0.0
        self.old_close = 0
        self.attempts = 0
        self.last_error = ""

    async def run(self) -> None:
        w = self.w
        while not w.stopping:
            endpoint = w.endpoint
            assert endpoint is not None
            if endpoint == w.storm and not self.first_attempt_at:
                self.first_attempt_at = time.monotonic()
            self.attempts += 1
            gate = w.gate
            try:
                if gate is not None:
                    async with gate:
                        conn = await self.open(endpoint)
                else:
                    conn = await self.open(endpoint)
            except (OSError, ConnectionError, TimeoutError) as exc:
                reason = str(exc) if isinstance(exc, ConnectionError) else type(exc).__name__
                if isinstance(exc, TimeoutError):
                    # Where it stalled: the TCP connect (the kernel's queues), or the
                    # server's answer to a request it has.
                    sent = self.conn is not None and self.conn.transport is not None
                    stage = "request sent, no 101" if sent else "TCP connect pending"
                    reason = f"no handshake within {OPEN_TIMEOUT_S:g} s ({stage})"
                self.last_error = reason
                w.failed(reason)
                await asyncio.sleep(self.reconnects.attempt_failed() or 0.0)
                continue
            self.reconnects.connected()
            opened = time.monotonic()
            await conn.lost
            if w.stopping:
                return
            self.ended(conn)
            await asyncio.sleep(self.reconnects.disconnected(time.monotonic() - opened))

    async def open(self, endpoint: Endpoint) -> Conn:
        loop = asyncio.get_running_loop()
        conn = self.conn = Conn(self, endpoint)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await loop.create_connection(
                    lambda: conn, endpoint.host, endpoint.port, local_addr=(self.src, 0)
                )
                await conn.ready
        except BaseException:
            conn.abort()
            raise
        return conn

    def ended(self, conn: Conn) -> None:
        """A connection that was open ended (its close frame's code, 1006 without one)."""
        w = self.w
        code = conn.close_code or 1006
        if w.storm is None:
            w.failed(f"closed {code} before the storm")
        elif conn.endpoint != w.storm:
            if not self.lost_at:
                self.lost_at, self.old_close = conn.lost_at, code
                w.c["lost"] += 1
        else:
            self.last_error = f"the new server closed {code}"
            w.failed(self.last_error)

    def opened(self, conn: Conn) -> None:
        w = self.w
        if w.storm is not None and conn.endpoint == w.storm:
            now = time.monotonic()
            w.c["handshakes"] += 1
            w.handshake_s.append(now - conn.started_at)
            if not self.opened_at:
                self.opened_at = now
                w.c["opened"] += 1
        if w.resume:
            frame: dict[str, Any] = {"type": "subscribe", "room": self.room}
            if self.epoch:
                frame["since"] = {"epoch": self.epoch, "offset": self.last}
                conn.sent_since = True
            conn.send(frame)
            return
        if not self.is_ready:
            self.is_ready = True
            w.ready()
        w.check_storm()

    def frame(self, conn: Conn, payload: bytes) -> None:
        w = self.w
        if not w.resume:
            return
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "message":
            self.message(conn, msg)
        elif kind == "subscribed":
            self.subscribed(conn, msg)
        elif kind == "gap":
            self.gap_frames += 1
            w.note_error(self, msg)
        else:
            w.note_error(self, msg)

    def subscribed(self, conn: Conn, msg: dict[str, Any]) -> None:
        w = self.w
        epoch, offset = str(msg.get("epoch", "")), int(msg.get("offset", 0))
        if not conn.sent_since:
            self.epoch, self.base, self.last = epoch, offset, offset
            if not self.is_ready:
                self.is_ready = True
                w.ready()
            return
        self.resume_latest = offset
        if msg.get("recovered") is True:
            self.recovered += 1
        else:
            self.not_recovered += 1
            w.note_error(self, msg)
            if epoch != self.epoch:
                self.epoch_changes += 1
                self.epoch = epoch
        if w.storm is not None and conn.endpoint == w.storm and not self.resumed_at:
            self.resumed_at = time.monotonic()
            w.c["resumed"] += 1
            w.check_storm()

    def message(self, conn: Conn, msg: dict[str, Any]) -> None:
        offset = msg.get("offset")
        if msg.get("room") != self.room or not isinstance(offset, int) or offset < 1:
            self.w.note_error(self, msg)
            return
        if msg.get("epoch") != self.epoch:
            self.epoch_changes += 1
            self.epoch = str(msg.get("epoch"))
        seen = self.seen
        if offset >= len(seen):
            seen.extend(bytes(offset - len(seen) + 64))
        if seen[offset]:
            self.dups += 1
        elif offset < self.last:
            self.out_of_order += 1
        seen[offset] = 1
        self.last = max(self.last, offset)
        self.received += 1
        # The publisher's n-th broadcast is offset n of every room, and carries n.
        if msg.get("data") != offset:
            self.bad_data += 1
        if conn.sent_since and offset <= self.resume_latest:
            self.replayed += 1
        self.w.reached(self)

    def missing(self, target: int) -> int:
        seen = self.seen
        return sum(1 for o in range(self.base + 1, target + 1) if o >= len(seen) or not seen[o])

    def exact(self, target: int) -> bool:
        """Every message of the room up to ``target`` exactly once, in order."""
        return (
            self.last == target
            and self.received == target - self.base
            and not (self.dups or self.out_of_order or self.bad_data or self.epoch_changes)
            and not (self.gap_frames or self.not_recovered)
            and self.missing(target) == 0
        )

    def describe(self, target: int = 0) -> dict[str, Any]:
        conn = self.conn
        state = "none"
        if conn is not None:
            state = (
                "open" if conn.open and not conn.closed else "closed" if conn.closed else "opening"
            )
        d: dict[str, Any] = {
            "client": self.ident,
            "room": self.room,
            "source": self.src,
            "connection": f"{state} to port {conn.endpoint.port}" if conn else state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "old_close": self.old_close,
            "lost_at": self.lost_at,
            "opened_at": self.opened_at,
            "resumed_at": self.resumed_at,
        }
        if self.w.resume:
            d.update(
                epoch=self.epoch,
                base=self.base,
                last=self.last,
                received=self.received,
                missing=self.missing(target) if target else None,
                dups=self.dups,
                out_of_order=self.out_of_order,
                bad_data=self.bad_data,
                epoch_changes=self.epoch_changes,
                gap_frames=self.gap_frames,
                not_recovered=self.not_recovered,
            )
        return d


class Worker:
    """A process's share of the clients, driven by commands over a pipe."""

    def __init__(
        self, index: int, ids: range, rooms: int, per_address: int, pipe: Connection
    ) -> None:
        self.index, self.ids, self.rooms, self.per_address = index, ids, rooms, per_address
        self.pipe = pipe
        self.loop = asyncio.get_running_loop()
        self.clients: list[Client] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.endpoint: Endpoint | None = None
        self.storm: Endpoint | None = None
        self.resume = False
        self.phase = "idle"
        self.gate: asyncio.Semaphore | None = None
        self.stopping = False
        self.exit = asyncio.Event()
        self.c: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.handshake_s: list[float] = []
        self.errors: list[dict[str, Any]] = []
        self.all_ready: asyncio.Future[None] | None = None
        self.waiting: asyncio.Future[None] | None = None
        self.target = 0
        self.complete = 0
        self.done_sent = False

    async def serve(self) -> None:
        self.loop.add_reader(self.pipe.fileno(), self.on_pipe)
        # The event loop made the pipe non-blocking: a large message would go out in part.
        os.set_blocking(self.pipe.fileno(), True)
        ticker = self.loop.create_task(self.tick())
        try:
            await self.exit.wait()
        finally:
            ticker.cancel()
            self.loop.remove_reader(self.pipe.fileno())
            for client in self.clients:
                if client.conn is not None:
                    client.conn.abort()

    def send(self, ev: str, **fields: Any) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send({"ev": ev, "w": self.index, **fields})

    def on_pipe(self) -> None:
        try:
            while self.pipe.poll():
                self.command(self.pipe.recv())
        except (EOFError, OSError):
            self.exit.set()

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd["op"]
        if op == "connect":
            self.loop.create_task(self.connect(cmd["endpoint"], cmd["resume"], cmd["window"]))
        elif op == "arm":
            self.storm = self.endpoint = cmd["endpoint"]
            self.phase, self.done_sent = "storm", False
            self.send("armed")
        elif op == "report":
            self.send("report", **self.report())
        elif op == "await_offset":
            self.loop.create_task(self.await_offset(cmd["offset"]))
        elif op == "close":
            self.loop.create_task(self.close_all())
        elif op == "exit":
            self.exit.set()

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.phase != "idle":
                self.send("progress", **self.c)

    async def connect(self, endpoint: Endpoint, resume: bool, window: int) -> None:
        self.clients = [
            Client(self, i, f"{ROOM_PREFIX}{i % self.rooms}", source_address(i, self.per_address))
            for i in self.ids
        ]
        self.endpoint, self.storm, self.resume = endpoint, None, resume
        self.c.clear()
        self.reasons.clear()
        self.handshake_s.clear()
        self.errors.clear()
        self.target = self.complete = 0
        self.phase, self.gate = "connect", asyncio.Semaphore(window)
        self.all_ready = self.loop.create_future()
        start = time.monotonic()
        self.tasks = [self.loop.create_task(c.run()) for c in self.clients]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self.all_ready
        self.phase, self.gate = "idle", None
        self.send(
            "connected",
            ready=self.c["ready"],
            clients=len(self.clients),
            seconds=time.monotonic() - start,
            reasons=dict(self.reasons),
        )

    def ready(self) -> None:
        self.c["ready"] += 1
        if self.c["ready"] == len(self.clients) and self.all_ready and not self.all_ready.done():
            self.all_ready.set_result(None)

    def failed(self, reason: str) -> None:
        self.reasons[reason] += 1
        if self.phase == "storm":
            self.c["failures"] += 1

    def note_error(self, client: Client, msg: dict[str, Any]) -> None:
        self.c["unexpected frames"] += 1
        if len(self.errors) < 20:
            self.errors.append({"client": client.ident, "frame": msg})

    def check_storm(self) -> None:
        if self.phase != "storm" or self.done_sent:
            return
        if self.c["resumed" if self.resume else "opened"] == len(self.clients):
            self.done_sent = True
            self.send("done", at=time.monotonic())

    def reached(self, client: Client) -> None:
        target = self.target
        if target and client.last >= target and client.reached != target:
            client.reached = target
            self.complete += 1
            if self.complete == len(self.clients) and self.waiting and not self.waiting.done():
                self.waiting.set_result(None)

    async def await_offset(self, offset: int) -> None:
        """Wait (bounded) until every client has its room up to ``offset``; the accounts."""
        self.target, self.complete = offset, 0
        for client in self.clients:
            self.reached(client)
        if self.complete < len(self.clients):
            self.waiting = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OFFSET_TIMEOUT_S):
                    await self.waiting
            self.waiting = None
        cs = self.clients
        bad = [c for c in cs if not c.exact(offset)]
        self.send(
            "offsets",
            target=offset,
            clients=len(cs),
            complete=sum(1 for c in cs if c.last >= offset),
            exact=len(cs) - len(bad),
            missing=sum(c.missing(offset) for c in bad),
            duplicates=sum(c.dups for c in cs),
            out_of_order=sum(c.out_of_order for c in cs),
            wrong_data=sum(c.bad_data for c in cs),
            epoch_changes=sum(c.epoch_changes for c in cs),
            gap_frames=sum(c.gap_frames for c in cs),
            not_recovered=sum(c.not_recovered for c in cs),
            recovered=sum(c.recovered for c in cs),
            replayed=sum(c.replayed for c in cs),
            received=sum(c.received for c in cs),
            bad=[c.describe(offset) for c in bad[:5]],
            errors=self.errors[:5],
        )

    def report(self) -> dict[str, Any]:
        cs = self.clients
        back = [c for c in cs if (c.resumed_at if self.resume else c.opened_at)]
        return {
            "clients": len(cs),
            "lost_at": [c.lost_at for c in cs if c.lost_at],
            "first_attempt_at": [c.first_attempt_at for c in cs if c.first_attempt_at],
            "opened_at": [c.opened_at for c in cs if c.opened_at],
            "back_at": [c.resumed_at if self.resume else c.opened_at for c in back],
            "back_s": [
                (c.resumed_at if self.resume else c.opened_at) - c.lost_at
                for c in back
                if c.lost_at
            ],
            "handshake_s": list(self.handshake_s),
            "old_close": dict(Counter(c.old_close for c in cs if c.lost_at)),
            "reasons": dict(self.reasons),
            "counts": dict(self.c),
            "stuck": [
                c.describe() for c in cs if not (c.resumed_at if self.resume else c.opened_at)
            ][:5],
        }

    async def close_all(self) -> None:
        self.stopping, self.phase = True, "idle"
        for client in self.clients:
            if client.conn is not None:
                client.conn.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.sleep(0.2)
        for client in self.clients:
            if client.conn is not None:
                client.conn.abort()
        self.clients, self.tasks = [], []
        self.stopping = False
        gc.collect()
        self.send("closed")


def worker_main(
    index: int, first: int, stop: int, rooms: int, per_address: int, pipe: Connection
) -> None:
    """A client worker process: serve commands until told to exit (or the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process
    gc.disable()  # no collector pauses in the middle of a storm; collected between them

    async def serve() -> None:
        await Worker(index, range(first, stop), rooms, per_address, pipe).serve()

    uvloop.run(serve())


# -- the main process's side of the workers ---------------------------------------------------


class Workers:
    """The client worker processes and their pipes."""

    def __init__(self, count: int, clients: int, rooms: int, per_address: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        bounds = [clients * i // count for i in range(count + 1)]
        for i in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(i, bounds[i], bounds[i + 1], rooms, per_address, child),
                name=f"storm-clients-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.procs.append(proc)
            self.pipes.append(parent)
        self.progress: dict[int, dict[str, Any]] = {}
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.dead: list[int] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def attach(self) -> None:
        loop = asyncio.get_running_loop()
        for i, pipe in enumerate(self.pipes):
            loop.add_reader(pipe.fileno(), self._read, i)
            # Readable means a message has begun: read all of it (the loop made it
            # non-blocking, and a report of thousands of clients comes in parts).
            os.set_blocking(pipe.fileno(), True)

    def detach(self) -> None:
        loop = asyncio.get_running_loop()
        for i, pipe in enumerate(self.pipes):
            if i not in self.dead:
                loop.remove_reader(pipe.fileno())

    def queue(self, ev: str) -> asyncio.Queue[dict[str, Any]]:
        return self.queues.setdefault(ev, asyncio.Queue())

    def _read(self, i: int) -> None:
        pipe = self.pipes[i]
        try:
            while pipe.poll():
                msg = pipe.recv()
                if msg["ev"] == "progress":
                    self.progress[i] = msg
                else:
                    self.queue(msg["ev"]).put_nowait(msg)
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            self.dead.append(i)
            for q in self.queues.values():
                q.put_nowait({"ev": "died", "w": i})

    def send(self, cmd: dict[str, Any]) -> None:
        for pipe in self.pipes:
            pipe.send(cmd)

    def drain(self, ev: str) -> None:
        q = self.queue(ev)
        while not q.empty():
            q.get_nowait()

    async def collect(self, ev: str, timeout: float) -> list[dict[str, Any]]:
        """One ``ev`` message from every worker; TimeoutError after ``timeout`` seconds."""
        q = self.queue(ev)
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < len(self.pipes):
                if self.dead:
                    raise RuntimeError(f"client worker(s) {self.dead} exited")
                msg = await q.get()
                if msg["ev"] == "died":
                    proc = self.procs[msg["w"]]
                    proc.join(2)
                    raise RuntimeError(
                        f"client worker {msg['w']} exited (exit code {proc.exitcode})"
                    )
                out.append(msg)
        return out

    async def request(self, cmd: dict[str, Any], ev: str, timeout: float) -> list[dict[str, Any]]:
        self.drain(ev)
        self.send(cmd)
        return await self.collect(ev, timeout)

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for msg in self.progress.values():
            total.update({k: v for k, v in msg.items() if isinstance(v, int) and k != "w"})
        return total

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send({"op": "exit"})
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()


# -- the servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Processes started in the block run on ``cpus`` (inherited; None: no pinning)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def fanout_args(broker: str, clients: int) -> list[str]:
    # Per-address limit and rate limits stay at fanout's defaults: the clients come from
    # enough source addresses, and each sends one frame.
    return [
        "--broker", broker,
        "--log-level", "warning",
        "--max-connections", str(max(10_000, clients + 1_000)),
    ]  # fmt: skip


@contextlib.contextmanager
def fanout_node(
    name: str, broker: str, clients: int, log: Path, cpus: set[int] | None
) -> Iterator[Started]:
    """``fanout serve`` (bench/nodes.py) with the HTTP API on, started on ``cpus``."""
    env = {**os.environ, "FANOUT_API_KEY": API_KEY}
    with contextlib.ExitStack() as stack:
        with on_cpus(cpus):
            node = stack.enter_context(
                nodes.fanout_node(name, fanout_args(broker, clients), log, env)
            )
        yield node


@contextlib.contextmanager
def plain_server(name: str, argv: list[str], log: Path, cpus: set[int] | None) -> Iterator[Started]:
    """A server started as ``argv + [--port P]`` on a free port; yielded once it accepts."""
    port = free_port(avoid={SYSTEM_REDIS_PORT})
    with on_cpus(cpus), log.open("ab") as out:
        proc = subprocess.Popen([*argv, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(HOST, port, 30, running=lambda: proc.poll() is None)
        except Exception as exc:
            raise RuntimeError(f"{name} did not start ({exc}):\n{log.read_text()}") from None
        yield Started(name, proc, port)
    finally:
        nodes.stop(proc)


def article_argv() -> list[str]:
    return [sys.executable, "-m", "fanout.cli", "baseline", "--log-level", "warning"]


SHARED_WEBSOCKETS_SERVER = results_md.BENCH_DIR / "websockets_server.py"


def websockets_server() -> tuple[list[str], str]:
    """How websockets' own server is started (``--port P`` follows) and what it is:
    the bench's shared ``websockets_server.py`` when it is there, else this script's."""
    if SHARED_WEBSOCKETS_SERVER.exists():
        return [sys.executable, str(SHARED_WEBSOCKETS_SERVER)], (
            "`bench/websockets_server.py` (its `serve(handler, max_size=None)`: asyncio's"
            " default listen backlog of 100; the handler reads until the client leaves)"
        )
    return [sys.executable, str(Path(__file__).resolve()), "--serve-websockets"], (
        f"this script's `serve(handler, backlog={BACKLOG})` with a handler that waits for"
        " the connection to close"
    )


def serve_websockets(port: int) -> None:
    """websockets' own server: a handler that keeps the connection open until the client
    leaves; SIGTERM closes every connection with 1001 (``Server.close``)."""
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set_result, None)
        async with serve(handler, HOST, port, backlog=BACKLOG):
            await stop

    uvloop.run(main())


# -- the publisher ------------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection to a node's API (answers with Content-Length)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        try:
            return await self._request(method, path, body)
        except (OSError, asyncio.IncompleteReadError):
            await self.close()
            raise

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self._streams
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Authorization: apikey {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            (int(h.split(b":", 1)[1]) for h in lines if h.lower().startswith(b"content-length:")),
            0,
        )
        return status, await reader.readexactly(length)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            with contextlib.suppress(OSError):
                await self._streams[1].wait_closed()
            self._streams = None


class Publisher:
    """Publishes message n to every room as offset n (``POST /api/broadcast``, id ``m<n>``,
    a failed room retried with the same id), one broadcast after the other."""

    def __init__(self, port: int, rooms: int) -> None:
        self.http = Http(port)
        self.rooms = [f"{ROOM_PREFIX}{r}" for r in range(rooms)]
        self.n = 0
        self.retries: Counter[str] = Counter()
        self.mismatches = 0
        self.stamps: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def publish_next(self) -> None:
        n = self.n + 1
        pending = list(self.rooms)
        for _ in range(100):
            body = orjson.dumps({"rooms": pending, "data": n, "id": f"m{n}"})
            try:
                status, answer = await self.http.request("POST", "/api/broadcast", body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.retries[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            if status != 200:
                self.retries[f"HTTP {status}"] += 1
                await asyncio.sleep(0.05)
                continue
            failed = []
            for room, result in zip(pending, orjson.loads(answer)["results"], strict=True):
                if "offset" not in result:
                    self.retries[str(result.get("code"))] += 1
                    failed.append(room)
                elif result["offset"] != n:
                    self.mismatches += 1
            pending = failed
            if not pending:
                self.n = n
                self.stamps.append(time.monotonic())
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"message {n} could not be published to {pending[:3]}...")

    async def burst(self, count: int) -> None:
        for _ in range(count):
            await self.publish_next()

    def start(self, rate: float) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._steady(rate))

    async def _steady(self, rate: float) -> None:
        next_at = time.monotonic()
        while not self._stopping:
            await self.publish_next()
            next_at = max(next_at + 1 / rate, time.monotonic() - 1 / rate)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await self._task
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.http.close()


# -- one storm ---------------------------------------------------------------------------------


class CpuMark:
    """CPU seconds of named processes, and the other processes' load, since a mark."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.wall = time.monotonic()
        self.at = {name: sum(proc_cpu_s(p) for p in ps) for name, ps in pids.items()}
        self.busy, self.tree = results_md.busy_s(), results_md.tree_cpu_s()
        self.pressure = cpu_pressure_s()

    def since(self, exited: dict[str, float]) -> dict[str, Any]:
        """``exited``: the CPU seconds (in all) of named processes that exited meanwhile,
        as last seen (``/proc`` has forgotten them; so has the tree of our processes)."""
        wall = time.monotonic() - self.wall
        now = {name: sum(proc_cpu_s(p) for p in ps) for name, ps in self.pids.items()}
        now.update(exited)
        seconds = {name: round(now[name] - self.at[name], 3) for name in self.pids}
        ours = results_md.tree_cpu_s() - self.tree + sum(exited.values())
        pressure = cpu_pressure_s()
        return {
            # Share of the window in which some runnable task of the machine waited for a
            # CPU (Linux PSI): high means the times measured include waiting for a core.
            "cpu_wait_share": None
            if pressure is None or self.pressure is None
            else round((pressure - self.pressure) / wall, 3),
            "wall_s": round(wall, 3),
            "seconds": seconds,
            "cores": {name: round(s / wall, 2) for name, s in seconds.items()},
            "other_cores": round(max(0.0, results_md.busy_s() - self.busy - ours) / wall, 2),
        }


class ExitWatch:
    """When a process exited after ``t0``, and its CPU seconds (in all) as last seen."""

    def __init__(self, proc: subprocess.Popen[bytes], t0: float, limit_s: float = 60.0) -> None:
        self.proc, self.t0, self.limit_s = proc, t0, limit_s
        self.cpu_total = proc_cpu_s(proc.pid)
        self.task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> float | None:
        while True:
            cpu = proc_cpu_s(self.proc.pid)
            if self.proc.poll() is not None:
                return round(time.monotonic() - self.t0, 3)
            self.cpu_total = max(self.cpu_total, cpu)
            if time.monotonic() - self.t0 > self.limit_s:
                return None
            await asyncio.sleep(0.02)

    def exited(self, name: str) -> dict[str, float]:
        """``{name: CPU seconds}`` once the process exited, else nothing."""
        return {name: self.cpu_total} if self.proc.poll() is not None else {}


def merged(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update({str(k): v for k, v in d.items()})
    return dict(total.most_common())


def _first(values: list[float], t0: float) -> float | None:
    return round(min(values) - t0, 3) if values else None


def _last(values: list[float], t0: float) -> float | None:
    return round(max(values) - t0, 3) if values else None


@dataclass
class StormSetup:
    scenario: str
    label: str  # what the table calls the server
    client: str  # what each client does
    resume: bool
    v1: bool


SETUPS = {
    "fanout": StormSetup(
        "fanout",
        "fanout serve, Redis broker",
        "`fanout.v1`, resumes its room with `since`",
        True,
        True,
    ),
    "fanout-handshake": StormSetup(
        "fanout-handshake", "fanout serve, Redis broker", "`fanout.v1`, handshake only", False, True
    ),
    "article": StormSetup(
        "article",
        "the article's server (FastAPI + uvicorn)",
        "plain, handshake only",
        False,
        False,
    ),
    "websockets": StormSetup(
        "websockets",
        "websockets' own server (`websockets.asyncio.server`)",
        "plain, handshake only",
        False,
        False,
    ),
}


class Bench:
    def __init__(self, args: argparse.Namespace, workers: Workers, redis: Started) -> None:
        self.args, self.workers, self.redis = args, workers, redis
        self.n: int = args.clients

    async def progress(self, label: str, t0: float, keys: tuple[str, ...]) -> None:
        while True:
            await asyncio.sleep(1.0)
            total = self.workers.totals()
            shown = ", ".join(f"{k} {total.get(k, 0):,}" for k in keys)
            print(f"  {label:<28} {time.monotonic() - t0:6.1f} s  {shown}", flush=True)

    async def storm(
        self, setup: StormSetup, old: Started, new: Started, publisher: Publisher | None
    ) -> dict[str, Any]:
        w, n, args = self.workers, self.n, self.args
        old_ep = Endpoint(HOST, old.port, "/ws", setup.v1)
        new_ep = Endpoint(HOST, new.port, "/ws", setup.v1)
        name = setup.scenario
        print(f"{name}: {n:,} clients connect to {old.name} (port {old.port})", flush=True)
        w.progress.clear()
        shown = asyncio.create_task(self.progress(f"{name} connect", time.monotonic(), ("ready",)))
        try:
            connected = await w.request(
                {
                    "op": "connect",
                    "endpoint": old_ep,
                    "resume": setup.resume,
                    "window": CONNECT_WINDOW,
                },
                "connected",
                CONNECT_TIMEOUT_S + 30,
            )
        finally:
            shown.cancel()
        ready = sum(int(c["ready"]) for c in connected)
        reasons = merged(c["reasons"] for c in connected)
        if ready < n:
            raise RuntimeError(f"{name}: {ready:,} of {n:,} clients connected: {reasons}")
        figures: dict[str, Any] = {
            "scenario": name,
            "server": setup.label,
            "client": setup.client,
            "clients": n,
            "connect_s": round(max(float(c["seconds"]) for c in connected), 2),
            "connect_retries": reasons,
        }
        print(f"  all {n:,} connected in {figures['connect_s']} s", flush=True)
        pre_cores = None
        if publisher is not None:
            await publisher.burst(args.messages)
            before = await self.offsets(publisher.n)
            figures["before_storm"] = before
            print(
                f"  {args.messages} messages in each of {args.rooms} rooms; clients with all of"
                f" them: {before['complete']:,} of {n:,}",
                flush=True,
            )
            publisher.start(args.rate)
        await w.request({"op": "arm", "endpoint": new_ep}, "armed", 10)
        w.drain("done")
        if publisher is not None:
            cpu0, wall0 = proc_cpu_s(new.pid), time.monotonic()
            await asyncio.sleep(PRE_STORM_S)
            pre_cores = (proc_cpu_s(new.pid) - cpu0) / (time.monotonic() - wall0)
        pids = {"new": [new.pid], "old": [old.pid], "clients": w.pids}
        if name.startswith("fanout"):
            pids["redis"] = [self.redis.pid]
        published0 = publisher.n if publisher else 0
        mark = CpuMark(pids)
        t0 = time.monotonic()
        old.proc.send_signal(signal.SIGTERM)
        exit_watch = ExitWatch(old.proc, t0)
        print(f"  SIGTERM to {old.name}; clients reconnect to {new.name}", flush=True)
        keys = ("lost", "handshakes", "opened", *(("resumed",) if setup.resume else ()))
        shown = asyncio.create_task(self.progress(f"{name} storm", t0, (*keys, "failures")))
        timed_out = False
        try:
            await w.collect("done", args.storm_timeout)
        except TimeoutError:
            timed_out = True
        finally:
            shown.cancel()
        t_end = time.monotonic()
        cpu = mark.since(exit_watch.exited("old"))
        published = (publisher.n - published0) if publisher else 0
        reports = await w.request({"op": "report"}, "report", 30)
        try:
            async with asyncio.timeout(60):
                old_exit_s = await exit_watch.task
        except TimeoutError:
            old_exit_s = None
        figures.update(self.storm_figures(reports, t0, t_end, cpu, setup.resume))
        figures.update(
            timed_out=timed_out,
            old_exit_s=old_exit_s,
            old_exit_code=old.proc.poll(),
        )
        if publisher is not None:
            await asyncio.sleep(args.after)
            await publisher.stop()
            figures["published_during_storm"] = published
            figures["new_cores_publishing_before"] = round(pre_cores or 0.0, 3)
            figures["publish_retries"] = dict(publisher.retries)
            figures["publish_offset_mismatches"] = publisher.mismatches
            figures["verify"] = await self.offsets(publisher.n)
        self.print_storm(figures)
        return figures

    async def offsets(self, target: int) -> dict[str, Any]:
        answers = await self.workers.request(
            {"op": "await_offset", "offset": target}, "offsets", OFFSET_TIMEOUT_S + 30
        )
        total: dict[str, Any] = {"target": target}
        for key in answers[0]:
            if key in ("ev", "w", "target"):
                continue
            values = [a[key] for a in answers]
            if all(isinstance(v, int) for v in values):
                total[key] = sum(values)
            else:
                total[key] = [x for v in values for x in v][:5]
        return total

    def storm_figures(
        self,
        reports: list[dict[str, Any]],
        t0: float,
        t_end: float,
        cpu: dict[str, Any],
        resume: bool,
    ) -> dict[str, Any]:
        def flat(key: str) -> list[float]:
            return [x for r in reports for x in r[key]]

        lost, attempts, opened, back = (
            flat("lost_at"),
            flat("first_attempt_at"),
            flat("opened_at"),
            flat("back_at"),
        )
        counts = merged(r["counts"] for r in reports)
        handshakes = int(counts.get("handshakes", 0))
        new_cpu = float(cpu["seconds"]["new"])
        span = max(opened) - min(attempts) if opened and attempts else 0.0
        return {
            "back": len(back),
            "all_back": len(back) == self.n,
            "all_back_s": round(max(back) - t0, 3) if len(back) == self.n else None,
            "first_close_s": _first(lost, t0),
            "last_close_s": _last(lost, t0),
            "first_attempt_s": _first(attempts, t0),
            "last_handshake_s": _last(opened, t0),
            "handshakes": handshakes,
            "handshakes_per_s": round(handshakes / span) if span > 0 else None,
            "new_cpu_s": round(new_cpu, 3),
            "handshakes_per_core_s": round(handshakes / new_cpu) if new_cpu > 0 else None,
            "cpu_us_per_handshake": round(1e6 * new_cpu / handshakes) if handshakes else None,
            "handshake_ms": percentiles(flat("handshake_s")),
            "close_to_back_ms": percentiles(flat("back_s")),
            "failures": int(counts.get("failures", 0)),
            "failure_reasons": merged(r["reasons"] for r in reports),
            "old_close_codes": merged(r["old_close"] for r in reports),
            "unexpected_frames": int(counts.get("unexpected frames", 0)),
            "cpu": cpu,
            "window_s": round(t_end - t0, 3),
            "stuck": [s for r in reports for s in r["stuck"]][:5],
        }

    def print_storm(self, f: dict[str, Any]) -> None:
        back = "resumed" if f["scenario"] == "fanout" else "reconnected"
        when = f"{f['all_back_s']:.2f} s" if f["all_back"] else "NOT ALL (timed out)"
        print(
            f"  {f['back']:,} of {f['clients']:,} {back}: all after {when}; {f['handshakes']:,}"
            f" handshakes, {f['handshakes_per_s'] or 0:,}/s; new server {f['new_cpu_s']:.2f} CPU"
            f" s = {f['handshakes_per_core_s'] or 0:,} handshakes/s per core; failures"
            f" {f['failures']:,} {f['failure_reasons'] or ''}; old closes {f['old_close_codes']};"
            f" other load {f['cpu']['other_cores']:.2f} cores",
            flush=True,
        )
        v = f.get("verify")
        if v:
            print(
                f"  after publishing stopped (offset {v['target']}): exactly once in order"
                f" {v['exact']:,} of {v['clients']:,}; missing {v['missing']:,}, duplicates"
                f" {v['duplicates']:,}, out of order {v['out_of_order']:,}, wrong data"
                f" {v['wrong_data']:,}, gap frames {v['gap_frames']:,}, recovered true"
                f" {v['recovered']:,}, false {v['not_recovered']:,}",
                flush=True,
            )

    async def scenario(self, setup: StormSetup, logs: Path, cpus: Placement) -> dict[str, Any]:
        broker = f"redis://{HOST}:{self.redis.port}/0"
        slug = setup.scenario
        with contextlib.ExitStack() as stack:
            if setup.scenario.startswith("fanout"):
                old = stack.enter_context(
                    fanout_node("node A", broker, self.n, logs / f"{slug}-a.log", cpus.others)
                )
                new = stack.enter_context(
                    fanout_node("node B", broker, self.n, logs / f"{slug}-b.log", cpus.server)
                )
            else:
                argv = article_argv() if setup.scenario == "article" else websockets_server()[0]
                old = stack.enter_context(
                    plain_server("old", argv, logs / f"{slug}-old.log", cpus.others)
                )
                new = stack.enter_context(
                    plain_server("new", argv, logs / f"{slug}-new.log", cpus.server)
                )
            publisher = Publisher(new.port, self.args.rooms) if setup.resume else None
            try:
                return await self.storm(setup, old, new, publisher)
            except Exception as exc:  # the other scenarios still run; the section says so
                print(f"{slug}: FAILED: {exc!r}", flush=True)
                error = f"{type(exc).__name__}: {exc}"[:2000]
                return {**asdict(setup), "server": setup.label, "clients": self.n, "error": error}
            finally:
                if publisher is not None:
                    await publisher.close()
                with contextlib.suppress(Exception):
                    await self.workers.request({"op": "close"}, "closed", 30)


@dataclass(frozen=True)
class Placement:
    server: set[int] | None  # the new server of each pair
    others: set[int] | None  # everything else

    def describe(self) -> str:
        if not self.server:
            return "nothing pinned (one CPU)"
        return (
            f"the new server of each pair pinned to CPU {min(self.server)}; the old server,"
            f" Redis, the client workers and this script to CPU"
            f" {', '.join(str(c) for c in sorted(self.others or ()))}"
        )


def placement() -> Placement:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Placement(None, None)
    return Placement({cpus[0]}, set(cpus[1:]))


def run(args: argparse.Namespace, logs: Path, cpus: Placement) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        workers = Workers(args.workers, args.clients, args.rooms, args.per_address)
        stack.callback(workers.stop)
        redis = stack.enter_context(redis_server(logs))
        load = results_md.OtherLoad(args.quiet_wait)

        async def measure() -> dict[str, Any]:
            workers.attach()
            bench = Bench(args, workers, redis)
            storms = []
            try:
                async with asyncio.timeout(args.budget):
                    for name in args.only:
                        storms.append(await bench.scenario(SETUPS[name], logs, cpus))
            finally:
                workers.detach()
            return {"storms": storms}

        try:
            measured = uvloop.run(measure())
        except BaseException:
            for log in sorted(logs.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
        seconds = round(time.monotonic() - load.start, 1)
        return {**measured, "seconds": seconds, **load.figures()}


# -- the findings and RESULTS.md ----------------------------------------------------------------


def problems(report: dict[str, Any]) -> list[str]:
    """What went wrong in fanout's storms: every line a bug to look at."""
    found: list[str] = []
    for f in report["storms"]:
        if not f["scenario"].startswith("fanout"):
            continue
        name = f["scenario"]
        if "error" in f:
            found.append(f"{name}: the storm could not be measured: {f['error']}")
            continue
        if not f["all_back"]:
            found.append(
                f"{name}: {f['clients'] - f['back']:,} of {f['clients']:,} clients not back on"
                f" node B within {report['storm_timeout_s']:g} s; e.g. {f['stuck'][:2]}"
            )
        codes = {k: v for k, v in f["old_close_codes"].items() if k != "1001"}
        if codes:
            found.append(f"{name}: node A closed clients with other codes than 1001: {codes}")
        if f["unexpected_frames"]:
            found.append(f"{name}: {f['unexpected_frames']:,} unexpected frames")
        if f.get("publish_offset_mismatches"):
            found.append(
                f"{name}: {f['publish_offset_mismatches']} broadcast results had another"
                " offset than the message's number"
            )
        b = f.get("before_storm")
        if b is not None and b["exact"] < b["clients"]:
            found.append(
                f"{name}: before the SIGTERM, {b['clients'] - b['exact']:,} of"
                f" {b['clients']:,} clients on node A did not have every message up to offset"
                f" {b['target']} exactly once in order; e.g. {b['bad'][:2]}"
            )
        v = f.get("verify")
        if v is None:
            continue
        if v["exact"] < v["clients"] or v["not_recovered"]:
            found.append(
                f"{name}: {v['clients'] - v['exact']:,} of {v['clients']:,} clients did not get"
                f" every message up to offset {v['target']} exactly once in order (missing"
                f" {v['missing']:,}, duplicates {v['duplicates']:,}, out of order"
                f" {v['out_of_order']:,}, wrong data {v['wrong_data']:,}, epoch changes"
                f" {v['epoch_changes']:,}, gap frames {v['gap_frames']:,}, `recovered: false`"
                f" {v['not_recovered']:,}); e.g. {v['bad'][:2]}; frames {v['errors'][:2]}"
            )
    return found


def _num(value: Any, fmt: str = ",") -> str:
    return "" if value is None else format(value, fmt)


def _ms(p: dict[str, Any]) -> str:
    return f"{p['p50_ms']:,.0f} / {p['p99_ms']:,.0f}" if p.get("n") else ""


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code}: {count:,}" for code, count in codes.items()) or "none"


def section(report: dict[str, Any], found: list[str]) -> str:
    storms = report["storms"]
    n = report["clients"]
    other = max([s["cpu"]["other_cores"] for s in storms if "cpu" in s] or [0.0])
    shares = (
        f"{report['placement']}; other processes used {report['other_cores']:.2f} cores on"
        f" average during the run ({report['other_cores_before']:.2f} just before it), at"
        f" most {other:.2f} during a storm; {report['seconds']:.0f} s in all"
    )
    if max(other, report["other_cores"]) > OTHER_LOAD_FLAG:
        shares += f" (**disturbed**: more than {OTHER_LOAD_FLAG} cores of other load)"
    title = f"## Reconnect storm: {n:,} clients back on one node after another's SIGTERM"
    lines = [title, ""]
    if report["quick"]:
        lines += [
            f"**Smoke run (`--quick`, {n:,} clients) on a shared machine: not the figures;"
            " the full run (10,000 clients) replaces this section.**",
            "",
        ]
    lines += [
        "Generated by `bench/reconnect_storm.py` (issue 15, item 4): for each server, a pair"
        " started fresh (old and new) on free loopback ports; N clients connected to the old"
        " one get its SIGTERM and reconnect to the new one the way fanout's own client does"
        " (50-100 ms after a connection that ended; after a failed attempt the backoff"
        " doubles from 0.1 s up to 5 s, jitter 0.5). The clients are this script's raw"
        f" WebSocket connections (`asyncio.Protocol` on uvloop) in {report['workers']}"
        f" process(es), from {report['addresses']} source addresses (127.0.0.2 ...,"
        f" {report['per_address']} each: fanout's per-address limit stays at its default of"
        " 1,000).",
        "",
        *results_md.report_lines(report, shares),
        "",
        "| server | each client | SIGTERM → all back | handshakes on the new server |"
        " handshakes/s | new server CPU s | **handshakes/s per core** | CPU µs per handshake |"
        " handshake p50 / p99 ms | failed attempts | old server's closes | waiting for a CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for f in storms:
        if "error" in f:
            lines.append(
                f"| {f['server']} | {f['client']} | failed: {f['error'][:200]} |" + " |" * 9
            )
            continue
        back = f"{f['all_back_s']:.2f} s" if f["all_back"] else f"{f['back']:,} of {f['clients']:,}"
        codes = _codes(f["old_close_codes"])
        lines.append(
            f"| {f['server']} | {f['client']} | {back} | {f['handshakes']:,} |"
            f" {_num(f['handshakes_per_s'])} | {f['new_cpu_s']:.2f} |"
            f" **{_num(f['handshakes_per_core_s'])}** | {_num(f['cpu_us_per_handshake'])} |"
            f" {_ms(f['handshake_ms'])} | {f['failures']:,} | {codes} |"
            f" {_share(f['cpu'].get('cpu_wait_share'))} |"
        )
    fan = next((f for f in storms if f["scenario"] == "fanout" and "error" not in f), None)
    if fan is not None:
        lines += ["", *fanout_details(fan, report)]
    lines += [
        "",
        "- *SIGTERM → all back*: from the SIGTERM to the old server until the last client"
        " was back on the new one: for fanout's resume, its `subscribed` with `recovered:"
        " true`; otherwise the handshake's `101`. *handshakes/s*: `101` answers of the new"
        " server over the time from the first reconnect attempt to the last `101`. *new"
        " server CPU s*: its user + system CPU (`/proc/PID/stat`, all threads) from the"
        " SIGTERM until the last client was back; *handshakes/s per core* is the handshakes"
        " over those CPU seconds (so independent of how fast the old server let its clients"
        " go), *CPU µs per handshake* its inverse. For the resuming row that CPU includes"
        " each client's `subscribe` with `since`, the replay of what it missed from Redis,"
        " the live messages meanwhile and the publishing through the node's HTTP API.",
        "- *handshake p50 / p99*: each successful attempt on the new server, from"
        " `connect()` to the `101` (TCP connect included; while the new server is busy the"
        " kernel's listen queue holds the rest). *failed attempts*: attempts on the new"
        " server that failed or were closed before the client was back, retried with the"
        " backoff. *old server's closes*: the close codes the clients got (1006: none)."
        " *waiting for a CPU*: share of the storm in which some runnable task of the"
        " machine waited for a core (Linux PSI, `/proc/pressure/cpu`, *some*): when it is"
        " high, the times above are mostly waiting for a CPU (the per-core figures much"
        " less so).",
        "- Servers: fanout `serve --broker redis://...` (`--max-connections"
        f" {max(10_000, n + 1_000):,}`, everything else default); the article's server is"
        " `fanout baseline` (its code verbatim under uvicorn's defaults: uvloop, backlog"
        " 2048; uvicorn closes WebSockets with 1012 on SIGTERM); websockets' own server is"
        f" {report.get('websockets_server', '')}, on uvloop, closing with 1001 on SIGTERM."
        f" The clients first connect at most {CONNECT_WINDOW} at a time per worker (not"
        " measured).",
    ]
    if found:
        lines += ["", "**Problems found in fanout:**", "", *(f"- {p}" for p in found)]
    return "\n".join(lines)


def fanout_details(f: dict[str, Any], report: dict[str, Any]) -> list[str]:
    v, cpu = f.get("verify") or {}, f["cpu"]
    cores = ", ".join(f"{k} {s:.2f}" for k, s in cpu["seconds"].items())
    ok = v and v["exact"] == v["clients"] and not v["not_recovered"] and f["all_back"]
    lines = [
        f"### fanout's storm in detail ({f['clients']:,} clients, {report['rooms']} rooms)",
        "",
        f"- Before the SIGTERM: every client subscribed on node A to one of"
        f" {report['rooms']} rooms ({f['clients'] // max(1, report['rooms']):,} per room);"
        f" {report['messages']} messages per room published (`POST /api/broadcast` on node"
        f" B, message n is offset n of every room), then {report['rate']:g} per room per"
        " second until after the storm.",
        f"- Node A closed its clients from {_num(f['first_close_s'], '.2f')} s to"
        f" {_num(f['last_close_s'], '.2f')} s after the SIGTERM (codes"
        f" {_codes(f['old_close_codes'])}) and exited after {_num(f['old_exit_s'], '.2f')} s. The"
        f" first reconnect came at {_num(f['first_attempt_s'], '.2f')} s, the last `101` at"
        f" {_num(f['last_handshake_s'], '.2f')} s, the last `recovered: true` at"
        f" {_num(f['all_back_s'], '.2f')} s; from a client's close to its resume: p50/p99"
        f" {_ms(f['close_to_back_ms'])} ms.",
    ]
    if v:
        lines += [
            f"- Resumed: `recovered: true` {v['recovered']:,}, `recovered: false`"
            f" {v['not_recovered']:,}, `gap` frames {v['gap_frames']:,}; {v['replayed']:,}"
            " messages replayed from history on resume.",
            f"- Every message (publishing stopped {report['after_s']:g} s after the last"
            f" resume, at offset {v['target']}): **{v['exact']:,} of {v['clients']:,} clients"
            " got every message of their room exactly once, in order** (offsets and data"
            f" checked); missing {v['missing']:,}, duplicates {v['duplicates']:,}, out of"
            f" order {v['out_of_order']:,}, wrong data {v['wrong_data']:,}, epoch changes"
            f" {v['epoch_changes']:,}; {v['received']:,} messages received in all.",
        ]
    lines += [
        f"- CPU seconds from the SIGTERM until all resumed ({cpu['wall_s']:.2f} s): {cores}."
        f" Node B used {f['new_cores_publishing_before']:.2f} cores for the publishing alone"
        f" just before the SIGTERM; {f['published_during_storm']} broadcasts"
        f" ({f['published_during_storm'] * report['rooms']:,} publishes) went through it"
        " during the storm.",
        f"- Verdict: {'**every client resumed with nothing lost**' if ok else '**PROBLEM**'}.",
    ]
    return lines


# -- main ----------------------------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as it is written, and the options' defaults (if any)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--clients",
        type=int,
        help=f"clients (default: {CLIENTS:,}; {QUICK_CLIENTS:,} with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {QUICK_CLIENTS:,} clients"
    )
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--rooms", type=int, default=ROOMS, help="rooms of the fanout storm")
    parser.add_argument(
        "--messages", type=int, default=MESSAGES, help="messages per room before the SIGTERM"
    )
    parser.add_argument(
        "--rate", type=float, default=RATE, help="messages per room per second during the storm"
    )
    parser.add_argument(
        "--after", type=float, default=AFTER_S, help="seconds of publishing after all resumed"
    )
    default_workers = max(1, min(4, len(os.sched_getaffinity(0)) - 1))
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers,
        help="client processes (the CPUs but one, at most 4)",
    )
    parser.add_argument(
        "--per-address", type=int, default=PER_ADDRESS, help="clients per source address"
    )
    parser.add_argument(
        "--storm-timeout",
        type=float,
        default=120.0,
        help="seconds a storm may take before its clients are reported as not back",
    )
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all of it")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: rewrite the section from a JSON report of an earlier run",
    )
    results_md.add_run_arguments(parser, 30.0, "first")
    # What this script runs as websockets' own server: --serve-websockets --port P.
    parser.add_argument("--serve-websockets", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_websockets:
        serve_websockets(args.port)
        return 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        results_md.publish_section(args.results, NAME, section(report, problems(report)))
        return 0
    args.clients = args.clients or (QUICK_CLIENTS if args.quick else CLIENTS)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if not set(args.only) <= set(SCENARIOS):
        parser.error(f"--only: choose from {', '.join(SCENARIOS)}")
    addresses = -(-args.clients // args.per_address)
    if addresses > 250 or args.per_address > 1_000:
        parser.error("--per-address: at most 1,000 (fanout's limit) and 250 addresses")
    limit = raise_open_files()
    need = args.clients + 2_000
    if limit < need:
        parser.error(f"the open-files limit is {limit}: {need} needed (ulimit -Hn)")
    cpus = placement()
    before = os.sched_getaffinity(0)
    if cpus.others:
        os.sched_setaffinity(0, cpus.others)
    stamp = dt.datetime.now(dt.UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="fanout-reconnect-storm-") as tmp:
            measured = run(args, Path(tmp), cpus)
    finally:
        os.sched_setaffinity(0, before)
    head = {
        "redis": redis_version(),
        "code": results_md.measured_code(),
        "quick": args.quick,
        "clients": args.clients,
        "rooms": args.rooms,
        "messages": args.messages,
        "rate": args.rate,
        "after_s": args.after,
        "workers": args.workers,
        "per_address": args.per_address,
        "addresses": addresses,
        "storm_timeout_s": args.storm_timeout,
        "placement": cpus.describe(),
        "websockets_server": websockets_server()[1],
        "open_files": limit,
    }
    report = results_md.write_report(NAME, stamp, args.out, head, measured)
    found = problems(report)
    report["problems"] = found
    Path(results_md.ROOT / report["json"]).write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    results_md.publish_section(args.results, NAME, section(report, found))
    for line in found:
        print(f"PROBLEM: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
