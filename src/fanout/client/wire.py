"""``fanout.v1`` as the client sees it: frames to send as bytes, received frames as
values. No I/O here."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fanout.client.events import (
    Ack,
    Data,
    Direct,
    Ephemeral,
    EphemeralAck,
    Gap,
    History,
    Joined,
    Left,
    Member,
    Message,
    Presence,
    PresenceStats,
    Subscribed,
    Unsubscribed,
)
from fanout.protocol.envelope import binary_envelope, split_binary_envelope
from fanout.protocol.errors import FrameError


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An ``error`` frame: the answer to a request, with that request's ``id`` if any."""

    code: str
    reason: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Authorized:
    """The answer to an ``auth`` frame: the hub took the new token. ``sub`` is its
    subject (None without one), ``exp`` its expiry (Unix time, None without one)."""

    sub: str | None
    exp: float | None
    id: str | None


Answer = Presence | PresenceStats | History


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a request (``presence``, ``presence_stats``, ``history``), with the
    request's ``id`` (None when the hub gave none)."""

    id: str | None
    answer: Answer


ServerFrame = (
    Message
    | Ephemeral
    | Gap
    | Subscribed
    | Unsubscribed
    | Joined
    | Left
    | Ack
    | EphemeralAck
    | ErrorReply
    | Authorized
    | Reply
    | Direct
)


class MalformedFrame(ValueError):
    """A frame of a known type with missing or ill-typed fields. ``id``: the request id
    it carried, when it had a readable one (a broken answer still answers its request)."""

    def __init__(self, reason: str, *, id: str | None = None) -> None:
        super().__init__(reason)
        self.id = id


def encode_subscribe(room: str, since: tuple[str, int] | None) -> bytes:
    frame: dict[str, Any] = {"type": "subscribe", "room": room}
    if since is not None:
        frame["since"] = {"epoch": since[0], "offset": since[1]}
    return orjson.dumps(frame)


def encode_unsubscribe(room: str) -> bytes:
    return orjson.dumps({"type": "unsubscribe", "room": room})


def encode_auth(token: str, frame_id: str) -> bytes:
    return orjson.dumps({"type": "auth", "token": token, "id": frame_id})


def encode_presence(room: str, frame_id: str) -> bytes:
    return orjson.dumps({"type": "presence", "room": room, "id": frame_id})


def encode_presence_stats(room: str, frame_id: str) -> bytes:
    return orjson.dumps({"type": "presence_stats", "room": room, "id": frame_id})


def encode_history(room: str, frame_id: str, limit: int, since: int | None) -> bytes:
    frame: dict[str, Any] = {"type": "history", "room": room, "id": frame_id, "limit": limit}
    if since is not None:
        frame["since"] = since
    return orjson.dumps(frame)


def encode_publish(
    room: str, data: Data, msg_id: str, *, ephemeral: bool = False
) -> tuple[bytes, bool]:
    """The publish frame and whether it is text. Bytes go out as a binary frame:
    4-byte big-endian header length, JSON header, raw payload. ``ephemeral``: not
    stored, for the room's current subscribers only (the flag rides in the header).

    Raises TypeError when ``data`` is neither bytes nor JSON-serialisable.
    """
    header: dict[str, Any] = {"type": "publish", "room": room, "id": msg_id}
    if ephemeral:
        header["ephemeral"] = True
    if isinstance(data, bytes | bytearray | memoryview):
        return binary_envelope(header, bytes(data)), False
    return orjson.dumps({**header, "data": data}), True


