"""The client's bookkeeping for the personal room, server-side unsubscribes, presence and
history answers, and kicks, fed raw frames as the hub would send them: no sockets."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from fanout.client import (
    Gap,
    History,
    Joined,
    Kicked,
    Left,
    MalformedAnswer,
    Member,
    Message,
    Presence,
    PresenceStats,
    Refused,
    Rejected,
    Subscribed,
    Unsubscribed,
    wire,
)
from fanout.client.connect import closed_for_good, handshake_url
from fanout.client.requests import A, PendingRequest
from fanout.client.subscriptions import check_room
from fanout.protocol.frames import (
    HistoryRequest,
    PresenceRequest,
    Since,
    decode_text,
    parse_since,
)
from tests.client.wired import Wired

ALICE = {"user": "alice", "conn": "n1-1", "node": "n1", "joined_at": 1700000000500, "info": {}}


class Bookkeeping(Wired):
    """The wired bookkeeping, with this file's way of subscribing."""

    def subscribe(self, room: str, connection: int = 1) -> None:
        """The application subscribed ``room`` and the subscribe went out."""
        self.subs.tracker.add(room)
        self.subs.sending(room, connection)


def subscribed(room: str, epoch: str, offset: int, recovered: bool = False) -> dict[str, object]:
    return {
        "type": "subscribed",
        "room": room,
        "epoch": epoch,
        "offset": offset,
        "recovered": recovered,
    }


def message(room: str, epoch: str, offset: int, data: object) -> dict[str, object]:
    return {"type": "message", "room": room, "epoch": epoch, "offset": offset, "data": data}


# -- the personal room -------------------------------------------------------------------


def test_the_unasked_subscribed_of_an_at_room_makes_it_the_personal_room_tracked_like_any() -> None:
    book = Bookkeeping()
    events = book.feed(
        subscribed("@alice", "e1", 3),
        message("@alice", "e1", 4, "hi"),
        message("@alice", "e1", 4, "hi"),
        message("@alice", "e1", 6, "later"),
    )
    assert events == [
        Subscribed("@alice", "e1", 3, recovered=False),
        Message("@alice", "e1", 4, "hi"),
        Gap("@alice", "e1", 5, 5),
        Message("@alice", "e1", 6, "later"),
    ]
    assert book.subs.user_room == "@alice"
    assert book.subs.user_since() == ("e1", 6)
    assert book.subs.rooms() == [], "the client never subscribes its personal room itself"


def test_after_a_reconnect_the_personal_room_resumes_from_its_position_without_duplicates() -> None:
    book = Bookkeeping()
    book.feed(subscribed("@alice", "e1", 0), message("@alice", "e1", 1, "one"))
    book.subs.new_connection()
    events = book.feed(
        subscribed("@alice", "e1", 3, recovered=True),
        message("@alice", "e1", 1, "one"),
        message("@alice", "e1", 2, "two"),
        message("@alice", "e1", 3, "three"),
    )
    assert events == [
        Subscribed("@alice", "e1", 3, recovered=True),
        Message("@alice", "e1", 2, "two"),
        Message("@alice", "e1", 3, "three"),
    ]
    book.subs.new_connection()
    assert book.feed(
        subscribed("@alice", "e1", 9),
        {"type": "gap", "room": "@alice", "epoch": "e1", "from": 4, "to": 7},
    ) == [
        Subscribed("@alice", "e1", 9, recovered=False),
        Gap("@alice", "e1", 4, 7),
    ]
    assert book.subs.user_since() == ("e1", 7)


def test_a_personal_room_in_a_new_epoch_or_behind_what_was_delivered_starts_over() -> None:
    book = Bookkeeping()
    book.feed(subscribed("@alice", "e1", 5))
    book.subs.new_connection()
    book.feed(subscribed("@alice", "e2", 2))
    assert book.subs.user_since() == ("e2", 2)
    book.subs.new_connection()
    book.feed(subscribed("@alice", "e2", 1))
    assert book.subs.user_since() == ("e2", 1)


