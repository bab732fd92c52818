"""Client-to-server frames: parsing and validation, as plain functions.

Every malformed input raises :class:`FrameError` with a code and a reason a human can
act on; nothing here raises anything else for any input.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import Payload, split_binary_envelope
from fanout.protocol.errors import FrameError

ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:@\-]{1,128}")
MAX_ID_CHARS = 128
MAX_EPOCH_CHARS = 128
# A token is a header line, not a document: anything longer is refused unread.
MAX_TOKEN_CHARS = 8192
_NO_DATA = object()


@dataclass(frozen=True, slots=True)
class Since:
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    room: str
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    room: str


@dataclass(frozen=True, slots=True)
class Publish:
    room: str
    data: Payload
    id: str | None = None
    # Not stored, no offset: for the room's current subscribers only.
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class Auth:
    """A fresh token for this connection (before the current one expires)."""

    token: str = field(repr=False)  # never in a log line
    id: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    """Who is in ``room`` (``stats``: only the counts)."""

    room: str
    stats: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """A room's retained messages, without subscribing: the last ``limit``, or the first
    ``limit`` after ``since``."""

    room: str
    limit: int = 100
    since: int | None = None
    id: str | None = None


ClientFrame = Subscribe | Unsubscribe | Publish | Auth | PresenceRequest | HistoryRequest

# Rooms whose name starts with this are personal rooms: one per user, managed by the
# server (see ``personal_room``).
PERSONAL_PREFIX = "@"
MAX_HISTORY_LIMIT = 1000


def personal_room(user: str) -> str:
    """The room every connection of ``user`` is subscribed to by the server: ``@`` and the
    user id when that is a valid room name, else ``@`` and a digest of it."""
    room = PERSONAL_PREFIX + user
    if len(room) <= 128 and ROOM_PATTERN.fullmatch(room):
        return room
    return PERSONAL_PREFIX + hashlib.sha256(user.encode()).hexdigest()[:40]


def parse_since(raw: str) -> Since:
    """``EPOCH:OFFSET`` (a handshake's ``user_since``) as a Since; FrameError if not."""
    epoch, _, offset = raw.rpartition(":")
    if not epoch or len(epoch) > MAX_EPOCH_CHARS or not offset.isdigit():
        raise FrameError(ErrorCode.BAD_FRAME, "user_since must be EPOCH:OFFSET")
    return Since(epoch, int(offset))


def check_room(room: object, *, frame_id: str | None = None) -> str:
    if not isinstance(room, str):
        raise FrameError(ErrorCode.BAD_ROOM, "room must be a string", frame_id=frame_id)
    if not ROOM_PATTERN.fullmatch(room):
        raise FrameError(
            ErrorCode.BAD_ROOM,
            "room must be 1-128 characters of A-Z a-z 0-9 _ . : @ -",
            frame_id=frame_id,
        )
    return room


def decode_text(raw: str | bytes) -> ClientFrame:
    """Parse one text frame."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from exc
    return _decode_object(obj, _NO_DATA)


def decode_binary(raw: bytes) -> ClientFrame:
    """Parse one binary frame: 4-byte big-endian header length, JSON header, payload."""
    header, payload = split_binary_envelope(raw)
    if isinstance(header, dict) and "data" in header:
        raise FrameError(ErrorCode.BAD_FRAME, "a binary header carries no 'data': the payload is")
    return _decode_object(header, payload)


def _decode_object(obj: Any, payload: object) -> ClientFrame:
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
    frame_id = obj.get("id")
    if frame_id is not None and (not isinstance(frame_id, str) or not frame_id):
        raise FrameError(ErrorCode.BAD_FRAME, "'id' must be a non-empty string")
    if frame_id is not None and len(frame_id) > MAX_ID_CHARS:
        raise FrameError(ErrorCode.BAD_FRAME, f"'id' is longer than {MAX_ID_CHARS} characters")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.BAD_FRAME, "missing string field 'type'", frame_id=frame_id)
    if kind == "publish":
        room = check_room(obj.get("room"), frame_id=frame_id)
        data = obj.get("data", _NO_DATA) if payload is _NO_DATA else payload
        if data is _NO_DATA:
            raise FrameError(ErrorCode.BAD_FRAME, "publish needs 'data'", frame_id=frame_id)
        ephemeral = obj.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise FrameError(
                ErrorCode.BAD_FRAME, "'ephemeral' must be true or false", frame_id=frame_id
            )
        return Publish(room, data, frame_id, ephemeral)
    if kind == "subscribe":
        return Subscribe(check_room(obj.get("room"), frame_id=frame_id), _since(obj, frame_id))
    if kind == "unsubscribe":
        return Unsubscribe(check_room(obj.get("room"), frame_id=frame_id))
    if kind == "auth":
        token = obj.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise FrameError(
                ErrorCode.BAD_FRAME,
                f"auth needs 'token': a string of 1-{MAX_TOKEN_CHARS} characters",
                frame_id=frame_id,
            )
        return Auth(token, frame_id)
    if kind in ("presence", "presence_stats"):
        room = check_room(obj.get("room"), frame_id=frame_id)
        return PresenceRequest(room, kind == "presence_stats", frame_id)
    if kind == "history":
        room = check_room(obj.get("room"), frame_id=frame_id)
        limit = obj.get("limit", 100)
        if not _is_int(limit) or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise FrameError(
                ErrorCode.BAD_FRAME,
                f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}",
                frame_id=frame_id,
            )
        since = obj.get("since")
        if since is not None and (not _is_int(since) or since < 0):
            raise FrameError(
                ErrorCode.BAD_FRAME,
                "'since' must be an offset (an integer >= 0)",
                frame_id=frame_id,
            )
        return HistoryRequest(room, limit, since, frame_id)
    raise FrameError(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown type {kind[:40]!r}; expected subscribe, unsubscribe, publish, auth,"
        " presence, presence_stats or history",
        frame_id=frame_id,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _since(obj: dict[str, Any], frame_id: str | None) -> Since | None:
    since = obj.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "'since' must be {epoch, offset}", frame_id=frame_id)
    epoch, offset = since.get("epoch"), since.get("offset")
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_CHARS:
        raise FrameError(ErrorCode.BAD_FRAME, "'since.epoch' must be a string", frame_id=frame_id)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise FrameError(
            ErrorCode.BAD_FRAME, "'since.offset' must be an integer >= 0", frame_id=frame_id
        )
    return Since(epoch, offset)
