"""One exception tree for fanout, drawn once here.

FanoutError
 +-- FrameError            a client frame is refused: answered with an ``error`` frame
 |    +-- InvalidPublish       a publish (from a client, a route, the API or an emitter)
 |                             with a bad room, id or data, or too large
 +-- ProtocolViolation     the connection must close with a close code
 +-- BrokerError           a broker call failed: a publish was not stored, or its outcome
 |    |                    is unknown (a retry by ``id`` is safe)
 |    +-- BrokerUnavailable    no usable connection to the broker
 |    |    +-- LinkError           (fanout.brokers.redis) a connection to Redis failed
 |    |    +-- TransientError      (fanout.brokers.redis) CLUSTERDOWN, TRYAGAIN, LOADING...
 |    +-- BrokerRefused        the broker answered with an error retrying cannot fix
 |    |    +-- CommandError        (fanout.brokers.redis) a wrong type, a script error...
 |    +-- BrokerTimeout        no answer in time
 +-- AuthError             who the client is, or what it may do, cannot be established
 |    +-- TokenError           (fanout.auth.tokens) a token that does not verify
 |    +-- HandshakeDenied      a handshake refused before accept (answered with HTTP 403)
 +-- ConfigError           settings that cannot work (also a ValueError)
 |    +-- KeyConfigError       (fanout.auth.tokens) a key that cannot verify tokens safely
 +-- StateError            an object used in a state that does not allow it (a bug)

Causes are chained (``raise ... from exc``). What an error becomes on the wire is decided
in one place, ``fanout.core.errormap``; a broker maps its own client library's errors
into this tree once, at its boundary.
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


class InvalidPublish(FrameError):
    """A publish refused before it reached the broker: ``code`` says what (``bad_room``,
    ``bad_frame``, ``too_big``), ``reason`` how to fix it. Nothing was stored."""


class ProtocolViolation(FanoutError):
    """Something that ends the connection with ``close_code``."""

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(close_code)}: {reason}")
        self.close_code = close_code
        self.reason = reason


class BrokerError(FanoutError):
    """A broker call failed; for a publish: not stored, or its outcome is unknown."""

    code = ErrorCode.UNAVAILABLE


class BrokerUnavailable(BrokerError):
    code = ErrorCode.UNAVAILABLE


class BrokerRefused(BrokerError):
    """The broker refused in a way retrying cannot fix (``broker_error``)."""

    code = ErrorCode.BROKER_ERROR


class BrokerTimeout(BrokerError):
    code = ErrorCode.TIMEOUT


class AuthError(FanoutError):
    """Who the client is, or what it may do, cannot be established."""


class HandshakeDenied(AuthError):
    """A handshake refused before accept: ``status`` is the HTTP answer, ``kind`` the
    refusal counter it bumps (``origin``, ``token`` or ``room``)."""

    def __init__(self, reason: str, *, kind: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status


class ConfigError(FanoutError, ValueError):
    """Settings that cannot work; ``fanout serve`` prints the reason and exits 2."""


class StateError(FanoutError):
    """An operation was attempted in a state that does not allow it."""
