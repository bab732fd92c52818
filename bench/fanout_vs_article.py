"""fanout against the article's server: server CPU per delivery, throughput, latency, loss.

One publisher sends 200-byte messages at a fixed rate to S subscribers (100, then 500),
against each server in turn, in the same run:

- ``article``: the article's FastAPI loop (``fanout.lab.baseline``) under uvicorn's
  defaults, clients in plain mode (its only mode);
- ``fanout-plain``: ``fanout serve``, clients in plain mode (``/ws``, as the article's);
- ``fanout-v1``: ``fanout serve``, clients speak ``fanout.v1`` (``subscribe`` a room,
  ``publish`` JSON frames; each delivery is a ``message`` frame with room/epoch/offset);
- ``fanout-v1-auth`` (not run by default; ``bench/auth_cost.py`` runs it next to
  ``fanout-v1``): the same with auth and limits on: tokens checked at the handshake
  (every client sends ``Authorization: Bearer <token>`` granting the bench's room), room
  grants checked on every subscribe and publish, the rate limiter on every frame, the
  per-address connection limit on every connection.

The ``fanout-*`` targets other than ``fanout-v1-auth`` run with the limits off
(``--rate-frames-per-s 0 --rate-bytes-per-s 0 --max-connections-per-ip 0``), anonymous:
as ``fanout serve`` was before it had limits, and because the default of 1,000 frames
per second per connection would refuse the publisher at 1,500 msg/s.

Each server is a child process on a free 127.0.0.1 port. Subscribers are spread over
several load-generator processes, each an event loop holding many raw WebSocket
connections (a small frame reader, lighter than a full client library: the generators
must not be the bottleneck on a small machine). Every payload carries a sequence number
and the publisher's send time (``CLOCK_MONOTONIC``, the same clock in every process),
so each receiver counts lost, duplicated and reordered messages and measures
publish-to-deliver latency.

Server CPU is read from ``/proc`` (psutil) at the start of publishing and again once
every receiver has everything (or the drain timeout passed); divided by the frames the
receivers got, that is the server's CPU per delivery, receive and parse of the publish
included. In plain mode the publisher receives its own messages too (the article's
behaviour), so a message makes S + 1 deliveries; in ``fanout.v1`` it makes S.

Run: ``make bench`` or ``.venv/bin/python bench/fanout_vs_article.py --help``.
Writes ``bench/out/fanout_vs_article-<time>.json`` (raw numbers, machine) and
``bench/RESULTS.md`` (the table).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, Literal, cast

import psutil

from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.settings import NO_CLIENT_LIMITS, Settings
from results_md import replace_section

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
PAYLOAD_BYTES = 200
ROOM = "bench"
# Marks the start of "~<seq:10>~<send time ns:20>~" inside any frame the servers send
# (the article prefixes "Server received: ", fanout.v1 wraps the data in JSON).
MARK = 0x7E  # "~"
BUSY_FLAG = 0.90
OTHER_LOAD_FLAG = 0.25

ServerKind = Literal["article", "fanout", "floor"]
Mode = Literal["plain", "v1"]


@dataclass(frozen=True)
class Target:
    name: str
    server: ServerKind
    mode: Mode
    # Offer permessage-deflate, as browsers and the websockets client do.
    deflate: bool = False
    # fanout only: tokens and limits on (see ``security_setup``); off otherwise.
    auth: bool = False


TARGETS = {
    "article": Target("article", "article", "plain"),
    "article-deflate": Target("article-deflate", "article", "plain", deflate=True),
    "fanout-plain": Target("fanout-plain", "fanout", "plain"),
    "fanout-v1": Target("fanout-v1", "fanout", "v1"),
    "fanout-v1-auth": Target("fanout-v1-auth", "fanout", "v1", auth=True),
    "floor": Target("floor", "floor", "plain"),
    # fanout declines the offer: same as fanout-plain, there to show it.
    "fanout-plain-deflate": Target("fanout-plain-deflate", "fanout", "plain", deflate=True),
}
DEFAULT_TARGETS = "article,article-deflate,fanout-plain,fanout-v1,floor"


@dataclass(frozen=True)
class ClientSpec:
    """What one generator process does; picklable, sent to the child."""

    role: Literal["subscribers", "publisher"]
    port: int
    mode: Mode
    connections: int
    path: str
    cpus: tuple[int, ...] = ()
    deflate: bool = False
    # Sent as ``Authorization: Bearer <token>`` when not empty.
    token: str = ""


# -- the raw WebSocket client -----------------------------------------------------------


def payload(seq: int, sent_ns: int) -> bytes:
    head = b"~%010d~%020d~" % (seq, sent_ns)
    return head + b"x" * (PAYLOAD_BYTES - len(head))


def client_frame(opcode: int, data: bytes) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 5.3: clients always mask)."""
    n = len(data)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    if not n:
        return header + key
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return header + key + masked


