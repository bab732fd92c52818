"""``fanout.Emitter`` and ``fanout.SyncEmitter``: an application process with no fanout
node publishes into rooms that real ``fanout serve`` nodes serve, through a real Redis,
exactly as a client's publish would (offsets, idempotency, delivery on every node)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

import fanout
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import BrokerRefused, BrokerTimeout, BrokerUnavailable
from tests.redis.nodes import parse_resp, redis_nodes
from tests.support.redis import RedisServer
from tests.support.servers import free_port
from tests.support.wsclient import assert_silent, connect_v1, recv_json, send_json, subscribe

# An application's synchronous code in its own process: no event loop, no fanout node.
SYNC_APP = """
import json, sys
import fanout

url, room, data, msg_id = sys.argv[1:5]
with fanout.SyncEmitter(url) as emitter:
    published = emitter.publish(room, json.loads(data), id=msg_id or None)
print(json.dumps({"epoch": published.epoch, "offset": published.offset,
                  "duplicate": published.duplicate}))
"""


async def _sync_app(url: str, room: str, data: Any, msg_id: str = "") -> dict[str, Any]:
    """Run SYNC_APP in a separate OS process; its answer, or AssertionError with stderr."""
    args = [sys.executable, "-c", SYNC_APP, url, room, json.dumps(data), msg_id]
    done = await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def _next_message(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv_json(ws)
    assert frame["type"] == "message", frame
    return frame


async def test_a_process_without_a_node_publishes_to_subscribers_on_both_nodes_in_offset_order(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "orders"
    async with (
        redis_nodes(redis_server, tmp_path) as (node_a, node_b),
        await connect_v1(node_a.ws) as on_a,
        await connect_v1(node_b.ws) as on_b,
        await connect_v1(node_a.ws) as client,
    ):
        subscribed = [await subscribe(ws, room) for ws in (on_a, on_b)]
        epoch = subscribed[0]["epoch"]
        # A client's publish first, through node A: offset 1.
        await send_json(
            client, {"type": "publish", "room": room, "data": "from a client", "id": "c1"}
        )
        ack = await recv_json(client)
        assert ack["type"] == "ack", ack
        for ws in (on_a, on_b):
            assert (await _next_message(ws))["offset"] == 1

        answer = await _sync_app(redis_server.url, room, {"order": 7}, "order-7")

        assert answer == {"epoch": epoch, "offset": 2, "duplicate": False}
        for ws in (on_a, on_b):
            message = await _next_message(ws)
            assert (message["epoch"], message["offset"]) == (epoch, 2)
            assert message["data"] == {"order": 7}

        # The same id again, from another process: the first offset, nothing delivered.
        again = await _sync_app(redis_server.url, room, {"order": 7}, "order-7")

        assert again == {"epoch": epoch, "offset": 2, "duplicate": True}
        await asyncio.gather(assert_silent(on_a, 0.3), assert_silent(on_b, 0.3))


async def test_an_id_a_client_published_with_is_a_duplicate_for_the_emitter_too(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "shared-ids"
    async with (
        redis_nodes(redis_server, tmp_path, count=1) as (node,),
        await connect_v1(node.ws) as client,
        await connect_v1(node.ws) as subscriber,
        fanout.Emitter(redis_server.url) as emitter,
    ):
        await subscribe(subscriber, room)
        await send_json(client, {"type": "publish", "room": room, "data": 1, "id": "once"})
        ack = await recv_json(client)
        assert ack["type"] == "ack", ack
        assert (await _next_message(subscriber))["offset"] == ack["offset"]

        published = await emitter.publish(room, 1, id="once")

        assert (published.offset, published.duplicate) == (ack["offset"], True)
        assert published.epoch == ack["epoch"]
        await assert_silent(subscriber, 0.3)


async def test_binary_data_from_the_emitter_reaches_subscribers_as_the_same_bytes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "images"
    payload = bytes(range(256)) * 40
    async with (
        redis_nodes(redis_server, tmp_path, count=1) as (node,),
        await connect_v1(node.ws) as client,
        fanout.Emitter(redis_server.url) as emitter,
    ):
        await subscribe(client, room)

        published = await emitter.publish(room, payload)

        message = await _next_message(client)
        assert (message["offset"], message["data"]) == (published.offset, payload)


async def test_the_emitter_uses_the_key_prefix_of_its_settings_like_the_nodes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "tenant"
    settings = fanout.Settings(redis_key_prefix="app1")
    async with (
        redis_nodes(redis_server, tmp_path, count=1, args=["--redis-key-prefix", "app1"]) as (
            node,
        ),
        await connect_v1(node.ws) as client,
    ):
        await subscribe(client, room)
        # Another deployment's prefix: a different room, nobody here gets it.
        async with fanout.Emitter(redis_server.url) as other:
            assert (await other.publish(room, "not for app1")).offset == 1
        await assert_silent(client, 0.3)

        async with fanout.Emitter(redis_server.url, settings=settings) as emitter:
            published = await emitter.publish(room, "for app1")

        message = await _next_message(client)
        assert (message["offset"], message["data"]) == (published.offset, "for app1")


def test_the_sync_emitter_publishes_from_plain_threads_with_dense_offsets(
    redis_server: RedisServer,
) -> None:
    offsets: list[int] = []
    lock = threading.Lock()
    with fanout.SyncEmitter(redis_server.url) as emitter:

        def worker(n: int) -> None:
            for i in range(25):
                published = emitter.publish("jobs", {"worker": n, "i": i}, id=f"w{n}-{i}")
                with lock:
                    offsets.append(published.offset)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        retried = emitter.publish("jobs", {"worker": 0, "i": 0}, id="w0-0")

    assert sorted(offsets) == list(range(1, 101))
    assert retried.duplicate
    assert retried.offset in offsets


def test_a_redis_that_is_not_there_is_an_error_not_a_success(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with fanout.SyncEmitter(url) as emitter, pytest.raises(fanout.BrokerError) as raised:
        emitter.publish("room", "hello", id="h1")

    assert isinstance(raised.value, BrokerUnavailable)
    assert "cannot connect to" in str(raised.value)


async def test_a_paused_redis_is_a_timeout_and_a_retry_by_id_after_it_returns_stores_once(
    redis_server: RedisServer,
) -> None:
    settings = fanout.Settings(redis_timeout_s=0.5)
    async with fanout.Emitter(redis_server.url, settings=settings) as emitter:
        first = await emitter.publish("room", "before")
        redis_server.pause()
        try:
            with pytest.raises(BrokerTimeout, match=r"within 0\.5 s"):
                await emitter.publish("room", "during", id="d1")
        finally:
            redis_server.resume()

        retried = await emitter.publish("room", "during", id="d1")
        again = await emitter.publish("room", "during", id="d1")

    assert retried.offset == first.offset + 1
    assert (again.offset, again.duplicate) == (retried.offset, True)


def test_a_redis_that_comes_back_is_used_again_by_the_same_sync_emitter(
    redis_server: RedisServer,
) -> None:
    with fanout.SyncEmitter(redis_server.url) as emitter:
        assert emitter.publish("room", 1).offset == 1
        redis_server.kill()
        with pytest.raises(fanout.BrokerError):
            emitter.publish("room", 2, id="two")
        redis_server.restart()

        published = emitter.publish("room", 2, id="two")

    # Redis restarted without persistence: the room is new, with a new epoch.
    assert (published.offset, published.duplicate) == (1, False)


def test_a_wrong_password_is_refused_without_showing_the_password(
    redis_server: RedisServer,
) -> None:
    redis_server.command("CONFIG", "SET", "requirepass", "right-one")
    url = f"redis://:wrong-one@127.0.0.1:{redis_server.port}/0"
    with fanout.SyncEmitter(url) as emitter, pytest.raises(BrokerRefused) as raised:
        emitter.publish("room", "hello")

    assert "WRONGPASS" in str(raised.value)
    assert "wrong-one" not in str(raised.value)
    good = f"redis://:right-one@127.0.0.1:{redis_server.port}/0"
    with fanout.SyncEmitter(good) as emitter:
        assert emitter.publish("room", "hello").offset == 1


@pytest.mark.parametrize(
    ("room", "data", "msg_id", "code", "reason"),
    [
        ("has space", "x", None, ErrorCode.BAD_ROOM, "room must be"),
        ("", "x", None, ErrorCode.BAD_ROOM, "room must be"),
        ("r" * 129, "x", None, ErrorCode.BAD_ROOM, "room must be"),
        ("other.room", "x", None, ErrorCode.BAD_ROOM, "room pattern"),
        ("chat.ok", "x", "", ErrorCode.BAD_FRAME, "'id' must be"),
        ("chat.ok", "x", "i" * 129, ErrorCode.BAD_FRAME, "'id' must be"),
        ("chat.ok", {1, 2}, None, ErrorCode.BAD_FRAME, "not JSON"),
        ("chat.ok", b"x" * 2049, None, ErrorCode.TOO_BIG, "at most 2048"),
        ("chat.ok", "é" * 1025, None, ErrorCode.TOO_BIG, "at most 2048"),
    ],
)
def test_an_invalid_publish_is_refused_with_the_reason_before_anything_reaches_redis(
    redis_server: RedisServer, room: str, data: Any, msg_id: str | None, code: str, reason: str
) -> None:
    settings = fanout.Settings(max_message_bytes=2048, room_pattern=r"chat\.[a-z]+")
    with fanout.SyncEmitter(redis_server.url, settings=settings) as emitter:
        with pytest.raises(fanout.InvalidPublish) as raised:
            emitter.publish(room, data, id=msg_id)

        assert raised.value.code == code
        assert reason in raised.value.reason
        assert parse_resp(redis_server.command("KEYS", "*")) == []
        # What the rules allow goes through.
        assert emitter.publish("chat.ok", b"x" * 2048).offset == 1


@pytest.mark.parametrize(
    "url",
    ["memory", "http://127.0.0.1:8000", "mysql://127.0.0.1/0", "redis://", "127.0.0.1:6379"],
)
def test_a_url_that_is_not_redis_is_a_config_error(url: str) -> None:
    with pytest.raises(fanout.ConfigError):
        fanout.SyncEmitter(url)
    with pytest.raises(fanout.ConfigError):
        fanout.Emitter(url)


def test_a_config_error_does_not_show_the_password() -> None:
    with pytest.raises(fanout.ConfigError) as raised:
        fanout.Emitter("redis://:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(raised.value)
    assert "notaport" in str(raised.value)


async def test_a_closed_emitter_refuses_to_publish() -> None:
    emitter = fanout.Emitter("redis://127.0.0.1:1/0")
    await emitter.close()
    with pytest.raises(fanout.FanoutError, match="after close"):
        await emitter.publish("room", "x")
    sync = fanout.SyncEmitter("redis://127.0.0.1:1/0")
    sync.close()
    with pytest.raises(fanout.FanoutError, match="after close"):
        sync.publish("room", "x")


# A Celery prefork worker: the emitter was used in the parent before the fork.
FORKING_APP = """
import os, sys
import fanout

emitter = fanout.SyncEmitter(sys.argv[1])
print(emitter.publish("jobs", "parent").offset, flush=True)
pid = os.fork()
if pid == 0:
    print(emitter.publish("jobs", "child").offset, flush=True)
    emitter.close()
    os._exit(0)
os.waitpid(pid, 0)
print(emitter.publish("jobs", "parent again").offset, flush=True)
emitter.close()
"""


def test_a_sync_emitter_keeps_working_in_a_process_forked_after_it_published(
    redis_server: RedisServer,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKING_APP, redis_server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["1", "2", "3"]


def test_the_emitter_publishes_to_a_users_personal_room(redis_server: RedisServer) -> None:
    with fanout.SyncEmitter(redis_server.url) as emitter:
        first = emitter.publish_to_user("alice", {"invoice": 1}, id="inv-1")
        again = emitter.publish("@alice", {"invoice": 1}, id="inv-1")
        assert (again.offset, again.duplicate) == (first.offset, True)
        with pytest.raises(fanout.InvalidPublish, match="'user'"):
            emitter.publish_to_user("", 1)
