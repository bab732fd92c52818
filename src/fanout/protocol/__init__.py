"""The wire protocol ``fanout.v1``: envelopes, decoding and encoding. No I/O here."""

from fanout.protocol.codes import SUBPROTOCOL, CloseCode, ErrorCode
from fanout.protocol.envelope import Message, OutFrame
from fanout.protocol.errors import FanoutError, FrameError, ProtocolViolation
from fanout.protocol.frames import (
    ClientFrame,
    Publish,
    Since,
    Subscribe,
    Unsubscribe,
    decode_binary,
    decode_text,
)

__all__ = [
    "SUBPROTOCOL",
    "ClientFrame",
    "CloseCode",
    "ErrorCode",
    "FanoutError",
    "FrameError",
    "Message",
    "OutFrame",
    "ProtocolViolation",
    "Publish",
    "Since",
    "Subscribe",
    "Unsubscribe",
    "decode_binary",
    "decode_text",
]
