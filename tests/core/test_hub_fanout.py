"""The hub's fan-out with the real Hub, Connection and memory broker, and a fake
transport instead of sockets: delivery follows ``Subscription``'s rules, which the
fan-out loop inlines for speed, and a slow consumer is cut off alone."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from fanout.asgi.wiring import hub_limits, wire
from fanout.core.connection import Connection, Mode
from fanout.core.hub import Hub
from fanout.core.outbox import OutboxLimits
from fanout.core.subscription import Subscription
from fanout.protocol.codes import CloseCode
from fanout.protocol.envelope import Message
from fanout.protocol.frames import Since
from fanout.settings import Settings
from tests.core.fakes import FakeTransport, nobody


def _hub(**limits: Any) -> Hub:
    hub = wire(Settings()).hub
    if limits:
        hub.limits = dataclasses.replace(hub_limits(Settings()), **limits)
    return hub


def _frames(transport: FakeTransport) -> list[dict[str, Any]]:
    return [orjson.loads(f.as_text) for f in transport.written]


async def _settled() -> None:
    for _ in range(3):  # the flush runs at the end of a loop iteration
        await asyncio.sleep(0)


async def _member(hub: Hub, room: str, since: Since | None = None) -> FakeTransport:
    transport = FakeTransport()
    conn = hub.connect(transport, mode=Mode.V1, client="127.0.0.1:1")
    await hub.subscribe(conn, room, since)
    return transport


async def test_each_member_gets_each_offset_once_in_order_as_subscription_rules_say() -> None:
    hub = _hub()
    await hub.start()
    try:
        members = [await _member(hub, "r") for _ in range(3)]
        for n in range(5):
            await hub.publish("r", {"n": n})
            await _settled()
        # The same events, judged by the sans-I/O rule directly:
        rule = Subscription(nobody(), "r")
        rule.go_live()
        rule.epoch = _frames(members[0])[0]["epoch"]
        expected = [m for m in range(1, 6) if rule.accepts(rule.epoch, m)]
        hub.on_message(Message("r", rule.epoch, 3, "a repeat"))  # already delivered
        hub.on_message(Message("r", "another-epoch", 9, "x"))
        await _settled()
        for transport in members:
            frames = _frames(transport)
            assert frames[0]["type"] == "subscribed"
            assert [f["offset"] for f in frames[1:]] == expected
    finally:
        await hub.close()


async def test_a_member_that_resumes_gets_what_it_missed_then_live_messages() -> None:
    hub = _hub()
    await hub.start()
    try:
        first = await _member(hub, "r")
        for n in range(3):
            await hub.publish("r", n)
        await _settled()
        epoch = _frames(first)[0]["epoch"]
        late = await _member(hub, "r", Since(epoch, 1))
        await hub.publish("r", 3)
        await _settled()
        frames = _frames(late)
        assert frames[0] == {
            "type": "subscribed",
            "room": "r",
            "epoch": epoch,
            "offset": 3,
            "recovered": True,
        }
        assert [f["offset"] for f in frames[1:]] == [2, 3, 4]
    finally:
        await hub.close()


async def test_a_member_whose_outbox_overflows_is_closed_4008_alone() -> None:
    hub = _hub(outbox=OutboxLimits(max_messages=4, max_bytes=1 << 20))
    await hub.start()
    try:
        reader = await _member(hub, "r")
        stalled = FakeTransport(ready=False)  # its socket applies backpressure
        conn: Connection = hub.connect(stalled, mode=Mode.V1, client="127.0.0.1:2")
        await hub.subscribe(conn, "r")
        for n in range(10):
            await hub.publish("r", n)
            await _settled()  # the reader's socket takes each write
        assert stalled.closed_with == (CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
        assert hub.counters["slow_consumer_closes"] == 1
        assert [f["offset"] for f in _frames(reader)[1:]] == list(range(1, 11))
        conn.mark_closed()
        assert conn not in hub.connections
        assert "r" not in conn.subscriptions
    finally:
        await hub.close()
