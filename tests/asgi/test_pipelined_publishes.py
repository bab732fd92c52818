"""One connection's publishes are handled together and answered in the order sent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fanout.core.consumer import Consumer
from fanout.protocol.envelope import Payload
from fanout.settings import Settings
from tests.support.servers import running_hub
from tests.support.wsclient import connect_v1, recv_json, send_json

HOOK_DELAY_S = 0.1


class SlowHook(Consumer):
    """An application whose publish hook takes a while (say, a database lookup)."""

    async def on_publish(self, room: str, data: Payload) -> Payload:
        await asyncio.sleep(HOOK_DELAY_S)
        return data


def _publish(n: int, room: str = "r") -> dict[str, Any]:
    return {"type": "publish", "room": room, "data": n, "id": f"p{n}"}


async def test_publishes_sent_without_waiting_are_acked_in_order_with_offsets_in_order() -> None:
    async with running_hub() as server:
        ws = await connect_v1(server.ws)
        for n in range(300):
            await send_json(ws, _publish(n))
        acks = [await recv_json(ws) for _ in range(300)]
        await ws.close()
    assert [a["id"] for a in acks] == [f"p{n}" for n in range(300)]
    assert [a["offset"] for a in acks] == list(range(1, 301))


async def test_a_slow_publish_hook_does_not_make_each_publish_wait_for_the_one_before() -> None:
    async with running_hub(consumer=SlowHook) as server:
        ws = await connect_v1(server.ws)
        started = time.monotonic()
        for n in range(20):
            await send_json(ws, _publish(n))
        acks = [await recv_json(ws) for _ in range(20)]
        elapsed = time.monotonic() - started
        await ws.close()
    assert [a["id"] for a in acks] == [f"p{n}" for n in range(20)]
    # One after the other this takes 20 x 0.1 s = 2 s; together about 0.1 s.
    assert elapsed < 10 * HOOK_DELAY_S, elapsed


async def test_errors_come_back_in_the_order_of_the_publishes_they_answer() -> None:
    async with running_hub(consumer=SlowHook) as server:
        ws = await connect_v1(server.ws)
        await send_json(ws, _publish(1))
        await send_json(ws, {"type": "publish", "room": "r", "id": "no-data"})  # malformed
        await send_json(ws, _publish(2, room="bad room!"))  # refused room name
        await send_json(ws, _publish(3))
        answers = [await recv_json(ws) for _ in range(4)]
        await ws.close()
    assert [(a["type"], a.get("id")) for a in answers] == [
        ("ack", "p1"),
        ("error", "no-data"),
        ("error", "p2"),
        ("ack", "p3"),
    ]


async def test_a_subscribe_is_answered_after_the_publishes_sent_before_it() -> None:
    async with running_hub(consumer=SlowHook) as server:
        ws = await connect_v1(server.ws)
        for n in range(5):
            await send_json(ws, _publish(n))
        await send_json(ws, {"type": "subscribe", "room": "r"})
        frames = [await recv_json(ws) for _ in range(6)]
        await ws.close()
    assert [f["type"] for f in frames] == ["ack"] * 5 + ["subscribed"]
    assert frames[-1]["offset"] == 5  # the subscription starts after all five


async def test_one_publish_at_a_time_when_configured() -> None:
    async with running_hub(Settings(publishes_in_flight=1), consumer=SlowHook) as server:
        ws = await connect_v1(server.ws)
        started = time.monotonic()
        for n in range(5):
            await send_json(ws, _publish(n))
        acks = [await recv_json(ws) for _ in range(5)]
        elapsed = time.monotonic() - started
        await ws.close()
    assert [a["offset"] for a in acks] == [1, 2, 3, 4, 5]
    assert elapsed >= 5 * HOOK_DELAY_S
