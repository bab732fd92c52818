"""The client's errors, a branch of fanout's one exception tree.

FanoutError
 +-- ClientError          base of everything ``fanout.client`` raises on purpose
      +-- Rejected        the hub (or the same rule checked locally) refused a request
      +-- Dropped         an ephemeral publish not known to be passed on; never re-sent
      +-- Unreachable     no connection after ``max_attempts`` attempts; the client stopped
      +-- Refused         the hub turned this client away for good; the client stopped
      |    +-- Kicked     the hub disconnected this client on purpose (close 4003)
      +-- MalformedAnswer the hub's answer to a request did not read
      +-- ClientClosed    the client was closed while the operation waited
"""

from __future__ import annotations

from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.errors import FanoutError

# Error codes whose request may succeed if sent again with the same ``id``: the hub
# promises that an ``error`` answer means "not stored, or outcome unknown".
RETRYABLE_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.RATE_LIMITED})

# The close code of a connection the server ended on purpose (4003, "disconnected by
# the server: ..."): like a policy close, the client must not reconnect by itself.
KICKED = CloseCode.DISCONNECTED


class ClientError(FanoutError):
    """Base of every error the client raises on purpose."""


class Rejected(ClientError):
    """A subscribe or publish the hub refused and that a retry would not fix."""

    def __init__(
        self, code: str, reason: str, *, room: str | None = None, id: str | None = None
    ) -> None:
        where = f" (room {room!r})" if room is not None else ""
        super().__init__(f"{code}: {reason}{where}")
        self.code = code
        self.reason = reason
        self.room = room
        self.id = id


class Dropped(ClientError):
    """An ephemeral publish that was not sent, or whose connection ended (or stayed
    silent) before the hub's answer. Ephemeral publishes are never sent again: by the
    next connection the news (``typing...``) would be stale. It may have reached the
    room's subscribers when the connection ended after sending it."""

    def __init__(self, reason: str, *, room: str, id: str) -> None:
        super().__init__(f"ephemeral publish {id!r} to {room!r} dropped: {reason}")
        self.reason = reason
        self.room = room
        self.id = id


class Unreachable(ClientError):
    """The hub could not be reached in ``attempts`` consecutive attempts."""

    def __init__(self, attempts: int, last_error: str) -> None:
        super().__init__(f"hub unreachable after {attempts} attempts: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


class Refused(ClientError):
    """The hub refused this client in a way retrying would not change (policy close
    1008, an HTTP 4xx answer to the handshake, or no ``fanout.v1`` subprotocol).

    ``reason`` is the hub's own words when it gave any (``token expired``, ``Origin ...
    is not allowed``); ``code`` the close code, ``status`` the HTTP status, if either.
    """

    def __init__(self, reason: str, *, code: int | None = None, status: int | None = None) -> None:
        if code is not None:
            message = f"the hub closed the connection with {code}: {reason}"
        elif status is not None:
            message = f"the hub answered the handshake with HTTP {status}: {reason}"
        else:
            message = reason
        super().__init__(message)
        self.code = code
        self.status = status
        self.reason = reason


class Kicked(Refused):
    """The hub disconnected this client on purpose (close 4003, e.g. the application
    disconnected its user); ``reason`` is the hub's. The client does not reconnect."""


class MalformedAnswer(ClientError):
    """The hub answered a request (presence, history) with a frame that does not read,
    or with the answer to another kind of request."""


class ClientClosed(ClientError):
    """The client was closed."""
