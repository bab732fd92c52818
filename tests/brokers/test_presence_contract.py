"""The Presence contract, held by the memory store and the Redis store alike."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fanout.brokers.memory_presence import MemoryPresence
from fanout.brokers.redis.presence import RedisPresence
from fanout.core.presence import Member, Presence, PresenceLimits, PresenceStats
from fanout.protocol.errors import BrokerTimeout, BrokerUnavailable
from tests.brokers.conftest import redis_options
from tests.support.presence import member, until
from tests.support.redis import RedisServer
from tests.support.servers import free_port

MakeStore = Callable[..., Awaitable[Presence]]
_prefixes = itertools.count(1)


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Started stores (closed after the test); with Redis, all of a test's stores share
    one key prefix, so several stores are several nodes of one hub."""
    made: list[Presence] = []
    prefix = f"p{next(_prefixes)}"

    async def make(ttl_s: float = 30.0) -> Presence:
        limits = PresenceLimits(ttl_s=ttl_s)
        store: Presence
        if request.param == "memory":
            store = MemoryPresence(limits)
        else:
            redis: RedisServer = request.getfixturevalue("shared_redis")
            store = RedisPresence(redis_options(redis.url, key_prefix=prefix), limits)
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


def _conns(members: list[Member]) -> list[str]:
    return sorted(m.conn for m in members)


async def test_a_joined_member_is_listed_with_its_public_fields(make_store: MakeStore) -> None:
    store = await make_store()
    alice = Member("n1-1", "alice", "n1", 1_700_000_000_000, {"name": "Alice", "tags": [1]})
    await store.join("r", alice)
    assert await store.members("r") == [alice]
    assert (await store.members("r"))[0].to_json() == {
        "user": "alice",
        "conn": "n1-1",
        "node": "n1",
        "joined_at": 1_700_000_000_000,
        "info": {"name": "Alice", "tags": [1]},
    }
    assert await store.stats("r") == PresenceStats(connections=1, users=1)


