"""Garbage broker URLs, a Redis that is not there, a wrong password, and a Redis that
went back in time: each gets a clear answer, nothing is silently wrong."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fanout.asgi.wiring import wire
from fanout.brokers.redis import RedisBroker
from fanout.protocol.errors import BrokerUnavailable
from fanout.settings import Settings
from tests.brokers.conftest import Recorder, redis_options
from tests.support.redis import RedisServer
from tests.support.servers import free_port, stop_process


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://127.0.0.1/0", "the known brokers are memory, redis://"),
        ("garbage", "unknown broker 'garbage'"),
        ("redis://", "names no host"),
        ("redis://127.0.0.1:notaport/0", "redis://127.0.0.1:notaport/0"),
        ("redis://127.0.0.1:6379/zero", "redis://127.0.0.1:6379/zero"),
    ],
)
def test_a_bad_broker_url_stops_the_server_before_it_starts(url: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--broker", url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_a_bad_key_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="key_prefix"):
        wire(Settings(broker="redis://127.0.0.1:1/0", redis_key_prefix="a{b}"))


_FAST_DETECTION = ["--redis-timeout-s", "0.5", "--redis-health-interval-s", "0.2"]


def test_a_node_whose_redis_is_not_there_starts_and_reports_503_with_the_reason(
    tmp_path: Path,
) -> None:
    """It keeps trying in the background, so it heals when Redis appears."""
    port, redis_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    log = (tmp_path / "node.log").open("wb")
    args = ["--broker", url, "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fanout.cli", "serve", *args, *_FAST_DETECTION],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        body = _wait_for_health(port, 503)
        assert body["status"] == "unavailable"
        assert str(redis_port) in str(body["reason"])
        redis = RedisServer(tmp_path / "redis", port=redis_port)
        redis.start()
        try:
            body = _wait_for_health(port, 200)
            assert body["status"] == "ok"
        finally:
            redis.stop()
    finally:
        stop_process(proc)
        log.close()


def _wait_for_health(port: int, status: int, timeout: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            last = reply.status_code
            if reply.status_code == status:
                body: dict[str, object] = reply.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"/healthz never answered {status} (last: {last})")


async def test_a_wrong_redis_password_is_reported_as_unhealthy(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        redis.command("CONFIG", "SET", "requirepass", "right")
        broker = RedisBroker(
            redis_options(
                f"redis://:wrong@127.0.0.1:{redis.port}/0",
                timeout_s=0.5,
                health_interval_s=0.1,
            )
        )
        await broker.start(Recorder())
        try:
            async with asyncio.timeout(5):
                while (reason := await broker.health()) is None:
                    await asyncio.sleep(0.05)
            assert "wrong" not in reason  # the password is never shown
            assert "AUTH" in reason or "WRONGPASS" in reason or "password" in reason
        finally:
            await broker.close()
    finally:
        redis.stop()


async def test_a_redis_that_went_back_in_time_makes_a_new_epoch_not_reused_offsets(
    redis_server: RedisServer,
) -> None:
    """Redis restored from an older snapshot: offsets 4..5 would be handed out again with
    other contents. The node that delivered them notices and starts a new epoch."""
    options = redis_options(redis_server.url, timeout_s=0.5, health_interval_s=0.1)
    node, recorder = RedisBroker(options), Recorder()
    await node.start(recorder)
    try:
        await node.attach("r")
        for i in range(5):
            await node.publish("r", i)
        await recorder.until("r", 5)
        old_epoch = recorder.messages[0].epoch
        # What a restore of an older snapshot leaves: the same epoch, fewer messages.
        redis_server.command("HSET", "fanout:{r}:meta", "latest", "3")
        redis_server.command("XTRIM", "fanout:{r}:log", "MAXLEN", "3")
        redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")  # the node reconnects
        async with asyncio.timeout(5):
            while not recorder.resets:
                await asyncio.sleep(0.01)
        room, new_epoch, latest = recorder.resets[0]
        assert (room, latest) == ("r", 0)
        assert new_epoch != old_epoch
        published = await node.publish("r", "after the restore")
        assert (published.epoch, published.offset) == (new_epoch, 1)
        async with asyncio.timeout(5):
            while recorder.messages[-1].data != "after the restore":
                await asyncio.sleep(0.01)
        assert (recorder.messages[-1].epoch, recorder.messages[-1].offset) == (new_epoch, 1)
    finally:
        await node.close()


def _cluster_node_args() -> list[str]:
    # The bus port is the port + 10000 unless given: name a free one, so any port works.
    return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port())]  # fmt: skip


def test_a_node_pointed_at_a_redis_cluster_with_a_database_other_than_0_refuses_to_start(
    tmp_path: Path,
) -> None:
    """A cluster has only database 0: /1 cannot work, so it is said at start, not later."""
    cluster = RedisServer(tmp_path / "cluster", extra_args=_cluster_node_args())
    with cluster:
        url = cluster.url.replace("/0", "/1")
        args = ["--broker", url, "--port", str(free_port()), *_FAST_DETECTION]
        done = subprocess.run(
            [sys.executable, "-m", "fanout.cli", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0  # the lifespan's startup failed
        assert "a cluster has only database 0, so the broker URL must end in /0" in done.stderr


async def test_a_cluster_that_serves_no_slot_is_reported_unhealthy_and_refuses_publishes(
    tmp_path: Path,
) -> None:
    """A cluster node with no slots assigned: no room can live anywhere yet."""
    cluster = RedisServer(tmp_path / "cluster", extra_args=_cluster_node_args())
    with cluster:
        broker = RedisBroker(redis_options(cluster.url, timeout_s=0.5))
        await broker.start(Recorder())
        try:
            assert "has no master serving slots" in str(await broker.health())
            with pytest.raises(BrokerUnavailable, match="no redis master serves the slot"):
                await broker.publish("r", 1)
        finally:
            await broker.close()
