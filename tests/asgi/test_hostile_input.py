"""G4: bad input gets its documented answer and never affects anyone else."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from fanout.settings import Settings
from tests.support.rawclient import RawClient, close_code, masked_frame
from tests.support.servers import RunningHub, running_hub
from tests.support.wsclient import (
    assert_silent,
    binary_publish,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


async def _still_serves(server: RunningHub) -> None:
    """A fresh client can still subscribe, publish and receive its message."""
    async with await connect_v1(server.ws) as ws:
        await subscribe(ws, "health-check")
        await send_json(ws, {"type": "publish", "room": "health-check", "data": "ok", "id": "h"})
        message = await recv_json(ws)
        assert message["data"] == "ok"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", "bad_json"),
        ("[]", "bad_frame"),
        ('{"type": 1}', "bad_frame"),
        ('{"type": "teleport", "room": "r"}', "unknown_type"),
        ('{"type": "publish", "room": "r"}', "bad_frame"),
        ('{"type": "publish", "room": "no spaces allowed", "data": 1}', "bad_room"),
        ('{"type": "subscribe", "room": ["r"]}', "bad_room"),
        ('{"type": "subscribe", "room": "r", "since": {"epoch": 5}}', "bad_frame"),
        ('{"type": "unsubscribe", "room": "never-joined"}', "not_subscribed"),
    ],
)
async def test_a_malformed_frame_gets_an_error_frame_and_the_connection_keeps_working(
    frame: str, code: str
) -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        await ws.send(frame)
        error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["reason"]
        await subscribe(ws, "after")
        await send_json(ws, {"type": "publish", "room": "after", "data": 1, "id": "x"})
        assert (await recv_json(ws))["offset"] == 1
        assert (await recv_json(ws))["type"] == "ack"


async def test_an_error_for_a_publish_names_its_id() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        await send_json(ws, {"type": "publish", "room": "r", "id": "p-9"})
        assert await recv_json(ws) == {
            "type": "error",
            "code": "bad_frame",
            "reason": "publish needs 'data'",
            "id": "p-9",
        }


async def test_a_binary_header_that_lies_about_its_length_gets_an_error() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        good = binary_publish("r", b"payload")
        await ws.send(b"\x00\x00\xff\xff" + good[4:])
        error = await recv_json(ws)
        assert (error["type"], error["code"]) == ("error", "bad_frame")
        await ws.send(b"\x00\x01")
        assert (await recv_json(ws))["code"] == "bad_frame"
        await _still_serves(server)


async def test_a_message_over_the_size_limit_closes_that_client_with_1009() -> None:
    settings = Settings(max_message_bytes=64 * 1024)
    async with running_hub(settings) as server, await connect_v1(server.ws) as bystander:
        await subscribe(bystander, "r")
        async with await connect_v1(server.ws, max_size=None) as ws:
            await ws.send(binary_publish("r", b"x" * (64 * 1024 + 1)))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1009
        await assert_silent(bystander)
        await _still_serves(server)


async def test_a_frame_header_announcing_a_huge_length_closes_with_1009() -> None:
    async with running_hub(Settings(max_message_bytes=64 * 1024)) as server:
        raw = await RawClient.open(server.ws)
        raw.send_raw(masked_frame(0x2, b"abc", declared_length=1 << 40))
        _, close = await raw.read_all()
        assert close_code(close) == 1009
        raw.abort()
        await _still_serves(server)


async def test_invalid_utf8_in_a_text_frame_closes_with_1007() -> None:
    async with running_hub() as server:
        raw = await RawClient.open(server.ws)
        raw.send_raw(masked_frame(0x1, b'{"type":"\xff\xfe"}'))
        _, close = await raw.read_all()
        assert close_code(close) == 1007
        raw.abort()
        await _still_serves(server)


async def test_a_client_vanishing_mid_frame_affects_nobody() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as bystander:
        await subscribe(bystander, "r")
        for _ in range(5):
            raw = await RawClient.open(server.ws)
            frame = masked_frame(
                0x1, json.dumps({"type": "publish", "room": "r", "data": "x" * 5000}).encode()
            )
            raw.send_raw(frame[: len(frame) // 2])
            await raw.writer.drain()
            raw.abort()
        await assert_silent(bystander, 0.3)
        await _still_serves(server)
        assert len(server.hub.connections) == 1


async def test_subscribers_vanishing_mid_broadcast_do_not_disconnect_the_sender() -> None:
    async with running_hub() as server:
        vanishing = [await RawClient.open(server.ws) for _ in range(20)]
        for raw in vanishing:
            raw.send_text(json.dumps({"type": "subscribe", "room": "r"}))
        async with await connect_v1(server.ws) as watcher, await connect_v1(server.ws) as sender:
            await subscribe(watcher, "r")
            for i in range(200):
                if i == 50:
                    for raw in vanishing:
                        raw.abort()
                await send_json(sender, {"type": "publish", "room": "r", "data": i, "id": str(i)})
            acks = [await recv_json(sender) for _ in range(200)]
            assert [a["offset"] for a in acks] == list(range(1, 201))
            got = [(await recv_json(watcher))["offset"] for _ in range(200)]
            assert got == list(range(1, 201))


async def test_a_full_server_closes_the_extra_client_with_1013() -> None:
    async with (
        running_hub(Settings(max_connections=2)) as server,
        await connect_v1(server.ws) as a,
        await connect_v1(server.ws) as b,
    ):
        await subscribe(a, "r")
        async with await connect_v1(server.ws) as extra:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(extra.recv(), 5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
        await subscribe(b, "r")
