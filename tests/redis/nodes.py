"""Several real ``fanout serve`` nodes sharing one real Redis, for the multi-node tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from fanout.brokers.redis.layout import RoomKeys
from tests.support.balancer import Backend
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess, start_hub_process, stop_process

# Retention far above what any test publishes: a resume never runs out of history.
NODE_ARGS = ("--log-level", "warning", "--history-max-messages", "20000")


@contextlib.asynccontextmanager
async def redis_nodes(
    redis: RedisServer | str, tmp_path: Path, count: int = 2, args: Sequence[str] = ()
) -> AsyncIterator[list[HubProcess]]:
    """``count`` ``fanout serve --broker <redis>`` processes (``redis``: a server, or
    any broker URL: a cluster's, Sentinels'), started side by side and healthy; stopped
    (SIGTERM, then SIGKILL) at the end, whatever the test did to them. Their logs are
    printed at the end, so a failing test shows them."""
    url = redis if isinstance(redis, str) else redis.url
    cmd = ["--broker", url, *NODE_ARGS, *args]
    results = await asyncio.gather(
        *(
            asyncio.to_thread(start_hub_process, cmd, tmp_path / f"node-{i}.log")
            for i in range(count)
        ),
        return_exceptions=True,
    )
    nodes = [r for r in results if isinstance(r, HubProcess)]
    try:
        for result in results:
            if isinstance(result, BaseException):
                raise result
        yield nodes
    finally:
        if not isinstance(redis, str) and redis.running:
            redis.resume()  # a node must not stop against a paused Redis
        await asyncio.gather(*(asyncio.to_thread(stop_process, n.proc) for n in nodes))
        for i, node in enumerate(nodes):
            print(f"--- node {i} ({node.url}, exit {node.proc.returncode}) ---\n{node.log()}")


def backend(node: HubProcess) -> Backend:
    """The node's address, as the balancer takes it."""
    return ("127.0.0.1", int(node.url.rsplit(":", 1)[1]))


async def metrics(node: HubProcess) -> dict[str, float]:
    """The node's /metrics as {name: value}."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(node.url + "/metrics")).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def room_channel(room: str, prefix: str = "fanout") -> str:
    """The Redis pub/sub channel of ``room`` (see fanout.brokers.redis.layout)."""
    return RoomKeys.of(prefix, room).channel


def parse_resp(raw: bytes) -> Any:
    """A RESP2 reply (as RedisServer.command returns it) as Python values:
    simple strings and bulk strings as str, integers as int, arrays as lists."""
    value, rest = _parse(raw)
    if rest:
        raise ValueError(f"trailing bytes after the reply: {rest!r}")
    return value


def _parse(raw: bytes) -> tuple[Any, bytes]:
    line, rest = raw.split(b"\r\n", 1)
    kind, body = line[:1], line[1:]
    if kind == b"+":
        return body.decode(), rest
    if kind == b"-":
        raise RuntimeError(f"redis error: {body.decode()}")
    if kind == b":":
        return int(body), rest
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None, rest
        return rest[:size].decode(), rest[size + 2 :]
    if kind == b"*":
        items: list[Any] = []
        for _ in range(max(int(body), 0)):
            item, rest = _parse(rest)
            items.append(item)
        return items, rest
    raise ValueError(f"unsupported RESP reply: {line!r}")


def subscribed_channels(redis: RedisServer) -> set[str]:
    """Every pub/sub channel some connection is subscribed to (``PUBSUB CHANNELS``)."""
    channels: list[str] = parse_resp(redis.command("PUBSUB", "CHANNELS"))
    return set(channels)


def subscriber_count(redis: RedisServer, room: str) -> int:
    """How many connections (one per node) are subscribed to ``room``'s channel."""
    reply: list[Any] = parse_resp(redis.command("PUBSUB", "NUMSUB", room_channel(room)))
    count: int = reply[1]
    return count


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def offsets_problem(offsets: Sequence[int], last: int) -> str:
    """What is wrong with ``offsets`` compared with 1..``last`` in order, for a failure."""
    counts = Counter(offsets)
    missing = [o for o in range(1, last + 1) if o not in counts]
    repeated = sorted(o for o, n in counts.items() if n > 1)
    backwards = [b for a, b in itertools.pairwise(offsets) if b <= a]
    return (
        f"{len(offsets)} offsets; missing {missing[:20]} ({len(missing)}),"
        f" repeated {repeated[:20]}, going backwards at {backwards[:20]}"
    )
