"""The client's token: sent with every handshake, replaced on a live connection by an
``auth`` frame (``Client.refresh_token``).

The rule: the next handshake carries the latest token the application gave, except one
the hub refused on a live connection, which is dropped (the last accepted one stays).
A refresh is answered by ``authorized`` (or an ``error`` naming its ``id``) on the
connection it was sent on; if that connection ends before the answer, the next
handshake carries the new token and the refresh is sent again on the new connection
for its answer. The token is never logged nor put in an exception message.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fanout.backoff import Backoff
from fanout.client import wire
from fanout.client.errors import RETRYABLE_CODES, Rejected

# Printable ASCII without spaces: every JWT, and nothing that could break a header.
_TOKEN = re.compile(r"[!-~]+")


def check_token(token: object) -> str:
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise ValueError("a token must be a non-empty string of printable ASCII without spaces")
    return token


class _RetryLater(Exception):
    """The hub did not handle the refresh now (rate limited, busy): send it again."""


@dataclass(eq=False, slots=True)
class AuthRequest:
    id: str
    token: str
    future: asyncio.Future[None]
    sent_on: int = 0  # the connection (by number) it was sent on; 0: not sent yet


class TokenKeeper:
    def __init__(self, token: str | None, headers: Mapping[str, str] | None) -> None:
        if token is not None:
            check_token(token)
            if headers and any(name.lower() == "authorization" for name in headers):
                raise ValueError("give the token as token= or as an Authorization header, not both")
        self._token = token
        self._headers = dict(headers) if headers else {}
        self._requests: dict[str, AuthRequest] = {}  # by id, in the order asked

    def handshake_headers(self) -> dict[str, str] | None:
        """The headers for the next connection attempt, with the latest token."""
        latest = next(reversed(self._requests.values()), None)
        token = latest.token if latest is not None else self._token
        if token is None:
            return dict(self._headers) or None
        headers = {k: v for k, v in self._headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
        return headers

    def not_sent_on(self, connection: int) -> list[AuthRequest]:
        return [r for r in self._requests.values() if r.sent_on != connection]

    def authorized(self, frame: wire.Authorized) -> bool:
        """Answer the refresh ``frame`` is for; False when it is for none of ours."""
        request = self._requests.get(frame.id) if frame.id is not None else None
        if request is None:
            return False
        self._token = request.token
        self._settle(request, None)
        return True

    def refused(self, frame: wire.ErrorReply) -> bool:
        """Fail the refresh ``frame`` answers; False when it answers none of ours."""
        request = self._requests.get(frame.id) if frame.id is not None else None
        if request is None:
            return False
        if frame.code in RETRYABLE_CODES:
            self._settle(request, _RetryLater())
        else:
            self._settle(request, Rejected(frame.code, frame.reason))
        return True

    def fail_all(self, error: BaseException) -> None:
        for request in list(self._requests.values()):
            self._settle(request, error)

    async def refresh(
        self,
        token: str,
        send: Callable[[AuthRequest], Awaitable[object]],
        backoff: Backoff,
    ) -> None:
        """Ask for ``token`` until the hub answers: returns once the connection holds it,
        raises Rejected when the hub refuses it."""
        check_token(token)
        errors = 0
        while True:
            request = self._add(token)
            try:
                await send(request)
                await request.future
                return
            except _RetryLater:
                pass
            finally:
                self._requests.pop(request.id, None)
            await asyncio.sleep(backoff.delay(errors))
            errors += 1

    def _add(self, token: str) -> AuthRequest:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        request = AuthRequest(f"auth-{uuid.uuid4().hex}", token, future)
        self._requests[request.id] = request
        return request

    def _settle(self, request: AuthRequest, error: BaseException | None) -> None:
        self._requests.pop(request.id, None)
        if request.future.done():
            return
        if error is None:
            request.future.set_result(None)
        else:
            request.future.set_exception(error)
