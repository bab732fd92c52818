"""The checks every publish passes, wherever it comes from: a client, an application's
route or task (``Hub.publish``), the server API, an emitter in another process. No I/O.

A publish is refused with ``InvalidPublish`` before it reaches the broker when its room
is not a valid room name (or does not match the hub's room pattern), its ``id`` is not
1-128 characters, or its data is not JSON-serialisable or larger than
``max_message_bytes`` (bytes as they are, text as UTF-8, anything else as JSON).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import FrameError, InvalidPublish
from fanout.protocol.frames import MAX_ID_CHARS, check_room


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishRules:
    """Defaults and meanings are in ``fanout.settings``."""

    max_message_bytes: int
    room_pattern: str  # "": any valid room name

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be >= 1")
        try:
            re.compile(self.room_pattern)
        except re.error as exc:
            raise ValueError(f"room_pattern is not a regular expression: {exc}") from exc

    def room(self, room: object) -> str:
        """``room`` if it is a valid room name here, else InvalidPublish ``bad_room``."""
        try:
            name = check_room(room)
        except FrameError as exc:
            raise InvalidPublish(exc.code, exc.reason) from None
        if self.room_pattern and re.fullmatch(self.room_pattern, name) is None:
            raise InvalidPublish(
                ErrorCode.BAD_ROOM,
                f"room {name!r} does not match this hub's room pattern '{self.room_pattern}'",
            )
        return name

    def check(self, room: object, data: object, msg_id: object = None) -> tuple[str, Payload]:
        """The room and data to publish, or InvalidPublish with the reason."""
        name = self.room(room)
        if msg_id is not None and (
            not isinstance(msg_id, str) or not 0 < len(msg_id) <= MAX_ID_CHARS
        ):
            raise InvalidPublish(
                ErrorCode.BAD_FRAME, f"'id' must be a string of 1-{MAX_ID_CHARS} characters"
            )
        limit = self.max_message_bytes
        # A str holds at most 4 UTF-8 bytes per character: encode only when that matters.
        size = len(data) if isinstance(data, str) and len(data) * 4 <= limit else self.size_of(data)
        if size > limit:
            raise InvalidPublish(
                ErrorCode.TOO_BIG,
                f"data is {size} bytes; this hub takes at most {limit}",
            )
        if isinstance(data, bytearray | memoryview):
            # Copied now: the caller may reuse its buffer once the publish returned,
            # and the message is encoded (and kept in history) later.
            data = bytes(data)
        return name, data

    @staticmethod
    def size_of(data: object) -> int:
        if isinstance(data, bytes | bytearray | memoryview):
            return len(data)
        if isinstance(data, str):
            return len(data.encode())
        try:
            return len(orjson.dumps(data))
        except TypeError as exc:
            raise InvalidPublish(ErrorCode.BAD_FRAME, f"data is not JSON: {exc}") from None
