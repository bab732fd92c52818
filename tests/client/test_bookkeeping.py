"""The client's pure parts: exactly-once bookkeeping per room, frame encoding, the
bounded event buffer."""

from __future__ import annotations

import asyncio

import pytest

from fanout.client import Ack, Connected, Direct, Gap, Message, Subscribed, wire
from fanout.client.buffer import EndOfEvents, EventBuffer
from fanout.client.errors import Unreachable
from fanout.client.rooms import RoomTracker
from fanout.protocol import server_frames
from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import Message as StoredMessage
from fanout.protocol.envelope import OutFrame
from fanout.protocol.frames import Publish, Since, Subscribe, decode_binary, decode_text


def _tracker_at(room: str, epoch: str, offset: int) -> RoomTracker:
    tracker = RoomTracker()
    tracker.add(room)
    tracker.subscribed(Subscribed(room, epoch, offset, recovered=False))
    return tracker


def test_a_message_at_or_below_the_last_delivered_offset_is_dropped_as_a_duplicate() -> None:
    tracker = _tracker_at("r", "e1", 0)
    first = Message("r", "e1", 1, "a")
    assert tracker.message(first) == [first]
    assert tracker.message(first) == []
    assert tracker.message(Message("r", "e1", 0, "old")) == []
    assert tracker.duplicates_dropped == 2
    assert tracker.since("r") == ("e1", 1)


def test_an_offset_jump_without_a_gap_frame_is_reported_as_a_gap_never_silently() -> None:
    tracker = _tracker_at("r", "e1", 3)
    jumped = Message("r", "e1", 7, "x")
    assert tracker.message(jumped) == [Gap("r", "e1", 4, 6), jumped]
    assert tracker.holes_reported == 1


def test_a_message_of_another_epoch_or_an_unknown_room_is_not_delivered() -> None:
    tracker = _tracker_at("r", "e1", 0)
    assert tracker.message(Message("r", "stale", 1, "x")) == []
    assert tracker.message(Message("elsewhere", "e1", 1, "x")) == []


def test_a_new_epoch_restarts_from_its_latest_offset() -> None:
    tracker = _tracker_at("r", "e1", 0)
    tracker.message(Message("r", "e1", 1, "a"))
    reset = Subscribed("r", "e2", 5, recovered=False)
    assert tracker.subscribed(reset) == [reset]
    assert tracker.since("r") == ("e2", 5)
    assert tracker.message(Message("r", "e2", 6, "b")) == [Message("r", "e2", 6, "b")]


def test_resuming_in_the_same_epoch_keeps_the_delivered_offset_and_a_gap_moves_it() -> None:
    tracker = _tracker_at("r", "e1", 0)
    tracker.message(Message("r", "e1", 1, "a"))
    tracker.subscribed(Subscribed("r", "e1", 50, recovered=False))
    assert tracker.since("r") == ("e1", 1)
    assert tracker.gap(Gap("r", "e1", 2, 40)) == [Gap("r", "e1", 2, 40)]
    assert tracker.gap(Gap("r", "e1", 2, 40)) == [], "a repeated gap is not reported twice"
    assert tracker.message(Message("r", "e1", 41, "b")) == [Message("r", "e1", 41, "b")]


def test_a_room_with_nothing_delivered_resumes_without_since() -> None:
    tracker = RoomTracker()
    tracker.add("r")
    assert tracker.since("r") is None
    assert tracker.since("unknown") is None


def test_a_json_publish_is_a_text_frame_the_hub_decodes_with_its_id() -> None:
    frame, is_text = wire.encode_publish("r", {"k": [1, 2]}, "id-1")
    assert is_text
    assert decode_text(frame) == Publish("r", {"k": [1, 2]}, "id-1")


def test_a_bytes_publish_is_a_binary_frame_with_a_length_prefixed_header() -> None:
    payload = bytes(range(256)) * 4
    frame, is_text = wire.encode_publish("img", payload, "id-2")
    assert not is_text
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4 - len(payload)
    assert decode_binary(frame) == Publish("img", payload, "id-2")


def test_a_resume_subscribe_carries_since() -> None:
    assert decode_text(wire.encode_subscribe("r", ("e1", 9))) == Subscribe("r", Since("e1", 9))
    assert decode_text(wire.encode_subscribe("r", None)) == Subscribe("r")


def _received(frame: OutFrame) -> str | bytes:
    """What the client's websocket hands over for a frame the hub sends."""
    return frame.as_text if frame.is_text else frame.payload


def test_every_server_frame_decodes_to_its_value() -> None:
    stored = StoredMessage("r", "e1", 3, {"a": 1})
    assert wire.decode(_received(stored.v1_frame())) == Message("r", "e1", 3, {"a": 1})
    binary = StoredMessage("r", "e1", 4, b"\x00\xff")
    assert wire.decode(_received(binary.v1_frame())) == Message("r", "e1", 4, b"\x00\xff")
    assert wire.decode(_received(server_frames.subscribed("r", "e1", 4, recovered=True))) == (
        Subscribed("r", "e1", 4, recovered=True)
    )
    assert wire.decode(_received(server_frames.ack("i", "r", "e1", 4))) == Ack("i", "r", "e1", 4)
    assert wire.decode(_received(server_frames.gap("r", "e1", 2, 3))) == Gap("r", "e1", 2, 3)
    assert wire.decode(_received(server_frames.error(ErrorCode.TIMEOUT, "slow", "i"))) == (
        wire.ErrorReply("timeout", "slow", "i")
    )


def test_frames_of_no_protocol_type_come_through_as_direct_and_bad_ones_raise() -> None:
    assert wire.decode('{"type": "hello", "n": 1}') == Direct({"type": "hello", "n": 1})
    assert wire.decode("not json") == Direct("not json")
    assert wire.decode(b"\x00") == Direct(b"\x00")
    with pytest.raises(wire.MalformedFrame, match="offset"):
        wire.decode('{"type": "message", "room": "r", "epoch": "e", "data": 1}')


async def test_the_event_buffer_holds_back_the_reader_when_full_and_drains_after_its_end() -> None:
    buffer = EventBuffer(max_items=2)
    await buffer.put(Connected("u", 1))
    await buffer.put(Connected("u", 2))
    blocked = asyncio.create_task(buffer.put(Connected("u", 3)))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert buffer.full
    assert await buffer.get() == Connected("u", 1)
    await asyncio.wait_for(blocked, 1)
    buffer.end(Unreachable(3, "refused"))
    assert [await buffer.get(), await buffer.get()] == [Connected("u", 2), Connected("u", 3)]
    with pytest.raises(Unreachable):
        await buffer.get()
    closed = EventBuffer(max_items=1)
    closed.end()
    with pytest.raises(EndOfEvents):
        await closed.get()