def test_a_second_at_room_announced_on_the_same_connection_is_ignored() -> None:
    book = Bookkeeping()
    book.feed(subscribed("@alice", "e1", 0))
    assert book.feed(subscribed("@mallory", "e9", 0), message("@mallory", "e9", 1, "x")) == []
    assert book.subs.user_room == "@alice"
    assert "@mallory" not in book.subs


def test_a_subscribed_for_a_room_nobody_subscribed_is_ignored() -> None:
    book = Bookkeeping()
    assert book.feed(subscribed("news", "e1", 4), message("news", "e1", 5, "x")) == []
    assert "news" not in book.subs
    assert book.subs.user_room is None


def test_the_handshake_url_carries_the_personal_rooms_position_url_encoded() -> None:
    url = "ws://hub.example/ws?token=abc&user_since=old:1"
    assert handshake_url(url, None) == url
    resumed = handshake_url(url, ("ep/och:x", 42))
    query = parse_qs(urlsplit(resumed).query)
    assert query == {"token": ["abc"], "user_since": ["ep/och:x:42"]}
    assert "ep%2Foch%3Ax%3A42" in resumed


def test_rooms_starting_with_at_are_refused_locally_for_subscribe_and_publish() -> None:
    with pytest.raises(Rejected) as info:
        check_room("@bob", client_managed=True)
    assert info.value.code == "forbidden"
    check_room("@bob")  # presence and history may ask; the hub decides
    with pytest.raises(Rejected, match="bad_room"):
        check_room("no spaces", client_managed=True)


# -- unsubscribed, join, leave -------------------------------------------------------------


def test_a_server_unsubscribe_forgets_the_room_and_tells_the_application() -> None:
    book = Bookkeeping()
    book.subscribe("news")
    book.feed(subscribed("news", "e1", 0))
    events = book.feed({"type": "unsubscribed", "room": "news", "reason": "removed by admin"})
    assert events == [Unsubscribed("news", "removed by admin")]
    assert "news" not in book.subs
    assert book.feed(message("news", "e1", 1, "late")) == []
    assert book.subs.rooms() == [], "not resubscribed on the next connection"


def test_an_unsubscribed_for_an_unknown_room_or_one_being_subscribed_changes_nothing() -> None:
    book = Bookkeeping()
    assert book.feed({"type": "unsubscribed", "room": "never", "reason": "x"}) == []
    book.subscribe("news")
    # About the subscription before the subscribe still out: its answer decides.
    assert book.feed({"type": "unsubscribed", "room": "news", "reason": "x"}) == []
    assert book.feed(subscribed("news", "e1", 0)) == [Subscribed("news", "e1", 0, False)]
    assert "news" in book.subs


def test_the_personal_room_unsubscribed_by_the_server_is_no_longer_resumed() -> None:
    book = Bookkeeping()
    book.feed(subscribed("@alice", "e1", 2))
    assert book.feed({"type": "unsubscribed", "room": "@alice", "reason": "r"}) == [
        Unsubscribed("@alice", "r")
    ]
    assert book.subs.user_room is None
    assert book.subs.user_since() is None


def test_join_and_leave_of_a_subscribed_room_are_events_and_others_are_dropped() -> None:
    book = Bookkeeping()
    book.subscribe("chat")
    book.feed(subscribed("chat", "e1", 0))
    alice = Member("alice", "n1-1", "n1", 1700000000.5, {})
    assert book.feed(
        {"type": "join", "room": "chat", "member": ALICE},
        {"type": "leave", "room": "chat", "member": ALICE},
        {"type": "join", "room": "elsewhere", "member": ALICE},
        {"type": "join", "room": "chat", "member": {"user": "x"}},
        {"type": "leave", "room": "chat", "member": [1]},
    ) == [Joined("chat", alice), Left("chat", alice)]
    assert book.subs.tracker.since("chat") == ("e1", 0), "join and leave have no offsets"


