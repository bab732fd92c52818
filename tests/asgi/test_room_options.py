"""Room options by pattern and ephemeral publishes, with real clients on a real hub."""

from __future__ import annotations

import asyncio
import json
import struct

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from fanout.asgi.wiring import wire
from fanout.protocol.errors import ConfigError
from fanout.settings import Settings
from tests.support.servers import running_hub
from tests.support.wsclient import (
    assert_silent,
    connect_plain,
    connect_v1,
    decode_binary_frame,
    recv_json,
    send_json,
    subscribe,
)

OPTIONS = "news*:client_publish=off;short:history=2;typing.*:presence=off"
KEY = "room-options-api-key"


async def test_a_room_closed_to_clients_refuses_their_publishes_and_takes_the_apps() -> None:
    async with running_hub(Settings(room_options=OPTIONS, api_key=KEY)) as hub:
        async with await connect_v1(hub.ws) as v1:
            await subscribe(v1, "news")
            await send_json(v1, {"type": "publish", "room": "news", "data": 1, "id": "p"})
            refused = await recv_json(v1)
            assert (refused["code"], refused["id"]) == ("forbidden", "p")
            assert "room options" in refused["reason"]
            async with httpx.AsyncClient(base_url=hub.url) as http:
                reply = await http.post(
                    "/api/publish",
                    json={"room": "news", "data": "from the app"},
                    headers={"Authorization": f"apikey {KEY}"},
                )
            assert reply.status_code == 200
            assert (await recv_json(v1))["data"] == "from the app"
        async with await connect_plain(hub.ws + "/news") as plain:
            await plain.send("hello")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(plain.recv(), 10)
            assert plain.close_code == 1008


async def test_a_room_keeps_only_its_own_history_size() -> None:
    async with running_hub(Settings(room_options=OPTIONS)) as hub:
        for n in range(5):
            await hub.hub.publish("short", n)
            await hub.hub.publish("long", n)
        short = await hub.hub.history("short", limit=100, since=0)
        long = await hub.hub.history("long", limit=100, since=0)
        assert [m.offset for m in short.messages] == [4, 5]
        assert short.first_kept == 4
        assert [m.offset for m in long.messages] == [1, 2, 3, 4, 5]


async def test_presence_can_be_off_for_a_room() -> None:
    async with running_hub(Settings(room_options=OPTIONS)) as hub, await connect_v1(hub.ws) as ws:
        await send_json(ws, {"type": "presence", "room": "typing.a", "id": "1"})
        answer = await recv_json(ws)
        assert (answer["code"], answer["reason"]) == (
            "forbidden",
            "presence is off for room 'typing.a'",
        )


async def test_an_ephemeral_publish_reaches_current_subscribers_without_an_offset() -> None:
    async with running_hub() as hub:
        async with (
            await connect_v1(hub.ws) as writer,
            await connect_v1(hub.ws) as reader,
            await connect_plain(hub.ws + "/doc") as plain,
        ):
            await subscribe(reader, "doc")
            await send_json(
                writer,
                {
                    "type": "publish",
                    "room": "doc",
                    "data": {"typing": True},
                    "id": "t",
                    "ephemeral": True,
                },
            )
            assert await recv_json(writer) == {
                "type": "ack",
                "id": "t",
                "room": "doc",
                "ephemeral": True,
            }
            assert await recv_json(reader) == {
                "type": "message",
                "room": "doc",
                "data": {"typing": True},
                "ephemeral": True,
            }
            assert await recv_json(plain) == {"typing": True}
            await writer.send(_ephemeral_binary())
            frame = decode_binary_frame(await asyncio.wait_for(reader.recv(), 10))  # type: ignore[arg-type]
            assert frame == {
                "type": "message",
                "room": "doc",
                "ephemeral": True,
                "data": b"\x01\x02",
            }
            await hub.hub.publish("doc", "stored")
            stored = await recv_json(reader)
            assert stored["offset"] == 1  # ephemeral messages took no offsets
        history = await hub.hub.history("doc", limit=10, since=0)
        assert [m.data for m in history.messages] == ["stored"]
        async with await connect_v1(hub.ws) as late:
            await subscribe(late, "doc", since={"epoch": stored["epoch"], "offset": 0})
            assert (await recv_json(late))["data"] == "stored"
            await assert_silent(late)  # and nothing ephemeral is replayed


def _ephemeral_binary() -> bytes:
    header = json.dumps({"type": "publish", "room": "doc", "ephemeral": True}).encode()
    return struct.pack("!I", len(header)) + header + b"\x01\x02"


async def test_a_malformed_ephemeral_flag_is_a_bad_frame() -> None:
    async with running_hub() as hub, await connect_v1(hub.ws) as ws:
        await send_json(
            ws, {"type": "publish", "room": "a", "data": 1, "id": "x", "ephemeral": "yes"}
        )
        assert (await recv_json(ws))["code"] == "bad_frame"


def test_room_options_that_are_not_the_documented_shape_stop_the_hub_at_start() -> None:
    with pytest.raises(ConfigError, match="unknown room option 'colour'"):
        wire(Settings(room_options="chat:colour=red"))
