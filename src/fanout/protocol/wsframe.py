"""Server-to-client WebSocket frames as bytes (RFC 6455 section 5.2).

Server frames are never masked, so one encoded frame can be written to every
recipient's socket unchanged: this is what makes "encode once per message" possible
down to the wire.
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8

_FIN = 0x80


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", _FIN | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN | opcode, 127, length)
    return header + payload


def encode_close(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 123 bytes a control frame allows."""
    body = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return encode_frame(OP_CLOSE, body)
