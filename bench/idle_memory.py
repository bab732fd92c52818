"""Memory per idle WebSocket connection: fanout (plain and ``fanout.v1`` clients), the
article's server, websockets' own server and the floor, 10,000 idle connections each.

Each server runs alone in a child process pinned to CPU 0, started on a free 127.0.0.1
port (never a standard one) through this script's own ``--serve KIND`` entry, which raises
the open-files limit, then runs the server in-process exactly as its command would
(``fanout serve`` with ``--max-connections 30000 --max-connections-per-ip 0``,
``fanout baseline``, ``bench/floor_server.py``, or the small ``websockets.asyncio.server``
broadcast server defined here, on uvloop and on asyncio's own loop), and answers this
script's requests on its stdin from a control thread: ``gc`` (a full collection),
``census`` (gc-tracked objects by type), ``snapshot`` (tracemalloc, dumped to a file).
The clients are this script's own raw WebSocket connections (one uvloop process pinned to
CPU 1: a prebuilt upgrade request per connection, pings answered, nothing else sent),
spread over the loopback source addresses 127.0.0.1-4.

Per server: 100 warm-up connections are opened (first-connection costs: lazy imports,
caches), the server settles (its CPU idle, its RSS still), a full ``gc``, then its RSS
(``/proc``) is read; then N idle connections are opened, the server settles again, a
full ``gc``, RSS again. Bytes per connection = (RSS after - RSS before) / N. Also per
connection: the interpreter's allocated blocks (``sys.getallocatedblocks``) and the
gc-tracked objects by type, with their ``sys.getsizeof`` (coroutines, deques, dicts...).

``--tracemalloc``: where the memory goes. The same children run under ``tracemalloc``
(8 frames; what the server imports at start is imported before, untraced): after the
warm-up a snapshot, then 2,000 idle connections of each kind (fanout plain, then
``fanout.v1``, in one server; websockets' server; the article's server), a snapshot after
each; this script compares them (the clients stay out of it: another process) and prints
the top sites per connection (file:line, with the line), by file, by owner (the innermost
frame outside the standard library: who asked asyncio for the task, the event, the
queue) and by the owner's package (uvicorn, starlette, fastapi, websockets, fanout/...).

    .venv/bin/python bench/idle_memory.py [--quick] [--connections 10000]
        [--only fanout-plain,fanout-v1,baseline,websockets,websockets-asyncio,floor]
        [--tracemalloc [--traced-connections 2000] [--top 25]]
        [--json FILE] [--results bench/RESULTS.md | -]

Writes ``bench/out/idle_memory-<time>.json`` (and ``--json FILE``) and the section
``idle_memory`` (with ``--tracemalloc``: ``idle_memory_tracemalloc``, kept right after
it) of ``bench/RESULTS.md``. About 1 minute 45 s; ``--tracemalloc`` about 2 minutes;
``--quick`` (1,000 connections) 30 s. Every server is stopped at the end, also on errors.
To measure a fixed version of fanout while the checkout changes, run with
``PYTHONPATH=/tmp/copy/src`` (a ``COMMIT`` file next to ``src`` names it; see
``results_md.measured_code``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib
import json
import linecache
import os
import resource
import runpy
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psutil
import uvloop

import results_md
from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import free_port
from results_md import BENCH_DIR, HOST

NAME = "idle_memory"
TRACED_NAME = "idle_memory_tracemalloc"
CONNECTIONS = 10_000
QUICK_CONNECTIONS = 1_000
TRACED_CONNECTIONS = 2_000
#: Issue 15: at most this many bytes of server memory per idle connection.
GOAL_BYTES = 20_000
WARM_UP = 100
# Handshakes in flight under tracemalloc: the traced server is slow (about 100 handshakes/s)
# and not fair to them; with 200 in flight, websockets' server let some wait past its
# 10 s open timeout.
TRACED_WINDOW = 16
TRACE_FRAMES = 8  # each frame costs: 16 make a handshake about 20 times slower
SOURCES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: bind() the address now, pick the port at connect()
SERVER_CPU, CLIENT_CPU = 0, 1
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # any key: the server's answer is not checked
STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


@dataclass(frozen=True)
class Spec:
    """One measured row: a server (``kind``, what ``--serve`` runs) and its clients."""

    key: str
    label: str
    kind: str
    path: str
    subprotocol: str | None = None


SPECS = {
    s.key: s
    for s in (
        Spec("fanout-plain", "fanout serve, plain clients (`/ws/lobby`)", "fanout", "/ws/lobby"),
        Spec(
            "fanout-v1", "fanout serve, `fanout.v1` clients (no room)", "fanout", "/ws", "fanout.v1"
        ),
        Spec("baseline", "the article's server (`fanout baseline`)", "baseline", "/ws"),
        Spec("websockets", "websockets' own server (uvloop)", "websockets", "/"),
        Spec(
            "websockets-asyncio",
            "websockets' own server (asyncio loop)",
            "websockets-asyncio",
            "/",
        ),
        Spec("floor", "floor (`bench/floor_server.py`, uvloop protocol)", "floor", "/"),
    )
}
KINDS = ("fanout", "baseline", "websockets", "websockets-asyncio", "floor")
# --tracemalloc: servers (one process each) and the kinds of clients opened in turn.
TRACED = (
    ("fanout", ("fanout-plain", "fanout-v1")),
    ("websockets", ("websockets",)),
    ("baseline", ("baseline",)),
)
COMPARE_TO = "websockets"
# The packages the tracemalloc section shows a column for (the rest: "other").
PACKAGES = ("uvicorn", "starlette", "fastapi", "websockets", "fanout/asgi", "fanout/core")
# What each kind of server imports as it starts (imported before tracemalloc starts).
_UVICORN = (
    "uvicorn",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "fastapi",
)
PRELOAD = {
    "fanout": (
        *_UVICORN,
        "fanout.cli",
        "fanout.apps.chat",
        "fanout.asgi.app",
        "fanout.asgi.server",
        "fanout.asgi.wiring",
    ),
    "baseline": (*_UVICORN, "fanout.cli", "fanout.lab.baseline", "fanout.lab.baseline_server"),
    "websockets": ("websockets.asyncio.server",),
}


def raise_open_files(want: int = 0) -> int:
    """Raise this process's open-files limit to its hard limit (and the hard limit to
    ``want`` when allowed); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(cpu: int) -> None:
    """Run on ``cpu`` alone, when the machine has it."""
    with contextlib.suppress(AttributeError, OSError):
        if cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {cpu})


