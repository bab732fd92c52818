"""G1 and G6 end to end: resume, gaps, epochs, acks and retries."""

from __future__ import annotations

from fanout.settings import Settings
from tests.support.servers import running_hub
from tests.support.wsclient import assert_silent, connect_v1, recv_json, send_json, subscribe


async def _publish_n(url: str, room: str, n: int) -> str:
    async with await connect_v1(url) as pub:
        for i in range(n):
            await send_json(pub, {"type": "publish", "room": room, "data": i, "id": f"{room}-{i}"})
        acks = [await recv_json(pub) for _ in range(n)]
    assert [a["type"] for a in acks] == ["ack"] * n
    epoch: str = acks[0]["epoch"]
    return epoch


async def test_resume_past_retained_history_gets_recovered_false_then_a_gap_then_the_rest() -> None:
    async with running_hub(Settings(history_max_messages=3)) as server:
        epoch = await _publish_n(server.ws, "r", 10)
        async with await connect_v1(server.ws) as ws:
            sub = await subscribe(ws, "r", since={"epoch": epoch, "offset": 2})
            assert (sub["recovered"], sub["offset"]) == (False, 10)
            gap = await recv_json(ws)
            assert gap == {"type": "gap", "room": "r", "epoch": epoch, "from": 3, "to": 7}
            assert [(await recv_json(ws))["offset"] for _ in range(3)] == [8, 9, 10]
            await assert_silent(ws)


async def test_resume_from_another_epoch_gets_recovered_false_and_no_replay() -> None:
    async with running_hub() as server:
        await _publish_n(server.ws, "r", 3)
        async with await connect_v1(server.ws) as ws:
            sub = await subscribe(ws, "r", since={"epoch": "a-lost-epoch", "offset": 1})
            assert (sub["recovered"], sub["offset"]) == (False, 3)
            await assert_silent(ws)


async def test_resume_at_the_head_is_recovered_with_nothing_to_replay() -> None:
    async with running_hub() as server:
        epoch = await _publish_n(server.ws, "r", 3)
        async with await connect_v1(server.ws) as ws:
            sub = await subscribe(ws, "r", since={"epoch": epoch, "offset": 3})
            assert sub["recovered"] is True
            await assert_silent(ws)


async def test_a_since_offset_beyond_the_head_is_not_recovered() -> None:
    async with running_hub() as server:
        epoch = await _publish_n(server.ws, "r", 2)
        async with await connect_v1(server.ws) as ws:
            sub = await subscribe(ws, "r", since={"epoch": epoch, "offset": 99})
            assert (sub["recovered"], sub["offset"]) == (False, 2)


async def test_a_retried_publish_after_reconnecting_is_acked_with_its_first_offset_once() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as watcher:
        await subscribe(watcher, "r")
        async with await connect_v1(server.ws) as first:
            await send_json(first, {"type": "publish", "room": "r", "data": "hi", "id": "once"})
            ack = await recv_json(first)
        async with await connect_v1(server.ws) as retry:
            await send_json(retry, {"type": "publish", "room": "r", "data": "hi", "id": "once"})
            assert await recv_json(retry) == ack
        assert (await recv_json(watcher))["offset"] == 1
        await assert_silent(watcher)


async def test_acks_come_in_the_order_of_the_publishes() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        for i in range(100):
            await send_json(
                ws, {"type": "publish", "room": f"room{i % 7}", "data": i, "id": f"i{i}"}
            )
        acks = [await recv_json(ws) for _ in range(100)]
        assert [a["id"] for a in acks] == [f"i{i}" for i in range(100)]


async def test_unsubscribe_stops_delivery() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        await subscribe(ws, "r")
        await send_json(ws, {"type": "unsubscribe", "room": "r"})
        await _publish_n(server.ws, "r", 2)
        await assert_silent(ws)
        assert server.hub.room_count == 0


async def test_too_many_rooms_on_one_connection_get_an_error() -> None:
    settings = Settings(max_rooms_per_connection=2)
    async with running_hub(settings) as server, await connect_v1(server.ws) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        await send_json(ws, {"type": "subscribe", "room": "c"})
        assert (await recv_json(ws))["code"] == "too_many_rooms"
