"""``fanout.v1`` as the client sees it: frames to send as bytes, received frames as
values. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fanout.client.events import Ack, Data, Direct, Gap, Message, Subscribed
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


ServerFrame = Message | Gap | Subscribed | Ack | ErrorReply | Authorized | Direct


class MalformedFrame(ValueError):
    """A frame of a known type with missing or ill-typed fields."""


def encode_subscribe(room: str, since: tuple[str, int] | None) -> bytes:
    frame: dict[str, Any] = {"type": "subscribe", "room": room}
    if since is not None:
        frame["since"] = {"epoch": since[0], "offset": since[1]}
    return orjson.dumps(frame)


def encode_unsubscribe(room: str) -> bytes:
    return orjson.dumps({"type": "unsubscribe", "room": room})


def encode_auth(token: str, frame_id: str) -> bytes:
    return orjson.dumps({"type": "auth", "token": token, "id": frame_id})


def encode_publish(room: str, data: Data, msg_id: str) -> tuple[bytes, bool]:
    """The publish frame and whether it is text. Bytes go out as a binary frame:
    4-byte big-endian header length, JSON header, raw payload.

    Raises TypeError when ``data`` is neither bytes nor JSON-serialisable.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        header = {"type": "publish", "room": room, "id": msg_id}
        return binary_envelope(header, bytes(data)), False
    return orjson.dumps({"type": "publish", "room": room, "id": msg_id, "data": data}), True


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
        return Message(_str(obj, "room"), _str(obj, "epoch"), _int(obj, "offset"), obj["data"])
    if kind == "subscribed":
        recovered = obj.get("recovered")
        if not isinstance(recovered, bool):
            raise MalformedFrame("subscribed without a boolean 'recovered'")
        return Subscribed(
            _str(obj, "room"), _str(obj, "epoch"), _int(obj, "offset"), recovered=recovered
        )
    if kind == "ack":
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
    return Direct(obj)


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
        raise MalformedFrame(f"{obj.get('type')} frame without a string {key!r}")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"{obj.get('type')} frame without an integer {key!r}")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedFrame(f"{obj.get('type')} frame with a non-string {key!r}")
    return value


def _optional_number(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MalformedFrame(f"{obj.get('type')} frame with a non-numeric {key!r}")
    return float(value)
