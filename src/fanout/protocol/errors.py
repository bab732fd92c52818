"""One exception tree for fanout.

FanoutError
 +-- FrameError           a client frame is malformed: answer with an ``error`` frame
 +-- ProtocolViolation    the connection must close with a close code
 +-- BrokerError          the broker did not store a publish (or the outcome is unknown)
 |    +-- BrokerUnavailable
 |    +-- BrokerTimeout
 +-- StateError           an object was used in the wrong state (a programming error)
"""

from __future__ import annotations

from fanout.protocol.codes import CloseCode, ErrorCode


class FanoutError(Exception):
    """Base of every error fanout raises on purpose."""


class FrameError(FanoutError):
    """A client frame that gets an ``error`` frame; the connection stays open."""

    def __init__(self, code: ErrorCode, reason: str, *, frame_id: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.frame_id = frame_id


class ProtocolViolation(FanoutError):
    """Something that ends the connection with ``close_code``."""

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(close_code)}: {reason}")
        self.close_code = close_code
        self.reason = reason


class BrokerError(FanoutError):
    """A publish was not stored, or its outcome is unknown; a retry by ``id`` is safe."""

    code = ErrorCode.UNAVAILABLE


class BrokerUnavailable(BrokerError):
    code = ErrorCode.UNAVAILABLE


class BrokerTimeout(BrokerError):
    code = ErrorCode.TIMEOUT


class StateError(FanoutError):
    """An operation was attempted in a state that does not allow it."""
