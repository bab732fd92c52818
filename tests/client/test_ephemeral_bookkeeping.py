"""Ephemeral messages and publishes in the client's bookkeeping, fed frames as the hub
sends them: no sockets. Ephemeral messages have no epoch nor offset, so they must never
move a position, open a gap or count as duplicates, and an ephemeral publish is sent
once and never again."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from fanout.client import (
    Dropped,
    Ephemeral,
    EphemeralAck,
    Gap,
    Message,
    Rejected,
    wire,
)
from fanout.client.connect import Link
from fanout.client.ephemeral import EphemeralSends
from fanout.client.events import Event
from fanout.client.publishes import encode_publish
from fanout.protocol import server_frames
from fanout.protocol.frames import Publish, decode_binary, decode_text
from tests.client.wired import Wired


class FakeSocket:
    """Records what is sent; ``closed`` makes every send fail as a closed socket's."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bool]] = []
        self.closed = False

    async def send(self, frame: bytes, text: bool = False) -> None:
        if self.closed:
            raise ConnectionClosedError(None, None)
        self.sent.append((frame, text))


def link(number: int = 1) -> tuple[Link, FakeSocket]:
    socket = FakeSocket()
    return Link(cast(ClientConnection, socket), number), socket


class Bookkeeping(Wired):
    """The wired bookkeeping, with this file's way of subscribing."""

    def subscribe(self, room: str, epoch: str = "e1", offset: int = 0) -> None:
        self.subs.tracker.add(room)
        self.subs.sending(room, 1)
        self.feed_frame(server_frames.subscribed(room, epoch, offset, recovered=False))


def test_an_ephemeral_message_is_its_own_event_and_moves_no_position() -> None:
    book = Bookkeeping()
    book.subscribe("doc", offset=4)
    events = book.feed_frame(server_frames.ephemeral("doc", {"typing": "alice"}))
    assert events == [Ephemeral("doc", {"typing": "alice"})]
    assert book.subs.tracker.since("doc") == ("e1", 4)
    # The next stored message follows on from 4: no gap, no duplicate.
    events = book.feed({"type": "message", "room": "doc", "epoch": "e1", "offset": 5, "data": 1})
    assert events == [Message("doc", "e1", 5, 1)]
    assert (book.subs.tracker.holes_reported, book.subs.tracker.duplicates_dropped) == (0, 0)


def test_many_ephemeral_messages_between_stored_ones_open_no_gap_and_drop_nothing() -> None:
    book = Bookkeeping()
    book.subscribe("doc")
    events: list[Event] = []
    for n in range(1, 4):
        events += book.feed_frame(server_frames.ephemeral("doc", f"cursor {n}"))
        events += book.feed(
            {"type": "message", "room": "doc", "epoch": "e1", "offset": n, "data": n}
        )
    assert not any(isinstance(e, Gap) for e in events)
    assert [e.offset for e in events if isinstance(e, Message)] == [1, 2, 3]
    assert [e.data for e in events if isinstance(e, Ephemeral)] == [
        "cursor 1",
        "cursor 2",
        "cursor 3",
    ]


def test_a_binary_ephemeral_message_comes_as_bytes() -> None:
    book = Bookkeeping()
    book.subscribe("doc")
    events = book.feed_frame(server_frames.ephemeral("doc", b"\x00\x01\xff"))
    assert events == [Ephemeral("doc", b"\x00\x01\xff")]


def test_an_ephemeral_message_of_a_room_not_subscribed_is_dropped() -> None:
    book = Bookkeeping()
    assert book.feed_frame(server_frames.ephemeral("elsewhere", 1)) == []


def test_an_ephemeral_message_without_data_is_malformed_and_dropped() -> None:
    book = Bookkeeping()
    book.subscribe("doc")
    with pytest.raises(wire.MalformedFrame):
        wire.decode('{"type": "message", "room": "doc", "ephemeral": true}')
    assert book.feed({"type": "message", "room": "doc", "ephemeral": True}) == []
    assert book.subs.tracker.since("doc") == ("e1", 0)


def test_an_ephemeral_ack_has_no_offset_and_is_not_malformed() -> None:
    frame = wire.decode(server_frames.ack_ephemeral("t1", "doc").payload.decode())
    assert frame == EphemeralAck("t1", "doc")


def test_the_publish_frames_read_as_ephemeral_by_the_hub() -> None:
    frame, is_text = encode_publish("doc", {"typing": True}, "t1", True, 1024)
    assert is_text
    assert decode_text(frame) == Publish("doc", {"typing": True}, "t1", ephemeral=True)
    frame, is_text = encode_publish("doc", b"\x01\x02", "t2", True, 1024)
    assert not is_text
    assert decode_binary(frame) == Publish("doc", b"\x01\x02", "t2", ephemeral=True)
    stored, _ = encode_publish("doc", 1, "t3", False, 1024)
    assert decode_text(stored) == Publish("doc", 1, "t3", ephemeral=False)


