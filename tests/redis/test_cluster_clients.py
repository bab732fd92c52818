"""What else talks to Redis works on a cluster too: emitters publish into rooms on
every master, presence spans them, key slots match Redis' own, and a broker URL that
names a cluster or Sentinels badly is refused with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fanout
from fanout.brokers.redis import RedisBroker
from fanout.brokers.redis.layout import RoomKeys
from fanout.brokers.redis.presence import RedisPresence
from fanout.brokers.redis.slots import key_slot
from fanout.core.presence import PresenceLimits
from tests.brokers.conftest import Recorder, redis_options
from tests.support.presence import member
from tests.support.redis_cluster import RedisCluster

ROOMS = [f"room-{i}" for i in range(30)]


def test_a_keys_slot_is_the_one_redis_computes(redis_cluster: RedisCluster) -> None:
    keys = ["", "a", "foo", "{}x", "x{}{y}", "{user1000}.following", "fanout:{room-7}:ch"]
    keys += [RoomKeys.of("fanout", r).meta for r in ROOMS]
    assert [key_slot(k) for k in keys] == [redis_cluster.keyslot(k) for k in keys]


async def test_an_emitter_publishes_to_rooms_on_every_master_and_nodes_receive_them(
    redis_cluster: RedisCluster,
) -> None:
    assert len({redis_cluster.master_of_slot(key_slot(RoomKeys.of("fanout", r).meta)).port
                for r in ROOMS}) == 3  # fmt: skip
    recorder = Recorder()
    broker = RedisBroker(redis_options(redis_cluster.seed_url))
    await broker.start(recorder)
    try:
        for room in ROOMS:
            await broker.attach(room)
        async with fanout.Emitter(redis_cluster.seed_url) as emitter:
            for room in ROOMS:
                first = await emitter.publish(room, {"room": room}, id=f"{room}-1")
                again = await emitter.publish(room, {"room": room}, id=f"{room}-1")
                assert (first.offset, again.offset, again.duplicate) == (1, 1, True)
        for room in ROOMS:
            assert await recorder.until(room, 1) == [1]
    finally:
        await broker.close()


async def test_presence_spans_rooms_on_every_master(redis_cluster: RedisCluster) -> None:
    store = RedisPresence(redis_options(redis_cluster.seed_url), PresenceLimits(ttl_s=30))
    await store.start()
    try:
        for i, room in enumerate(ROOMS):
            await store.join(room, member(f"c{i}", f"user{i}"))
        await store.refresh({room: [member(f"c{i}", f"user{i}")] for i, room in enumerate(ROOMS)})
        for i, room in enumerate(ROOMS):
            assert [m.conn for m in await store.members(room)] == [f"c{i}"]
            assert (await store.stats(room)).connections == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://127.0.0.1:26379", "expected redis+sentinel://HOST:PORT/MASTER_NAME/DB"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "the database must be a number"),
        ("redis://127.0.0.1:1,:2/0", "names no host"),
        ("redis://127.0.0.1:1,127.0.0.1:99999/0", "bad port '99999'"),
    ],
)
def test_a_bad_cluster_or_sentinel_url_stops_the_server_before_it_starts(
    url: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--broker", url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