def decode(raw: str | bytes) -> ServerFrame:
    """One received frame. Frames of no ``fanout.v1`` type come back as ``Direct``;
    a known type with bad fields raises MalformedFrame."""
    if isinstance(raw, bytes):
        obj = _binary_header(raw)
        if obj is None:
            return Direct(raw)
    else:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Direct(raw)
    if not isinstance(obj, dict):
        return Direct(obj)
    kind = obj.get("type")
    if kind == "message":
        if "data" not in obj:
            raise MalformedFrame("message without data")
        if obj.get("ephemeral") is True:  # not stored: no epoch, no offset
            return Ephemeral(_str(obj, "room"), obj["data"])
        return Message(_str(obj, "room"), _str(obj, "epoch"), _int(obj, "offset"), obj["data"])
    if kind == "subscribed":
        recovered = obj.get("recovered")
        if not isinstance(recovered, bool):
            raise MalformedFrame("subscribed without a boolean 'recovered'")
        return Subscribed(
            _str(obj, "room"), _str(obj, "epoch"), _int(obj, "offset"), recovered=recovered
        )
    if kind == "ack":
        if obj.get("ephemeral") is True:
            return EphemeralAck(_str(obj, "id"), _str(obj, "room"))
        return Ack(_str(obj, "id"), _str(obj, "room"), _str(obj, "epoch"), _int(obj, "offset"))
    if kind == "gap":
        return Gap(_str(obj, "room"), _str(obj, "epoch"), _int(obj, "from"), _int(obj, "to"))
    if kind == "error":
        frame_id = obj.get("id")
        return ErrorReply(
            _str(obj, "code"),
            str(obj.get("reason", "")),
            frame_id if isinstance(frame_id, str) else None,
        )
    if kind == "authorized":
        return Authorized(
            _optional_str(obj, "sub"), _optional_number(obj, "exp"), _optional_str(obj, "id")
        )
    if kind == "unsubscribed":
        return Unsubscribed(_str(obj, "room"), str(obj.get("reason", "")))
    if kind == "join":
        return Joined(_str(obj, "room"), _member(obj.get("member")))
    if kind == "leave":
        return Left(_str(obj, "room"), _member(obj.get("member")))
    if kind in _ANSWERS:
        frame_id = obj.get("id")
        frame_id = frame_id if isinstance(frame_id, str) else None
        try:
            return Reply(frame_id, _ANSWERS[kind](obj))
        except MalformedFrame as exc:
            raise MalformedFrame(str(exc), id=frame_id) from None
    return Direct(obj)


def _presence(obj: dict[str, Any]) -> Presence:
    members = obj.get("members")
    if not isinstance(members, list):
        raise MalformedFrame("presence frame without a list 'members'")
    return Presence(_str(obj, "room"), tuple(_member(m) for m in members))


def _presence_stats(obj: dict[str, Any]) -> PresenceStats:
    return PresenceStats(_str(obj, "room"), _count(obj, "connections"), _count(obj, "users"))


def _history(obj: dict[str, Any]) -> History:
    room, epoch = _str(obj, "room"), _str(obj, "epoch")
    items = obj.get("messages")
    if not isinstance(items, list):
        raise MalformedFrame("history frame without a list 'messages'")
    messages: list[Message] = []
    for item in items:
        if not isinstance(item, dict) or "data" not in item:
            raise MalformedFrame("history message without 'data'")
        offset = _count(item, "offset")
        if offset < 1 or (messages and offset <= messages[-1].offset):
            raise MalformedFrame("history messages out of offset order")
        messages.append(Message(room, epoch, offset, _history_data(item)))
    return History(room, epoch, _count(obj, "latest"), _count(obj, "first_kept"), tuple(messages))


def _history_data(item: dict[str, Any]) -> Data:
    encoding = item.get("encoding")
    if encoding is None:
        return item["data"]
    data = item["data"]
    if encoding != "base64" or not isinstance(data, str):
        raise MalformedFrame(f"history message with data in encoding {encoding!r}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedFrame("history message whose data is not base64") from None


_ANSWERS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "presence": _presence,
    "presence_stats": _presence_stats,
    "history": _history,
}


def _member(value: object) -> Member:
    if not isinstance(value, dict):
        raise MalformedFrame("a member must be an object")
    joined_at = _optional_number(value, "joined_at")  # Unix milliseconds
    if joined_at is None:
        raise MalformedFrame("member without a numeric 'joined_at'")
    return Member(
        _optional_str(value, "user"),
        _str(value, "conn"),
        _str(value, "node"),
        joined_at / 1000,
        value.get("info"),
    )


def _binary_header(raw: bytes) -> dict[str, Any] | None:
    """The JSON header of a binary frame with the payload as ``data``, or None when the
    frame does not have that shape."""
    try:
        header, payload = split_binary_envelope(raw)
    except FrameError:
        return None
    if not isinstance(header, dict):
        return None
    header["data"] = payload
    return header


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"{_what(obj)} without a string {key!r}")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"{_what(obj)} without an integer {key!r}")
    return value


def _count(obj: dict[str, Any], key: str) -> int:
    value = _int(obj, key)
    if value < 0:
        raise MalformedFrame(f"{_what(obj)} with a negative {key!r}")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedFrame(f"{_what(obj)} with a non-string {key!r}")
    return value


def _optional_number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MalformedFrame(f"{_what(obj)} with a non-numeric {key!r}")
    return float(value)


def _what(obj: dict[str, Any]) -> str:
    kind = obj.get("type")
    return f"{kind} frame" if isinstance(kind, str) else "an item of a frame"