# -- the server side: ``--serve KIND`` -----------------------------------------------------------


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# The source line of each site and owner seen (``_site``), shown next to it.
CODE: dict[str, str] = {}


def _site(frame: tracemalloc.Frame) -> str:
    where = f"{shown_file(frame.filename)}:{frame.lineno}"
    if where not in CODE:
        CODE[where] = linecache.getline(frame.filename, frame.lineno).strip()
    return where


def shown_file(filename: str) -> str:
    """A source file as a short, stable name: ``asyncio/tasks.py``, ``uvicorn/...``."""
    path = str(Path(filename))
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1]
    if path.startswith(STDLIB):
        return path[len(STDLIB) + 1 :]
    return path.rsplit("/", 1)[-1]


LOOP_IN_C = "(the event loop, in C: uvloop's transport, libuv's handle)"
STDLIB_ONLY = "(standard library only)"


def _owner(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame outside the standard library (and outside this script): the
    code that asked for the allocation, even when asyncio made it. What C code allocates
    while the loop runs and no Python code does (uvloop's transports, libuv's handles) is
    seen in the frame that runs the loop: ``LOOP_IN_C``."""
    frames = list(traceback)  # oldest first
    site = frames[-1]
    if shown_file(site.filename) == "asyncio/runners.py":
        return LOOP_IN_C
    for frame in reversed(frames):
        path = str(Path(frame.filename))
        if frame.filename == __file__ or path.startswith(STDLIB) or frame.filename[0] == "<":
            continue
        return _site(frame)
    return f"{STDLIB_ONLY} {_site(site)}"


def package(owner: str) -> str:
    """The library (or fanout's package) an owner is in: ``uvicorn``, ``fanout/core``."""
    if owner == LOOP_IN_C:
        return owner
    if owner.startswith(STDLIB_ONLY):
        return "standard library"
    parts = owner.split("/")
    if len(parts) == 1:
        return "stdlib" if "." in owner else owner
    return "/".join(parts[:2]) if parts[0] == "fanout" else parts[0]


def _keys(traceback: tracemalloc.Traceback) -> tuple[str, str, str, str] | None:
    """(site, file, owner, package) of one allocation; None for the control thread's own."""
    site = traceback[-1]
    if site.filename in (__file__, tracemalloc.__file__):
        return None
    owner = _owner(traceback)
    return _site(site), shown_file(site.filename), owner, package(owner)


def _sums(snapshot: tracemalloc.Snapshot) -> list[dict[str, list[int]]]:
    """Bytes and blocks by site, by file, by owner, by package."""
    keys: dict[tracemalloc.Traceback, tuple[str, str, str, str] | None] = {}
    sums: list[dict[str, list[int]]] = [{}, {}, {}, {}]
    for trace in snapshot.traces:
        traceback = trace.traceback
        if traceback not in keys:
            keys[traceback] = _keys(traceback)
        found = keys[traceback]
        if found is None:
            continue
        for table, key in zip(sums, found, strict=True):
            entry = table.setdefault(key, [0, 0])
            entry[0] += trace.size
            entry[1] += 1
    return sums


def _ranked(
    before: dict[str, list[int]], after: dict[str, list[int]], n: int, top: int
) -> list[dict[str, Any]]:
    diff = {
        key: (
            after.get(key, [0, 0])[0] - before.get(key, [0, 0])[0],
            after.get(key, [0, 0])[1] - before.get(key, [0, 0])[1],
        )
        for key in set(before) | set(after)
    }
    rows = sorted(diff.items(), key=lambda kv: -kv[1][0])[:top]
    return [
        {
            "where": where,
            "bytes": round(size / n, 1),
            "count": round(count / n, 3),
            "code": CODE.get(where.removeprefix(STDLIB_ONLY).strip(), ""),
        }
        for where, (size, count) in rows
        if size / n >= 0.5
    ]


def compare(before: Path, after: Path, n: int) -> dict[str, Any]:
    """What ``n`` connections added between two dumped snapshots, per connection."""
    old = _sums(tracemalloc.Snapshot.load(str(before)))
    new = _sums(tracemalloc.Snapshot.load(str(after)))
    total = sum(v[0] for v in new[0].values()) - sum(v[0] for v in old[0].values())
    count = sum(v[1] for v in new[0].values()) - sum(v[1] for v in old[0].values())
    return {
        "connections": n,
        "bytes": round(total / n, 1),
        "count": round(count / n, 2),
        "sites": _ranked(old[0], new[0], n, 60),
        "files": _ranked(old[1], new[1], n, 20),
        "owners": _ranked(old[2], new[2], n, 60),
        "packages": _ranked(old[3], new[3], n, 20),
    }


class Control:
    """The child's control thread: one request per line on stdin, each ending with the
    path its JSON reply is written to (atomically)."""

    def start(self) -> None:
        threading.Thread(target=self._run, name="idle-memory-control", daemon=True).start()

    def _run(self) -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            reply: dict[str, Any]
            try:
                reply = self.handle(words[0], words[1:-1])
            except Exception as exc:
                reply = {"error": repr(exc)}
            target = Path(words[-1])
            partial = target.with_suffix(".part")
            partial.write_text(json.dumps(reply))
            partial.replace(target)

    def handle(self, command: str, args: list[str]) -> dict[str, Any]:
        if command == "gc":
            collected = gc.collect()
            return {"collected": collected, "blocks": sys.getallocatedblocks()}
        if command == "census":
            counts: Counter[str] = Counter()
            sizes: Counter[str] = Counter()
            for obj in gc.get_objects():
                name = _type_name(obj)
                counts[name] += 1
                sizes[name] += sys.getsizeof(obj)
            return {"types": dict(counts), "sizes": dict(sizes), "objects": counts.total()}
        if command == "snapshot":
            # Dumped and dropped at once: held, it would be traced in the next one, and
            # filtering or grouping under tracemalloc takes minutes (the parent does it).
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
            snapshot.dump(args[0])
            traces = len(snapshot.traces)
            del snapshot
            traced, peak = tracemalloc.get_traced_memory()
            return {"traced": traced, "peak": peak, "traces": traces}
        raise ValueError(f"unknown request {command!r}")


async def websockets_server(port: int) -> None:
    """websockets' own server as its documentation writes a broadcast server."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    clients: set[ServerConnection] = set()

    async def handler(websocket: ServerConnection) -> None:
        clients.add(websocket)
        try:
            async for message in websocket:
                broadcast(clients, message)
        except ConnectionClosed:  # a client gone without a close frame: not this bench's news
            pass
        finally:
            clients.discard(websocket)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with serve(handler, HOST, port):
        await stop.wait()


def serve_main(kind: str, port: int, trace_frames: int) -> int:
    """``--serve KIND``: run one server in this process, with the control thread."""
    raise_open_files(40_000)
    pin(SERVER_CPU)
    Control().start()
    if trace_frames:
        # Importing under tracemalloc is about 50 times slower (40 s for fanout's modules):
        # what the server imports at its start is imported first, untraced.
        for module in PRELOAD.get(kind, ()):
            importlib.import_module(module)
        tracemalloc.start(trace_frames)
    if kind in ("fanout", "baseline"):
        from fanout.cli import main

        argv = ["serve", "--max-connections", "30000", "--max-connections-per-ip", "0"]
        if kind == "baseline":
            argv = ["baseline"]
        return main([*argv, "--port", str(port), "--log-level", "warning"])
    if kind == "websockets":
        uvloop.run(websockets_server(port))
    elif kind == "websockets-asyncio":
        asyncio.run(websockets_server(port))
    elif kind == "floor":
        sys.argv = [str(BENCH_DIR / "floor_server.py"), "--port", str(port)]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    return 0


# -- the parent: servers as children -------------------------------------------------------------


class Server:
    """A ``--serve KIND`` child on a free port: RSS, CPU, requests to its control thread."""

    def __init__(self, kind: str, workdir: Path, trace_frames: int = 0) -> None:
        self.kind = kind
        self.port = free_port(HOST)
        self.workdir = workdir
        self.log = workdir / f"{kind}-{self.port}.log"
        self._asked = 0
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        if trace_frames:
            argv += ["--trace-frames", str(trace_frames)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=BENCH_DIR
            )
        self.ps = psutil.Process(self.proc.pid)

    async def started(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(HOST, self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.kind} did not listen within {timeout_s} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_s(self) -> float:
        return results_md.cpu_s(self.proc.pid)

    async def ask(self, *words: str, timeout_s: float = 120.0) -> dict[str, Any]:
        self._asked += 1
        reply = self.workdir / f"reply-{self.port}-{self._asked}.json"
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join([*words, str(reply)]) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        while not reply.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not answer {words[0]}: {self.tail()}")
            await asyncio.sleep(0.02)
        answer: dict[str, Any] = json.loads(reply.read_text())
        reply.unlink()
        if "error" in answer:
            raise RuntimeError(f"{self.kind}: {words[0]} failed: {answer['error']}")
        return answer

    async def settle(self, max_s: float) -> float:
        """Wait until the server's CPU is idle and its RSS still (at most ``max_s``)."""
        start = time.monotonic()
        rss, cpu, calm = self.rss(), self.cpu_s(), 0
        while time.monotonic() - start < max_s and calm < 2:
            await asyncio.sleep(0.25)
            now_rss, now_cpu = self.rss(), self.cpu_s()
            quiet = now_cpu - cpu < 0.01 and abs(now_rss - rss) < 128 * 1024
            calm = calm + 1 if quiet else 0
            rss, cpu = now_rss, now_cpu
        return round(time.monotonic() - start, 2)

    async def state(self, settle_s: float) -> dict[str, Any]:
        """Settled, collected: RSS, blocks, gc-tracked objects by type (read in this order:
        the census allocates, so RSS is read before it)."""
        settled = await self.settle(settle_s)
        collected = await self.ask("gc")
        await asyncio.sleep(0.2)
        rss = self.rss()
        census = await self.ask("census")
        return {
            "settle_s": settled,
            "rss": rss,
            "blocks": collected["blocks"],
            "objects": census["objects"],
            "types": census["types"],
            "sizes": census["sizes"],
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


@contextlib.contextmanager
def server(kind: str, workdir: Path, trace_frames: int = 0) -> Iterator[Server]:
    started = Server(kind, workdir, trace_frames)
    try:
        yield started
    finally:
        started.stop()


# -- the clients ---------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.pings = 0
        self.closed_by_server = 0
        self.lost = 0


class IdleClient(asyncio.Protocol):
    """One idle WebSocket client: sends its upgrade request, answers pings, nothing else."""

    def __init__(
        self, request: bytes, subprotocol: str | None, done: asyncio.Future[str], tally: Tally
    ) -> None:
        self.request = request
        self.subprotocol = subprotocol
        self.done = done
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.lost += 1
        if not self.done.done():
            self.done.set_result(f"connection lost during the handshake ({exc!r})")

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end]
            problem = ""
            if not head.startswith(b"HTTP/1.1 101"):
                problem = head.split(b"\r\n", 1)[0].decode(errors="replace")
            elif self.subprotocol and self.subprotocol.encode() not in head:
                problem = f"no {self.subprotocol} in the answer"
            if not self.done.done():
                self.done.set_result(problem)
            self.open = not problem
            buf = buf[end + 4 :]
        self.buf = self._frames(buf)

    def _frames(self, buf: bytes) -> bytes:
        pos, n = 0, len(buf)
        while n - pos >= 2:
            opcode, length, start = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
            if length == 126:
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if start + length > n:
                break
            payload = buf[start : start + length]
            pos = start + length
            if self.transport is None:
                continue
            if opcode == 0x9 and length < 126:  # ping: a pong, masked with the zero key
                self.tally.pings += 1
                self.transport.write(bytes((0x8A, 0x80 | length)) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                self.tally.closed_by_server += 1
                self.transport.close()
        return buf[pos:]


def upgrade_request(port: int, spec: Spec) -> bytes:
    lines = [
        f"GET {spec.path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if spec.subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {spec.subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Clients:
    """The idle connections this process holds, over the loopback source addresses."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.transports: list[asyncio.Transport] = []
        self._next_source = 0

    async def open(
        self, port: int, spec: Spec, count: int, *, window: int = 200, label: str = ""
    ) -> float:
        """Open ``count`` connections (``window`` handshakes at a time); the seconds it took.
        Raises on the first refused handshake."""
        loop = asyncio.get_running_loop()
        request = upgrade_request(port, spec)
        gate = asyncio.Semaphore(window)
        opened, start = 0, time.monotonic()
        step = max(1000, count // 5)

        async def one() -> None:
            nonlocal opened
            async with gate:
                source = SOURCES[self._next_source % len(SOURCES)]
                self._next_source += 1
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, (HOST, port))
                except OSError:
                    sock.close()
                    raise
                done: asyncio.Future[str] = loop.create_future()
                transport, _ = await loop.create_connection(
                    lambda: IdleClient(request, spec.subprotocol, done, self.tally), sock=sock
                )
                self.transports.append(transport)
                async with asyncio.timeout(30):
                    problem = await done
                if problem:
                    raise RuntimeError(f"{spec.key}: handshake refused: {problem}")
                opened += 1
                if label and opened % step == 0:
                    rate = opened / (time.monotonic() - start)
                    print(f"  {label}: {opened:,}/{count:,} open ({rate:,.0f}/s)", flush=True)

        await asyncio.gather(*(one() for _ in range(count)))
        return round(time.monotonic() - start, 2)

    def close_all(self) -> None:
        for transport in self.transports:
            transport.abort()  # RST: no TIME_WAIT left on the client's ports
        self.transports.clear()


# -- measuring -----------------------------------------------------------------------------------


def per_connection_types(
    before: dict[str, Any], after: dict[str, Any], n: int, top: int = 15
) -> dict[str, dict[str, float]]:
    """gc-tracked objects added per connection, by type: how many and their bytes
    (``sys.getsizeof``: a coroutine with its frame, a dict with its table; not what they
    point to), the ``top`` types by bytes."""
    rows = {}
    for name in set(before["types"]) | set(after["types"]):
        count = (after["types"].get(name, 0) - before["types"].get(name, 0)) / n
        size = (after["sizes"].get(name, 0) - before["sizes"].get(name, 0)) / n
        if count >= 0.05:
            rows[name] = {"count": round(count, 2), "bytes": round(size)}
    ranked = sorted(rows.items(), key=lambda kv: -kv[1]["bytes"])
    return dict(ranked[:top])


async def measure_rss(
    spec: Spec, n: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    print(f"{spec.key}: starting {spec.kind}", flush=True)
    with server(spec.kind, workdir) as child:
        await child.started()
        clients = Clients()
        try:
            await clients.open(child.port, spec, WARM_UP)
            before = await child.state(args.settle)
            cpu0 = child.cpu_s()
            connect_s = await clients.open(child.port, spec, n, label=spec.key)
            cpu = child.cpu_s() - cpu0
            after = await child.state(args.settle)
            if clients.tally.lost:
                raise RuntimeError(
                    f"{spec.key}: {clients.tally.lost} connections were closed while idle"
                    f" ({clients.tally.closed_by_server} by a close frame): {child.tail()}"
                )
        finally:
            clients.close_all()
            await asyncio.sleep(0.3)
    per_conn = (after["rss"] - before["rss"]) / n
    row = {
        "label": spec.label,
        "connections": n,
        "rss_before": before["rss"],
        "rss_after": after["rss"],
        "bytes_per_connection": round(per_conn),
        "blocks_per_connection": round((after["blocks"] - before["blocks"]) / n, 1),
        "gc_objects_per_connection": round((after["objects"] - before["objects"]) / n, 1),
        "types_per_connection": per_connection_types(before, after, n),
        "connect_s": connect_s,
        "server_cpu_us_per_handshake": round(cpu / n * 1e6),
        "settle_s": [before["settle_s"], after["settle_s"]],
        "pings_answered": clients.tally.pings,
    }
    print(
        f"{spec.key}: {per_conn:,.0f} bytes/connection (RSS {before['rss'] / 2**20:.1f} ->"
        f" {after['rss'] / 2**20:.1f} MiB), {row['blocks_per_connection']} blocks,"
        f" {row['gc_objects_per_connection']} gc objects; {n:,} opened in {connect_s} s",
        flush=True,
    )
    return row


async def measure_traced(
    kind: str, keys: tuple[str, ...], n: int, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    print(f"tracemalloc: starting {kind} ({TRACE_FRAMES} frames)", flush=True)
    dumps = {name: workdir / f"{kind}-{name}.snapshot" for name in ("warm", *keys)}

    async def snapshot(child: Server, name: str) -> None:
        t = time.monotonic()
        took = await child.ask("snapshot", str(dumps[name]))
        print(
            f"  snapshot {name}: {took['traces']:,} traces, {took['traced'] / 2**20:.1f} MiB"
            f" traced ({time.monotonic() - t:.1f} s)",
            flush=True,
        )

    with server(kind, workdir, TRACE_FRAMES) as child:
        await child.started()
        clients = Clients()
        try:
            for key in keys:
                await clients.open(child.port, SPECS[key], WARM_UP, window=TRACED_WINDOW)
            await child.settle(args.settle)
            await snapshot(child, "warm")
            for key in keys:
                await clients.open(
                    child.port, SPECS[key], n, window=TRACED_WINDOW, label=f"{key} (traced)"
                )
                await child.settle(args.settle)
                await snapshot(child, key)
            if clients.tally.lost:
                raise RuntimeError(f"{kind}: {clients.tally.lost} connections closed while idle")
        finally:
            clients.close_all()
            await asyncio.sleep(0.3)
    found: dict[str, Any] = {}
    for previous, key in zip(("warm", *keys), keys, strict=False):
        found[key] = compare(dumps[previous], dumps[key], n)
        print_traced(key, found[key], args.top)
    return found


def _row(row: dict[str, Any], code: bool = True) -> str:
    text = f"  {row['bytes']:>10,.0f} {row['count']:>11.2f}  {row['where']}"
    if code and row.get("code"):
        text += f"  | {row['code'][:70]}"
    return text


def print_traced(key: str, f: dict[str, Any], top: int) -> None:
    print(
        f"\n{key}: tracemalloc, {f['connections']:,} idle connections:"
        f" {f['bytes']:,.0f} bytes and {f['count']:.1f} blocks per connection"
    )
    views = (
        ("allocation site | its line", f["sites"][:top], True),
        ("by file", f["files"][:15], False),
        ("by owner (innermost frame outside the stdlib) | its line", f["owners"][:top], True),
        ("by the owner's package", f["packages"], False),
    )
    for title, rows, code in views:
        print(f"  {'bytes/conn':>10} {'blocks/conn':>11}  {title}")
        for row in rows:
            print(_row(row, code))
    print(flush=True)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    start = time.monotonic()
    measured: dict[str, Any] = {}
    async with asyncio.timeout(args.budget):
        if args.tracemalloc:
            traced: dict[str, Any] = {}
            for kind, keys in TRACED:
                wanted = tuple(k for k in keys if k in args.only)
                if wanted:
                    traced |= await measure_traced(
                        kind, wanted, args.traced_connections, args, workdir
                    )
            measured["tracemalloc"] = traced
        else:
            rows = {}
            for key in args.only:
                rows[key] = await measure_rss(SPECS[key], args.connections, args, workdir)
            measured["servers"] = rows
    measured["seconds"] = round(time.monotonic() - start, 1)
    return measured


# -- RESULTS.md ----------------------------------------------------------------------------------


def _provenance(report: dict[str, Any]) -> list[str]:
    m, code, v = report["machine"], report["code"], report["versions"]
    libs = ", ".join(
        f"{k} {v[k]}" for k in ("uvicorn", "websockets", "uvloop", "fastapi") if k in v
    )
    return [
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}`",
        f"- Machine: {m['cpu_model']}, {m['cpus']} cores, Python {m['python']}, {libs};"
        f" server pinned to CPU {SERVER_CPU}, clients to CPU {CLIENT_CPU};"
        f" {report['seconds']:.0f} s in all",
        f"- Commit: `{(code['commit'] or 'unknown')[:12]}`{code['note'] or ''}",
        f"- Raw numbers: `{report['json']}`",
    ]


def _types(types: dict[str, dict[str, float]], top: int = 8) -> str:
    return ", ".join(
        f"{k} {v['count']:g} ({v['bytes']:,.0f} B)" for k, v in list(types.items())[:top]
    )


def section(report: dict[str, Any]) -> str:
    rows: dict[str, Any] = report["servers"]
    n = report["connections"]
    ref = rows.get(COMPARE_TO, {}).get("bytes_per_connection")
    lines = [
        "## Memory per idle connection",
        "",
        f"Generated by `bench/idle_memory.py`: each server alone on a free loopback port, with"
        f" {WARM_UP} warm-up connections, then {n:,} idle WebSocket connections (raw"
        " handshakes from one uvloop process, pings answered, nothing else sent). Bytes per"
        " connection = server RSS growth / connections, each RSS read after the server"
        " settled (CPU idle, RSS still) and a full `gc.collect()` in it. Blocks: the"
        " interpreter's allocated blocks (`sys.getallocatedblocks`) per connection; gc"
        " objects: gc-tracked objects per connection. Socket buffers are kernel memory and"
        " not in RSS.",
        "",
        *_provenance(report),
        "",
        "| server and clients | bytes per connection | vs websockets | RSS before → after MiB"
        " | blocks | gc objects | handshake CPU µs | opened in s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows.values():
        vs = f"{r['bytes_per_connection'] / ref:.2f}×" if ref else ""
        lines.append(
            f"| {r['label']} | {r['bytes_per_connection']:,} | {vs}"
            f" | {r['rss_before'] / 2**20:.1f} → {r['rss_after'] / 2**20:.1f}"
            f" | {r['blocks_per_connection']:g} | {r['gc_objects_per_connection']:g}"
            f" | {r['server_cpu_us_per_handshake']:,} | {r['connect_s']:.1f} |"
        )
    lines += [
        "",
        "gc-tracked objects per connection, by type: how many (their bytes, `sys.getsizeof`):",
        "",
    ]
    for r in rows.values():
        lines.append(f"- {r['label']}: {_types(r['types_per_connection'])}")
    lines.append("")
    b = {k: r["bytes_per_connection"] for k, r in rows.items()}
    if {"fanout-plain", "fanout-v1", "baseline", "websockets"} <= set(b):
        lines += [
            f"- fanout against the article's server (both under uvicorn; fanout hands `/ws`"
            f" to its own handler past Starlette's and FastAPI's routing, with leaner"
            f" per-connection parts, docs/decisions.md): {_more(b['fanout-plain'], b['baseline'])}"
            f" per plain connection, {_more(b['fanout-v1'], b['baseline'])} per `fanout.v1`"
            " one.",
            f"- fanout against websockets' own server: {_more(b['fanout-plain'], b['websockets'])}"
            f" per plain connection, {_more(b['fanout-v1'], b['websockets'])} per `fanout.v1`"
            " one; the article's server (uvicorn + Starlette + FastAPI):"
            f" {_more(b['baseline'], b['websockets'])}.",
        ]
    worst = max((b[k] for k in ("fanout-plain", "fanout-v1") if k in b), default=None)
    verdict = ""
    if worst is not None:
        met = "met" if worst <= GOAL_BYTES else "not met"
        verdict = f" fanout's worst here: {worst:,} bytes, {met}."
    lines.append(
        f"- The goal (issue 15): at most {GOAL_BYTES:,} bytes per idle connection, websockets'"
        f" own server or below.{verdict} `--tracemalloc` (next section) says where fanout's go."
    )
    return "\n".join(lines)


def _more(bytes_: int, than: int) -> str:
    """``1,200 bytes more`` / ``13,200 bytes less``."""
    return f"{abs(bytes_ - than):,} bytes {'more' if bytes_ >= than else 'less'}"


def _code(row: dict[str, Any]) -> str:
    code = str(row.get("code", "")).replace("|", "\\|")
    return f"`{code[:80]}`" if code else ""


def _table(rows: list[dict[str, Any]], head: str) -> list[str]:
    lines = [
        f"| bytes per connection | blocks per connection | {head} | its line |",
        "| ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['bytes']:,.0f} | {r['count']:.2f} | `{r['where']}` | {_code(r)} |")
    return lines


def traced_section(report: dict[str, Any], top: int = 25) -> str:
    traced: dict[str, Any] = report["tracemalloc"]
    lines = [
        "### Where it goes (tracemalloc)",
        "",
        "Generated by `bench/idle_memory.py --tracemalloc`: each server in a child process"
        f" under `tracemalloc` ({TRACE_FRAMES} frames), {WARM_UP} warm-up connections of each"
        f" kind, a snapshot, then {report['traced_connections']:,} idle connections of each"
        " kind in turn (fanout: plain, then `fanout.v1`, in one server), a snapshot after"
        " each (after a full `gc.collect()`); the difference per connection. Python's"
        " allocations only, so also what uvloop and libuv allocate through Python's"
        " allocator; not the allocator's own overhead (RSS is a few % above), nor the"
        " kernel's socket memory. *Site*: the line that allocated (a coroutine's frame is"
        " allocated where the coroutine function is called). *Owner*: the innermost frame"
        " outside the standard library, i.e. who asked asyncio for the task, the event,"
        " the queue; *package*: the owner's library.",
        "",
        *_provenance(report),
        "",
        "Bytes per connection, by the owner's package (*loop (C)*: uvloop's transport and"
        " libuv's handle, allocated while no Python code runs):",
        "",
        "| clients | traced in all | " + " | ".join(PACKAGES) + " | loop (C) | other |",
        "| --- | ---: | " + " | ".join("---:" for _ in PACKAGES) + " | ---: | ---: |",
    ]
    for key, f in traced.items():
        by = {p["where"]: p["bytes"] for p in f["packages"]}
        shown = [by.get(p, 0.0) for p in (*PACKAGES, LOOP_IN_C)]
        cells = [f"{b:,.0f}" if b else "" for b in shown]
        other = f["bytes"] - sum(shown)
        lines.append(
            f"| {SPECS[key].label} | {f['bytes']:,.0f} | "
            + " | ".join(cells)
            + f" | {other:,.0f} |"
        )
    for key, f in traced.items():
        fanout = key.startswith("fanout")
        n = top if fanout else 12
        lines += [
            "",
            f"#### {SPECS[key].label}: {f['bytes']:,.0f} bytes, {f['count']:.0f} blocks per"
            " connection",
            "",
            *_table(f["sites"][:n], "site"),
        ]
        if fanout:
            lines += ["", *_table(f["owners"][:n], "owner")]
        files = ", ".join(f"`{r['where']}` {r['bytes']:,.0f}" for r in f["files"][:12])
        lines += ["", f"By file (bytes per connection): {files}."]
    return "\n".join(lines)


def publish(results: str, name: str, text: str) -> None:
    """Write ``text`` as section ``name``; the two sections of this script are kept
    together, the RSS one first."""
    if results != "-":
        path = Path(results)
        current = path.read_text() if path.exists() else ""
        if f"<!-- begin {NAME} -->" not in current:
            results_md.replace_section(path, NAME, "## Memory per idle connection\n\n(not run yet)")
        if f"<!-- begin {TRACED_NAME} -->" not in path.read_text():
            end = f"<!-- end {NAME} -->"
            text_now = path.read_text()
            at = text_now.index(end) + len(end)
            block = f"\n\n<!-- begin {TRACED_NAME} -->\n(not run yet)\n<!-- end {TRACED_NAME} -->"
            path.write_text(text_now[:at] + block + text_now[at:])
    results_md.publish_section(results, name, text)


# -- main ----------------------------------------------------------------------------------------


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=_Help,
        epilog="Servers and clients (--only): "
        + "; ".join(f"{s.key}: {s.label}" for s in SPECS.values()),
    )
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="idle connections")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_CONNECTIONS:,} connections: a smoke run"
    )
    parser.add_argument("--only", default=",".join(SPECS), help="servers, comma-separated")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="instead of RSS: where the memory goes, by allocation site, for the servers of"
        " --only among fanout-plain, fanout-v1, websockets, baseline",
    )
    parser.add_argument(
        "--traced-connections",
        type=int,
        default=TRACED_CONNECTIONS,
        help="--tracemalloc: idle connections of each kind (--quick: at most 1,000)",
    )
    parser.add_argument("--top", type=int, default=25, help="allocation sites printed")
    parser.add_argument(
        "--settle", type=float, default=8.0, help="seconds to wait at most for a server to settle"
    )
    parser.add_argument(
        "--budget", type=float, default=175.0, help="seconds for all of it (then it stops)"
    )
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the section of this JSON report (one this script wrote)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="JSON reports")
    parser.add_argument(
        "--results", default=str(BENCH_DIR / "RESULTS.md"), help="'-' to leave it alone"
    )
    parser.add_argument(
        "--serve",
        choices=KINDS,
        metavar="KIND",
        help="run one server in this process and nothing else (what the children run;"
        f" by hand: --serve websockets --port PORT); KIND: {', '.join(KINDS)}",
    )
    parser.add_argument("--port", type=int, default=0, help="--serve: the port")
    parser.add_argument(
        "--trace-frames", type=int, default=0, help="--serve: under tracemalloc, N frames"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.connections = QUICK_CONNECTIONS
        args.traced_connections = min(args.traced_connections, QUICK_CONNECTIONS)
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = set(args.only) - set(SPECS)
    if unknown:
        parser.error(
            f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SPECS)}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        if not args.port:
            print("--serve needs --port", file=sys.stderr)
            return 2
        return serve_main(args.serve, args.port, args.trace_frames)
    if args.render:
        report = json.loads(args.render.read_text())
        if "tracemalloc" in report:
            publish(args.results, TRACED_NAME, traced_section(report))
        else:
            publish(args.results, NAME, section(report))
        return 0
    n = args.traced_connections if args.tracemalloc else args.connections
    limit = raise_open_files(40_000)
    if limit < n + 2 * WARM_UP + 100:
        print(f"the open-files limit is {limit}: {n + 2 * WARM_UP + 100} needed", file=sys.stderr)
        return 2
    pin(CLIENT_CPU)
    stamp = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="fanout-idle-memory-") as tmp:
        try:
            measured = uvloop.run(run(args, Path(tmp)))
        except BaseException:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
    head = {
        "code": results_md.measured_code(),
        "connections": args.connections,
        "traced_connections": args.traced_connections,
        "warm_up": WARM_UP,
        "open_files": limit,
    }
    report = results_md.write_report(NAME, stamp, args.out, head, measured)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.tracemalloc:
        publish(args.results, TRACED_NAME, traced_section(report))
    else:
        publish(args.results, NAME, section(report))
    return 0


if __name__ == "__main__":
    if "--serve" in sys.argv:  # a server this script started: its SIGTERM ends it as usual
        sys.exit(main())
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
