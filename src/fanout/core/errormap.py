"""What an exception becomes on the wire: the one place that decides.

``error_frame`` answers one client frame (the connection stays open); ``close_for``
ends the connection. Every layer raises from the tree in ``fanout.protocol.errors``
and leaves the mapping to these two functions.
"""

from __future__ import annotations

import asyncio
import logging

from fanout.protocol import server_frames
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.envelope import OutFrame
from fanout.protocol.errors import (
    AuthError,
    BrokerError,
    FrameError,
    ProtocolViolation,
)

log = logging.getLogger("fanout.errors")


def error_frame(exc: Exception, frame_id: str | None = None, *, context: object = None) -> OutFrame:
    """The ``error`` frame answering a frame whose handling raised ``exc``.

    Anything outside fanout's tree is an application handler's failure: logged with its
    traceback, and the client is told only its type. ``context`` names what was being
    handled, for that log line."""
    if isinstance(exc, FrameError):
        return server_frames.error(exc.code, exc.reason, exc.frame_id or frame_id)
    if isinstance(exc, BrokerError):
        return server_frames.error(exc.code, str(exc), frame_id)
    if isinstance(exc, AuthError):
        return server_frames.error(ErrorCode.UNAUTHORIZED, str(exc), frame_id)
    log.error("handler failed (%s)", context, exc_info=exc)
    return server_frames.error(ErrorCode.INTERNAL, f"handler error: {type(exc).__name__}", frame_id)


def close_for(exc: BaseException) -> tuple[CloseCode, str]:
    """The close code and reason for a connection ended by ``exc``."""
    if isinstance(exc, ProtocolViolation):
        return exc.close_code, exc.reason
    if isinstance(exc, asyncio.CancelledError):
        return CloseCode.GOING_AWAY, "server shutting down"
    if isinstance(exc, BrokerError):
        # A plain client has no error frame: a message the broker did not take ends it.
        return CloseCode.INTERNAL, f"broker: {exc}"
    return CloseCode.INTERNAL, "internal error"


# The server HTTP API's statuses for a refused or failed publish.
_HTTP_STATUS = {
    ErrorCode.TOO_BIG: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 503,
    ErrorCode.BROKER_ERROR: 500,
}


def http_error(exc: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status and JSON body ``{"code", "reason"}`` for a publish that raised
    ``exc``: 400 for what the caller must fix, 413 too big, 503 when a retry by ``id``
    may succeed, 500 for a bug (logged) or a broker that refuses what retrying cannot
    fix."""
    if isinstance(exc, FrameError):
        return _HTTP_STATUS.get(exc.code, 400), {"code": str(exc.code), "reason": exc.reason}
    if isinstance(exc, BrokerError):
        return _HTTP_STATUS[exc.code], {"code": str(exc.code), "reason": str(exc)}
    log.error("server API request failed", exc_info=exc)
    return 500, {"code": str(ErrorCode.INTERNAL), "reason": f"internal error: {type(exc).__name__}"}