def test_an_ephemeral_publish_too_big_for_the_limit_is_refused_before_sending() -> None:
    with pytest.raises(Rejected, match="exceeds max_message_bytes"):
        encode_publish("doc", "x" * 100, "t1", True, 64)


async def test_an_ephemeral_publish_is_answered_by_its_ack() -> None:
    book = Bookkeeping()
    open_link, socket = link()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    sending = asyncio.create_task(book.ephemeral.send(open_link, "doc", "t1", frame, 5.0))
    await asyncio.sleep(0)
    assert socket.sent == [frame]
    assert book.feed_frame(server_frames.ack_ephemeral("t1", "doc")) == []
    assert await asyncio.wait_for(sending, 5) == EphemeralAck("t1", "doc")
    assert len(book.ephemeral) == 0


async def test_an_ack_for_another_room_does_not_settle_an_ephemeral_publish() -> None:
    book = Bookkeeping()
    open_link, _ = link()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    sending = asyncio.create_task(book.ephemeral.send(open_link, "doc", "t1", frame, 5.0))
    await asyncio.sleep(0)
    book.feed_frame(server_frames.ack_ephemeral("t1", "other"))
    assert not sending.done()
    book.feed_frame(server_frames.ack_ephemeral("t1", "doc"))
    assert (await asyncio.wait_for(sending, 5)).room == "doc"


@pytest.mark.parametrize("code", ["forbidden", "rate_limited", "unavailable"])
async def test_any_refusal_of_an_ephemeral_publish_is_final(code: str) -> None:
    book = Bookkeeping()
    open_link, socket = link()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    sending = asyncio.create_task(book.ephemeral.send(open_link, "doc", "t1", frame, 5.0))
    await asyncio.sleep(0)
    assert book.feed({"type": "error", "code": code, "reason": "no", "id": "t1"}) == []
    with pytest.raises(Rejected) as refused:
        await asyncio.wait_for(sending, 5)
    assert (refused.value.code, refused.value.room, refused.value.id) == (code, "doc", "t1")
    assert len(socket.sent) == 1  # and never sent again


async def test_an_ephemeral_publish_without_a_connection_is_dropped_at_once() -> None:
    sends = EphemeralSends()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    with pytest.raises(Dropped, match="no open connection"):
        await sends.send(None, "doc", "t1", frame, 5.0)
    assert len(sends) == 0


async def test_an_ephemeral_publish_on_a_closing_connection_is_dropped() -> None:
    sends = EphemeralSends()
    open_link, socket = link()
    socket.closed = True
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    with pytest.raises(Dropped, match="closed before it was sent"):
        await sends.send(open_link, "doc", "t1", frame, 5.0)


async def test_the_end_of_its_connection_drops_an_unanswered_ephemeral_publish() -> None:
    sends = EphemeralSends()
    first, _ = link(1)
    second, _ = link(2)
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    on_first = asyncio.create_task(sends.send(first, "doc", "t1", frame, 5.0))
    on_second = asyncio.create_task(sends.send(second, "doc", "t2", frame, 5.0))
    await asyncio.sleep(0)
    sends.connection_ended(1)
    with pytest.raises(Dropped, match="connection ended") as dropped:
        await asyncio.wait_for(on_first, 5)
    assert (dropped.value.room, dropped.value.id) == ("doc", "t1")
    assert not on_second.done()  # only what was sent on the connection that ended
    sends.acked(EphemeralAck("t2", "doc"))
    assert await asyncio.wait_for(on_second, 5) == EphemeralAck("t2", "doc")


async def test_an_ephemeral_publish_the_hub_never_answers_is_dropped_after_the_timeout() -> None:
    sends = EphemeralSends()
    open_link, socket = link()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    with pytest.raises(Dropped, match=r"no answer within 0\.05 s"):
        await sends.send(open_link, "doc", "t1", frame, 0.05)
    assert len(sends) == 0
    assert len(socket.sent) == 1


async def test_a_late_ack_after_the_drop_is_ignored() -> None:
    book = Bookkeeping()
    open_link, _ = link()
    frame = encode_publish("doc", "typing", "t1", True, 1024)
    sending = asyncio.create_task(book.ephemeral.send(open_link, "doc", "t1", frame, 5.0))
    await asyncio.sleep(0)
    book.ephemeral.connection_ended(1)
    with pytest.raises(Dropped):
        await asyncio.wait_for(sending, 5)
    assert book.feed_frame(server_frames.ack_ephemeral("t1", "doc")) == []
    assert book.feed({"type": "error", "code": "forbidden", "reason": "no", "id": "t1"}) == []