# -- presence and history answers ----------------------------------------------------------


def test_presence_stats_and_history_answers_decode_to_values_with_bytes_back() -> None:
    assert wire.decode(
        orjson.dumps({"type": "presence", "room": "r", "id": "q1", "members": [ALICE]}).decode()
    ) == wire.Reply("q1", Presence("r", (Member("alice", "n1-1", "n1", 1700000000.5, {}),)))
    assert wire.decode(
        '{"type":"presence_stats","room":"r","id":"q2","connections":3,"users":2}'
    ) == wire.Reply("q2", PresenceStats("r", 3, 2))
    raw = bytes([0, 255, 10])
    history = {
        "type": "history",
        "room": "r",
        "id": "q3",
        "epoch": "e1",
        "latest": 9,
        "first_kept": 5,
        "messages": [
            {"offset": 7, "data": {"a": 1}},
            {"offset": 8, "data": base64.b64encode(raw).decode(), "encoding": "base64"},
        ],
    }
    assert wire.decode(orjson.dumps(history).decode()) == wire.Reply(
        "q3",
        History("r", "e1", 9, 5, (Message("r", "e1", 7, {"a": 1}), Message("r", "e1", 8, raw))),
    )


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "presence", "room": "r", "id": "q", "members": "everyone"},
        {"type": "presence", "room": "r", "id": "q", "members": [{"user": "a"}]},
        {"type": "presence", "room": 5, "id": "q", "members": []},
        {"type": "presence_stats", "room": "r", "id": "q", "connections": -1, "users": 0},
        {"type": "presence_stats", "room": "r", "id": "q", "connections": "3", "users": 0},
        {"type": "history", "room": "r", "id": "q", "epoch": "e", "latest": 1, "first_kept": 1},
        {
            "type": "history",
            "room": "r",
            "id": "q",
            "epoch": "e",
            "latest": 1,
            "first_kept": 1,
            "messages": [{"offset": 1}],
        },
        {
            "type": "history",
            "room": "r",
            "id": "q",
            "epoch": "e",
            "latest": 2,
            "first_kept": 1,
            "messages": [{"offset": 2, "data": 1}, {"offset": 1, "data": 0}],
        },
        {
            "type": "history",
            "room": "r",
            "id": "q",
            "epoch": "e",
            "latest": 1,
            "first_kept": 1,
            "messages": [{"offset": 1, "data": "%%%", "encoding": "base64"}],
        },
        {
            "type": "history",
            "room": "r",
            "id": "q",
            "epoch": "e",
            "latest": 1,
            "first_kept": 1,
            "messages": [{"offset": 1, "data": "eA==", "encoding": "rot13"}],
        },
    ],
)
def test_a_malformed_answer_raises_naming_the_request_it_answers(frame: dict[str, object]) -> None:
    with pytest.raises(wire.MalformedFrame) as info:
        wire.decode(orjson.dumps(frame).decode())
    assert info.value.id == "q"


async def _asked(
    book: Bookkeeping, expects: type[A], room: str = "r"
) -> tuple[asyncio.Task[A], PendingRequest]:
    """A request asked through ``book``, once it was sent (a task awaiting its answer)."""
    sent: list[PendingRequest] = []

    async def send(request: PendingRequest) -> None:
        sent.append(request)

    encode = (
        (lambda i: wire.encode_presence(room, i))
        if expects is Presence
        else (lambda i: wire.encode_history(room, i, 10, None))
    )
    task = asyncio.create_task(book.requests.ask(expects, room, encode, send, 2.0))
    while not sent:
        await asyncio.sleep(0)
    return task, sent[0]


async def test_a_request_is_answered_by_the_reply_with_its_id_and_no_other() -> None:
    book = Bookkeeping()
    task, request = await _asked(book, Presence)
    assert orjson.loads(request.frame) == {"type": "presence", "room": "r", "id": request.id}
    assert book.feed({"type": "presence", "room": "r", "id": "someone-else", "members": []}) == []
    assert not task.done()
    book.feed({"type": "presence", "room": "r", "id": request.id, "members": [ALICE]})
    answer = await task
    assert isinstance(answer, Presence)
    assert [m.user for m in answer.members] == ["alice"]
    assert len(book.requests) == 0


