"""Which Redis client fanout should use: its own pipelined link, redis-py or coredis.

One run measures, in interleaved rounds (each round runs every client once, the order
rotated round by round), the publish step fanout runs for every message (the
``PUBLISH`` Lua script of ``fanout.brokers.redis.scripts``, by EVALSHA):

- on one private ``redis-server``: ``fanout.Emitter`` (fanout's own RESP link, one
  pipelined connection), ``redis.asyncio.Redis`` (redis-py, its connection pool) and
  ``coredis.Redis`` (coredis, its multiplexed connections);
- on a private 3-master Redis Cluster (formed here with CLUSTER ADDSLOTSRANGE and
  CLUSTER MEET): ``redis.asyncio.RedisCluster``, ``coredis.RedisCluster`` and
  ``fanout.Emitter`` given one seed node (reported as "not supported yet" while fanout
  refuses or cannot route a Cluster).

Every client does the same work per publish: the hub's publish rules
(``EmitterConfig.rules``), the room's keys and arguments built by
``fanout.brokers.redis.publish.publish`` itself (redis-py and coredis stand in for its
command link), one EVALSHA. N publishers (coroutines) publish 200-byte JSON payloads
back to back over 256 rooms; publishes/s, p50/p99 latency of one publish, and CPU per
publish of this process and of Redis are measured after a warm-up. Redis starts empty
for every run (FLUSHALL). This process is pinned to CPU 0, every ``redis-server`` to
CPU 1.

It then checks what a maintained client would have to do for fanout's pub/sub links:
sharded pub/sub (SSUBSCRIBE) on the cluster across all masters, while a slot migrates
(the server's ``sunsubscribe`` push, MOVED on a stale slot map, a slot in MIGRATING
state), and pub/sub through Sentinel across a failover.

    .venv/bin/python bench/redis_clients.py [--quick] [--rounds 5] [--duration 2.5]
        [--concurrency 64] [--json FILE] [--results bench/RESULTS.md | -]

About 2 minutes (``--quick``: about 20 s, one short round, written to RESULTS.md only
when ``--results`` is given). Starts only its own servers, on free loopback ports
(never 6379), and stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import hiredis

import fanout
import results_md
from fanout.asgi.wiring import emitter_config
from fanout.brokers.redis import scripts
from fanout.brokers.redis.commands import Script
from fanout.brokers.redis.emitter import EmitterConfig
from fanout.brokers.redis.layout import RoomKeys
from fanout.brokers.redis.publish import PUBLISH, publish
from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import ProcessGone, free_port, wait_until
from fanout.lab.results import machine, versions
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import BrokerError, ConfigError
from nodes import SYSTEM_REDIS_PORT, Started, redis_server, redis_version, stop
from results_md import HOST, OTHER_LOAD_FLAG, busy_s, cpu_s, percentiles, tree_cpu_s

NAME = "redis_clients"
SECTION_TITLE = "Redis client choice"
ROOMS = 256
PAYLOAD_BYTES = 200
SLOTS = 16384
BENCH_CPU, REDIS_CPU = 0, 1
QUIET_SAMPLE_S = 0.3
CLIENT_PACKAGES = ("redis", "coredis", "hiredis", "anyio")

Call = Callable[[str, Payload], Awaitable[object]]
Opener = Callable[[], AbstractAsyncContextManager[Call]]


class NotSupportedYet(Exception):
    """fanout refuses (or cannot route) this topology yet: reported, not a failure."""


def describe(exc: BaseException) -> str:
    """``Type: message``, the leaves of an exception group joined (at most 300 chars)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


# -- RESP on the side: cluster set-up, FLUSHALL, SPUBLISH to a chosen node ------------------


def resp(port: int, *args: str | int, timeout: float = 5.0) -> Any:
    """One command to ``HOST:port`` on its own connection, the reply parsed by hiredis
    (an error reply is returned as ``hiredis.ReplyError``, not raised)."""
    parts = [str(a).encode() for a in args]
    line = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    reader = hiredis.Reader()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(line)
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"redis {HOST}:{port} closed the connection")
            reader.feed(chunk)


def ok(port: int, *args: str | int) -> Any:
    reply = resp(port, *args)
    if isinstance(reply, hiredis.ReplyError):
        raise RuntimeError(f"redis {port} refused {' '.join(map(str, args))}: {reply}")
    return reply


def key_slot(key: str) -> int:
    """Redis Cluster's hash slot of ``key`` (CRC16/XMODEM of its hash tag, if any)."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % SLOTS


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads started later inherit it)."""
    if (os.cpu_count() or 1) < 2:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), {cpu})


# -- the servers --------------------------------------------------------------------------


