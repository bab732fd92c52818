"""Plain mode: the article's clients work unchanged, made safe."""

from __future__ import annotations

import asyncio

from tests.support.servers import running_hub
from tests.support.wsclient import (
    assert_silent,
    connect_plain,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


async def test_a_plain_text_frame_reaches_every_client_in_the_lobby_sender_included() -> None:
    async with running_hub() as server:
        clients = [await connect_plain(server.ws) for _ in range(3)]
        await clients[0].send("こんにちは")
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 5) == "こんにちは"
        for ws in clients:
            await ws.close()


async def test_binary_frames_are_broadcast_as_is() -> None:
    async with running_hub() as server:
        a, b = await connect_plain(server.ws), await connect_plain(server.ws)
        image = bytes(range(256)) * 1000
        await a.send(image)
        assert await asyncio.wait_for(b.recv(), 5) == image
        assert await asyncio.wait_for(a.recv(), 5) == image
        await a.close()
        await b.close()


async def test_a_room_in_the_path_keeps_rooms_apart() -> None:
    async with running_hub() as server:
        kitchen = await connect_plain(server.ws + "/kitchen")
        lobby = await connect_plain(server.ws)
        await kitchen.send("soup")
        assert await asyncio.wait_for(kitchen.recv(), 5) == "soup"
        await assert_silent(lobby)
        await kitchen.close()
        await lobby.close()


async def test_plain_and_v1_clients_share_rooms() -> None:
    async with running_hub() as server:
        plain = await connect_plain(server.ws + "/mixed")
        async with await connect_v1(server.ws) as v1:
            await subscribe(v1, "mixed")
            await plain.send("from plain")
            message = await recv_json(v1)
            assert (message["offset"], message["data"]) == (1, "from plain")
            assert await asyncio.wait_for(plain.recv(), 5) == "from plain"
            await send_json(v1, {"type": "publish", "room": "mixed", "data": {"n": 1}})
            await send_json(v1, {"type": "publish", "room": "mixed", "data": "text"})
            await send_json(v1, {"type": "publish", "room": "mixed", "data": None})
            assert await asyncio.wait_for(plain.recv(), 5) == '{"n":1}'
            assert await asyncio.wait_for(plain.recv(), 5) == "text"
            assert await asyncio.wait_for(plain.recv(), 5) == "null"
        await plain.close()


async def test_a_bad_room_in_the_path_is_closed_with_1008() -> None:
    async with running_hub() as server:
        ws = await connect_plain(server.ws + "/bad%20room")
        await ws.wait_closed()
        assert ws.close_code == 1008
