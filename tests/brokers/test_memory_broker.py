"""Limits specific to the in-memory broker."""

from __future__ import annotations

import pytest

from fanout.brokers.memory import MemoryBroker
from tests.brokers.conftest import Recorder, memory_limits


async def _started(**limits: float) -> MemoryBroker:
    broker = MemoryBroker(memory_limits(**limits))
    await broker.start(Recorder())
    return broker


async def test_the_process_wide_history_budget_trims_the_least_active_rooms_first() -> None:
    broker = await _started(history_total_max_bytes=10_000)
    for _ in range(8):
        await broker.publish("old", b"o" * 1000)
    for _ in range(8):
        await broker.publish("new", b"n" * 1000)
    assert broker.history_bytes <= 10_000
    assert len((await broker.history("new", 0)).messages) == 8
    assert len((await broker.history("old", 0)).messages) == 2


@pytest.mark.parametrize("text", ["a" * 1000, "\u00e9" * 500])
async def test_a_text_message_counts_its_utf8_bytes_against_the_history_budget(text: str) -> None:
    broker = await _started(history_total_max_bytes=3_000)
    for _ in range(5):
        await broker.publish("r", text)
    assert broker.history_bytes == 3_000  # 1,000 bytes each, whatever the characters
    assert len((await broker.history("r", 0)).messages) == 3


async def test_a_forgotten_room_comes_back_with_a_new_epoch() -> None:
    broker = await _started(max_rooms=2)
    first = await broker.publish("a", 1)
    await broker.publish("b", 1)
    await broker.publish("c", 1)  # "a" is the least recently active: forgotten
    assert broker.room_count == 2
    again = await broker.publish("a", 2)
    assert again.offset == 1
    assert again.epoch != first.epoch


async def test_an_attached_room_is_never_forgotten() -> None:
    broker = await _started(max_rooms=1)
    await broker.attach("live")
    first = await broker.publish("live", 1)
    await broker.publish("other", 1)
    assert (await broker.publish("live", 2)).epoch == first.epoch


async def test_ids_are_forgotten_past_the_count_window() -> None:
    broker = await _started(idempotency_max_ids=2)
    await broker.publish("r", 1, msg_id="a")
    await broker.publish("r", 2, msg_id="b")
    await broker.publish("r", 3, msg_id="c")
    assert (await broker.publish("r", 1, msg_id="a")).duplicate is False
    assert (await broker.publish("r", 3, msg_id="c")).duplicate is True


async def test_ids_are_forgotten_past_the_time_window() -> None:
    broker = await _started(idempotency_ttl_s=0)
    await broker.publish("r", 1, msg_id="a")
    assert (await broker.publish("r", 1, msg_id="a")).duplicate is False


@pytest.mark.parametrize("field", ["history_max_messages", "history_max_bytes", "max_rooms"])
def test_limits_below_one_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        memory_limits(**{field: 0})


async def test_when_every_room_is_in_use_a_new_room_still_works_beyond_max_rooms() -> None:
    recorder = Recorder()
    broker = MemoryBroker(memory_limits(max_rooms=1))
    await broker.start(recorder)
    await broker.attach("a")
    await broker.attach("b")
    first = await broker.publish("b", 1, msg_id="same")
    retry = await broker.publish("b", 1, msg_id="same")
    assert (retry.epoch, retry.offset, retry.duplicate) == (first.epoch, 1, True)
    assert recorder.offsets("b") == [1]
    assert broker.history_bytes == (await broker.history("b", 0)).messages[0].size