async def test_a_refused_request_raises_the_hubs_code_and_reason() -> None:
    book = Bookkeeping()
    task, request = await _asked(book, Presence)
    book.feed({"type": "error", "code": "forbidden", "reason": "presence is off", "id": request.id})
    with pytest.raises(Rejected) as info:
        await task
    assert (info.value.code, info.value.reason, info.value.room) == (
        "forbidden",
        "presence is off",
        "r",
    )


async def test_a_malformed_answer_or_one_of_another_kind_fails_its_request_at_once() -> None:
    book = Bookkeeping()
    task, request = await _asked(book, History)
    book.feed({"type": "history", "room": "r", "id": request.id, "epoch": "e", "messages": []})
    with pytest.raises(MalformedAnswer, match="latest"):
        await task
    task, request = await _asked(book, History)
    book.feed({"type": "presence", "room": "r", "id": request.id, "members": []})
    with pytest.raises(MalformedAnswer, match="presence of 'r' answers history"):
        await task
    other, request = await _asked(book, Presence)
    book.feed({"type": "presence", "room": "other", "id": request.id, "members": []})
    with pytest.raises(MalformedAnswer):
        await other


async def test_a_request_nobody_answers_times_out_and_is_forgotten() -> None:
    book = Bookkeeping()

    async def send(request: PendingRequest) -> None:
        pass

    with pytest.raises(TimeoutError, match=r"no answer to presence_stats of .r. within 0\.05 s"):
        await book.requests.ask(
            PresenceStats, "r", lambda i: wire.encode_presence_stats("r", i), send, 0.05
        )
    assert len(book.requests) == 0


async def test_a_request_not_answered_on_a_dropped_connection_is_sent_on_the_next() -> None:
    book = Bookkeeping()
    task, request = await _asked(book, Presence)
    request.sent_on = 1
    assert book.requests.not_sent_on(1) == []
    assert book.requests.not_sent_on(2) == [request]
    book.requests.fail_all(Refused("gone", code=1008))
    with pytest.raises(Refused):
        await task


def test_the_requests_are_frames_the_hub_decodes_with_limit_and_since_only_when_given() -> None:
    assert decode_text(wire.encode_history("r", "h1", 50, None)) == HistoryRequest(
        "r", 50, None, "h1"
    )
    assert decode_text(wire.encode_history("r", "h2", 10, 0)) == HistoryRequest("r", 10, 0, "h2")
    assert "since" not in orjson.loads(wire.encode_history("r", "h1", 50, None))
    assert decode_text(wire.encode_presence("r", "p1")) == PresenceRequest("r", False, "p1")
    assert decode_text(wire.encode_presence_stats("r", "p2")) == PresenceRequest("r", True, "p2")


def test_the_personal_rooms_position_in_the_handshake_reads_back_as_the_hub_parses_it() -> None:
    url = handshake_url("ws://h/ws", ("3975802006b9", 17))
    [raw] = parse_qs(urlsplit(url).query)["user_since"]
    assert parse_since(raw) == Since("3975802006b9", 17)


# -- closes --------------------------------------------------------------------------------


def test_a_kick_and_a_policy_close_stop_the_client_and_other_closes_reconnect() -> None:
    kicked = closed_for_good(4003, "disconnected by the server: banned")
    assert isinstance(kicked, Kicked)
    assert (kicked.code, kicked.reason) == (4003, "disconnected by the server: banned")
    policy = closed_for_good(1008, "token expired")
    assert isinstance(policy, Refused)
    assert not isinstance(policy, Kicked)
    for code in (1000, 1001, 1006, 1011, 4008, 4029, None):
        assert closed_for_good(code, "") is None
