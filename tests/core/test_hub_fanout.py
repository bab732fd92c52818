"""The hub's fan-out with the real Hub, Connection and memory broker, and a fake
transport instead of sockets: delivery follows ``Subscription``'s rules, which the
fan-out loop inlines for speed, and a slow consumer is cut off alone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fanout.asgi.wiring import hub_limits, wire
from fanout.core.connection import Connection, Mode
from fanout.core.flush import FlushScheduler
from fanout.core.hub import Hub
from fanout.core.outbox import OutboxLimits
from fanout.core.subscription import Subscription
from fanout.protocol.codes import CloseCode
from fanout.protocol.envelope import Message, OutFrame, joined_wire
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


@contextlib.asynccontextmanager
async def _running(**limits: Any) -> AsyncIterator[Hub]:
    """A started hub (``_hub(**limits)``), closed afterwards."""
    hub = _hub(**limits)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


async def _settled() -> None:
    for _ in range(3):  # the flush runs at the end of a loop iteration
        await asyncio.sleep(0)


async def _member(hub: Hub, room: str, since: Since | None = None) -> FakeTransport:
    transport = FakeTransport()
    conn = hub.connect(transport, mode=Mode.V1, client="127.0.0.1:1")
    await hub.subscribe(conn, room, since)
    return transport


async def _connection(hub: Hub, mode: Mode, *rooms: str) -> tuple[FakeTransport, Connection]:
    """A connection on a fake socket, subscribed to ``rooms``."""
    transport = FakeTransport()
    conn = hub.connect(transport, mode=mode, client="127.0.0.1:1")
    for room in rooms:
        await hub.subscribe(conn, room)
    return transport, conn


async def test_each_member_gets_each_offset_once_in_order_as_subscription_rules_say() -> None:
    async with _running() as hub:
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


async def test_a_member_that_resumes_gets_what_it_missed_then_live_messages() -> None:
    async with _running() as hub:
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


async def test_a_member_whose_outbox_overflows_is_closed_4008_alone() -> None:
    async with _running(outbox=OutboxLimits(max_messages=4, max_bytes=1 << 20)) as hub:
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


async def test_messages_handed_over_in_one_loop_turn_reach_each_member_in_one_write() -> None:
    async with _running() as hub:
        members = [await _member(hub, "r") for _ in range(3)]
        await _settled()
        before = [t.writes for t in members]
        for n in range(4):  # the memory broker answers at once: all in this turn
            await hub.publish("r", n)
        await _settled()
        for transport, writes in zip(members, before, strict=True):
            assert transport.writes == writes + 1
            assert [f["data"] for f in _frames(transport)[1:]] == [0, 1, 2, 3]


async def test_a_members_own_frame_follows_the_messages_handed_over_before_it() -> None:
    async with _running() as hub:
        transport, conn = await _connection(hub, Mode.V1, "r")
        await hub.publish("r", "first")
        conn.answer(OutFrame.json({"type": "mine"}))
        await hub.publish("r", "second")
        await _settled()
        frames = _frames(transport)[1:]
        assert [f.get("data", f["type"]) for f in frames] == ["first", "mine", "second"]


async def test_a_gap_follows_the_messages_handed_over_before_it() -> None:
    async with _running() as hub:
        transport = await _member(hub, "r")
        await _settled()
        epoch = _frames(transport)[0]["epoch"]
        hub.on_message(Message("r", epoch, 1, "kept"))
        hub.on_gap("r", epoch, 2, 5)
        hub.on_message(Message("r", epoch, 6, "after"))
        await _settled()
        frames = _frames(transport)[1:]
        assert [(f["type"], f.get("offset", f.get("from"))) for f in frames] == [
            ("message", 1),
            ("gap", 2),
            ("message", 6),
        ]


async def test_under_a_write_delay_a_member_of_two_busy_rooms_gets_one_write_per_flush() -> None:
    async with _running(write_delay_s=0.01) as hub:
        transport, _ = await _connection(hub, Mode.V1, "a", "b")
        await asyncio.sleep(0.03)
        before = transport.writes
        await hub.publish("a", "to a")
        await hub.publish("b", "to b")
        await asyncio.sleep(0.03)
        assert transport.writes == before + 1
        assert [f["data"] for f in _frames(transport)[-2:]] == ["to a", "to b"]


async def test_a_plain_members_own_frame_follows_the_messages_handed_over_before_it() -> None:
    async with _running() as hub:
        transport, conn = await _connection(hub, Mode.PLAIN, "r")
        await hub.publish("r", "first")
        conn.answer(OutFrame.text("mine"))  # what Consumer.send does
        await hub.publish("r", "second")
        await _settled()
        assert [f.as_text for f in transport.written] == ["first", "mine", "second"]


async def test_a_member_joining_while_messages_wait_for_the_flush_gets_each_offset_once() -> None:
    async with _running() as hub:
        first = await _member(hub, "r")
        await _settled()
        epoch = _frames(first)[0]["epoch"]
        await hub.publish("r", "before")  # waits in the room's batch
        resumed = await _member(hub, "r", Since(epoch, 0))  # same loop turn
        fresh = await _member(hub, "r")
        await hub.publish("r", "after")
        await _settled()
        assert [(f["type"], f.get("offset")) for f in _frames(first)[1:]] == [
            ("message", 1),
            ("message", 2),
        ]
        # Resumed from 0: subscribed, the replay of 1, then 2 live; none twice.
        assert [(f["type"], f.get("offset")) for f in _frames(resumed)] == [
            ("subscribed", 1),
            ("message", 1),
            ("message", 2),
        ]
        assert [(f["type"], f.get("offset")) for f in _frames(fresh)] == [
            ("subscribed", 1),
            ("message", 2),
        ]


async def test_a_batch_larger_than_an_outbox_closes_the_member_4008_instead_of_being_written() -> (
    None
):
    async with _running(outbox=OutboxLimits(max_messages=1000, max_bytes=64 * 1024)) as hub:
        transport = await _member(hub, "r")
        await _settled()
        for _ in range(20):  # 20 x 16 KiB in one loop turn: 320 KiB for one flush
            await hub.publish("r", "x" * 16 * 1024)
        await _settled()
        assert transport.closed_with == (CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
        assert sum(f.size for f in transport.written) < 64 * 1024


async def test_shutdown_sends_the_messages_still_waiting_for_a_delayed_flush() -> None:
    hub = _hub(write_delay_s=0.05)
    await hub.start()
    transport = await _member(hub, "r")
    await asyncio.sleep(0.1)
    await hub.publish("r", "acked before the shutdown")
    await hub.close()  # well within the write delay
    frames = _frames(transport)
    assert [(f["type"], f.get("offset")) for f in frames] == [("subscribed", 0), ("message", 1)]
    assert transport.closed_with is not None
    assert transport.closed_with[0] == CloseCode.GOING_AWAY


async def test_a_failing_flush_is_logged_and_later_flushes_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _running() as hub:
        broken = await _member(hub, "broken")
        healthy = await _member(hub, "healthy")
        await _settled()

        broken.failure = RuntimeError("the socket went away mid-write")
        await hub.publish("broken", "lost to the failure")
        await hub.publish("healthy", "one")
        await _settled()
        await hub.publish("healthy", "two")
        await _settled()
        assert [f["data"] for f in _frames(healthy)[1:]] == ["one", "two"]
        assert "flushing" in caplog.text


async def test_a_buffer_reused_after_its_publish_returned_is_delivered_as_it_was() -> None:
    async with _running() as hub:
        transport, _ = await _connection(hub, Mode.PLAIN, "r")
        buffer = bytearray(b"frame 1")
        await hub.publish("r", buffer)
        buffer[:] = b"frame 2"  # the application reuses its buffer at once
        await _settled()
        assert [f.payload for f in transport.written] == [b"frame 1"]


async def test_frames_handed_to_the_writer_stay_ahead_of_a_batch_once_the_socket_frees_up() -> None:
    transport = FakeTransport(ready=False)  # the socket applies backpressure
    flusher = FlushScheduler(asyncio.get_running_loop())
    conn = Connection(
        transport,
        mode=Mode.PLAIN,
        outbox_limits=OutboxLimits(max_messages=16, max_bytes=1 << 20),
        flusher=flusher,
    )
    conn.enqueue(OutFrame.text("queued first"))
    conn.flush()  # the writer task has the outbox now, and has not run yet
    # Meanwhile the socket drains and takes data again; a room's batch arrives.
    conn.write_through = transport.release()
    batch = [OutFrame.text("batch")]
    conn.deliver(batch, joined_wire(batch))
    await _settled()
    assert [f.as_text for f in transport.written] == ["queued first", "batch"]
    conn.mark_closed()


@pytest.mark.parametrize("mode", [Mode.PLAIN, Mode.V1])
async def test_a_member_whose_writer_holds_frames_gets_the_next_batch_after_them_then_direct(
    mode: Mode,
) -> None:
    async with _running() as hub:
        transport = FakeTransport(ready=False)  # the peer is not reading yet
        conn = hub.connect(transport, mode=mode, client="127.0.0.1:1")
        await hub.subscribe(conn, "r")
        await hub.publish("r", "first")
        await _settled()  # the writer task holds "first", waiting for the socket
        conn.write_through = transport.release()  # the socket takes data again
        await hub.publish("r", "second")  # flushed in the turn the writer wakes up in
        await _settled()
        writes = transport.writes
        await hub.publish("r", "third")  # the writer is done: straight through
        await _settled()
        assert transport.writes == writes + 1

        def data(frame: OutFrame) -> Any:
            return frame.as_text if mode is Mode.PLAIN else orjson.loads(frame.as_text)["data"]

        messages = [f for f in transport.written if mode is Mode.PLAIN or b'"message"' in f.wire]
        assert [data(f) for f in messages] == ["first", "second", "third"]


async def test_a_closing_member_is_not_written_to_by_the_rooms_it_was_in() -> None:
    async with _running() as hub:
        plain, plain_conn = await _connection(hub, Mode.PLAIN, "r")
        v1, v1_conn = await _connection(hub, Mode.V1, "r")
        await _settled()
        written = len(plain.written), len(v1.written)
        plain_conn.close(CloseCode.NORMAL)
        v1_conn.close(CloseCode.NORMAL)
        await hub.publish("r", "after the close")
        await _settled()
        assert (len(plain.written), len(v1.written)) == written