async def test_a_room_nobody_joined_is_empty(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.members("nobody") == []
    assert await store.stats("nobody") == PresenceStats(0, 0)


async def test_leave_removes_the_member_from_members_and_stats(make_store: MakeStore) -> None:
    store = await make_store()
    await store.join("r", member("c1", "alice"))
    await store.join("r", member("c2", "bob"))
    await store.leave("r", "c1")
    assert _conns(await store.members("r")) == ["c2"]
    assert await store.stats("r") == PresenceStats(1, 1)
    await store.leave("r", "c2")
    assert await store.members("r") == []
    assert await store.stats("r") == PresenceStats(0, 0)


async def test_a_user_on_two_connections_counts_once_until_both_left(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    await store.join("r", member("c1", "alice"))
    await store.join("r", member("c2", "alice", node="n2"))
    await store.join("r", member("c3", "bob"))
    assert await store.stats("r") == PresenceStats(connections=3, users=2)
    await store.leave("r", "c1")
    assert await store.stats("r") == PresenceStats(2, 2)
    await store.leave("r", "c2")
    assert await store.stats("r") == PresenceStats(1, 1)


async def test_anonymous_members_count_as_connections_only(make_store: MakeStore) -> None:
    store = await make_store()
    await store.join("r", member("c1"))
    await store.join("r", member("c2"))
    await store.join("r", member("c3", "alice"))
    assert await store.stats("r") == PresenceStats(connections=3, users=1)
    assert [m.user for m in await store.members("r") if m.conn == "c1"] == [None]
    await store.leave("r", "c1")
    assert await store.stats("r") == PresenceStats(2, 1)


async def test_leaving_an_unknown_connection_or_room_is_harmless(make_store: MakeStore) -> None:
    store = await make_store()
    await store.join("r", member("c1", "alice"))
    await store.leave("r", "nope")
    await store.leave("no-such-room", "c1")
    await store.leave("r", "c1")
    await store.leave("r", "c1")
    assert await store.stats("r") == PresenceStats(0, 0)
    await store.join("r", member("c1", "alice"))
    assert await store.stats("r") == PresenceStats(1, 1)


async def test_joining_again_replaces_the_entry_without_counting_it_twice(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    await store.join("r", member("c1", "alice", status="away"))
    await store.join("r", member("c1", "alice", status="here"))
    await store.join("r", member("c2", None))
    await store.join("r", member("c2", "bob"))  # the connection authenticated meanwhile
    assert await store.stats("r") == PresenceStats(2, 2)
    listed = {m.conn: m for m in await store.members("r")}
    assert listed["c1"].info == {"status": "here"}
    assert listed["c2"].user == "bob"
    await store.join("r", member("c2", "alice"))
    assert await store.stats("r") == PresenceStats(2, 1)


async def test_rooms_are_separate(make_store: MakeStore) -> None:
    store = await make_store()
    await store.join("a", member("c1", "alice"))
    await store.join("b", member("c1", "alice"))
    await store.join("b", member("c2", "bob"))
    await store.leave("a", "c1")
    assert await store.stats("a") == PresenceStats(0, 0)
    assert await store.stats("b") == PresenceStats(2, 2)


async def test_refresh_adds_members_it_is_given(make_store: MakeStore) -> None:
    store = await make_store()
    await store.refresh({"a": [member("c1", "alice"), member("c2")], "b": [member("c1", "alice")]})
    await store.refresh({"a": [member("c1", "alice"), member("c2")]})
    assert await store.stats("a") == PresenceStats(2, 1)
    assert await store.stats("b") == PresenceStats(1, 1)
    await store.refresh({})


async def test_refresh_replaces_what_changed_and_counts_each_connection_once(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    await store.join("r", member("c1", "alice"))
    await store.join("r", member("c2"))
    changed = [member("c1", "bob", status="away"), member("c2", "alice"), member("c2", "alice")]
    await store.refresh({"r": changed})
    assert await store.stats("r") == PresenceStats(2, 2)
    listed = {m.conn: (m.user, dict(m.info)) for m in await store.members("r")}
    assert listed == {"c1": ("bob", {"status": "away"}), "c2": ("alice", {})}
    await store.leave("r", "c1")
    await store.leave("r", "c2")
    assert await store.stats("r") == PresenceStats(0, 0)


async def test_entries_not_refreshed_expire_and_refreshed_ones_stay(
    make_store: MakeStore,
) -> None:
    ttl = 0.3
    store = await make_store(ttl_s=ttl)
    # alice is on two connections; the one on the dead node n1 is never refreshed.
    dead = [member("d1", "alice", node="n1"), member("d2", "carol", node="n1"), member("d3")]
    live = [member("l1", "alice", node="n2"), member("l2", "bob", node="n2")]
    for m in dead + live:
        await store.join("r", m)
    assert await store.stats("r") == PresenceStats(5, 3)

    async def refreshing() -> None:
        while True:
            await store.refresh({"r": live})
            await asyncio.sleep(ttl / 4)

    task = asyncio.create_task(refreshing())
    try:

        async def only_live() -> bool:
            return _conns(await store.members("r")) == ["l1", "l2"]

        await until(only_live, timeout=5.0, what="the dead node's members gone")
        assert await store.stats("r") == PresenceStats(connections=2, users=2)
        # The refreshed ones stay for several TTLs more.
        kept_until = time.monotonic() + 3 * ttl
        while time.monotonic() < kept_until:
            assert _conns(await store.members("r")) == ["l1", "l2"]
            assert await store.stats("r") == PresenceStats(2, 2)
            await asyncio.sleep(ttl / 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def all_gone() -> bool:
        return await store.stats("r") == PresenceStats(0, 0)

    await until(all_gone, timeout=5.0, what="every member expired once refreshes stopped")
    assert await store.members("r") == []


async def test_a_user_whose_dead_connection_expired_leaves_with_its_live_one(
    make_store: MakeStore,
) -> None:
    store = await make_store(ttl_s=0.3)
    await store.join("r", member("dead", "alice", node="n1"))
    await store.join("r", member("live", "alice", node="n2"))

    async def dead_expired() -> bool:
        await store.refresh({"r": [member("live", "alice", node="n2")]})
        return _conns(await store.members("r")) == ["live"]

    await until(dead_expired, what="the dead connection expired")
    assert await store.stats("r") == PresenceStats(1, 1)
    await store.leave("r", "live")
    assert await store.stats("r") == PresenceStats(0, 0)


async def test_ten_thousand_members_in_one_room_are_counted_exactly(
    make_store: MakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await make_store()
    n, users = 10_000, 2_500  # four connections per user, and every tenth one anonymous
    everyone = [
        member(f"n{i % 2}-{i}", None if i % 10 == 0 else f"u{i % users}", node=f"n{i % 2}")
        for i in range(n)
    ]
    distinct = len({m.user for m in everyone if m.user is not None})
    started = time.perf_counter()
    for chunk in range(0, n, 500):
        await asyncio.gather(*(store.join("big", m) for m in everyone[chunk : chunk + 500]))
    join_s = time.perf_counter() - started

    started = time.perf_counter()
    stats = await store.stats("big")
    stats_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    listed = await store.members("big")
    members_ms = (time.perf_counter() - started) * 1000
    assert stats == PresenceStats(n, distinct)
    assert len(listed) == n
    assert {m.conn for m in listed} == {m.conn for m in everyone}

    for m in everyone[:1000]:
        await store.leave("big", m.conn)
    remaining = everyone[1000:]
    assert await store.stats("big") == PresenceStats(
        n - 1000, len({m.user for m in remaining if m.user is not None})
    )
    with capsys.disabled():
        print(
            f"\n[{type(store).__name__}] {n} joins: {n / join_s:,.0f}/s;"
            f" stats {stats_ms:.2f} ms; members {members_ms:.1f} ms"
        )


async def test_two_nodes_on_one_redis_see_each_others_members(
    shared_redis: RedisServer,
) -> None:
    options = redis_options(shared_redis.url, key_prefix=f"p{next(_prefixes)}")
    a = RedisPresence(options, PresenceLimits(ttl_s=30))
    b = RedisPresence(options, PresenceLimits(ttl_s=30))
    await a.start()
    await b.start()
    try:
        await a.join("r", member("a-1", "alice", node="a"))
        await b.join("r", member("b-1", "alice", node="b"))
        await b.join("r", member("b-2", "bob", node="b"))
        for store in (a, b):
            assert _conns(await store.members("r")) == ["a-1", "b-1", "b-2"]
            assert await store.stats("r") == PresenceStats(3, 2)
        await a.leave("r", "b-2")  # any node may take a member out
        assert await b.stats("r") == PresenceStats(2, 1)
    finally:
        await a.close()
        await b.close()


async def test_a_redis_that_is_not_there_is_unavailable_with_the_reason() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisPresence(redis_options(url, timeout_s=1.0), PresenceLimits(ttl_s=10))
    await store.start()
    try:
        for call in (
            store.join("r", member("c1", "alice")),
            store.leave("r", "c1"),
            store.members("r"),
            store.stats("r"),
            store.refresh({"r": [member("c1", "alice")]}),
        ):
            with pytest.raises(BrokerUnavailable, match=r"unavailable: .*cannot connect to"):
                await call
    finally:
        await store.close()


async def test_a_redis_that_dies_or_stalls_gives_errors_never_a_wrong_answer(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path) as redis:
        store = RedisPresence(redis_options(redis.url, timeout_s=0.5), PresenceLimits(ttl_s=10))
        await store.start()
        try:
            await store.join("r", member("c1", "alice"))
            redis.pause()
            with pytest.raises(BrokerTimeout, match="did not answer the presence stats"):
                await store.stats("r")
            redis.resume()
            assert await store.stats("r") == PresenceStats(1, 1)
            redis.kill()
            with pytest.raises(BrokerUnavailable, match="redis unavailable"):
                await store.stats("r")
            with pytest.raises(BrokerUnavailable, match="redis unavailable"):
                await store.members("r")
            redis.restart()
            # Redis lost everything: the node's next refresh brings its members back.
            assert await store.stats("r") == PresenceStats(0, 0)
            await store.refresh({"r": [member("c1", "alice")]})
            assert await store.stats("r") == PresenceStats(1, 1)
        finally:
            await store.close()
