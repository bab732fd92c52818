"""The Broker contract, held by every implementation."""

from __future__ import annotations

import asyncio

from fanout.core.broker import Broker, Retention
from fanout.core.control import ControlEvent, ControlKind
from tests.brokers.conftest import BrokerFactory, Recorder

Started = tuple[Broker, Recorder]


async def test_a_room_that_never_had_a_message_is_at_offset_zero(started: Started) -> None:
    broker, _ = started
    history = await broker.history("empty", None)
    assert (history.latest, history.first_kept, history.messages) == (0, 1, [])


async def test_offsets_count_from_one_per_room(started: Started) -> None:
    broker, _ = started
    a = [await broker.publish("a", i) for i in range(3)]
    b = await broker.publish("b", "x")
    assert [p.offset for p in a] == [1, 2, 3]
    assert b.offset == 1
    assert len({p.epoch for p in a}) == 1


async def test_an_attached_room_streams_every_later_message_in_order(started: Started) -> None:
    broker, recorder = started
    await broker.publish("r", "before")
    await broker.attach("r")
    for i in range(4):
        await broker.publish("r", i)
    await broker.publish("other", "not attached")
    assert await recorder.until("r", 5) == [2, 3, 4, 5]
    await broker.detach("r")
    await broker.attach("barrier")
    await broker.publish("r", "after detach")
    await broker.publish("barrier", "everything before this has arrived")
    await recorder.until("barrier", 1)
    assert recorder.offsets("r") == [2, 3, 4, 5]
    assert recorder.offsets("other") == []


async def test_a_retried_id_returns_the_first_offset_and_is_not_stored_twice(
    started: Started,
) -> None:
    broker, recorder = started
    await broker.attach("r")
    first = await broker.publish("r", "hello", msg_id="m-1")
    retry = await broker.publish("r", "hello", msg_id="m-1")
    assert (retry.offset, retry.duplicate, first.duplicate) == (first.offset, True, False)
    await broker.publish("r", "next")
    assert await recorder.until("r", 2) == [1, 2]
    assert (await broker.history("r", 0)).latest == 2


async def test_ids_are_scoped_to_their_room(started: Started) -> None:
    broker, _ = started
    await broker.publish("r1", "x", msg_id="same")
    other = await broker.publish("r2", "x", msg_id="same")
    assert (other.offset, other.duplicate) == (1, False)


async def test_history_returns_what_is_retained_after_an_offset(started: Started) -> None:
    broker, _ = started
    for i in range(3):
        await broker.publish("r", i)
    history = await broker.history("r", 1)
    assert [(m.offset, m.data) for m in history.messages] == [(2, 1), (3, 2)]
    assert history.latest == 3
    assert (await broker.history("r", 3)).messages == []


async def test_history_is_bounded_by_count_and_says_where_it_starts(started: Started) -> None:
    broker, _ = started  # retention: 5 messages
    for i in range(12):
        await broker.publish("r", i)
    history = await broker.history("r", 0)
    assert history.first_kept == 8
    assert [m.offset for m in history.messages] == [8, 9, 10, 11, 12]


async def test_history_is_bounded_by_bytes(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(1000, 3000)
    await broker.start(Recorder())
    for _ in range(10):
        await broker.publish("r", b"x" * 1000)
    history = await broker.history("r", 0)
    assert sum(len(m.data) for m in history.messages) <= 3000
    assert history.messages[-1].offset == 10
    assert history.first_kept == history.messages[0].offset > 1
    await broker.close()


async def test_binary_and_json_payloads_come_back_unchanged(started: Started) -> None:
    broker, _ = started
    await broker.publish("r", b"\x00\x01")
    await broker.publish("r", {"nested": [1, "two", None]})
    history = await broker.history("r", 0)
    assert [m.data for m in history.messages] == [b"\x00\x01", {"nested": [1, "two", None]}]


async def test_a_healthy_broker_reports_no_problem(started: Started) -> None:
    broker, _ = started
    assert await broker.health() is None


async def test_history_reads_at_most_limit_messages_from_the_first_after(started: Started) -> None:
    broker, _ = started
    for n in range(1, 5):
        await broker.publish("r", n)
    history = await broker.history("r", 1, limit=2)
    assert [m.offset for m in history.messages] == [2, 3]
    assert history.latest == 4


async def test_a_room_keeps_at_most_its_own_history_size(started: Started) -> None:
    broker, _ = started
    for n in range(1, 5):
        await broker.publish("r", n, retention=Retention(messages=2))
    history = await broker.history("r", 0)
    assert [m.offset for m in history.messages] == [3, 4]


async def test_an_ephemeral_message_reaches_the_listener_and_is_not_kept(
    started: Started,
) -> None:
    broker, recorder = started
    await broker.attach("r")
    await broker.publish_ephemeral("r", {"typing": True})
    for _ in range(500):
        if recorder.ephemeral:
            break
        await asyncio.sleep(0.01)
    assert recorder.ephemeral == [("r", {"typing": True})]
    assert (await broker.history("r", 0)).latest == 0


async def test_a_control_event_reaches_the_listener(started: Started) -> None:
    broker, recorder = started
    event = ControlEvent(ControlKind.DISCONNECT, user="alice", reason="bye")
    await broker.control(event)
    for _ in range(500):
        if recorder.controls:
            break
        await asyncio.sleep(0.01)
    assert recorder.controls == [event]


async def test_a_room_keeps_no_message_older_than_its_history_age(started: Started) -> None:
    broker, _ = started
    young = Retention(age_s=0.3)
    for n in (1, 2):
        await broker.publish("r", n, retention=young)
    await asyncio.sleep(0.4)
    await broker.publish("r", 3, retention=young)
    kept = await broker.history("r", 0, retention=young)
    assert [m.offset for m in kept.messages] == [3]
    assert kept.first_kept == 3
    await asyncio.sleep(0.4)
    gone = await broker.history("r", 0, retention=young)
    assert (gone.messages, gone.latest, gone.first_kept) == ([], 3, 4)
