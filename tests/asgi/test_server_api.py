"""The server HTTP API: other services publish with real HTTP requests; every status,
and hostile bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.settings import Settings
from tests.support.redis import RedisServer
from tests.support.servers import RunningHub, running_hub
from tests.support.wsclient import (
    assert_silent,
    connect_plain,
    connect_v1,
    decode_binary_frame,
    recv_json,
    subscribe,
)

KEY = "k" * 8 + "-api-key-for-tests"
AUTH = {"Authorization": f"apikey {KEY}"}
LIMIT = 64 * 1024


@pytest.fixture
async def hub() -> AsyncIterator[RunningHub]:
    async with running_hub(Settings(api_key=KEY, max_message_bytes=LIMIT)) as server:
        yield server


async def _post(hub: RunningHub, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post(path, **kwargs)


async def test_a_publish_reaches_subscribers_and_a_retry_by_id_returns_the_same_offset(
    hub: RunningHub,
) -> None:
    async with await connect_v1(hub.ws) as v1, await connect_plain(hub.ws + "/news") as plain:
        await subscribe(v1, "news")
        body = {"room": "news", "data": {"title": "hi"}, "id": "n-1"}
        first = await _post(hub, "/api/publish", json=body, headers=AUTH)
        again = await _post(hub, "/api/publish", json=body, headers=AUTH)
        assert first.status_code == 200, first.text
        assert again.json() == {**first.json(), "duplicate": True}
        assert first.json()["offset"] == 1
        assert (await recv_json(v1))["data"] == {"title": "hi"}
        assert await recv_json(plain) == {"title": "hi"}
        await assert_silent(v1)  # the retry delivered nothing new


async def test_binary_data_goes_in_the_body_with_the_room_in_the_query(hub: RunningHub) -> None:
    payload = bytes(range(256)) * 4
    async with await connect_v1(hub.ws) as v1:
        await subscribe(v1, "img")
        reply = await _post(
            hub,
            "/api/publish?room=img&id=i-1",
            content=payload,
            headers={**AUTH, "Content-Type": "application/octet-stream"},
        )
        assert reply.status_code == 200, reply.text
        frame = decode_binary_frame(await asyncio.wait_for(v1.recv(), 10))  # type: ignore[arg-type]
        assert (frame["offset"], frame["data"]) == (1, payload)


async def test_a_broadcast_answers_for_each_room(hub: RunningHub) -> None:
    reply = await _post(
        hub, "/api/broadcast", json={"rooms": ["a", "b", "bad room"], "data": 1}, headers=AUTH
    )
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [(r["room"], r.get("offset"), r.get("code")) for r in results] == [
        ("a", 1, None),
        ("b", 1, None),
        ("bad room", None, "bad_room"),
    ]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "apikey KEY"),
        ({"Authorization": f"Bearer {KEY}"}, "apikey KEY"),
        ({"Authorization": "apikey " + "x" * len(KEY)}, "wrong API key"),
        ({"Authorization": "apikey " + KEY[:-1]}, "wrong API key"),
    ],
    ids=["no key", "wrong scheme", "wrong key of the right length", "a prefix of the key"],
)
async def test_no_or_a_wrong_key_gets_401(
    hub: RunningHub, headers: dict[str, str], reason: str
) -> None:
    reply = await _post(hub, "/api/publish", json={"room": "a", "data": 1}, headers=headers)
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"
    assert reason in reply.json()["reason"]


async def test_without_a_key_configured_the_api_is_off_and_says_how_to_turn_it_on() -> None:
    async with running_hub() as server:
        reply = await _post(server, "/api/publish", json={"room": "a", "data": 1}, headers=AUTH)
    assert reply.status_code == 401
    assert "api_key" in reply.json()["reason"]


@pytest.mark.parametrize(
    ("content", "status", "code", "reason"),
    [
        (b"{not json", 400, "bad_json", "not valid JSON"),
        (b"[1, 2]", 400, "bad_frame", "JSON object"),
        (b'{"room": "a"}', 400, "bad_frame", "'data' is required"),
        (b'{"room": "a", "data": 1, "extra": true}', 400, "bad_frame", "unknown fields"),
        (b'{"room": "bad room!", "data": 1}', 400, "bad_room", "1-128 characters"),
        (b'{"room": 7, "data": 1}', 400, "bad_room", "must be a string"),
        (b'{"data": 1}', 400, "bad_frame", "exactly one of 'room' and 'user'"),
        (b'{"room": "a", "user": "u", "data": 1}', 400, "bad_frame", "exactly one of"),
        (b'{"room": "a", "data": 1, "id": 5}', 400, "bad_frame", "'id'"),
        (b'{"room": "a", "data": 1, "id": ""}', 400, "bad_frame", "'id'"),
        (b'{"room": "a", "data": "' + b"x" * (LIMIT + 1) + b'"}', 413, "too_big", str(LIMIT)),
    ],
)
async def test_malformed_requests_are_refused_with_the_reason_and_nothing_is_published(
    hub: RunningHub, content: bytes, status: int, code: str, reason: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    reply = await _post(hub, "/api/publish", content=content, headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
    assert reason in reply.json()["reason"]
    assert hub.hub.counters["published"] == 0


async def test_another_content_type_gets_415(hub: RunningHub) -> None:
    headers = {**AUTH, "Content-Type": "text/plain"}
    reply = await _post(hub, "/api/publish", content=b"hello", headers=headers)
    assert reply.status_code == 415


async def _raw_request(hub: RunningHub, head: str, body: bytes = b"") -> bytes:
    port = int(hub.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(
    hub: RunningHub,
) -> None:
    head = (
        "POST /api/publish?room=a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: apikey {KEY}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 100000000\r\n\r\n"
    )
    answer = await _raw_request(hub, head)  # not one byte of the 100 MB is sent
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"too_big" in answer


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(hub: RunningHub) -> None:
    head = (
        "POST /api/publish?room=a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: apikey {KEY}\r\nContent-Type: application/octet-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8))  # 128 KiB
    answer = await _raw_request(hub, head, body)
    assert answer.startswith(b"HTTP/1.1 413")


async def test_a_body_that_arrives_with_its_head_does_not_count_toward_the_head_limit() -> None:
    async with running_hub(Settings(api_key=KEY)) as server:
        data = "x" * 70_000  # head and body in one read: 70 KB, over the 64 KiB head limit
        reply = await _post(server, "/api/publish", json={"room": "a", "data": data}, headers=AUTH)
    assert reply.status_code == 200, reply.text


async def test_a_redis_that_does_not_answer_gets_503_and_a_retry_by_id_succeeds_after(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    settings = Settings(
        api_key=KEY, broker=redis.url, redis_timeout_s=0.5, redis_health_interval_s=0.2
    )
    try:
        async with running_hub(settings) as server, await connect_v1(server.ws) as v1:
            await subscribe(v1, "orders")
            body = {"room": "orders", "data": "first", "id": "o-1"}
            assert (await _post(server, "/api/publish", json=body, headers=AUTH)).status_code == 200
            redis.pause()
            retry = {"room": "orders", "data": "second", "id": "o-2"}
            try:
                down = await _post(server, "/api/publish", json=retry, headers=AUTH)
            finally:
                redis.resume()
            assert down.status_code == 503, down.text
            assert down.json()["code"] in ("unavailable", "timeout")
            for _ in range(100):  # until the node sees Redis again
                again = await _post(server, "/api/publish", json=retry, headers=AUTH)
                if again.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert again.json()["offset"] == 2
            received = [await recv_json(v1), await recv_json(v1)]
            assert [(m["offset"], m["data"]) for m in received] == [(1, "first"), (2, "second")]
            await assert_silent(v1)
    finally:
        redis.stop()


async def test_a_broadcast_that_stored_nothing_says_so_in_its_status(hub: RunningHub) -> None:
    body = {"rooms": ["bad room", "also bad!"], "data": 1}
    reply = await _post(hub, "/api/broadcast", json=body, headers=AUTH)
    assert reply.status_code == 400
    assert [r["code"] for r in reply.json()["results"]] == ["bad_room", "bad_room"]
