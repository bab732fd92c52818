"""Presence through Redis: 10,000 members in one room, kept by two nodes.

Two ``RedisPresence`` stores ("node A" and "node B", each with its own connection, as two
fanout processes have) share a ``redis-server`` this script starts on a free 127.0.0.1
port (never 6379, no persistence) and stops afterwards. Node A holds the even members,
node B the odd ones: 10,000 connections of 2,500 users, every tenth anonymous. Measured:

- join and leave throughput with each node keeping ``--window`` calls in flight on its
  connection (pipelined, as a node's many connections joining at once do), and the
  latency of one call at a time;
- ``stats`` and ``members`` latency (p50/p99 over repeated queries from both nodes), with
  the answer checked every time; ``stats`` also in a room of 10, to compare;
- one ``refresh`` round (each node writes all its 5,000 members again);
- Redis's own time per script call (``INFO commandstats``, ``evalsha``), per phase.

    .venv/bin/python bench/presence.py [--queries 500] [--window 100] [--results -]

Writes ``bench/out/presence-<time>.json`` and the section ``presence`` of
``bench/RESULTS.md``. About 15 seconds; every wait is bounded (2 minutes in all).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import results_md
from fanout.asgi.wiring import redis_broker_options
from fanout.brokers.redis.presence import REFRESH_BATCH, SWEEP_BATCH, RedisPresence
from fanout.core.presence import Member, PresenceLimits, PresenceStats
from fanout.lab.interrupt import run_interruptible
from fanout.settings import Settings
from nodes import commandstats, redis_command, redis_server, redis_version
from results_md import HOST, percentiles

T = TypeVar("T")
MEMBERS = 10_000
USERS = 2_500
ONE_AT_A_TIME = 1_000
TTL_S = 60.0  # longer than the run: nothing expires while it is measured
BUDGET_S = 110.0


def _member(i: int, node: str) -> Member:
    user = None if i % 10 == 0 else f"user-{i % USERS}"
    info = {"name": f"User {i % USERS}", "status": "here"}
    return Member(f"{node}-{i}", user, node, int(time.time() * 1000), info)


async def _timed(call: Awaitable[T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await call
    return time.perf_counter() - start, result


async def _windowed(
    call: Callable[[Member], Awaitable[None]], members: Sequence[Member], window: int
) -> None:
    """``call(m)`` for each of ``members``, with at most ``window`` calls in flight."""
    pending = iter(members)

    async def worker() -> None:
        for m in pending:
            await call(m)

    await asyncio.gather(*(worker() for _ in range(min(window, len(members)))))


class Bench:
    def __init__(self, port: int, window: int, queries: int) -> None:
        url = f"redis://{HOST}:{port}/0"
        options = redis_broker_options(Settings(redis_timeout_s=10.0), url)
        limits = PresenceLimits(ttl_s=TTL_S)
        self.port = port
        self.window = window
        self.queries = queries
        self.nodes = {"a": RedisPresence(options, limits), "b": RedisPresence(options, limits)}
        self.everyone = {
            name: [_member(i, name) for i in range(parity, MEMBERS, 2)]
            for parity, name in enumerate(self.nodes)
        }
        everyone = [m for members in self.everyone.values() for m in members]
        users = len({m.user for m in everyone if m.user is not None})
        self.full = PresenceStats(len(everyone), users)
        self.phases: dict[str, dict[str, Any]] = {}

    def _redis_reset(self) -> None:
        redis_command(self.port, "CONFIG", "RESETSTAT")

    def _record(self, phase: str, figures: dict[str, Any], calls: int | None = None) -> None:
        stats = commandstats(self.port)
        script = stats.get("evalsha", {})
        figures["redis_us_per_script"] = script.get("usec_per_call")
        if "hgetall" in stats:  # members: the roster, read outside the script
            figures["redis_us_per_hgetall"] = stats["hgetall"]["usec_per_call"]
        figures["redis_scripts"] = int(script.get("calls", 0))
        if calls is not None:
            assert figures["redis_scripts"] == calls, (phase, figures)
        self.phases[phase] = figures
        print(f"{phase:<28} {figures}", flush=True)

    async def run(self) -> None:
        for node in self.nodes.values():
            await node.start()
        try:
            await self._small_room()
            await self._join_all()
            await self._queries()
            await self._refresh()
            await self._one_at_a_time()
            await self._leave_all()
        finally:
            for node in self.nodes.values():
                await node.close()

    async def _small_room(self) -> None:
        a = self.nodes["a"]
        for i in range(10):
            await a.join("small", _member(i, "a"))
        self._redis_reset()
        samples = []
        for _ in range(self.queries):
            took, stats = await _timed(a.stats("small"))
            assert stats == PresenceStats(10, 9), stats
            samples.append(took)
        self._record("stats, room of 10", percentiles(samples), self.queries)

    async def _join_all(self) -> None:
        self._redis_reset()
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _windowed(functools.partial(node.join, "big"), self.everyone[name], self.window)
                for name, node in self.nodes.items()
            )
        )
        took = time.perf_counter() - start
        assert await self.nodes["b"].stats("big") == self.full
        figures = {"calls": MEMBERS, "seconds": round(took, 3), "per_s": round(MEMBERS / took)}
        self._record("join, pipelined", figures, MEMBERS + 1)

    async def _queries(self) -> None:
        nodes = list(self.nodes.values())
        self._redis_reset()
        samples = []
        for i in range(self.queries):
            took, stats = await _timed(nodes[i % 2].stats("big"))
            assert stats == self.full, stats
            samples.append(took)
        self._record("stats, room of 10,000", percentiles(samples), self.queries)
        self._redis_reset()
        samples = []
        rounds = max(5, self.queries // 25)
        for i in range(rounds):
            took, members = await _timed(nodes[i % 2].members("big"))
            assert len(members) == MEMBERS, len(members)
            samples.append(took)
        self._record("members, room of 10,000", percentiles(samples), rounds)

    async def _refresh(self) -> None:
        self._redis_reset()
        samples = []
        for _ in range(5):
            rounds = [node.refresh({"big": self.everyone[n]}) for n, node in self.nodes.items()]
            took, _ = await _timed(asyncio.gather(*rounds))
            samples.append(took)
        assert await self.nodes["a"].stats("big") == self.full
        self._record("refresh, both nodes", percentiles(samples))

    async def _one_at_a_time(self) -> None:
        a = self.nodes["a"]
        extra = [_member(MEMBERS + i, "a") for i in range(ONE_AT_A_TIME)]

        async def leave(m: Member) -> None:
            await a.leave("big", m.conn)

        for phase, action in (
            ("join, one at a time", functools.partial(a.join, "big")),
            ("leave, one at a time", leave),
        ):
            self._redis_reset()
            samples = []
            start = time.perf_counter()
            for m in extra:
                took, _ = await _timed(action(m))
                samples.append(took)
            figures = percentiles(samples)
            figures["per_s"] = round(ONE_AT_A_TIME / (time.perf_counter() - start))
            self._record(f"{phase} (10,000 in the room)", figures, ONE_AT_A_TIME)
        assert await a.stats("big") == self.full

    async def _leave_all(self) -> None:
        self._redis_reset()
        start = time.perf_counter()

        def leave(node: RedisPresence) -> Callable[[Member], Awaitable[None]]:
            return lambda m: node.leave("big", m.conn)

        await asyncio.gather(
            *(
                _windowed(leave(node), self.everyone[name], self.window)
                for name, node in self.nodes.items()
            )
        )
        took = time.perf_counter() - start
        assert await self.nodes["a"].stats("big") == PresenceStats(0, 0)
        figures = {"calls": MEMBERS, "seconds": round(took, 3), "per_s": round(MEMBERS / took)}
        self._record("leave, pipelined", figures, MEMBERS + 1)


def section(report: dict[str, Any]) -> str:
    p = report["phases"]
    shares = (
        "this script (both nodes, one event loop) and Redis share the cores; other processes"
        f" used {report['other_cores']:.2f} cores during the run"
    )
    lines = [
        "## Presence in Redis: 10,000 members in one room, two nodes",
        "",
        "Generated by `bench/presence.py`: two `RedisPresence` stores (node A, node B, each"
        " with its own connection, as two fanout processes) on one `redis-server` started on"
        f" a free loopback port. One room of {MEMBERS:,} connections ({report['users']:,}"
        " distinct users, every tenth connection anonymous), the even ones on node A, the"
        " odd ones on node B. Every answer is checked (counts exact, every member listed).",
        "",
        *results_md.report_lines(report, shares),
        "",
        "| operation | calls | p50 ms | p99 ms | max ms | calls/s | Redis µs per call |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, f in p.items():
        calls = f.get("n", f.get("calls", ""))
        cells = [
            name,
            f"{calls:,}" if isinstance(calls, int) else "",
            *(f"{f[k]:.2f}" if k in f else "" for k in ("p50_ms", "p99_ms", "max_ms")),
            f"{f['per_s']:,}" if "per_s" in f else "",
            f"{f['redis_us_per_script']:.1f}" if f.get("redis_us_per_script") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- *pipelined*: each node keeps"
        f" {report['window']} calls in flight on its one connection (both nodes at once);"
        " *calls/s* is all calls over the time until the last answer. *one at a time*:"
        " node A waits for each answer before the next call, so the latency is a round"
        " trip through asyncio, the socket and the script.",
        "- *refresh, both nodes*: one round of both nodes writing all their members again"
        f" (5,000 each, in script calls of {REFRESH_BATCH}, pipelined), both at once; its"
        f" row's Redis time is per script call of {REFRESH_BATCH} members.",
        "- *Redis µs per call*: Redis's own time per `EVALSHA` over the phase (`INFO"
        " commandstats`, reset before each phase), the commands the script runs included.",
        f"- `stats` in the room of 10 and in the room of {MEMBERS:,} cost Redis the same:"
        f" it counts with two `ZCOUNT`s after sweeping at most {SWEEP_BATCH} expired"
        " entries, and join and leave are O(log n); only `members` reads the roster (a"
        " sweep script, then `HGETALL` and the expired entries still to sweep: two round"
        " trips; its Redis time is the script's, `HGETALL` is"
        f" {p['members, room of 10,000']['redis_us_per_hgetall']:,.0f} µs more), and the"
        f" node decodes {MEMBERS:,} members' JSON.",
    ]
    return "\n".join(lines)


async def _main(args: argparse.Namespace, port: int) -> dict[str, Any]:
    bench = Bench(port, args.window, args.queries)
    load = results_md.OtherLoad(args.quiet_wait)
    async with asyncio.timeout(BUDGET_S):
        await bench.run()
    return {"phases": bench.phases, "users": bench.full.users, **load.figures()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--queries", type=int, default=500, help="stats queries per room")
    parser.add_argument("--window", type=int, default=100, help="calls in flight per node")
    results_md.add_run_arguments(parser, 30.0, "first")
    args = parser.parse_args(argv)
    stamp = dt.datetime.now(dt.UTC)
    with (
        tempfile.TemporaryDirectory(prefix="fanout-presence-") as tmp,
        redis_server(Path(tmp)) as redis,
    ):
        measured = asyncio.run(_main(args, redis.port))
    head = {
        "redis": redis_version(),
        "code": results_md.measured_code(),
        "window": args.window,
        "queries": args.queries,
    }
    report = results_md.write_report("presence", stamp, args.out, head, measured)
    results_md.publish_section(args.results, "presence", section(report))
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
