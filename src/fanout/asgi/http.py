"""uvicorn's HTTP protocol with a deadline and a size cap on the request head.

uvicorn (httptools) waits for request headers without a time limit and without a
size limit: a client that trickles a handshake one byte at a time holds its socket
for as long as it likes, and one that sends endless headers grows the server's memory.
Here the head must arrive within ``handshake_timeout_s`` of the connection (on a
kept-alive connection: of the next request's first byte; uvicorn's keep-alive timeout
bounds the wait for it) and within ``max_header_bytes``;
otherwise the connection is dropped (431 for the size). After the head, WebSocket
handshakes and requests go on as uvicorn has them.

The size is checked twice: bytes are counted as they arrive (so a head that never ends
is cut off at the limit: after a read that ended no head, the count says how large the
head is so far), and each complete head is measured when the parser has it (so a head
that arrived in the same read as the end of the previous request, which the count
cannot attribute, is refused all the same). Body bytes that arrive in the same read as
their head do not count toward the head.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_TOO_BIG = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 28\r\n"
    b"connection: close\r\n\r\n"
    b"request head is over limit.\n"
)


class FanoutConfig(uvicorn.Config):
    """uvicorn's config plus the two limits (a module-level class, so ``--workers``
    can hand it to its processes)."""

    def __init__(
        self, *args: Any, handshake_timeout_s: float, max_header_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.handshake_timeout_s = handshake_timeout_s
        self.max_header_bytes = max_header_bytes


class _HeadTooBig(Exception):
    """Raised in a parser callback to stop the parser; answered with 431."""


class FanoutHttpProtocol(HttpToolsProtocol):
    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_timeout_s: float = getattr(config, "handshake_timeout_s", 10.0)
        self._max_head: int = getattr(config, "max_header_bytes", 64 * 1024)
        self._head_deadline: asyncio.TimerHandle | None = None
        # Bytes received since the current request began (its head so far, or what came
        # after the previous request); None from the end of a head to the end of its body.
        self._head_bytes: int | None = 0
        self._head_refused = False
        self._heads_seen = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        over = False
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            over = self._head_bytes > self._max_head
        heads = self._heads_seen
        super().data_received(data)
        # Over the limit counts only if no head ended in this read: a request whose body
        # arrived with its head (a 70,000-byte POST in one read) has an exact head size,
        # measured in on_headers_complete; what is counted here is the head so far.
        if over and self._heads_seen == heads and not self._head_refused:
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # a new request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._heads_seen += 1
        self._head_bytes = None
        # The exact size (request line and header lines, give or take a few bytes per line).
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._max_head:
            self._head_refused = True
            raise _HeadTooBig  # stops the parser; uvicorn answers with send_400_response
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0  # what follows is the next request's head

    def send_400_response(self, msg: str) -> None:
        if self._head_refused:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self._disarm()
        self._head_bytes = None
        if not self.transport.is_closing():
            self.transport.write(_HEAD_TOO_BIG)
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self._head_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            # abort(): nothing worth flushing, and the socket is freed at once.
            self.transport.abort()
