"""fanout.v1 over a real uvicorn server with real WebSocket clients."""

from __future__ import annotations

from tests.support.servers import running_hub
from tests.support.wsclient import (
    assert_silent,
    binary_publish,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


async def test_a_new_room_is_at_offset_zero_and_its_first_message_is_offset_one() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        sub = await subscribe(ws, "fresh")
        assert sub == {
            "type": "subscribed",
            "room": "fresh",
            "epoch": sub["epoch"],
            "offset": 0,
            "recovered": False,
        }
        await send_json(ws, {"type": "publish", "room": "fresh", "data": "hi", "id": "a"})
        message, ack = await recv_json(ws), await recv_json(ws)
        assert message == {
            "type": "message",
            "room": "fresh",
            "epoch": sub["epoch"],
            "offset": 1,
            "data": "hi",
        }
        assert ack == {
            "type": "ack",
            "id": "a",
            "room": "fresh",
            "epoch": sub["epoch"],
            "offset": 1,
        }


async def test_every_subscriber_receives_every_offset_once_in_order() -> None:
    async with running_hub() as server:
        subs = [await connect_v1(server.ws) for _ in range(5)]
        for ws in subs:
            await subscribe(ws, "r")
        async with await connect_v1(server.ws) as pub:
            for i in range(200):
                await send_json(pub, {"type": "publish", "room": "r", "data": i})
        for ws in subs:
            got = [await recv_json(ws) for _ in range(200)]
            assert [m["offset"] for m in got] == list(range(1, 201))
            assert [m["data"] for m in got] == list(range(200))
            await ws.close()


async def test_binary_publish_reaches_subscribers_as_binary_with_its_offset() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        await subscribe(ws, "img")
        payload = bytes(range(256)) * 40
        await ws.send(binary_publish("img", payload, "b1"))
        message, ack = await recv_json(ws), await recv_json(ws)
        assert message["type"] == "message"
        assert message["offset"] == 1
        assert message["data"] == payload
        assert ack["id"] == "b1"


async def test_resume_with_since_replays_exactly_what_was_missed_then_live() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as pub:
        for i in range(10):
            await send_json(pub, {"type": "publish", "room": "r", "data": i, "id": f"p{i}"})
        acks = [await recv_json(pub) for _ in range(10)]
        epoch = acks[0]["epoch"]
        async with await connect_v1(server.ws) as late:
            sub = await subscribe(late, "r", since={"epoch": epoch, "offset": 4})
            assert sub["recovered"] is True
            assert sub["offset"] == 10
            await send_json(pub, {"type": "publish", "room": "r", "data": "live"})
            got = [await recv_json(late) for _ in range(7)]
            assert [m["offset"] for m in got] == list(range(5, 12))
            assert got[-1]["data"] == "live"
            await assert_silent(late)


async def test_a_10_mb_photo_reaches_every_subscriber_with_default_limits() -> None:
    photo = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    async with running_hub() as server:
        subs = [await connect_v1(server.ws, max_size=None) for _ in range(3)]
        for ws in subs:
            await subscribe(ws, "photos")
        async with await connect_v1(server.ws) as pub:
            await pub.send(binary_publish("photos", photo, "big"))
            assert (await recv_json(pub))["type"] == "ack"
        for ws in subs:
            message = await recv_json(ws)
            assert message["data"] == photo
            await ws.close()
