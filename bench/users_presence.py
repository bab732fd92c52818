"""Users, presence and history through real nodes: 10,000 members in one room over two
``fanout serve`` nodes sharing Redis, and history queries at 1,000 messages per room.

Everything is real and on 127.0.0.1: a ``redis-server`` this script starts on a free
port (never 6379, no persistence), two ``fanout serve --broker redis://...`` nodes with
an API key and an HMAC secret (per-client limits off, ``--max-connections`` raised), and
for the history comparison one ``fanout serve`` on the memory broker. Clients are this
script's own raw WebSocket connections (a small ``asyncio.Protocol`` on uvloop, one
process, like the lab's client: no library object per frame), each with a token of one of
2,500 users (four connections each); half connect to node A, half to node B.

Scenario ``presence`` (issue 13):

- *connect*: 10,000 handshakes (token checked, the personal room ``@user`` subscribed and
  written to presence), ``--connect-window`` in flight;
- *join*: every member sends ``subscribe`` for one room, ``--window`` unanswered at a
  time; subscribes answered per second, each one's latency, and the time until
  ``GET /api/presence_stats`` on both nodes says 10,000 (presence is written in the
  background after the answer);
- *queries*: ``GET /api/presence`` (10,000 members) and ``GET /api/presence_stats`` on
  the two nodes in turn, one at a time, every answer checked;
- *leave*: every member sends ``unsubscribe`` (twice: the second's ``not_subscribed``
  error is the answer to the first, which has none); then they all join again at once
  (no window), and then *disconnect* (close frames, windowed); answered per second and
  the time until both nodes say 0.

Scenario ``history``: 1,000 messages published through ``POST /api/publish`` into one
room (the default ``history_max_messages`` keeps them all), then ``--history-queries``
each of ``GET /api/history?room=R&limit=100``, ``...&since=S&limit=100`` (S spread over
the room), and the ``fanout.v1`` ``history`` request (last 100 and since S), one at a
time, every answer checked; on the memory broker and on Redis (published through node A,
read on node B), in the same run.

    .venv/bin/python bench/users_presence.py [--only presence,history]
        [--history-queries 2000] [--results bench/RESULTS.md | -]

Writes ``bench/out/users_presence-<time>.json`` and the section ``users_presence`` of
``bench/RESULTS.md``. About 2 minutes; every wait is bounded and the whole run stops by
itself within ``--budget`` seconds (170).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import uvloop

import nodes
import results_md
from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.lab.interrupt import run_interruptible
from fanout.lab.wsclient import client_frame_header
from fanout.settings import NO_CLIENT_LIMITS
from nodes import Started, redis_server, redis_version
from results_md import HOST, OTHER_LOAD_FLAG, percentiles

MEMBERS = 10_000
USERS = 2_500
ROOM = "lobby"
HISTORY_ROOM = "log"
HISTORY_MESSAGES = 1_000
HISTORY_LIMIT = 100
PAYLOAD_TEXT = "x" * 180  # about 200 bytes of JSON per message
SECRET = "bench-secret-" + "s" * 32
API_KEY = "bench-api-key-users-presence"
MAX_CONNECTIONS = 20_000
PHASE_TIMEOUT_S = 60.0
CONNECT_TRIES = 3
SCENARIOS = ("presence", "history")


# -- the nodes --------------------------------------------------------------------------------


def fanout_node(
    name: str, broker: str, log: Path, refresh_s: float
) -> contextlib.AbstractContextManager[Started]:
    """``fanout serve`` with the API, tokens and no per-client limits; stopped after."""
    args = ["--broker", broker, "--log-level", "warning", *NO_CLIENT_LIMITS]
    args += ["--max-connections", str(MAX_CONNECTIONS)]
    args += ["--presence-refresh-s", str(refresh_s)]
    # The key and the secret through the environment, as docs/server-api.md advises.
    env = {**os.environ, "FANOUT_API_KEY": API_KEY, "FANOUT_AUTH_SECRET": SECRET}
    return nodes.fanout_node(name, args, log, env)


def raise_open_files() -> int:
    """Soft open-files limit up to the hard one (the nodes inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return int(target)


# -- a minimal HTTP/1.1 keep-alive client (GET and POST with Content-Length answers) -------


class Http:
    """One keep-alive connection to a node's API: a request costs a write and two reads,
    so the latency measured is the node's, not an HTTP library's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self._streams
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Authorization: apikey {API_KEY}\r\n"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            (int(h.split(b":", 1)[1]) for h in lines if h.lower().startswith(b"content-length:")),
            None,
        )
        if length is None:
            raise RuntimeError(f"{method} {path}: no Content-Length in {lines!r}")
        return status, await reader.readexactly(length)

    async def get_json(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return orjson.loads(body)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            with contextlib.suppress(OSError):
                await self._streams[1].wait_closed()
            self._streams = None


# -- raw WebSocket members --------------------------------------------------------------------


class Counter:
    """Events of one kind: how many, when the last came, a future once ``target`` came."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.last = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_hit: Callable[[], None] = lambda: None

    def hit(self) -> None:
        self.count += 1
        self.last = time.perf_counter()
        self.on_hit()
        if self.count >= self.target and not self.done.done():
            self.done.set_result(None)


@dataclass
class Crowd:
    """What all members share: counters of the phase, latencies, errors, closes."""

    subscribed: Counter | None = None
    unsubscribed: Counter | None = None
    lost: Counter | None = None
    latencies_s: list[float] = field(default_factory=list)
    sent_at_s: list[float] = field(default_factory=list)  # of each latency, since the start
    start = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # While a phase runs: an error answer makes the member act again (counted).
    retry: Callable[[Member], None] | None = None
    retried: list[dict[str, Any]] = field(default_factory=list)
    close_codes: dict[int, int] = field(default_factory=dict)


class Member(asyncio.Protocol):
    """One fanout.v1 connection: handshake, then JSON text frames; answers pings."""

    def __init__(self, host: str, port: int, path: str, user: str, crowd: Crowd) -> None:
        self.host, self.port, self.path, self.user, self.crowd = host, port, path, user, crowd
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.sent_at = 0.0
        self.open = False
        self.closed = False
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        t.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: fanout.v1\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake ({exc!r})"))
        for answer in self.answers.values():
            if not answer.done():
                answer.set_exception(ConnectionError("closed"))
        if self.crowd.lost is not None:
            self.crowd.latencies_s.append(time.perf_counter() - self.sent_at)
            self.crowd.sent_at_s.append(self.sent_at - self.crowd.start)
            self.crowd.lost.hit()

    def send(self, frame: dict[str, Any]) -> None:
        payload = orjson.dumps(frame)
        if self.transport is not None and not self.closed:
            self.transport.write(client_frame_header(0x1, len(payload)) + payload)

    def request(self, frame: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[str(frame["id"])] = answer
        self.send(frame)
        return answer

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(client_frame_header(0x8, 2) + (1000).to_bytes(2, "big"))

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
                if self.transport is not None:
                    self.transport.abort()
                return
            self.open = True
            buf = buf[end + 4 :]
        n, pos = len(buf), 0
        while n - pos >= 2:
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
                self._frame(orjson.loads(payload))
            elif opcode == 0x9 and self.transport is not None and not self.closed:
                self.transport.write(client_frame_header(0xA, len(payload)) + payload)
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.crowd.close_codes[code] = self.crowd.close_codes.get(code, 0) + 1
                if self.transport is not None:
                    self.transport.close()
        self._buf = buf[pos:]

    def _frame(self, frame: dict[str, Any]) -> None:
        kind, crowd = frame.get("type"), self.crowd
        answer = self.answers.pop(str(frame["id"]), None) if "id" in frame else None
        if answer is not None:
            if not answer.done():
                answer.set_result(frame)
        elif kind == "subscribed" and frame.get("room") == f"@{self.user}":
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "subscribed" and frame.get("room") == ROOM and crowd.subscribed:
            crowd.latencies_s.append(time.perf_counter() - self.sent_at)
            crowd.sent_at_s.append(self.sent_at - crowd.start)
            crowd.subscribed.hit()
        elif kind == "error" and frame.get("code") == "not_subscribed" and crowd.unsubscribed:
            # ``unsubscribe`` has no answer: each member sends it twice, and the error for
            # the second (frames of a connection are handled in order) says the first is done.
            crowd.latencies_s.append(time.perf_counter() - self.sent_at)
            crowd.sent_at_s.append(self.sent_at - crowd.start)
            crowd.unsubscribed.hit()
        elif kind == "error" and crowd.retry is not None:
            crowd.retried.append(frame)
            self.sent_at = time.perf_counter()
            crowd.retry(self)
        else:
            crowd.errors.append(frame)


def tokens(users: int) -> list[str]:
    grants = RoomGrants.both(("*",))
    return [
        mint_token(SECRET, subject=f"user-{u}", grants=grants, ttl_s=3600) for u in range(users)
    ]


async def connect_member(port: int, user: str, token: str, crowd: Crowd) -> Member:
    loop = asyncio.get_running_loop()
    _, member = await loop.create_connection(
        lambda: Member(HOST, port, f"/ws?token={token}", user, crowd), HOST, port
    )
    await member.ready
    return member


# -- CPU of each process by phase ---------------------------------------------------------


class LoopLag:
    """The longest this script's event loop was late to wake a 10 ms timer, by phase: a
    stall of the clients' own loop would show in every latency measured."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - before - 0.01)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return round(worst * 1000, 1)

    def stop(self) -> None:
        self._task.cancel()


class Cpu:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "clients": os.getpid()}
        self.mark()

    def mark(self) -> None:
        self._at = {name: results_md.cpu_s(pid) for name, pid in self.pids.items()}

    def since_mark(self) -> dict[str, float]:
        now = {name: results_md.cpu_s(pid) for name, pid in self.pids.items()}
        used = {name: round(now[name] - self._at[name], 3) for name in self.pids}
        self._at = now
        return used


# -- scenario: presence ---------------------------------------------------------------------


class PresenceBench:
    def __init__(self, a: Started, b: Started, redis: Started, args: argparse.Namespace) -> None:
        self.nodes = [a, b]
        self.http = [Http(a.port), Http(b.port)]
        self.args = args
        self.crowd = Crowd()
        self.members: list[Member] = []
        self.cpu = Cpu({"node A": a.pid, "node B": b.pid, "redis": redis.pid})
        self.phases: dict[str, dict[str, Any]] = {}
        self.expected = {"room": ROOM, "connections": MEMBERS, "users": USERS}

    def record(self, name: str, figures: dict[str, Any]) -> None:
        figures["cpu_s"] = self.cpu.since_mark()
        figures["client_loop_late_ms"] = self.lag.take()
        self.phases[name] = figures
        print(f"{name:<34} {figures}", flush=True)

    async def run(self) -> None:
        self.lag = LoopLag()
        try:
            await self.connect()
            await self.join("join")
            await self.queries()
            await self.leave()
            await self.join("join, all at once", window=0)
            await self.disconnect()
        finally:
            self.lag.stop()
            for member in self.members:
                if member.transport is not None and not member.closed:
                    member.transport.abort()
            for http in self.http:
                await http.close()
        if self.crowd.errors:
            raise RuntimeError(f"unexpected frames: {self.crowd.errors[:5]}")

    async def connect(self) -> None:
        keys = tokens(USERS)
        window = asyncio.Semaphore(self.args.connect_window)
        self.cpu.mark()
        start = time.perf_counter()

        failed: list[str] = []

        async def one(i: int) -> Member:
            port, user = self.nodes[i % 2].port, f"user-{i % USERS}"
            async with window:
                for _ in range(CONNECT_TRIES - 1):
                    try:
                        return await connect_member(port, user, keys[i % USERS], self.crowd)
                    except ConnectionError as exc:
                        failed.append(str(exc))
                return await connect_member(port, user, keys[i % USERS], self.crowd)

        async with asyncio.timeout(PHASE_TIMEOUT_S):
            self.members = list(await asyncio.gather(*(one(i) for i in range(MEMBERS))))
        took = time.perf_counter() - start
        self.record(
            "connect",
            {
                "calls": MEMBERS,
                "seconds": round(took, 3),
                "per_s": round(MEMBERS / took),
                "retried": len(failed),
                "retried_because": sorted(set(failed)),
            },
        )

    async def converged(self, connections: int, start: float) -> tuple[float, int]:
        """Poll both nodes' presence_stats until both say ``connections``; (seconds, polls)."""
        polls = 0
        async with asyncio.timeout(PHASE_TIMEOUT_S):
            while True:
                answers = await asyncio.gather(
                    *(h.get_json(f"/api/presence_stats?room={ROOM}") for h in self.http)
                )
                polls += 1
                if all(a["connections"] == connections for a in answers):
                    return time.perf_counter() - start, polls
                await asyncio.sleep(0.005)

    async def _wave(self, counter: Counter, act: Callable[[Member], None], window: int) -> float:
        """``act`` on every member, ``--window`` unanswered at a time (all at once with 0):
        each answer (counted by ``counter``) lets the next member act. The figures: answers
        per second, each one's latency, and the time until presence on both nodes says
        ``expect`` connections."""
        self.crowd.latencies_s, self.crowd.sent_at_s = [], []
        queue = iter(self.members)
        window = window or MEMBERS

        def next_one() -> None:
            member = next(queue, None)
            if member is not None:
                member.sent_at = time.perf_counter()
                act(member)

        self.crowd.start = time.perf_counter()
        counter.on_hit = next_one
        self.crowd.retry = act
        self.crowd.retried = []
        start = time.perf_counter()
        for _ in range(window):
            next_one()
        try:
            async with asyncio.timeout(PHASE_TIMEOUT_S):
                await counter.done
        except TimeoutError:
            errors = self.crowd.errors
            raise RuntimeError(
                f"{counter.count:,} of {MEMBERS:,} answered in {PHASE_TIMEOUT_S} s;"
                f" {len(errors)} other frames: {errors[:3]}; closes {self.crowd.close_codes}"
            ) from None
        finally:
            self.crowd.retry = None
        return start

    async def _phase(
        self,
        name: str,
        counter: Counter,
        act: Callable[[Member], None],
        expect: int,
        window: int | None = None,
    ) -> None:
        self.cpu.mark()
        self.lag.take()
        window = self.args.window if window is None else window
        start = await self._wave(counter, act, window)
        answered = counter.last - start
        seconds, polls = await self.converged(expect, start)
        figures = {
            "calls": MEMBERS,
            "window": window,
            "answered_s": round(answered, 3),
            "per_s": round(MEMBERS / answered),
            **{k: v for k, v in percentiles(self.crowd.latencies_s).items() if k != "n"},
            "slowest_1pct_sent_at_ms": self._slowest_sent_at(),
            "presence_s": round(seconds, 3),
            "presence_per_s": round(MEMBERS / seconds),
            "stats_polls": polls,
            "retried": len(self.crowd.retried),
            "retried_because": sorted({str(f.get("reason")) for f in self.crowd.retried}),
        }
        self.record(name, figures)
        for http in self.http:
            answer = await http.get_json(f"/api/presence_stats?room={ROOM}")
            want = self.expected if expect else {"room": ROOM, "connections": 0, "users": 0}
            assert answer == want, answer

    def _slowest_sent_at(self) -> list[float]:
        """When the slowest 1 % of the phase's requests were sent (min, median, max ms
        after its start): all at the start means one wait that the first ones met."""
        crowd = self.crowd
        order = sorted(range(len(crowd.latencies_s)), key=crowd.latencies_s.__getitem__)
        sent = sorted(crowd.sent_at_s[i] for i in order[-max(1, len(order) // 100) :])
        return [
            round(sent[0] * 1000, 1),
            round(sent[len(sent) // 2] * 1000, 1),
            round(sent[-1] * 1000, 1),
        ]

    async def join(self, name: str, window: int | None = None) -> None:
        self.crowd.subscribed = Counter(MEMBERS)
        frame = {"type": "subscribe", "room": ROOM}

        def send(member: Member) -> None:
            member.send(frame)

        await self._phase(name, self.crowd.subscribed, send, MEMBERS, window)

    async def leave(self) -> None:
        self.crowd.unsubscribed = Counter(MEMBERS)
        frame = {"type": "unsubscribe", "room": ROOM}

        def twice(member: Member) -> None:
            member.send(frame)
            member.send(frame)

        await self._phase("leave (unsubscribe)", self.crowd.unsubscribed, twice, 0)

    async def disconnect(self) -> None:
        self.crowd.lost = Counter(MEMBERS)
        await self._phase("leave (disconnect)", self.crowd.lost, Member.close, 0)
        codes = dict(self.crowd.close_codes)
        self.phases["leave (disconnect)"]["close_codes"] = codes
        assert codes == {1000: MEMBERS}, codes

    async def queries(self) -> None:
        for path, rounds, check in (
            (f"/api/presence_stats?room={ROOM}", self.args.stats_queries, self._stats_ok),
            (f"/api/presence?room={ROOM}", self.args.presence_queries, self._members_ok),
        ):
            self.cpu.mark()
            self.lag.take()
            samples = []
            async with asyncio.timeout(PHASE_TIMEOUT_S):
                for i in range(rounds):
                    start = time.perf_counter()
                    answer = await self.http[i % 2].get_json(path)
                    samples.append(time.perf_counter() - start)
                    check(answer)
            _, body = await self.http[0].request("GET", path)
            self.record(f"GET {path.split('?')[0]}", {**percentiles(samples), "bytes": len(body)})

    def _stats_ok(self, answer: Any) -> None:
        assert answer == self.expected, answer

    def _members_ok(self, answer: Any) -> None:
        members = answer["members"]
        assert len(members) == MEMBERS, len(members)
        assert len({m["conn"] for m in members}) == MEMBERS
        assert len({m["user"] for m in members}) == USERS


# -- scenario: history --------------------------------------------------------------------------


async def history_bench(
    writer: Started, reader: Started, queries: int, cpu: Cpu
) -> dict[str, dict[str, Any]]:
    """1,000 messages published through ``writer``'s API, read through ``reader``'s."""
    phases: dict[str, dict[str, Any]] = {}

    def record(name: str, figures: dict[str, Any]) -> None:
        figures["cpu_s"] = cpu.since_mark()
        phases[name] = figures
        print(f"  {name:<32} {figures}", flush=True)

    publish, read = Http(writer.port), Http(reader.port)
    keys = tokens(1)
    crowd = Crowd()
    member = await connect_member(reader.port, "user-0", keys[0], crowd)
    try:
        cpu.mark()
        samples = []
        for n in range(1, HISTORY_MESSAGES + 1):
            body = orjson.dumps({"room": HISTORY_ROOM, "data": {"n": n, "text": PAYLOAD_TEXT}})
            start = time.perf_counter()
            status, answer = await publish.request("POST", "/api/publish", body)
            samples.append(time.perf_counter() - start)
            assert status == 200, (status, answer)
            assert orjson.loads(answer)["offset"] == n, answer
        record("POST /api/publish", percentiles(samples))

        def check(frame: dict[str, Any], since: int | None) -> None:
            first = HISTORY_MESSAGES - HISTORY_LIMIT + 1 if since is None else since + 1
            got = frame["messages"]
            assert frame["latest"] == HISTORY_MESSAGES, frame["latest"]
            assert len(got) == HISTORY_LIMIT, len(got)
            assert got[0]["offset"] == first, got[0]
            assert got[-1]["data"]["n"] == first + HISTORY_LIMIT - 1, got[-1]

        def since_of(i: int) -> int:  # spread over the room: 0 .. 900
            return (i * 37) % (HISTORY_MESSAGES - HISTORY_LIMIT + 1)

        base = f"/api/history?room={HISTORY_ROOM}&limit={HISTORY_LIMIT}"

        def v1(i: int, since: int | None) -> tuple[Any, int | None]:
            frame: dict[str, Any] = {"type": "history", "room": HISTORY_ROOM, "id": f"h{i}"}
            frame["limit"] = HISTORY_LIMIT
            if since is not None:
                frame["since"] = since
            return member.request(frame), since

        def http(i: int, since: int | None) -> tuple[Any, int | None]:
            path = base if since is None else f"{base}&since={since}"
            return read.get_json(path), since

        kinds: list[tuple[str, Callable[[int], tuple[Any, int | None]]]] = [
            (f"GET /api/history limit={HISTORY_LIMIT}", lambda i: http(i, None)),
            (f"GET /api/history since=S limit={HISTORY_LIMIT}", lambda i: http(i, since_of(i))),
            (f"v1 history limit={HISTORY_LIMIT}", lambda i: v1(i, None)),
            (f"v1 history since=S limit={HISTORY_LIMIT}", lambda i: v1(i, since_of(i))),
        ]
        for name, ask in kinds:
            cpu.mark()
            samples = []
            for i in range(queries):
                start = time.perf_counter()
                pending, since = ask(i)
                answer = await pending
                samples.append(time.perf_counter() - start)
                check(answer, since)
            record(name, percentiles(samples))
    finally:
        member.close()
        await publish.close()
        await read.close()
    if crowd.errors:
        raise RuntimeError(f"unexpected frames: {crowd.errors[:5]}")
    return phases


# -- the run ------------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, redis: Started, a: Started, b: Started, memory: Started | None
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if "presence" in args.only:
        bench = PresenceBench(a, b, redis, args)
        await bench.run()
        report["presence"] = bench.phases
    if "history" in args.only:
        report["history"] = {}
        if memory is not None:
            print("history, memory broker (one node)", flush=True)
            cpu = Cpu({"node": memory.pid})
            report["history"]["memory"] = await history_bench(
                memory, memory, args.history_queries, cpu
            )
        print("history, Redis (published on node A, read on node B)", flush=True)
        cpu = Cpu({"node A": a.pid, "node B": b.pid, "redis": redis.pid})
        report["history"]["redis"] = await history_bench(a, b, args.history_queries, cpu)
    return report


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(logs))
        broker = f"redis://{HOST}:{redis.port}/0"
        refresh = args.refresh
        a = stack.enter_context(fanout_node("node A", broker, logs / "node-a.log", refresh))
        b = stack.enter_context(fanout_node("node B", broker, logs / "node-b.log", refresh))
        memory = None
        if "history" in args.only:
            memory = stack.enter_context(
                fanout_node("memory", "memory", logs / "memory.log", refresh)
            )
        load = results_md.OtherLoad(args.quiet_wait)

        async def bounded() -> dict[str, Any]:
            async with asyncio.timeout(args.budget):
                return await measure(args, redis, a, b, memory)

        try:
            measured = uvloop.run(bounded())
        except BaseException:
            for log in sorted(logs.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
        seconds = round(time.monotonic() - load.start, 1)
        return {**measured, "seconds": seconds, **load.figures()}


# -- RESULTS.md ---------------------------------------------------------------------------------


def _ms(f: dict[str, Any], key: str) -> str:
    return f"{f[key]:.2f}" if key in f else ""


def _cpu(f: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in f["cpu_s"].items())


def section(report: dict[str, Any]) -> str:
    shares = (
        "the two nodes, Redis and the clients share the cores; other processes used"
        f" {report['other_cores']:.2f} cores on average during the run"
        f" ({report['other_cores_before']:.2f} just before it); {report['seconds']:.0f} s"
        " in all"
    )
    if report["other_cores"] > OTHER_LOAD_FLAG:
        shares += f" (**disturbed**: more than {OTHER_LOAD_FLAG} cores of other load)"
    lines = [
        "## Users and presence through real nodes; history at 1,000 messages per room",
        "",
        "Generated by `bench/users_presence.py` (issue 13): a `redis-server` and two"
        " `fanout serve --broker redis://...` nodes (API key, HMAC secret, per-client limits"
        f" off, `--max-connections {MAX_CONNECTIONS:,}`, `--presence-refresh-s"
        f" {report['refresh_s']:g}`) started on free loopback ports; {MEMBERS:,} raw"
        f" WebSocket members (this script's own `asyncio.Protocol` on uvloop, one process,"
        f" tokens of {USERS:,} users, four connections each), half on node A, half on node"
        " B, all in one room. Every answer is checked.",
        "",
        *results_md.report_lines(report, shares),
    ]
    p = report.get("presence")
    if p:
        lines += [
            "",
            f"### {MEMBERS:,} members in one room, two nodes",
            "",
            "| phase | in flight | answered in s | answered /s | p50 ms | p99 ms | both"
            " nodes' presence right after s | in presence /s | nodes' CPU µs per member |"
            " CPU s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in (
            "connect",
            "join",
            "leave (unsubscribe)",
            "join, all at once",
            "leave (disconnect)",
        ):
            f = p[name]
            nodes_us = (f["cpu_s"]["node A"] + f["cpu_s"]["node B"]) / MEMBERS * 1e6
            window = f.get("window", report["connect_window"])
            cells = [
                name,
                f"{window or MEMBERS:,}",
                f"{f.get('answered_s', f.get('seconds')):.2f}",
                f"{f['per_s']:,}",
                _ms(f, "p50_ms"),
                _ms(f, "p99_ms"),
                f"{f['presence_s']:.2f}" if "presence_s" in f else "",
                f"{f['presence_per_s']:,}" if "presence_per_s" in f else "",
                f"{nodes_us:,.0f}",
                _cpu(f),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "| query, 10,000 members present | queries | p50 ms | p99 ms | max ms | CPU s |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in ("GET /api/presence_stats", "GET /api/presence"):
            f = p[name]
            lines.append(
                f"| `{name}` (nodes A and B in turn) | {f['n']:,} | {_ms(f, 'p50_ms')}"
                f" | {_ms(f, 'p99_ms')} | {_ms(f, 'max_ms')} | {_cpu(f)} |"
            )
        lines += [
            "",
            "- *connect*: handshakes with a token in the URL, each answered by the personal"
            " room's `subscribed` (`@user`, which is also written to presence);"
            f" {report['connect_window']} in flight.",
            "- *join*, *leave (unsubscribe)*: every member sends its `subscribe`"
            " (`unsubscribe`), with"
            f" {report['window']} of them unanswered at a time over both nodes (an answer"
            " lets the next member send); *answered in* is from the first send to the last"
            " answer, p50/p99 each member's wait for its answer (so mostly the queue of"
            f" {report['window']}). `subscribe` is answered by `subscribed`; `unsubscribe`"
            " has no answer, so each member sends it twice and takes the `not_subscribed`"
            " error of the second (a connection's frames are handled in order) as the"
            " answer to the first. Presence is written in the background after the"
            " answer: *both nodes' presence right after* is the time from the first send"
            " until `GET /api/presence_stats` on both nodes (asked together, again and"
            " again) said 10,000 (0); it answers after the node's own pending writes, so"
            " this is when every join (leave) is in Redis. *in presence /s* is 10,000 over"
            " that.",
            "- *join, all at once*: the same with no window: all 10,000 `subscribe`s written"
            " in one loop (a reconnect storm's shape), so each one's wait is the queue of"
            " the whole burst.",
            "- *leave (disconnect)*: every member sends a close frame (same window);"
            " *answered* is the TCP connection closed by the node after its close frame;"
            " then presence as above (the node removes the room's and the personal room's"
            " entries).",
            "- *CPU s*: each process's CPU seconds over the phase (user + system, from"
            " `/proc`); *clients* is this script; *nodes' CPU µs per member* is node A's and"
            " node B's together over 10,000.",
            "- Stalls: the JSON has, per phase, when the slowest 1 % of requests were sent"
            " (`slowest_1pct_sent_at_ms`: all within a few ms means one pause of one node"
            " that the requests in flight then all waited out) and the longest this"
            " script's own loop was late (`client_loop_late_ms`; join: "
            f"{p['join']['client_loop_late_ms']:.0f} ms, so a p99 far above that is the"
            " nodes').",
            "- Queries one at a time, over one keep-alive HTTP connection per node (a"
            " minimal HTTP/1.1 client, so the time is the node's and the socket's, not an"
            " HTTP library's); the answer is checked every time (`presence`: 10,000"
            f" distinct connections of {USERS:,} users). `presence` answers"
            f" {p['GET /api/presence']['bytes'] / 1e6:.1f} MB of JSON, read and decoded"
            " (orjson) by this script within the time measured.",
        ]
    h = report.get("history")
    if h:
        lines += [
            "",
            f"### History: {HISTORY_MESSAGES:,} messages in one room, {HISTORY_LIMIT} per query",
            "",
            "| query | broker | queries | p50 ms | p99 ms | max ms | CPU s |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        names = list(next(iter(h.values())).keys())
        for name in names:
            for broker, phases in h.items():
                f = phases[name]
                label = "memory" if broker == "memory" else "Redis (two nodes)"
                lines.append(
                    f"| `{name}` | {label} | {f['n']:,} | {_ms(f, 'p50_ms')}"
                    f" | {_ms(f, 'p99_ms')} | {_ms(f, 'max_ms')} | {_cpu(f)} |"
                )
        lines += [
            "",
            f"- {HISTORY_MESSAGES:,} messages of about 200 bytes of JSON published one at a"
            " time through `POST /api/publish` (its row), then each query one at a time:"
            f" the last {HISTORY_LIMIT} (`limit`), and the {HISTORY_LIMIT} after an offset S"
            f" spread over 0-{HISTORY_MESSAGES - HISTORY_LIMIT} (`since`), over HTTP and as"
            " the `fanout.v1` `history` request on one WebSocket connection (not"
            " subscribed). Every answer checked: 100 messages, the right offsets, `latest`"
            " 1,000.",
            "- Memory: one `fanout serve` on the memory broker. Redis: published through node"
            " A, read through node B (the same two nodes, after the presence scenario).",
            f"- `since=S` reads at most {HISTORY_LIMIT} messages after S in one script call"
            f" (the limit is passed down to the broker); the last-{HISTORY_LIMIT} query"
            " reads the room's head first, then the messages: two calls.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="presence,history")
    parser.add_argument("--connect-window", type=int, default=100, help="handshakes at once")
    parser.add_argument(
        "--window",
        type=int,
        default=200,
        help="subscribes, unsubscribes, closes unanswered at once, over both nodes (0: all)",
    )
    parser.add_argument("--stats-queries", type=int, default=1000)
    parser.add_argument("--presence-queries", type=int, default=100)
    parser.add_argument("--history-queries", type=int, default=2000, help="of each kind")
    parser.add_argument("--refresh", type=float, default=5.0, help="--presence-refresh-s")
    parser.add_argument("--budget", type=float, default=170.0, help="seconds for all of it")
    results_md.add_run_arguments(parser, 30.0, "first")
    args = parser.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.only <= set(SCENARIOS):
        parser.error(f"--only: choose from {', '.join(SCENARIOS)}")
    limit = raise_open_files()
    if limit < MEMBERS + 1000:
        parser.error(f"the open-files limit is {limit}: {MEMBERS + 1000} needed (ulimit -Hn)")
    stamp = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="fanout-users-presence-") as tmp:
        measured = run(args, Path(tmp))
    head = {
        "redis": redis_version(),
        "code": results_md.measured_code(),
        "refresh_s": args.refresh,
        "connect_window": args.connect_window,
        "window": args.window,
        "open_files": limit,
    }
    report = results_md.write_report("users_presence", stamp, args.out, head, measured)
    results_md.publish_section(args.results, "users_presence", section(report))
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
