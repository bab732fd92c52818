"""Outgoing frames, encoded once and shared by every recipient."""

from __future__ import annotations

import struct
from typing import Any

import orjson

from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError
from fanout.protocol.wsframe import OP_BINARY, OP_TEXT, encode_frame

# Any JSON value, or raw bytes for binary payloads (images).
Payload = Any


class OutFrame:
    """One WebSocket message to send: text (UTF-8 bytes) or binary.

    Each transport takes the form it needs (``wire`` bytes for the direct transport,
    ``as_text``/``payload`` for ASGI), and each form is computed at most once.
    """

    __slots__ = ("_text", "_wire", "is_text", "payload", "size")

    def __init__(self, payload: bytes, *, is_text: bool) -> None:
        self.payload = payload
        self.is_text = is_text
        # An attribute, not a property: every enqueue reads it, once per recipient.
        self.size = len(payload)
        self._wire: bytes | None = None
        self._text: str | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = encode_frame(OP_TEXT if self.is_text else OP_BINARY, self.payload)
        return self._wire

    @property
    def as_text(self) -> str:
        if self._text is None:
            self._text = self.payload.decode("utf-8")
        return self._text

    @classmethod
    def json(cls, obj: dict[str, Any]) -> OutFrame:
        return cls(orjson.dumps(obj), is_text=True)

    @classmethod
    def text(cls, text: str) -> OutFrame:
        frame = cls(text.encode("utf-8"), is_text=True)
        frame._text = text
        return frame

    @classmethod
    def binary(cls, data: bytes) -> OutFrame:
        return cls(data, is_text=False)

    @classmethod
    def of(cls, data: Payload) -> OutFrame:
        """Strings as text, bytes as binary, anything else as its JSON text."""
        if isinstance(data, str):
            return cls.text(data)
        if isinstance(data, bytes | bytearray | memoryview):
            return cls.binary(bytes(data))
        return cls(orjson.dumps(data), is_text=True)


# Frames handed to many sockets at once are joined into one bytes object, written to
# each of them, up to this size; larger ones are written as a list (no copy).
JOIN_MAX_BYTES = 64 * 1024


def joined_wire(frames: list[OutFrame]) -> bytes | None:
    """The frames' wire bytes in one piece (one object to write to every recipient), or
    None past ``JOIN_MAX_BYTES``."""
    if len(frames) == 1:
        return frames[0].wire
    if sum(frame.size for frame in frames) > JOIN_MAX_BYTES:
        return None
    return b"".join([frame.wire for frame in frames])


def binary_envelope(header: dict[str, Any], payload: bytes) -> bytes:
    """4-byte big-endian header length, JSON header, raw payload."""
    head = orjson.dumps(header)
    return struct.pack("!I", len(head)) + head + payload


def split_binary_envelope(raw: bytes) -> tuple[Any, bytes]:
    """The parsed JSON header and the payload of a binary envelope.

    Raises FrameError when the length prefix lies or the header is not JSON.
    """
    if len(raw) < 4:
        raise FrameError(ErrorCode.BAD_FRAME, "binary frame shorter than its 4-byte header length")
    (header_len,) = struct.unpack_from("!I", raw)
    if header_len > len(raw) - 4:
        raise FrameError(
            ErrorCode.BAD_FRAME,
            f"binary header length {header_len} exceeds the {len(raw) - 4} bytes that follow",
        )
    try:
        header = orjson.loads(raw[4 : 4 + header_len])
    except orjson.JSONDecodeError as exc:
        raise FrameError(ErrorCode.BAD_JSON, f"binary header is not valid JSON: {exc}") from exc
    return header, raw[4 + header_len :]


class Message:
    """A stored message of a room: what the broker hands out and the hub fans out.

    Frames are built lazily and cached, so a message is serialised at most once per
    form per process, however many recipients or replays it has.
    """

    __slots__ = ("_plain", "_v1", "data", "epoch", "offset", "room", "size")

    def __init__(self, room: str, epoch: str, offset: int, data: Payload) -> None:
        self.room = room
        self.epoch = epoch
        self.offset = offset
        self.data = data
        self._v1: OutFrame | None = None
        self._plain: OutFrame | None = None
        # Bytes this message holds, for the history's limits: a string's or bytes' own
        # length (no frame is built before a recipient needs it: a plain room never
        # builds the v1 frame), any other JSON value's encoded v1 frame, which is built
        # here once and reused for every recipient.
        if isinstance(data, str):
            self.size = len(data) if data.isascii() else len(data.encode("utf-8"))
        elif isinstance(data, bytes | bytearray | memoryview):
            self.size = len(data)
        else:
            self.size = self.v1_frame().size

    def v1_frame(self) -> OutFrame:
        """The ``message`` frame for ``fanout.v1`` clients."""
        if self._v1 is None:
            data = self.data
            if isinstance(data, bytes | bytearray | memoryview):
                header = {
                    "type": "message",
                    "room": self.room,
                    "epoch": self.epoch,
                    "offset": self.offset,
                }
                self._v1 = OutFrame.binary(binary_envelope(header, bytes(data)))
            else:
                self._v1 = OutFrame.json(
                    {
                        "type": "message",
                        "room": self.room,
                        "epoch": self.epoch,
                        "offset": self.offset,
                        "data": data,
                    }
                )
        return self._v1

    def plain_frame(self) -> OutFrame:
        """What a plain client receives: strings and bytes as-is, anything else as JSON."""
        if self._plain is None:
            data = self.data
            # The common case of OutFrame.of(), without its call.
            self._plain = OutFrame.text(data) if isinstance(data, str) else OutFrame.of(data)
        return self._plain

    def __repr__(self) -> str:
        return f"Message({self.room!r}, {self.epoch!r}, {self.offset}, size={self.size})"
