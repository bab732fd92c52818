"""Two real fanout nodes over a real Redis Cluster (3 masters, 3 replicas): every room
served whatever slot it hashes to, and every acked message delivered or announced
through a killed master, a paused one and a live slot migration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from fanout.brokers.redis.layout import RoomKeys
from tests.redis.load import FAST_ARGS, PUBLISH_TIMEOUT_S, delivery_problems, run_load, watch_health
from tests.redis.nodes import redis_nodes
from tests.support.redis_cluster import RedisCluster

ROOMS = [f"room-{i}" for i in range(30)]


def _slot(cluster: RedisCluster, room: str) -> int:
    return cluster.keyslot(RoomKeys.of("fanout", room).channel)


def _owner_port(cluster: RedisCluster, room: str) -> int:
    return cluster.master_of_slot(_slot(cluster, room)).port


async def test_two_nodes_on_a_cluster_deliver_every_room_in_order_to_subscribers_on_both(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    assert len({_owner_port(redis_cluster, r) for r in ROOMS}) == 3  # rooms on every master
    async with redis_nodes(redis_cluster.seed_url, tmp_path, args=FAST_ARGS) as nodes:
        out, seen = await run_load(nodes, ROOMS, rounds=10)
    assert delivery_problems(out, seen) == []
    for s in seen:
        for room in ROOMS:
            assert [o for _, o, _ in s.messages[room]] == list(range(1, 11)), room
            assert s.announced[room] == []
    assert out.retries == 0


async def test_a_node_given_several_seeds_starts_when_the_first_is_down(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    dead = "127.0.0.1:1"
    live = redis_cluster.seed_url.removeprefix("redis://")
    async with redis_nodes(f"redis://{dead},{live}", tmp_path, count=1, args=FAST_ARGS) as nodes:
        out, seen = await run_load(nodes, ROOMS[:6], rounds=3)
    assert delivery_problems(out, seen) == []


async def _failover_load(
    cluster: RedisCluster, tmp_path: Path, disrupt_master: str
) -> tuple[list[int], float]:
    victim = cluster.masters()[0]
    statuses: list[int] = []
    stop = asyncio.Event()

    async def disrupt() -> None:
        await asyncio.sleep(0.3)
        if disrupt_master == "kill":
            cluster.kill(victim)
        else:
            cluster.pause(victim)
        await asyncio.to_thread(cluster.wait_for_failover, victim, 20)
        await asyncio.sleep(1.0)  # nodes learn the new owner; publishing goes on
        if disrupt_master == "pause":
            cluster.resume(victim)

    async with redis_nodes(cluster.seed_url, tmp_path, args=FAST_ARGS) as nodes:
        watcher = asyncio.get_running_loop().create_task(watch_health(nodes, statuses, stop))
        out, seen = await run_load(nodes, ROOMS, rounds=40, disrupt=disrupt, disrupt_after=3)
        async with httpx.AsyncClient() as http:
            for node in nodes:
                assert (await http.get(node.url + "/healthz")).status_code == 200
        stop.set()
        await watcher
    assert delivery_problems(out, seen) == []
    assert out.retries > 0, "the failover was not noticed by any publish"
    assert set(out.errors) <= {"unavailable", "timeout"}, out.errors
    return statuses, out.slowest_s


async def test_a_killed_master_fails_over_and_every_acked_message_is_delivered_or_announced(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    statuses, slowest_s = await _failover_load(redis_cluster, tmp_path, "kill")
    assert 503 in statuses
    assert statuses[-1] == 200
    assert slowest_s < PUBLISH_TIMEOUT_S + 1, "a publish hung past the publish timeout"


async def test_a_master_paused_beyond_the_node_timeout_fails_over_without_losing_acks(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    statuses, slowest_s = await _failover_load(redis_cluster, tmp_path, "pause")
    assert 503 in statuses
    assert statuses[-1] == 200
    assert slowest_s < PUBLISH_TIMEOUT_S + 1, "a publish hung past the publish timeout"


async def test_a_live_slot_migration_while_publishing_loses_and_duplicates_nothing(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    moving = [r for r in ROOMS if _owner_port(redis_cluster, r) == redis_cluster.masters()[0].port]
    destination = redis_cluster.masters()[1]

    async def migrate() -> None:
        for room in moving[:4]:
            slot = _slot(redis_cluster, room)
            await asyncio.to_thread(
                redis_cluster.migrate_slot, slot, destination, batch=1, pause_s=0.05
            )

    async with redis_nodes(redis_cluster.seed_url, tmp_path, args=FAST_ARGS) as nodes:
        out, seen = await run_load(nodes, ROOMS, rounds=30, disrupt=migrate, disrupt_after=3)
    assert all(_owner_port(redis_cluster, r) == destination.port for r in moving[:4])
    assert delivery_problems(out, seen) == []
    for s in seen:
        for room in ROOMS:
            assert [o for _, o, _ in s.messages[room]] == list(range(1, 31)), room