@dataclass
class Cluster:
    """A private Redis Cluster: ``len(ports)`` masters, no replicas."""

    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    ids: list[str] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def seed_url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}/0"

    def owner(self, slot: int) -> int:
        """Which master (index) holds ``slot``, as that master's own CLUSTER SLOTS says."""
        for entry in ok(self.ports[0], "CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return self.ports.index(int(entry[2][1]))
        raise LookupError(f"slot {slot} unassigned")

    def move_slot(self, slot: int, src: int, dst: int, *, finish: bool = True) -> None:
        """Move an empty ``slot`` from master ``src`` to ``dst`` as redis-cli's resharding
        does (IMPORTING, MIGRATING, then SETSLOT NODE everywhere); ``finish=False``
        stops with the slot in MIGRATING/IMPORTING state."""
        ok(self.ports[dst], "CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src])
        ok(self.ports[src], "CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst])
        if finish:
            self.finish_move(slot, dst)

    def finish_move(self, slot: int, dst: int) -> None:
        ok(self.ports[dst], "CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])
        for i, port in enumerate(self.ports):
            if i != dst:
                ok(port, "CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])


def _redis_binary() -> str:
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def _start_redis(directory: Path, port: int, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    argv = [
        _redis_binary(),
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--logfile", str(directory / f"redis-{port}.log"),
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def pong() -> bool:
        if proc.poll() is not None:
            raise ProcessGone(f"redis-server {port} exited")
        with contextlib.suppress(OSError):
            return bool(resp(port, "PING", timeout=0.5) == b"PONG")
        return False

    try:
        wait_until(pong, 10, interval_s=0.02, what=f"redis-server {port} answering PING")
    except (ProcessGone, TimeoutError) as exc:
        stop(proc)
        log = directory / f"redis-{port}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        raise RuntimeError(f"redis-server did not start ({exc}):\n{text}") from None
    except BaseException:  # Ctrl-C or SIGTERM while waiting: not left running
        stop(proc)
        raise
    pin(proc.pid, REDIS_CPU)
    return proc


@contextlib.contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[Cluster]:
    """``masters`` cluster-enabled ``redis-server`` on free loopback ports (and free
    cluster bus ports), slots split evenly, joined by CLUSTER MEET; yielded once every
    node says ``cluster_state:ok``, stopped after."""
    cluster = Cluster([], [])
    try:
        taken = {SYSTEM_REDIS_PORT}
        for _ in range(masters):
            port = free_port(avoid=taken)
            bus = free_port(avoid=taken | {port})
            taken |= {port, bus}
            node_dir = directory / f"node-{port}"
            node_dir.mkdir(parents=True)
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
            cluster.procs.append(_start_redis(node_dir, port, extra))
            cluster.ports.append(port)
            cluster.ids.append(ok(port, "CLUSTER", "MYID").decode())
            lo = SLOTS * len(cluster.ranges) // masters
            hi = SLOTS * (len(cluster.ranges) + 1) // masters - 1
            cluster.ranges.append((lo, hi))
            ok(port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
            if len(cluster.ports) > 1:
                ok(cluster.ports[0], "CLUSTER", "MEET", HOST, port, bus)

        def formed() -> bool:
            for port in cluster.ports:
                info = ok(port, "CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{masters}" not in info:
                    return False
                if len(ok(port, "CLUSTER", "SLOTS")) != masters:
                    return False
            return True

        wait_until(formed, 30, interval_s=0.1, what="the cluster saying cluster_state:ok")
        yield cluster
    finally:
        for proc in cluster.procs:
            stop(proc)


@contextlib.contextmanager
def sentinel_pair(directory: Path) -> Iterator[tuple[Started, Started, int]]:
    """A master, its replica and one Sentinel watching them (service ``fanout``,
    quorum 1); yields (master, replica, sentinel port)."""
    for sub in ("a", "b"):
        (directory / sub).mkdir(parents=True)
    with redis_server(directory / "a") as master, redis_server(directory / "b") as replica:
        pin(master.pid, REDIS_CPU)
        pin(replica.pid, REDIS_CPU)
        ok(replica.port, "REPLICAOF", HOST, master.port)
        wait_until(
            lambda: b"master_link_status:up" in ok(replica.port, "INFO", "replication"),
            10,
            what="the replica linked to its master",
        )
        port = free_port(avoid={SYSTEM_REDIS_PORT, master.port, replica.port})
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind {HOST}\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor fanout {HOST} {master.port} 1\n"
            "sentinel down-after-milliseconds fanout 2000\n"
            "sentinel failover-timeout fanout 10000\n"
        )
        proc = subprocess.Popen(
            [_redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: _sentinel_sees_replica(port), 15, what="Sentinel seeing the replica")
            pin(proc.pid, REDIS_CPU)
            yield master, replica, port
        finally:
            stop(proc)


def _sentinel_sees_replica(port: int) -> bool:
    with contextlib.suppress(OSError, RuntimeError):
        replicas = ok(port, "SENTINEL", "REPLICAS", "fanout")
        return bool(replicas)
    return False


def flushall(ports: Sequence[int]) -> None:
    for port in ports:
        ok(port, "FLUSHALL")


def connected_clients(ports: Sequence[int]) -> int:
    """Client connections the servers hold now, less the one asking each of them."""
    total = 0
    for port in ports:
        for line in ok(port, "INFO", "clients").decode().splitlines():
            if line.startswith("connected_clients:"):
                total += int(line.split(":", 1)[1]) - 1
    return total


# -- the clients: each returns the same publish step ---------------------------------------


ScriptCall = Callable[[Sequence[str], Sequence[str | bytes | int]], Awaitable[Any]]


@dataclass(frozen=True)
class _Topology:
    cluster: bool


class ScriptLink:
    """Stands in for what ``publish.publish`` sends its script through (the command
    link; ``run`` and ``current`` also fit the router the Cluster rewrite brings): the
    same keys and arguments, the script call made by another client."""

    def __init__(self, call: ScriptCall, cluster: bool) -> None:
        self._call = call
        self._topology = _Topology(cluster)

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes | int],
        **_: object,
    ) -> Any:
        return await self._call(keys, args)

    async def current(self) -> _Topology:
        return self._topology


def through(config: EmitterConfig, call: ScriptCall, *, cluster: bool) -> Call:
    """``Emitter.publish``'s work (rules, retention, ``publish``) over ``call``."""
    # Any: publish() takes the command link at the measured commit, a router after the
    # Cluster rewrite; ScriptLink has what either is asked for.
    link: Any = ScriptLink(call, cluster)

    async def publish_one(room: str, data: Payload) -> object:
        room, data = config.rules.check(room, data, None)
        retention = config.rooms.retention(room)
        return await publish(link, config.options, room, data, None, retention)

    return publish_one


def fanout_emitter(url: str, settings: fanout.Settings) -> Opener:
    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Call]:
        emitter = fanout.Emitter(url, settings=settings)
        try:
            yield emitter.publish
        finally:
            await emitter.close()

    return opened


def redis_py(config: EmitterConfig, port: int, *, cluster: bool) -> Opener:
    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Call]:
        import redis.asyncio as aredis

        client: aredis.Redis | aredis.RedisCluster
        if cluster:
            client = aredis.RedisCluster(host=HOST, port=port)
        else:
            client = aredis.Redis(host=HOST, port=port)
        script = client.register_script(scripts.PUBLISH)

        def call(keys: Sequence[str], args: Sequence[str | bytes | int]) -> Awaitable[Any]:
            return script(keys=list(keys), args=list(args))

        try:
            yield through(config, call, cluster=cluster)
        finally:
            await client.aclose()

    return opened


def coredis_client(config: EmitterConfig, port: int, *, cluster: bool) -> Opener:
    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Call]:
        import coredis

        client: coredis.Redis[bytes] | coredis.RedisCluster[bytes]
        if cluster:
            client = coredis.RedisCluster(host=HOST, port=port)
        else:
            client = coredis.Redis(host=HOST, port=port)
        async with client:
            script = client.register_script(scripts.PUBLISH)

            async def call(keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
                return await script(keys=list(keys), args=list(args))

            yield through(config, call, cluster=cluster)

    return opened


def cluster_emitter(url: str, settings: fanout.Settings, rooms: Sequence[str]) -> Opener:
    """``fanout.Emitter`` on a seed node of the cluster; NotSupportedYet when it refuses
    the Cluster or cannot publish to rooms on every master (MOVED)."""
    inner = fanout_emitter(url, settings)

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Call]:
        try:
            async with inner() as call:
                for room in rooms:
                    await call(room, {"probe": room})
                yield call
        except (ConfigError, BrokerError) as exc:
            text = str(exc)
            if isinstance(exc, ConfigError) or any(
                word in text for word in ("MOVED", "ASK", "CLUSTER", "Cluster", "cluster")
            ):
                raise NotSupportedYet(f"{type(exc).__name__}: {text}") from None
            raise

    return opened


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    key: str
    client: str
    topology: str
    open: Opener
    ports: Sequence[int]


def payload() -> dict[str, str]:
    """A JSON object of exactly PAYLOAD_BYTES bytes once encoded."""
    base = {"type": "chat", "user": "bench", "text": ""}
    size = len(json.dumps(base, separators=(",", ":")))
    base["text"] = "x" * (PAYLOAD_BYTES - size)
    return base


async def drive(
    contender: Contender, rooms: Sequence[str], concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """``concurrency`` publishers back to back for ``warmup_s + duration_s``; figures
    of the last ``duration_s``."""
    data = payload()
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    async with contender.open() as call:
        # One publish first: the connection and the script are ready before the clock.
        await call(rooms[0], data)
        begin = loop.time()
        start, end = begin + warmup_s, begin + warmup_s + duration_s

        async def publisher(i: int) -> None:
            n = i
            while True:
                t0 = time.perf_counter()
                now = loop.time()
                if now >= end:
                    return
                room = rooms[n % len(rooms)]
                n += concurrency
                try:
                    await call(room, data)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if len(errors) > 100:
                        raise
                    continue
                if now >= start:
                    latencies.append(time.perf_counter() - t0)

        tasks = [asyncio.create_task(publisher(i)) for i in range(concurrency)]
        await asyncio.sleep(max(0.0, start - loop.time()))
        t0, mine0 = time.monotonic(), cpu_s(os.getpid())
        redis0 = [cpu_s(p) for p in _pids(contender.ports)]
        busy0, tree0 = busy_s(), tree_cpu_s()
        await asyncio.sleep(max(0.0, end - loop.time()))
        elapsed = time.monotonic() - t0
        mine = cpu_s(os.getpid()) - mine0
        redis = sum(cpu_s(p) for p in _pids(contender.ports)) - sum(redis0)
        other = max(0.0, (busy_s() - busy0) - (tree_cpu_s() - tree0)) / elapsed
        connections = connected_clients(contender.ports)
        await asyncio.gather(*tasks)
    count = len(latencies)
    figures: dict[str, Any] = {
        "publishes": count,
        "seconds": round(elapsed, 3),
        "publishes_per_s": round(count / elapsed, 1),
        **percentiles(latencies),
        "client_cores": round(mine / elapsed, 3),
        "redis_cores": round(redis / elapsed, 3),
        "client_cpu_us_per_publish": round(mine / count * 1e6, 2) if count else None,
        "redis_cpu_us_per_publish": round(redis / count * 1e6, 2) if count else None,
        "redis_connections": connections,
        "other_cores": round(other, 2),
        "errors": len(errors),
    }
    if errors:
        figures["first_error"] = errors[0]
    return figures


_PIDS: dict[int, int] = {}


def _pids(ports: Sequence[int]) -> list[int]:
    return [_PIDS[p] for p in ports if p in _PIDS]


async def measure(
    contenders: Sequence[Contender],
    rounds: int,
    rooms: Sequence[str],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    quiet_s: float,
) -> dict[str, dict[str, Any]]:
    """Every contender once per round, the order rotated each round; a contender that
    is not supported yet (or fails) is reported once and skipped after."""
    rows: dict[str, dict[str, Any]] = {
        c.key: {"client": c.client, "topology": c.topology, "status": "ok", "runs": []}
        for c in contenders
    }
    for r in range(rounds):
        shift = r % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            row = rows[contender.key]
            if row["status"] != "ok":
                continue
            flushall(contender.ports)
            # The machine may be shared: start each run once others leave the CPUs (at most
            # quiet_s); what they still use during the run is recorded with it.
            if quiet_s > 0:
                await asyncio.to_thread(
                    results_md.wait_for_quiet, quiet_s, OTHER_LOAD_FLAG, QUIET_SAMPLE_S
                )
            try:
                figures = await drive(contender, rooms, concurrency, warmup_s, duration_s)
            except NotSupportedYet as exc:
                row["status"] = f"not supported yet ({exc})"
                print(f"  round {r + 1}: {contender.key}: not supported yet: {exc}", flush=True)
                continue
            except ImportError as exc:
                row["status"] = f"not installed ({exc})"
                print(f"  {contender.key}: not installed: {exc}", flush=True)
                continue
            except Exception as exc:
                row["status"] = f"failed ({describe(exc)})"
                print(f"  round {r + 1}: {contender.key}: failed: {exc!r}", flush=True)
                continue
            figures["round"] = r + 1
            row["runs"].append(figures)
            print(
                f"  round {r + 1}: {contender.key:<28} {figures['publishes_per_s']:>9,.0f}/s"
                f"  p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms"
                f"  client {figures['client_cores']:.2f} cores,"
                f" redis {figures['redis_cores']:.2f} cores"
                + (f"  ERRORS {figures['errors']}" if figures["errors"] else ""),
                flush=True,
            )
    for row in rows.values():
        row["summary"] = summary(row["runs"])
    return rows


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}

    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    rates = [r["publishes_per_s"] for r in runs]
    return {
        "publishes_per_s": med("publishes_per_s"),
        "publishes_per_s_min": min(rates),
        "publishes_per_s_max": max(rates),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "client_cpu_us_per_publish": med("client_cpu_us_per_publish"),
        "redis_cpu_us_per_publish": med("redis_cpu_us_per_publish"),
        "client_cores": med("client_cores"),
        "redis_cores": med("redis_cores"),
        "redis_connections": med("redis_connections"),
        "errors": sum(r["errors"] for r in runs),
        "disturbed_runs": sum(1 for r in runs if r["other_cores"] > OTHER_LOAD_FLAG),
        # The same median over the runs no other process disturbed (None: there were none).
        "quiet_publishes_per_s": (
            round(statistics.median(quiet), 1)
            if (
                quiet := [r["publishes_per_s"] for r in runs if r["other_cores"] <= OTHER_LOAD_FLAG]
            )
            else None
        ),
    }


# -- pub/sub capabilities -----------------------------------------------------------------


@dataclass
class Heard:
    """What a subscriber received: messages (channel, data) and subscription pushes."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    pushes: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # raised to the reader (it goes on)

    def add(self, kind: str, channel: Any, data: Any) -> None:
        ch = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind in ("message", "smessage"):
            self.messages.append((ch, data if isinstance(data, bytes) else str(data).encode()))
        else:
            self.pushes.append((kind, ch))

    def got(self, channel: str, data: bytes) -> bool:
        return (channel, data) in self.messages


@dataclass
class Subscriber:
    """A client's subscription handle: ``subscribe`` one channel, ``refresh`` makes the
    client run a keyed command (so it can meet MOVED), ``heard`` what arrived."""

    subscribe: Callable[[str], Awaitable[None]]
    refresh: Callable[[str], Awaitable[None]]
    heard: Heard


async def until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> float | None:
    """Seconds until ``check()`` held, None if not within ``timeout_s``."""
    t0 = time.monotonic()
    while True:
        if check():
            return round(time.monotonic() - t0, 3)
        if time.monotonic() - t0 >= timeout_s:
            return None
        await asyncio.sleep(every_s)


async def keep_publishing(
    port_of: Callable[[], int],
    channel: str,
    data: bytes,
    heard: Heard,
    timeout_s: float,
    sharded: bool = True,
) -> float | None:
    """Publish ``data`` on ``channel`` (on the node ``port_of()`` names) every 0.1 s until
    the subscriber has it; seconds it took, None if not within ``timeout_s``."""
    t0 = time.monotonic()
    command = "SPUBLISH" if sharded else "PUBLISH"
    while time.monotonic() - t0 < timeout_s:
        with contextlib.suppress(OSError, RuntimeError):
            await asyncio.to_thread(resp, port_of(), command, channel, data.decode())
        if await until(lambda: heard.got(channel, data), 0.1, 0.01) is not None:
            return round(time.monotonic() - t0, 3)
    return None


@contextlib.asynccontextmanager
async def redis_py_sharded(seed_port: int) -> AsyncIterator[Subscriber]:
    import redis.asyncio as aredis

    client = aredis.RedisCluster(host=HOST, port=seed_port)
    await client.initialize()
    pubsub = client.pubsub()
    heard = Heard()

    async def read() -> None:
        while True:
            try:
                msg = await pubsub.get_sharded_message(timeout=0.05)
            except Exception as exc:
                heard.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            if msg is not None:
                heard.add(str(msg["type"]), msg["channel"], msg["data"])
            else:
                await asyncio.sleep(0)

    async def subscribe(channel: str) -> None:
        await pubsub.ssubscribe(channel)

    async def refresh(key: str) -> None:
        await client.get(key)

    reader = asyncio.create_task(read())
    try:
        yield Subscriber(subscribe, refresh, heard)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def coredis_sharded(seed_port: int) -> AsyncIterator[Subscriber]:
    import coredis

    client = coredis.RedisCluster(host=HOST, port=seed_port)
    heard = Heard()
    async with client, client.sharded_pubsub() as pubsub:

        async def read() -> None:
            while True:
                try:
                    msg = await pubsub.get_message(timeout=0.05)
                except Exception as exc:
                    heard.errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)
                    continue
                if msg is not None:
                    heard.add(str(msg["type"]), msg["channel"], msg["data"])

        async def subscribe(channel: str) -> None:
            await pubsub.subscribe(channel)

        async def refresh(key: str) -> None:
            await client.get(key)

        reader = asyncio.create_task(read())
        try:
            yield Subscriber(subscribe, refresh, heard)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def room_on(master: int, cluster: Cluster, prefix: str, taken: set[int]) -> str:
    """A room name whose slot is on ``master`` and not in ``taken``."""
    lo, hi = cluster.ranges[master]
    for i in range(100_000):
        room = f"{prefix}{i}"
        slot = key_slot(RoomKeys.of("fanout", room).channel)
        if lo <= slot <= hi and slot not in taken:
            taken.add(slot)
            return room
    raise LookupError("no room found")


async def attempt(what: Awaitable[None], timeout_s: float) -> str:
    """'ok', or what went wrong."""
    try:
        async with asyncio.timeout(timeout_s):
            await what
        return "ok"
    except TimeoutError as exc:
        return describe(exc) if str(exc) else f"TimeoutError: no answer within {timeout_s} s"
    except Exception as exc:
        return describe(exc)


async def sharded_checks(
    name: str,
    opener: Callable[[int], AbstractAsyncContextManager[Subscriber]],
    cluster: Cluster,
    wait_s: float,
) -> dict[str, Any]:
    """Sharded pub/sub through one client on the cluster, and through a slot migration.

    Messages are published with SPUBLISH sent straight to the node that owns the slot
    (never through the client under test, so its slot map learns nothing from them).
    """
    flushall(cluster.ports)
    taken: set[int] = set()
    rooms = [room_on(m, cluster, f"{name}-cap-", taken) for m in range(len(cluster.ports))]
    channels = [RoomKeys.of("fanout", r).channel for r in rooms]
    moving = key_slot(channels[0])
    src, dst = cluster.owner(moving), 1
    # More channels in the slot that moves: one subscribed while the slot is MIGRATING
    # (ASK territory), one after it moved (the client's slot map is then stale: MOVED).
    during = f"fanout:{{{rooms[0]}}}:during"
    after = f"fanout:{{{rooms[0]}}}:after"
    found: dict[str, Any] = {"channels": channels, "moved_slot": moving}

    def port_of(channel: str) -> Callable[[], int]:
        return lambda: cluster.ports[cluster.owner(key_slot(channel))]

    try:
        async with opener(cluster.ports[0]) as sub:
            heard = sub.heard
            subscribed = [await attempt(sub.subscribe(ch), wait_s) for ch in channels]
            found["ssubscribe_each_master"] = subscribed
            delivered = [
                await keep_publishing(port_of(ch), ch, b"before", heard, wait_s) for ch in channels
            ]
            found["delivered_from_each_master_s"] = delivered
            found["sharded_pubsub_across_masters"] = all(s == "ok" for s in subscribed) and all(
                d is not None for d in delivered
            )

            # The slot of channels[0] leaves master src for master dst.
            cluster.move_slot(moving, src, dst, finish=False)
            found["ssubscribe_while_migrating"] = await attempt(sub.subscribe(during), wait_s)
            found["while_migrating_held_by"] = {
                str(cluster.ports[i]): ok(cluster.ports[i], "PUBSUB", "SHARDNUMSUB", during)[1]
                for i in (src, dst)
            }
            cluster.finish_move(moving, dst)
            await asyncio.sleep(0.3)
            found["server_pushes_after_move"] = [
                f"{kind} {ch}" for kind, ch in heard.pushes if kind == "sunsubscribe"
            ]
            found["resubscribed_by_itself_s"] = await keep_publishing(
                port_of(channels[0]), channels[0], b"moved", heard, wait_s
            )
            found["ssubscribe_stale_map"] = await attempt(sub.subscribe(after), wait_s)
            found["stale_map_delivered_s"] = await keep_publishing(
                port_of(after), after, b"after", heard, wait_s
            )
            # A keyed command through the same client meets MOVED and refreshes its map.
            found["keyed_command_after_move"] = await attempt(
                sub.refresh(RoomKeys.of("fanout", rooms[0]).meta), wait_s
            )
            found["resubscribed_after_refresh_s"] = await keep_publishing(
                port_of(channels[0]), channels[0], b"refreshed", heard, wait_s
            )
            still = [
                await keep_publishing(port_of(ch), ch, b"still", heard, wait_s)
                for ch in channels[1:]
            ]
            found["other_masters_still_delivered"] = all(t is not None for t in still)
            found["errors_raised_to_reader"] = heard.errors[:3]
    except ImportError as exc:
        found["error"] = f"not installed: {exc}"
    except Exception as exc:
        found["error"] = describe(exc)
    finally:
        # Give the slot back, so the next client starts from the same layout.
        with contextlib.suppress(Exception):
            if cluster.owner(moving) != src:
                cluster.move_slot(moving, cluster.owner(moving), src)
            await asyncio.sleep(0.2)
    return found


@contextlib.asynccontextmanager
async def redis_py_sentinel(sentinel_port: int) -> AsyncIterator[Subscriber]:
    from redis.asyncio.sentinel import Sentinel

    sentinel = Sentinel([(HOST, sentinel_port)])
    master = sentinel.master_for("fanout")
    pubsub = master.pubsub()
    heard = Heard()

    async def read() -> None:
        while True:
            if pubsub.connection is None:  # nothing subscribed yet
                await asyncio.sleep(0.05)
                continue
            try:
                msg = await pubsub.get_message(timeout=0.05)
            except Exception as exc:
                heard.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            if msg is not None:
                heard.add(str(msg["type"]), msg["channel"], msg["data"])

    async def subscribe(channel: str) -> None:
        await pubsub.subscribe(channel)

    async def refresh(key: str) -> None:
        await master.get(key)

    reader = asyncio.create_task(read())
    try:
        yield Subscriber(subscribe, refresh, heard)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        await master.aclose()


@contextlib.asynccontextmanager
async def coredis_sentinel(sentinel_port: int) -> AsyncIterator[Subscriber]:
    import coredis
    from coredis.connection import TCPLocation

    sentinel = coredis.Sentinel(sentinels=[TCPLocation(HOST, sentinel_port)])
    heard = Heard()
    async with sentinel:
        master = sentinel.primary_for("fanout")
        async with master, master.pubsub() as pubsub:

            async def read() -> None:
                while True:
                    try:
                        msg = await pubsub.get_message(timeout=0.05)
                    except Exception as exc:
                        heard.errors.append(f"{type(exc).__name__}: {exc}")
                        await asyncio.sleep(0.05)
                        continue
                    if msg is not None:
                        heard.add(str(msg["type"]), msg["channel"], msg["data"])

            async def subscribe(channel: str) -> None:
                await pubsub.subscribe(channel)

            async def refresh(key: str) -> None:
                await master.get(key)

            reader = asyncio.create_task(read())
            try:
                yield Subscriber(subscribe, refresh, heard)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader


async def sentinel_checks(directory: Path, wait_s: float, failover: bool) -> dict[str, Any]:
    """Pub/sub through each client's asyncio Sentinel support (``master_for`` /
    ``primary_for``), then (``failover``) across ``SENTINEL FAILOVER``: the replica is
    promoted at once, but the old master keeps its subscribers until Sentinel turns it
    into a replica (and kills its clients), so delivery is timed from then."""
    openers: dict[str, Callable[[int], AbstractAsyncContextManager[Subscriber]]] = {
        "redis-py": redis_py_sentinel,
        "coredis": coredis_sentinel,
    }
    found: dict[str, Any] = {name: {} for name in openers}
    with sentinel_pair(directory) as (master, replica, sentinel):
        channel = "fanout:{sentinel}:ch"
        current = [master.port]
        async with contextlib.AsyncExitStack() as stack:
            subs: dict[str, Subscriber] = {}
            for name, opener in openers.items():
                try:
                    sub = await stack.enter_async_context(opener(sentinel))
                    found[name]["subscribe"] = await attempt(sub.subscribe(channel), wait_s)
                    found[name]["delivered_s"] = await keep_publishing(
                        lambda: current[0], channel, b"before", sub.heard, wait_s, False
                    )
                    subs[name] = sub
                except Exception as exc:
                    found[name]["error"] = describe(exc)
            if not failover:
                return found
            t0 = time.monotonic()
            ok(sentinel, "SENTINEL", "FAILOVER", "fanout")

            def promoted() -> bool:
                addr = ok(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fanout")
                return int(addr[1]) == replica.port and b"role:master" in ok(
                    replica.port, "INFO", "replication"
                )

            def demoted() -> bool:
                return b"role:slave" in ok(master.port, "INFO", "replication")

            await asyncio.to_thread(wait_until, promoted, 20, what="the replica promoted")
            found["promoted_s"] = round(time.monotonic() - t0, 3)
            await asyncio.to_thread(wait_until, demoted, 30, what="the old master demoted")
            found["old_master_demoted_s"] = round(time.monotonic() - t0, 3)
            current[0] = replica.port
            for name, sub in subs.items():
                found[name]["delivered_after_failover_s"] = await keep_publishing(
                    lambda: current[0], channel, b"after", sub.heard, max(wait_s, 5.0), False
                )
                found[name]["errors_raised_to_reader"] = sub.heard.errors[:3]
                found[name]["subscribe_confirmations"] = sum(
                    1 for kind, _ in sub.heard.pushes if kind == "subscribe"
                )
    return found


# -- the run ------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    found = dict(versions())
    for name in CLIENT_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


async def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    settings = fanout.Settings()
    rooms = [f"room-{i}" for i in range(ROOMS)]
    rounds, warmup_s, duration_s = args.rounds, args.warmup, args.duration
    wait_s = 1.5 if args.quick else 3.0
    assert PUBLISH.text == scripts.PUBLISH  # the script the clients run is fanout's own
    measured: dict[str, Any] = {}

    (directory / "single").mkdir()
    with redis_server(directory / "single") as single:
        pin(single.pid, REDIS_CPU)
        _PIDS[single.port] = single.pid
        url = f"redis://{HOST}:{single.port}/0"
        config = emitter_config(url, settings)
        contenders = [
            Contender("fanout link, 1 node", "fanout.Emitter", "1 node",
                      fanout_emitter(url, settings), [single.port]),
            Contender("redis-py, 1 node", "redis.asyncio.Redis", "1 node",
                      redis_py(config, single.port, cluster=False), [single.port]),
            Contender("coredis, 1 node", "coredis.Redis", "1 node",
                      coredis_client(config, single.port, cluster=False), [single.port]),
        ]  # fmt: skip
        print(f"one redis-server on port {single.port}:", flush=True)
        measured["single"] = await measure(
            contenders, rounds, rooms, args.concurrency, warmup_s, duration_s, args.run_quiet_wait
        )

    with redis_cluster(directory / "cluster") as cluster:
        for port, proc in zip(cluster.ports, cluster.procs, strict=True):
            _PIDS[port] = proc.pid
        seed = cluster.ports[0]
        config = emitter_config(cluster.seed_url, settings)
        spread = [0] * len(cluster.ports)
        for room in rooms:
            spread[cluster.owner(key_slot(RoomKeys.of("fanout", room).meta))] += 1
        taken: set[int] = set()
        probes = [room_on(m, cluster, "probe-", taken) for m in range(len(cluster.ports))]
        contenders = [
            Contender("fanout link, cluster", "fanout.Emitter (seed node)", "3-master cluster",
                      cluster_emitter(cluster.seed_url, settings, probes), cluster.ports),
            Contender("redis-py, cluster", "redis.asyncio.RedisCluster", "3-master cluster",
                      redis_py(config, seed, cluster=True), cluster.ports),
            Contender("coredis, cluster", "coredis.RedisCluster", "3-master cluster",
                      coredis_client(config, seed, cluster=True), cluster.ports),
        ]  # fmt: skip
        print(f"3-master cluster on ports {cluster.ports} (rooms per master: {spread}):")
        measured["cluster"] = await measure(
            contenders, rounds, rooms, args.concurrency, warmup_s, duration_s, args.run_quiet_wait
        )
        measured["cluster_rooms_per_master"] = spread
        print("sharded pub/sub on the cluster:", flush=True)
        sharded: dict[str, Any] = {}
        for name, opener in (("redis-py", redis_py_sharded), ("coredis", coredis_sharded)):
            sharded[name] = await sharded_checks(name, opener, cluster, wait_s)
            print(f"  {name}: {json.dumps(sharded[name])}", flush=True)
        measured["sharded_pubsub"] = sharded

    if args.skip_sentinel:
        measured["sentinel"] = {"skipped": True}
    else:
        print("pub/sub through Sentinel, across a failover:", flush=True)
        for attempt_no in (1, 2):  # once more if the set-up failed (a loaded machine)
            try:
                measured["sentinel"] = await sentinel_checks(
                    directory / f"sentinel-{attempt_no}", wait_s, failover=not args.quick
                )
                break
            except Exception as exc:
                measured["sentinel"] = {"error": describe(exc), "attempts": attempt_no}
                print(f"  attempt {attempt_no} failed: {describe(exc)}", flush=True)
        print(f"  {json.dumps(measured['sentinel'])}", flush=True)
    return measured


# -- reporting ----------------------------------------------------------------------------


def table(measured: dict[str, Any]) -> list[str]:
    lines = [
        "| client | topology | publishes/s (median, range) | p50 ms | p99 ms"
        " | client CPU µs/publish | Redis CPU µs/publish | Redis connections | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for group in ("single", "cluster"):
        for row in measured.get(group, {}).values():
            s = row["summary"]
            if not s:
                lines.append(
                    f"| {row['client']} | {row['topology']} | | | | | | | {row['status']} |"
                )
                continue
            rate = (
                f"**{s['publishes_per_s']:,.0f}**"
                f" ({s['publishes_per_s_min']:,.0f}-{s['publishes_per_s_max']:,.0f})"
            )
            status = row["status"]
            if s["errors"]:
                status += f"; {s['errors']} errors"
            if s["disturbed_runs"]:
                quiet = s["quiet_publishes_per_s"]
                status += f"; {s['disturbed_runs']} of {len(row['runs'])} runs disturbed" + (
                    f" (undisturbed median {quiet:,.0f}/s)" if quiet else ""
                )
            lines.append(
                f"| {row['client']} | {row['topology']} | {rate} | {s['p50_ms']:.2f}"
                f" | {s['p99_ms']:.2f} | {s['client_cpu_us_per_publish']:.1f}"
                f" | {s['redis_cpu_us_per_publish']:.1f} | {s['redis_connections']:.0f}"
                f" | {status} |"
            )
    return lines


def yes(value: Any) -> str:
    if value is None:
        return "no"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"yes ({value:.2f} s)"
    return str(value)


def capability_lines(measured: dict[str, Any]) -> list[str]:
    lines = [
        "| check | redis-py | coredis |",
        "| --- | --- | --- |",
    ]
    sharded = measured.get("sharded_pubsub", {})
    rp, cd = sharded.get("redis-py", {}), sharded.get("coredis", {})
    checks = [
        ("SSUBSCRIBE on each master, SPUBLISH delivered", "sharded_pubsub_across_masters"),
        ("SSUBSCRIBE while the slot is MIGRATING", "ssubscribe_while_migrating"),
        ("`sunsubscribe` pushed by Redis when the slot moved", "server_pushes_after_move"),
        ("re-subscribed at the new owner by itself", "resubscribed_by_itself_s"),
        ("SSUBSCRIBE with a stale slot map (MOVED)", "ssubscribe_stale_map"),
        ("... and then delivered", "stale_map_delivered_s"),
        ("re-subscribed after a keyed command met MOVED", "resubscribed_after_refresh_s"),
        ("other masters' channels still delivered", "other_masters_still_delivered"),
    ]
    for label, key in checks:
        lines.append(f"| {label} | {_cell(rp, key)} | {_cell(cd, key)} |")
    for client, found in (("redis-py", rp), ("coredis", cd)):
        if "error" in found:
            lines.append(f"| error ({client}) | {found['error']} | |")
    sentinel = measured.get("sentinel", {})
    if sentinel.get("skipped"):
        lines.append("| Sentinel | skipped | skipped |")
    elif "error" in sentinel:
        lines.append(f"| Sentinel set-up | {sentinel['error']} | |")
    else:
        srp, scd = sentinel.get("redis-py", {}), sentinel.get("coredis", {})
        rows = [
            ("Sentinel (asyncio): SUBSCRIBE via `master_for` / `primary_for`, delivered",
             "delivered_s"),
            ("... delivered from the new master after SENTINEL FAILOVER",
             "delivered_after_failover_s"),
            ("... the drop raised to the reading code", "errors_raised_to_reader"),
            ("... `subscribe` confirmations the reader saw (2: it saw the re-subscribe)",
             "subscribe_confirmations"),
        ]  # fmt: skip
        for label, key in rows:
            lines.append(f"| {label} | {_cell(srp, key)} | {_cell(scd, key)} |")
        for client, found in (("redis-py", srp), ("coredis", scd)):
            if "error" in found:
                lines.append(f"| Sentinel error ({client}) | {found['error']} | |")
        if "promoted_s" in sentinel:
            lines.append(
                f"| (Sentinel promoted the replica after {sentinel['promoted_s']:.1f} s and"
                f" demoted the old master, killing its clients, after"
                f" {sentinel['old_master_demoted_s']:.1f} s) | | |"
            )
    return lines


def _cell(found: dict[str, Any], key: str) -> str:
    if key not in found:
        return "n/a" if "error" in found else "not run"
    value = found[key]
    if isinstance(value, list):
        return "; ".join(map(str, value)).replace("|", "/") if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return yes(value).replace("|", "/")


def section(report: dict[str, Any]) -> str:
    measured = report["measured"]
    head = report["settings"]
    lines = [
        f"## {SECTION_TITLE}",
        "",
        f"Generated by `bench/{NAME}.py` (`.venv/bin/python bench/{NAME}.py --help`);"
        " the decision is in `docs/redis-client-choice.md`.",
        "",
        *results_md.report_lines(
            report,
            f"this process pinned to CPU {BENCH_CPU}, every redis-server to CPU {REDIS_CPU}",
        ),
        f"- Clients: {', '.join(f'{k} {v}' for k, v in report['clients'].items())}",
        "",
        f"fanout's publish script (EVALSHA) from {head['concurrency']} concurrent publishers"
        f" (coroutines, back to back), {PAYLOAD_BYTES}-byte JSON payloads over {ROOMS} rooms,"
        f" {head['rounds']} interleaved rounds of {head['warmup_s']} s warm-up +"
        f" {head['duration_s']} s measured per client (median of rounds, range in"
        " brackets). Every client does the same work per publish (the hub's publish rules,"
        " keys and arguments from `fanout.brokers.redis.publish.publish`). CPU is user +"
        " system of this process and of the redis-server(s), per publish. On the cluster,"
        " rooms per master: "
        f"{measured.get('cluster_rooms_per_master')}. 'Redis connections': the client"
        " connections Redis held at the end of a run. A run is 'disturbed' when other"
        f" processes used more than {OTHER_LOAD_FLAG} cores during it (the machine is shared;"
        f" each run waited up to {head['run_quiet_wait_s']} s for them to leave the CPUs first);"
        f" {report['load']['other_cores']} cores on average over this whole run.",
        "",
        *table(measured),
        "",
        "### Pub/sub: sharded (3-master cluster) and Sentinel, tried live",
        "",
        "Messages published with SPUBLISH / PUBLISH straight to the node that owns the"
        " channel, never through the client under test. Times are seconds until the"
        " subscriber had the message; 'no' means not within the wait.",
        "",
        *capability_lines(measured),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes every figure as JSON (bench/out/redis_clients-<time>.json, or --json"
        " FILE) and the section 'Redis client choice' of --results. The decision it feeds:"
        " docs/redis-client-choice.md. To measure a fixed fanout while the checkout changes,"
        " run a copy of src with PYTHONPATH=COPY/src and a COMMIT file beside it.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (~20 s): one short round, no failover"
    )
    parser.add_argument("--rounds", type=int, help="rounds of every client (5; --quick 1)")
    parser.add_argument(
        "--duration", type=float, help="seconds measured per run (2.5; --quick 1.2)"
    )
    parser.add_argument(
        "--warmup", type=float, help="seconds of warm-up per run (0.5; --quick 0.3)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="concurrent publishers (default 64)"
    )
    parser.add_argument(
        "--json", type=Path, help="write the JSON report here instead of under --out"
    )
    parser.add_argument(
        "--out", type=Path, default=results_md.BENCH_DIR / "out", help="JSON reports' folder"
    )
    parser.add_argument(
        "--results",
        help="RESULTS.md whose section to write, '-' for none (default bench/RESULTS.md;"
        " with --quick none unless given)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="seconds to wait at most for other processes to leave the CPUs (20; --quick 0)",
    )
    parser.add_argument(
        "--run-quiet-wait",
        type=float,
        help="seconds to wait at most before each run for other processes to leave the"
        " CPUs (5; --quick 0)",
    )
    parser.add_argument(
        "--skip-sentinel", action="store_true", help="leave out the Sentinel checks"
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.duration = args.duration or (1.2 if args.quick else 2.5)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    if args.run_quiet_wait is None:
        args.run_quiet_wait = 0.0 if args.quick else 5.0
    if args.results is None:
        args.results = "-" if args.quick else str(results_md.BENCH_DIR / "RESULTS.md")

    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {BENCH_CPU})
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)
    other = results_md.OtherLoad(0.0 if args.quick else args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix="redis-clients-") as tmp:
        try:
            import uvloop

            runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = uvloop.run
        except ImportError:
            runner = asyncio.run
        measured = runner(run(args, Path(tmp)))

    path = args.json or args.out / f"{NAME}-{stamp:%Y%m%d-%H%M%S}.json"
    path = path.resolve()
    report: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", f"bench/{NAME}.py", *sys.argv[1:]]),
        "machine": machine(),
        "versions": package_versions(),
        "clients": {
            k: v for k, v in package_versions().items() if k in ("redis", "coredis", "hiredis")
        },
        "redis": redis_version(),
        "code": results_md.measured_code(),
        "event_loop": "uvloop" if "uvloop" in sys.modules else "asyncio",
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "run_quiet_wait_s": args.run_quiet_wait,
            "rooms": ROOMS,
            "payload_bytes": PAYLOAD_BYTES,
            "bench_cpu": BENCH_CPU,
            "redis_cpu": REDIS_CPU,
        },
        "json": results_md.shown_path(path),
        "load": other.figures(),
        "measured": measured,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print()
    results_md.publish_section(args.results, NAME, section(report))


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
