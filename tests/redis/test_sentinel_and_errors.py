"""Sentinel-watched Redis: nodes follow the master across a failover with every acked
message delivered or announced. And errors that retrying cannot fix are told apart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from tests.redis.load import FAST_ARGS, delivery_problems, run_load, watch_health
from tests.redis.nodes import metrics, redis_nodes
from tests.support.redis import RedisServer
from tests.support.redis_sentinel import RedisSentinels
from tests.support.servers import free_port
from tests.support.wsclient import connect_v1, recv_json, send_json

ROOMS = [f"room-{i}" for i in range(12)]


async def test_nodes_on_sentinels_follow_the_master_across_a_failover_losing_no_acked_message(
    redis_sentinels: RedisSentinels, tmp_path: Path
) -> None:
    statuses: list[int] = []
    stop = asyncio.Event()

    async def fail_over() -> None:
        await asyncio.sleep(0.3)
        old = redis_sentinels.kill_master()
        await asyncio.to_thread(redis_sentinels.wait_for_failover, old, 20)
        await asyncio.sleep(1.0)

    async with redis_nodes(redis_sentinels.url, tmp_path, args=FAST_ARGS) as nodes:
        watcher = asyncio.get_running_loop().create_task(watch_health(nodes, statuses, stop))
        out, seen = await run_load(nodes, ROOMS, rounds=40, disrupt=fail_over, disrupt_after=3)
        async with httpx.AsyncClient() as http:
            for node in nodes:
                assert (await http.get(node.url + "/healthz")).status_code == 200
        stop.set()
        await watcher
    assert delivery_problems(out, seen) == []
    assert out.retries > 0, "the failover was not noticed by any publish"
    assert 503 in statuses


def test_a_master_name_no_sentinel_knows_stops_the_server_with_the_reason(
    redis_sentinels: RedisSentinels,
) -> None:
    url = redis_sentinels.url.replace("/mymaster/", "/nosuchmaster/")
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--broker", url, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "knows a master named 'nosuchmaster'" in done.stderr


async def test_a_room_key_of_the_wrong_type_is_a_broker_error_not_retried_and_healthz_says_why(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.command("SET", "fanout:{broken}:meta", "not a hash")
    async with redis_nodes(redis_server, tmp_path, count=1, args=FAST_ARGS) as (node,):
        ws = await connect_v1(node.ws)
        await send_json(ws, {"type": "publish", "room": "broken", "data": 1, "id": "p1"})
        error = await recv_json(ws)
        assert error["code"] == "broker_error", error
        assert "WRONGTYPE" in error["reason"]
        async with httpx.AsyncClient() as http:
            health = await http.get(node.url + "/healthz")
            assert health.status_code == 503
            assert "WRONGTYPE" in health.text
            api = await http.post(
                node.url + "/api/publish",
                json={"room": "broken", "data": 2},
                headers={"Authorization": f"apikey {FAST_ARGS[1]}"},
            )
            assert api.status_code == 500
            assert api.json()["code"] == "broker_error"
            assert (await metrics(node))['fanout_broker_errors_total{kind="refused"}'] == 2
            # Other rooms still work, and once the key is fixed the node is healthy again.
            redis_server.command("DEL", "fanout:{broken}:meta")
            await send_json(ws, {"type": "publish", "room": "broken", "data": 3, "id": "p3"})
            assert (await recv_json(ws))["type"] == "ack"
            assert (await http.get(node.url + "/healthz")).status_code == 200
        await ws.close()
