"""What the Redis presence store promises beyond the contract: its cost per call does not
grow with the room, a dead node's entries are swept in bounded batches, and a room's
keys expire by themselves."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable

import pytest

from fanout.brokers.redis.layout import PresenceKeys
from fanout.brokers.redis.presence import SWEEP_BATCH, RedisPresence
from fanout.core.presence import Member, PresenceLimits, PresenceStats
from tests.brokers.conftest import redis_options
from tests.support.presence import command_calls, member, reply_int, until
from tests.support.redis import RedisServer

_prefixes = itertools.count(1)
# Commands that read a whole hash or sorted set: join, leave and stats must not use them.
# (ZRANGE is the sweep's, with LIMIT; HMGET reads the fields of the members written.)
ROSTER_READS = {"hgetall", "hvals", "hkeys", "hscan", "zscan", "zrangebyscore", "zcard"}


@pytest.fixture
def prefix() -> str:
    return f"rp{next(_prefixes)}"


@pytest.fixture
async def store(shared_redis: RedisServer, prefix: str) -> AsyncIterator[RedisPresence]:
    presence = RedisPresence(
        redis_options(shared_redis.url, key_prefix=prefix), PresenceLimits(ttl_s=30)
    )
    await presence.start()
    try:
        yield presence
    finally:
        await presence.close()


async def _fill(store: RedisPresence, room: str, n: int) -> None:
    everyone = [member(f"{room}-{i}", f"u{i % (n // 2 or 1)}") for i in range(n)]
    for start in range(0, n, 1000):
        await store.refresh({room: everyone[start : start + 1000]})


async def _calls_of(redis: RedisServer, work: Awaitable[None]) -> dict[str, int]:
    """The commands Redis ran (scripts' included) while ``work`` ran."""
    redis.command("CONFIG", "RESETSTAT")
    await work
    return command_calls(redis)


def _hlen(redis: RedisServer, key: str) -> int:
    return reply_int(redis.command("HLEN", key))


def _redis_now_ms(redis: RedisServer) -> int:
    _, _, seconds, _, micros, _ = redis.command("TIME").split(b"\r\n")
    return int(seconds) * 1000 + int(micros) // 1000


def _score(redis: RedisServer, key: str, member: str) -> float:
    return float(redis.command("ZSCORE", key, member).split(b"\r\n")[1])


def _conns(members: list[Member]) -> list[str]:
    return sorted(m.conn for m in members)


async def test_join_leave_and_stats_run_the_same_commands_in_a_room_of_ten_thousand(
    store: RedisPresence, shared_redis: RedisServer
) -> None:
    await _fill(store, "small", 10)
    await _fill(store, "big", 10_000)
    assert await store.stats("big") == PresenceStats(10_000, 5_000)

    async def ops(room: str) -> None:
        for i in range(20):
            await store.join(room, member(f"new-{i}", f"new-user-{i}"))
        for _ in range(20):
            await store.stats(room)
        for i in range(20):
            await store.leave(room, f"new-{i}")

    small = await _calls_of(shared_redis, ops("small"))
    big = await _calls_of(shared_redis, ops("big"))
    print(f"\ncommands for 20 joins, stats and leaves: {big}")
    assert small == big
    assert not ROSTER_READS & set(big), big
    assert big["evalsha"] == 60


async def test_a_dead_nodes_entries_leave_the_counts_at_once_and_redis_in_bounded_batches(
    shared_redis: RedisServer, prefix: str
) -> None:
    dead_node = RedisPresence(
        redis_options(shared_redis.url, key_prefix=prefix), PresenceLimits(ttl_s=0.2)
    )
    survivor = RedisPresence(
        redis_options(shared_redis.url, key_prefix=prefix), PresenceLimits(ttl_s=30)
    )
    await dead_node.start()
    await survivor.start()
    keys = PresenceKeys.of(prefix, "r")
    n = 2 * SWEEP_BATCH + 50
    try:
        await dead_node.refresh({"r": [member(f"d{i}", f"u{i}") for i in range(n)]})
        await survivor.join("r", member("s1", "u0"))  # shares a user with the dead node
        latest = _score(shared_redis, keys.exp, f"d{n - 1}")

        async def dead_expired() -> bool:  # asked of Redis without sweeping anything
            return _redis_now_ms(shared_redis) > latest

        await until(dead_expired, what="the dead node's entries past their expiry")
        assert _hlen(shared_redis, keys.conns) == n + 1
        shared_redis.command("CONFIG", "RESETSTAT")
        assert await survivor.stats("r") == PresenceStats(1, 1)
        assert command_calls(shared_redis)["hdel"] <= 2 * SWEEP_BATCH  # conns and users
        assert _hlen(shared_redis, keys.conns) == n + 1 - SWEEP_BATCH
        assert _conns(await survivor.members("r")) == ["s1"]
        await survivor.stats("r")
        assert _hlen(shared_redis, keys.conns) == 1
        assert _hlen(shared_redis, keys.users) == 1
    finally:
        await dead_node.close()
        await survivor.close()


async def test_a_rooms_presence_keys_expire_with_its_last_write(
    shared_redis: RedisServer, prefix: str
) -> None:
    store = RedisPresence(
        redis_options(shared_redis.url, key_prefix=prefix), PresenceLimits(ttl_s=0.5)
    )
    await store.start()
    keys = PresenceKeys.of(prefix, "r").all()
    try:
        await store.join("r", member("c1", "alice"))
        for key in keys:
            assert 0 < reply_int(shared_redis.command("PTTL", key)) <= 500, key

        async def gone() -> bool:
            return reply_int(shared_redis.command("EXISTS", *keys)) == 0

        await until(gone, what="the room's presence keys expired")
        assert await store.stats("r") == PresenceStats(0, 0)
    finally:
        await store.close()