class Tally:
    """What all connections of one generator process saw."""

    def __init__(self) -> None:
        self.latencies_ns = array.array("q")
        self.last_frame_ns = 0
        self.closes: list[int] = []


class WsClient(asyncio.Protocol):
    """Handshake, then count frames: sequence accounting and latency per payload."""

    def __init__(self, spec: ClientSpec, tally: Tally) -> None:
        self.spec = spec
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.buf = b""
        self.received = 0
        self.unique = 0
        self.last_seq = 0
        self.dups = 0
        self.gaps = 0
        self.lost_connection = False
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.inflater: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        lines = [
            f"GET {self.spec.path} HTTP/1.1",
            f"Host: {HOST}:{self.spec.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.spec.mode == "v1":
            lines.append("Sec-WebSocket-Protocol: fanout.v1")
        if self.spec.deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        if self.spec.token:
            lines.append(f"Authorization: Bearer {self.spec.token}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_connection = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def send(self, opcode: int, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, data))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                self.ready.set_exception(ConnectionError(f"handshake refused: {status!r}"))
                self.buf = b""
                return
            self.open = True
            if b"permessage-deflate" in buf[:end].lower():
                # Raw deflate; one decompressor per connection keeps the shared context.
                self.inflater = zlib.decompressobj(-15)
            buf = buf[end + 4 :]
            if self.spec.mode == "v1" and self.spec.role == "subscribers":
                self.send(0x1, b'{"type":"subscribe","room":"%s"}' % ROOM.encode())
            else:
                self.ready.set_result(None)
        self.buf = self._frames(buf)

    def _frames(self, buf: bytes) -> bytes:
        """Consume the whole frames in ``buf``; return the incomplete rest."""
        now = time.monotonic_ns()
        n = len(buf)
        pos = 0
        latencies = self.tally.latencies_ns
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            pos_frame, pos = pos, end
            if opcode == 0x1 or opcode == 0x2:
                data = buf
                if buf[pos_frame] & 0x40 and self.inflater is not None:  # RSV1: compressed
                    data = self.inflater.decompress(buf[start:end] + b"\x00\x00\xff\xff")
                    start, end = 0, len(data)
                i = data.find(MARK, start, end)
                if i < 0:
                    self._control(data[start:end])
                    continue
                seq = int(data[i + 1 : i + 11])
                latencies.append(now - int(data[i + 12 : i + 32]))
                self.received += 1
                if seq > self.last_seq:
                    self.gaps += seq - self.last_seq - 1
                    self.last_seq = seq
                    self.unique += 1
                else:
                    self.dups += 1
            elif opcode == 0x9:
                self.send(0xA, buf[start:end])
            elif opcode == 0x8:
                code = int.from_bytes(buf[start : start + 2], "big") if length >= 2 else 1005
                self.tally.closes.append(code)
        if self.received:
            self.tally.last_frame_ns = now
        return buf[pos:]

    def _control(self, frame: bytes) -> None:
        if b'"subscribed"' in frame and not self.ready.done():
            self.ready.set_result(None)


# -- generator processes ----------------------------------------------------------------


def generator_main(ctrl: Pipe, spec: ClientSpec) -> None:
    """Entry point of a generator process: an event loop (uvloop if present)."""
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_generator(ctrl, spec))


async def _generator(ctrl: Pipe, spec: ClientSpec) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(ctrl.fileno(), lambda: inbox.put_nowait(ctrl.recv()))
    tally = Tally()
    clients: list[WsClient] = []
    gate = asyncio.Semaphore(50)

    async def open_one() -> None:
        async with gate:
            _, client = await loop.create_connection(lambda: WsClient(spec, tally), HOST, spec.port)
            await asyncio.wait_for(client.ready, 30)
            clients.append(client)

    outcomes = await asyncio.gather(
        *(open_one() for _ in range(spec.connections)), return_exceptions=True
    )
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    deflated = sum(c.inflater is not None for c in clients)
    ctrl.send(("ready", len(clients), errors[:5], deflated))

    command = await inbox.get()
    cpu0, wall0 = time.process_time(), time.monotonic()
    if command[0] == "start" and spec.role == "publisher":
        _, count, rate = command
        ctrl.send(("published", *await _publish(clients[0], spec.mode, count, rate)))

    # In fanout.v1 the publisher subscribes to nothing, so it expects nothing.
    expects = spec.role == "subscribers" or spec.mode == "plain"
    command = await inbox.get()
    if command[0] == "finish":
        _, count, drain_s = command
        deadline = time.monotonic() + drain_s
        while expects and time.monotonic() < deadline:
            if all(c.last_seq >= count or c.lost_connection for c in clients):
                break
            await asyncio.sleep(0.005)
    cpu1, wall1 = time.process_time(), time.monotonic()
    result: dict[str, Any] = {
        "role": spec.role,
        "connections": len(clients),
        "received": sum(c.received for c in clients),
        "unique": sum(c.unique for c in clients),
        "dups": sum(c.dups for c in clients),
        "gaps": sum(c.gaps for c in clients),
        "lost_connections": sum(c.lost_connection for c in clients),
        "closes": tally.closes,
        "last_frame_ns": tally.last_frame_ns,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "expects": expects,
    }
    # The event loop made the pipe non-blocking; the result is larger than its buffer.
    loop.remove_reader(ctrl.fileno())
    os.set_blocking(ctrl.fileno(), True)
    ctrl.send(("result", result, tally.latencies_ns.tobytes()))
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


async def _publish(client: WsClient, mode: Mode, count: int, rate: float) -> tuple[Any, ...]:
    """Send ``count`` messages at ``rate``/s on a fixed schedule (late ones catch up)."""
    loop = asyncio.get_running_loop()
    assert client.transport is not None
    transport = client.transport
    prefix = b'{"type":"publish","room":"%s","data":"' % ROOM.encode()
    start = loop.time()
    t_first = time.monotonic_ns()
    for seq in range(1, count + 1):
        delay = start + (seq - 1) / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        data = payload(seq, time.monotonic_ns())
        if mode == "v1":
            data = prefix + data + b'"}'
        transport.write(client_frame(0x1, data))
    return t_first, time.monotonic_ns(), transport.get_write_buffer_size()


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def server_command(kind: ServerKind, port: int) -> list[str]:
    if kind == "fanout":
        return [sys.executable, "-m", "fanout.cli", "serve", "--port", str(port)]
    if kind == "floor":
        return [sys.executable, str(BENCH_DIR / "floor_server.py"), "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", "fanout.lab.baseline:app", "--port", str(port)]


@dataclass(frozen=True)
class Security:
    """How a fanout server is started and what its clients send, for one run."""

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    token: str = ""


# A rate limit this much above the publisher's rate: the limiter runs on every frame and
# its bucket (one second's worth) absorbs the publisher catching up after a late wake-up.
RATE_HEADROOM = 1.25


def security_setup(target: Target, subscribers: int, rate: float) -> Security:
    """Anonymous with the limits off, or (``target.auth``) tokens and limits on.

    On: a fresh HMAC secret for the server (in its environment, as FANOUT_AUTH_SECRET),
    a token granting subscribe and publish to the bench's room for every client, and
    the default limits, except where the bench itself would exceed them: the frame
    rate limit is raised to ``RATE_HEADROOM`` times the publisher's rate, and the
    per-address connection limit to the number of clients (all come from 127.0.0.1).
    """
    if target.server != "fanout":
        return Security()
    if not target.auth:
        return Security(args=NO_CLIENT_LIMITS)  # what fanout-* measured before it had limits
    defaults = Settings()
    args: list[str] = []
    if rate * RATE_HEADROOM > defaults.rate_frames_per_s:
        args += ["--rate-frames-per-s", str(math.ceil(rate * RATE_HEADROOM))]
    if subscribers + 1 > defaults.max_connections_per_ip:
        args += ["--max-connections-per-ip", str(subscribers + 1)]
    secret = secrets.token_urlsafe(32)
    token = mint_token(secret.encode(), subject="bench", grants=RoomGrants.both([ROOM]), ttl_s=3600)
    return Security(args=tuple(args), env=(("FANOUT_AUTH_SECRET", secret),), token=token)


def server_counters(port: int) -> dict[str, int]:
    """fanout's counters from ``/metrics`` (refusals, rate limiting); empty if unreadable."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counters: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            kinds[name] = kind
        elif line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            if kinds.get(name) == "counter":
                counters[name.removeprefix("fanout_")] = int(float(value))
    return counters


def tokenless_status(port: int, mode: Mode) -> int:
    """HTTP status of a WebSocket handshake without a token: 403 when auth is on."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if mode == "v1":
            lines.append("Sec-WebSocket-Protocol: fanout.v1")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = sock.recv(4096).split(b"\r\n", 1)[0].split()
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else 0


@contextlib.contextmanager
def running_server(
    kind: ServerKind,
    port: int,
    log_path: Path,
    cpus: tuple[int, ...] = (),
    security: Security | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    cmd = server_command(kind, port)
    env: dict[str, str] | None = None
    if kind == "fanout":
        cmd += ["--log-level", "warning"]
        security = security or Security()
        cmd += security.args
        # Only what ``security`` says decides auth: not a FANOUT_AUTH_* of the caller's shell.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_AUTH_")}
        env.update(security.env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # The article's server prints per connection and per message: to /dev/null, so
        # its cost stays (a write per print) without filling a file.
        stdout = subprocess.DEVNULL if kind == "article" else log
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=log, cwd=ROOT, env=env)
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{kind} server exited: {log_path.read_text()}")
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not listen: {log_path.read_text()}")
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextlib.contextmanager
def attached(cmd: str, pid: int, target: Target, subscribers: int) -> Iterator[None]:
    """Run ``cmd`` (a profiler, say) for the duration of the block; nothing if empty."""
    if not cmd:
        yield
        return
    argv = [
        a.format(pid=pid, target=target.name, subscribers=subscribers) for a in shlex.split(cmd)
    ]
    proc = subprocess.Popen(argv)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user), float(times.system)


# -- one measurement ----------------------------------------------------------------------


@dataclass
class RunResult:
    target: str
    server: str
    mode: str
    deflate: bool
    subscribers: int
    rate: float
    repeat: int
    messages: int
    publish_s: float
    deliveries: int
    expected_deliveries: int
    deliveries_per_s: float
    offered_deliveries_per_s: float
    server_cpu_s: float
    us_per_delivery: float
    user_us_per_delivery: float
    system_us_per_delivery: float
    server_busy: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    dups: int
    gaps: int
    lost_connections: int
    closes: list[int]
    connect_errors: list[str]
    publisher_backlog_bytes: int
    generator_busy: list[float]
    client_cores: int
    compressed_connections: int
    other_cores: float
    flags: list[str] = field(default_factory=list)
    # fanout only: the flags it was started with (limits) and its counters after the run.
    auth: bool = False
    server_args: list[str] = field(default_factory=list)
    server_counters: dict[str, int] = field(default_factory=dict)
    # With auth on: the HTTP status a handshake without a token got after the run (403).
    tokenless_status: int | None = None


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6


def _recv(pipe: Pipe, timeout: float, what: str) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        raise TimeoutError(f"no {what} within {timeout:.0f} s")
    message: tuple[Any, ...] = pipe.recv()
    return message


def busy_cores(before: Any, after: Any, wall_s: float) -> float:
    """Cores the whole machine kept busy between two ``psutil.cpu_times()``."""
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    total = sum(after) - sum(before)
    return float(total - idle) / max(1e-9, wall_s)


def wait_for_quiet(max_wait_s: float, limit_cores: float = 0.25) -> float:
    """Wait until other processes leave the CPUs (at most ``max_wait_s``); return their load.

    The machine may be shared: another job's load lands in the latency of both servers
    and in their system time (wake-ups, preemption), so runs start on a quiet machine
    when they can and report the load they saw when they cannot.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before, t = psutil.cpu_times(), time.monotonic()
        time.sleep(0.5)
        load = busy_cores(before, psutil.cpu_times(), time.monotonic() - t)
        if load < limit_cores or time.monotonic() >= deadline:
            return load


def run_one(
    target: Target,
    subscribers: int,
    rate: float,
    *,
    repeat: int,
    duration_s: float,
    procs: int,
    log_dir: Path,
    attach: str = "",
    pin: bool = False,
) -> RunResult:
    port = free_port()
    count = max(1, round(rate * duration_s))
    drain_s = 5.0
    ctx = mp.get_context("spawn")
    path = "/ws"
    per_proc = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    # Pinned: the server alone on CPU 0, the clients on the others. Otherwise a client
    # woken by the server's write can preempt it on its own CPU, and the server pays
    # for the context switches.
    cores = os.cpu_count() or 1
    server_cpus, client_cpus = ((0,), tuple(range(1, cores))) if pin and cores > 1 else ((), ())
    security = security_setup(target, subscribers, rate)
    specs = [
        ClientSpec(
            "subscribers", port, target.mode, n, path, client_cpus, target.deflate, security.token
        )
        for n in per_proc
        if n
    ] + [
        ClientSpec(
            "publisher", port, target.mode, 1, path, client_cpus, target.deflate, security.token
        )
    ]
    log_path = log_dir / f"{target.name}-{subscribers}.log"
    counters: dict[str, int] = {}
    probe: int | None = None
    with running_server(target.server, port, log_path, server_cpus, security) as server:
        pipes: list[Pipe] = []
        children: list[mp.process.BaseProcess] = []
        finished = False
        try:
            for spec in specs:
                parent_end, child_end = ctx.Pipe()
                child = ctx.Process(target=generator_main, args=(child_end, spec), daemon=True)
                child.start()
                child_end.close()
                pipes.append(parent_end)
                children.append(child)
            connect_errors: list[str] = []
            compressed = 0
            for pipe, spec in zip(pipes, specs, strict=True):
                _, n, errors, deflated = _recv(pipe, 90, "ready")
                compressed += deflated
                connect_errors += errors
                if n != spec.connections:
                    raise RuntimeError(f"{target.name}: {n}/{spec.connections} connected: {errors}")
            # Lets the last subscriptions settle, and other jobs on the machine finish.
            wait_for_quiet(10.0)
            machine0 = psutil.cpu_times()
            (user0, sys0), t0 = cpu_seconds(server.pid), time.monotonic()
            for pipe in pipes[:-1]:
                pipe.send(("start",))
            pipes[-1].send(("start", count, rate))
            with attached(attach, server.pid, target, subscribers):
                _, t_first_ns, t_last_ns, backlog = _recv(pipes[-1], duration_s * 4 + 30, "publish")
            cpu_pub, t_pub = sum(cpu_seconds(server.pid)), time.monotonic()
            for pipe in pipes:
                pipe.send(("finish", count, drain_s))
            results: list[dict[str, Any]] = []
            latencies = array.array("q")
            for pipe in pipes:
                _, result, raw = _recv(pipe, drain_s + 30, "result")
                results.append(result)
                latencies.frombytes(raw)
            (user1, sys1), t1 = cpu_seconds(server.pid), time.monotonic()
            machine1 = psutil.cpu_times()
            if target.server == "fanout":
                counters = server_counters(port)
            if target.auth:
                # After the counters: this refusal is not one of the run's.
                probe = tokenless_status(port, target.mode)
            finished = True
        finally:
            for process in children:
                # After a failure the children may wait for commands that never come.
                process.join(timeout=10 if finished else 0)
                if process.is_alive():
                    process.kill()
                    process.join()
    receivers = [r for r in results if r["expects"]]
    receiver_conns = sum(r["connections"] for r in receivers)
    deliveries = sum(r["received"] for r in results)
    last_ns = max(r["last_frame_ns"] for r in results)
    active_s = max(1e-9, (last_ns - t_first_ns) / 1e9)
    user, system = user1 - user0, sys1 - sys0
    per = 1e6 / deliveries if deliveries else float("nan")
    ours = user + system + sum(r["cpu_s"] for r in results)
    lat = sorted(latencies)
    run = RunResult(
        target=target.name,
        server=target.server,
        mode=target.mode,
        deflate=target.deflate,
        subscribers=subscribers,
        rate=rate,
        repeat=repeat,
        messages=count,
        publish_s=round((t_last_ns - t_first_ns) / 1e9, 3),
        deliveries=deliveries,
        expected_deliveries=count * receiver_conns,
        deliveries_per_s=round(deliveries / active_s, 1),
        offered_deliveries_per_s=round(rate * receiver_conns, 1),
        server_cpu_s=round(user + system, 4),
        us_per_delivery=round((user + system) * per, 3),
        user_us_per_delivery=round(user * per, 3),
        system_us_per_delivery=round(system * per, 3),
        server_busy=round((cpu_pub - user0 - sys0) / max(1e-9, t_pub - t0), 3),
        p50_ms=round(percentile(lat, 0.50), 3),
        p99_ms=round(percentile(lat, 0.99), 3),
        max_ms=round(percentile(lat, 1.0), 3),
        lost=sum(r["connections"] * count - r["unique"] for r in receivers),
        dups=sum(r["dups"] for r in results),
        gaps=sum(r["gaps"] for r in results),
        lost_connections=sum(r["lost_connections"] for r in results),
        closes=sorted({c for r in results for c in r["closes"]}),
        connect_errors=connect_errors,
        publisher_backlog_bytes=backlog,
        generator_busy=[round(r["cpu_s"] / max(1e-9, r["wall_s"]), 3) for r in results],
        client_cores=len(client_cpus) or cores,
        compressed_connections=compressed,
        other_cores=round(max(0.0, busy_cores(machine0, machine1, t1 - t0) - ours / (t1 - t0)), 2),
        auth=target.auth,
        server_args=list(security.args),
        server_counters=counters,
        tokenless_status=probe,
    )
    run.flags = flags_for(run)
    return run


def flags_for(r: RunResult) -> list[str]:
    flags = []
    busiest = max(r.generator_busy)
    if busiest > BUSY_FLAG:
        flags.append(f"a load generator was {busiest:.0%} busy: the client may be the limit")
    if sum(r.generator_busy) > BUSY_FLAG * r.client_cores:
        flags.append(
            f"the load generators used {sum(r.generator_busy):.2f} of the"
            f" {r.client_cores} cores they had: the client may be the limit"
        )
    if r.server_busy > BUSY_FLAG:
        flags.append(f"server {r.server_busy:.0%} busy while publishing: saturated")
    if r.deliveries_per_s < 0.95 * r.offered_deliveries_per_s:
        flags.append(
            f"{r.deliveries_per_s:,.0f} deliveries/s, below 95% of the offered"
            f" {r.offered_deliveries_per_s:,.0f}: the server fell behind"
        )
    if r.lost or r.dups or r.gaps:
        flags.append(f"lost {r.lost}, duplicated {r.dups}, gaps {r.gaps}")
    if r.lost_connections or r.closes:
        flags.append(f"{r.lost_connections} connections lost, close codes {r.closes}")
    if r.publisher_backlog_bytes:
        flags.append(f"publisher had {r.publisher_backlog_bytes} bytes unsent at the end")
    if r.other_cores > OTHER_LOAD_FLAG:
        flags.append(f"other processes used {r.other_cores:.2f} cores meanwhile")
    refused = {
        name: n
        for name, n in r.server_counters.items()
        if n and (name.startswith("refused_") or name.startswith("rate_limit"))
    }
    if refused:
        flags.append(f"the server refused: {refused}")
    if r.auth and r.tokenless_status != 403:
        flags.append(
            f"auth was not on: a handshake without a token got {r.tokenless_status}, not 403"
        )
    return flags


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median CPU per delivery (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.us_per_delivery)
    return ordered[(len(ordered) - 1) // 2]


# -- reporting ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        return out.stdout.strip()

    versions = {}
    for dist in ("fastapi", "starlette", "uvicorn", "websockets", "uvloop", "httptools", "orjson"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "packages": versions,
    }


Key = tuple[int, float, str]


def summarise(results: list[RunResult]) -> dict[Key, list[RunResult]]:
    """Runs grouped by (subscribers, rate, target), in the order they were first run."""
    groups: dict[Key, list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.subscribers, r.rate, r.target), []).append(r)
    return groups


def write_results(path: Path, report: dict[str, Any], results: list[RunResult]) -> None:
    m = report["machine"]
    dirty = " (with uncommitted changes)" if m["git_dirty"] else ""
    groups = summarise(results)
    repeats = max(len(g) for g in groups.values())
    pinned = " (server pinned to CPU 0, clients to the others)" if report["pinned"] else ""
    lines = [
        "# fanout vs the article's server",
        "",
        "Generated by `bench/fanout_vs_article.py` (how to run it: `bench/README.md`).",
        "",
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}`",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['platform']}",
        f"- Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["packages"].items())),
        f"- Commit: `{m['git_commit'][:12]}`{dirty}",
        f"- Raw numbers: `{report['json']}`",
        "",
        f"1 publisher, {PAYLOAD_BYTES}-byte messages at a fixed rate for"
        f" {report['duration_s']:g} s per run, subscribers spread over {report['procs']}"
        f" generator processes{pinned}. Each row is the median of {repeats} runs by CPU per"
        " delivery (the range over the runs in brackets); the servers take turns, run by"
        " run. The ratios are a row's CPU per delivery over the article's at the same"
        " subscriber count and rate, without and with compression offered (lower is better;"
        " the project's target is about 0.33).",
        "",
        "| server | clients | subs | msg/s | deliveries/s (offered) | CPU us/delivery"
        " | server busy | p50 ms | p99 ms | lost | dup | vs article | vs article + deflate |",
        "| --- | --- |" + " ---: |" * 11,
    ]
    for (subs, rate, _), runs in groups.items():
        r = median_run(runs)
        ratios = [_ratio(groups, r, base) for base in ("article", "article-deflate")]
        costs = [x.us_per_delivery for x in runs]
        spread = f" ({min(costs):.2f}-{max(costs):.2f})" if len(runs) > 1 else ""
        clients = r.mode
        if r.deflate:
            clients += ", deflate " + ("accepted" if r.compressed_connections else "declined")
        lines.append(
            f"| {r.server} | {clients} | {subs} | {rate:g} "
            f"| {r.deliveries_per_s:,.0f} ({r.offered_deliveries_per_s:,.0f}) "
            f"| **{r.us_per_delivery:.2f}**{spread} "
            f"| {r.server_busy:.0%} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {sum(x.lost for x in runs)} | {sum(x.dups for x in runs)} "
            f"| {ratios[0]} | {ratios[1]} |"
        )
    lines += ["", "## Summary", "", *summary_lines(groups)]
    flagged = [r for r in results if r.flags]
    lines += ["", "## Flags (every run)", ""]
    if not flagged:
        lines.append("None: no generator over 90% busy, no loss, every run kept its rate.")
    for r in flagged:
        lines.append(
            f"- {r.target}, {r.subscribers} subscribers at {r.rate:g} msg/s, run"
            f" {r.repeat + 1}: " + "; ".join(r.flags)
        )
    lines += ["", *METHOD]
    text = "\n".join(lines).replace("\n## ", "\n### ").replace("# fanout vs", "## fanout vs", 1)
    replace_section(path, "fanout_vs_article", text)


def _ratio(groups: dict[Key, list[RunResult]], r: RunResult, base_name: str) -> str:
    base = groups.get((r.subscribers, r.rate, base_name))
    if not base or r.target == base_name:
        return ""
    return f"{r.us_per_delivery / median_run(base).us_per_delivery:.2f}"


def summary_lines(groups: dict[Key, list[RunResult]]) -> list[str]:
    """One sentence per subscriber count and rate, from the medians."""
    out = []
    for subs, rate in dict.fromkeys((s, r) for s, r, _ in groups):
        med = {t: median_run(g) for (s, r, t), g in groups.items() if (s, r) == (subs, rate)}
        if "article" not in med:
            continue
        art = med["article"]
        parts = [f"article {art.us_per_delivery:.2f} us"]
        if "article-deflate" in med:
            parts.append(f"article with deflate {med['article-deflate'].us_per_delivery:.2f} us")
        for name in ("fanout-plain", "fanout-v1"):
            if name in med:
                parts.append(
                    f"{name} {med[name].us_per_delivery:.2f} us"
                    f" ({med[name].us_per_delivery / art.us_per_delivery:.2f} of the article's)"
                )
        if "floor" in med:
            parts.append(f"floor {med['floor'].us_per_delivery:.2f} us")
        behind = [
            f"{t} ({m.deliveries_per_s:,.0f} of {m.offered_deliveries_per_s:,.0f}"
            f" deliveries/s, p99 {m.p99_ms:,.0f} ms)"
            for t, m in med.items()
            if m.deliveries_per_s < 0.95 * m.offered_deliveries_per_s
        ]
        out.append(
            f"- {subs} subscribers at {rate:g} msg/s: "
            + ", ".join(parts)
            + " per delivery."
            + (" Fell behind: " + "; ".join(behind) + "." if behind else "")
        )
    return out


METHOD = [
    "## How it is measured",
    "",
    "- Servers, each a fresh child process per run on 127.0.0.1:"
    " **article** is the article's code, verbatim, as `fanout.lab.baseline:app` under"
    " `python -m uvicorn fanout.lab.baseline:app --port N` (uvicorn defaults: uvloop,"
    " httptools, websockets-sansio, per-message deflate accepted; its prints go to"
    " /dev/null); **fanout** is `python -m fanout.cli serve --port N --log-level warning"
    " --rate-frames-per-s 0 --rate-bytes-per-s 0 --max-connections-per-ip 0` (in-memory"
    " broker, direct transport, anonymous, per-connection rate limits and the per-address"
    " connection limit off, as before fanout had them; `bench/auth_cost.py` measures them"
    " on); **floor** is `bench/floor_server.py`, the"
    " least a Python broadcast server can do: one `transport.write` of a pre-encoded frame"
    " per recipient, no framework, no checks.",
    "- Clients: plain mode connects to `/ws`; the publisher's frames are broadcast to"
    " every client including itself (the article's behaviour), so a message makes"
    " S + 1 deliveries. `fanout.v1` subscribers send `subscribe` for one room and the"
    " publisher sends `publish` frames without subscribing: S deliveries per message.",
    "- Compression: the plain rows' clients offer no extension. The 'deflate' rows' clients"
    " offer permessage-deflate, as browsers and the `websockets` client do: the article's"
    " server (uvicorn's default) accepts and compresses every frame once per recipient;"
    " fanout declines (it writes one pre-encoded frame to everyone).",
    "- Rates: the article's server must keep up at the first two rates (it does when its"
    " 'deliveries/s' matches the offered rate); the last row offers more than it can"
    " handle, to show what happens past that point. fanout's cost per delivery falls as"
    " the rate rises because frames queued for a socket in one loop iteration leave in one"
    " write; at low rates every message is its own write per recipient.",
    "- Server CPU: user + system time of the server process (/proc), from the first"
    " publish until every receiver has the last message, divided by the frames received;"
    " the receive and parse of each publish is included. 'server busy' is its CPU time"
    " over wall time while publishing. Over loopback, the kernel time of each write also"
    " carries the receiving side's TCP processing and the wake-up of the reader, which a"
    " real network would move to other machines: the floor row shows how much that is."
    " The JSON splits CPU into user and system time, but that split is sampled at the"
    " kernel's tick and is unreliable at this scale; the total is exact.",
    "- Latency: the publisher's send time (CLOCK_MONOTONIC, in the payload) to the moment"
    " the receiving generator reads the frame, over every delivery. It includes the"
    " generators' own scheduling delay.",
    "- Loss: every payload carries a sequence number; each receiver counts what never"
    " arrived (lost), what arrived twice (dup) and jumps ahead (gaps).",
    "- The machine may be shared: before each run the script waits (at most 10 s) for"
    " other processes to leave the CPUs, and flags a run during which they used more than"
    f" {OTHER_LOAD_FLAG} cores; that is also why each row is a median of several runs.",
]


# -- main --------------------------------------------------------------------------------


def parse_rates(text: str) -> list[tuple[int, float]]:
    rates: list[tuple[int, float]] = []
    for item in text.split(","):
        subs, _, rate = item.partition(":")
        rates.append((int(subs), float(rate)))
    return rates


def run_announced(
    label: str,
    target: Target,
    subscribers: int,
    rate: float,
    repeat: int,
    args: argparse.Namespace,
    attach: str = "",
) -> RunResult:
    """``run_one`` with a line before (what runs) and after (what it measured)."""
    print(
        f"{label}: {subscribers} subscribers, {rate:g} msg/s, run {repeat + 1}/{args.repeat} ...",
        flush=True,
    )
    r = run_one(
        target,
        subscribers,
        rate,
        repeat=repeat,
        duration_s=args.duration,
        procs=args.procs,
        log_dir=args.out / "logs",
        attach=attach,
        pin=args.pin,
    )
    print(
        f"  {r.us_per_delivery:.2f} us/delivery, {r.deliveries_per_s:,.0f}"
        f" deliveries/s, server busy {r.server_busy:.0%}, p50 {r.p50_ms:.2f} ms,"
        f" p99 {r.p99_ms:.2f} ms, lost {r.lost}, dup {r.dups}, generators"
        f" {sum(r.generator_busy):.2f} cores, other load {r.other_cores:.2f} cores"
        + (f", server args {r.server_args}" if r.server_args else "")
        + "".join(f"\n  ! {f}" for f in r.flags),
        flush=True,
    )
    return r


def write_report(
    args: argparse.Namespace, stamp: dt.datetime, json_path: Path, results: list[Any]
) -> dict[str, Any]:
    """Write the runs and how they were made to ``json_path``; return that document."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv] if a)
    rel_json = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
    report: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": command,
        "json": str(rel_json),
        "duration_s": args.duration,
        "repeat": args.repeat,
        "procs": args.procs,
        "pinned": args.pin,
        "payload_bytes": PAYLOAD_BYTES,
        "machine": machine_info(),
        "runs": [asdict(r) for r in results],
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {json_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--rates",
        default="100:1000,500:150,100:1500",
        help="subscribers:messages per second, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="publishing seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median reported)")
    parser.add_argument(
        "--procs", type=int, default=4, help="subscriber generator processes (default: 4)"
    )
    parser.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from {', '.join(TARGETS)} (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH_DIR / "RESULTS.md",
        help="Markdown table to write ('-' for none)",
    )
    parser.add_argument(
        "--attach",
        default="",
        metavar="CMD",
        help="run CMD against each server while it is published to, e.g. a profiler:"
        " '{pid}', '{target}' and '{subscribers}' are replaced; stopped with SIGINT",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="server alone on CPU 0, clients on the other CPUs (default: on)",
    )
    args = parser.parse_args(argv)
    targets = [TARGETS[name] for name in args.targets.split(",")]
    stamp = dt.datetime.now(dt.UTC)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"fanout_vs_article-{stamp:%Y%m%d-%H%M%S}.json"
    results: list[RunResult] = []
    for subscribers, rate in parse_rates(args.rates):
        for repeat in range(args.repeat):
            for target in targets:
                results.append(
                    run_announced(target.name, target, subscribers, rate, repeat, args, args.attach)
                )
    report = write_report(args, stamp, json_path, results)
    if str(args.results) != "-":
        write_results(args.results, report, results)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
