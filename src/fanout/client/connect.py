"""Opening one ``fanout.v1`` connection, and telling errors worth a retry from the rest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from fanout.client.errors import KICKED, Kicked, Refused
from fanout.protocol.codes import SUBPROTOCOL, CloseCode

# What a failed attempt raises when another attempt may succeed: refused or reset
# connections, timeouts, a handshake cut short, a 5xx answer.
RETRYABLE_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    WebSocketException,
)

# HTTP answers to the handshake that mean "come back later" rather than "go away".
_RETRYABLE_STATUS = frozenset({408, 425, 429})

# A refusal's body is read for its reason only when it is this small, and the reason
# kept to this many characters: it ends up in exceptions and logs.
_MAX_DENIAL_BODY = 16 * 1024
_MAX_REASON = 300

# Closing a connection we are done with should not hold up the caller for long.
CLOSE_TIMEOUT_S = 2.0


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a ws:// or wss:// URL."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r} ({exc})") from exc


async def open_connection(
    url: str,
    *,
    open_timeout_s: float,
    ping_interval_s: float | None,
    max_size: int,
    headers: Mapping[str, str] | None,
) -> ClientConnection:
    """Open a connection that negotiated ``fanout.v1``.

    Raises Refused when retrying cannot help, else one of RETRYABLE_CONNECT_ERRORS.
    """
    try:
        ws = await connect(
            url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers=dict(headers) if headers else None,
            open_timeout=open_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=ping_interval_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=max_size,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if 400 <= status < 500 and status not in _RETRYABLE_STATUS:
            reason = denial_reason(exc.response.body) or "refused"
            raise Refused(reason, status=status) from exc
        raise
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise Refused(f"the server at {url} does not speak {SUBPROTOCOL}")
    return ws


def denial_reason(body: bytes | bytearray | None) -> str | None:
    """The reason in a refused handshake's JSON body (``{"error": "token expired"}``),
    shortened and made printable; None when the body has none."""
    if not body or len(body) > _MAX_DENIAL_BODY:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    reason = obj.get("error", obj.get("detail"))
    if not isinstance(reason, str) or not reason.strip():
        return None
    text = "".join(c if c.isprintable() else " " for c in reason.strip())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def handshake_url(url: str, user_since: tuple[str, int] | None) -> str:
    """``url`` with ``user_since=EPOCH:OFFSET`` in its query (replacing any), the
    position to resume the personal room from; ``url`` unchanged without one."""
    if user_since is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "user_since"]
    query.append(("user_since", f"{user_since[0]}:{user_since[1]}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def closed_for_good(code: int | None, reason: str) -> Refused | None:
    """The error that stops the client after a close with ``code``, or None when it
    reconnects: a policy close (1008: token expired...) or a kick (4003) would only
    happen again, or is the server's wish."""
    if code == KICKED:
        return Kicked(reason or "disconnected by the server", code=code)
    if code == CloseCode.POLICY:
        return Refused(reason or "policy violation", code=code)
    return None


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(eq=False, slots=True)
class Link:
    """One open connection and its number (1 for the client's first)."""

    ws: ClientConnection
    number: int
    drop_reason: str | None = None

    async def send(self, frame: bytes, *, text: bool) -> bool:
        """Send one frame; False when the connection is closed (the next one re-sends)."""
        try:
            await self.ws.send(frame, text=text)
        except ConnectionClosed:
            return False
        return True

    def drop(self, reason: str) -> None:
        """Abort the socket at once: it is presumed dead, a close handshake would stall."""
        if self.drop_reason is None:
            self.drop_reason = reason
            self.ws.transport.abort()
