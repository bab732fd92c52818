"""Requests the hub answers by ``id`` (``presence``, ``presence_stats``, ``history``).

A request is kept until it is answered, refused or given up (its timeout, its caller
cancelled), and is sent again on each new connection that has not carried it: these
requests only read, so asking twice is harmless, and a connection that dropped before
the answer costs no more than the wait. No I/O here: ``ask`` is handed the send.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fanout.client import wire
from fanout.client.errors import MalformedAnswer, Rejected
from fanout.client.events import History, Presence, PresenceStats

A = TypeVar("A", Presence, PresenceStats, History)

_KIND: dict[type[wire.Answer], str] = {
    Presence: "presence",
    PresenceStats: "presence_stats",
    History: "history",
}


@dataclass(eq=False, slots=True)
class PendingRequest:
    id: str
    room: str
    kind: str
    expects: type[wire.Answer]
    frame: bytes
    future: asyncio.Future[wire.Answer]
    sent_on: int = 0  # the connection (by number) it was last sent on; 0: not sent yet


class PendingRequests:
    """Unanswered requests by id, in the order asked."""

    def __init__(self) -> None:
        self._by_id: dict[str, PendingRequest] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def not_sent_on(self, connection: int) -> list[PendingRequest]:
        return [r for r in self._by_id.values() if r.sent_on != connection]

    async def ask(
        self,
        expects: type[A],
        room: str,
        encode: Callable[[str], bytes],
        send: Callable[[PendingRequest], Awaitable[object]],
        timeout_s: float,
    ) -> A:
        """Send the request ``encode(id)`` with ``send`` (which may only send it later,
        on the next connection) and return its answer.

        Raises Rejected when the hub refuses it, MalformedAnswer for an answer that
        does not read, TimeoutError when none comes within ``timeout_s``.
        """
        kind = _KIND[expects]
        request_id = f"{kind}-{uuid.uuid4().hex}"
        future: asyncio.Future[wire.Answer] = asyncio.get_running_loop().create_future()
        request = PendingRequest(request_id, room, kind, expects, encode(request_id), future)
        self._by_id[request_id] = request
        try:
            async with asyncio.timeout(timeout_s):
                await send(request)
                answer = await future
        except TimeoutError:
            raise TimeoutError(f"no answer to {kind} of {room!r} within {timeout_s} s") from None
        finally:
            self._by_id.pop(request_id, None)
        if not isinstance(answer, expects):  # answered() checked it; this tells mypy
            raise MalformedAnswer(f"a {type(answer).__name__} answer to a {kind} request")
        return answer

    def answered(self, reply: wire.Reply) -> bool:
        """Settle the request ``reply`` answers; False when it answers none of ours."""
        request = self._take(reply.id)
        if request is None:
            return False
        answer = reply.answer
        if not isinstance(answer, request.expects) or answer.room != request.room:
            what = f"{_KIND[type(answer)]} of {answer.room!r}"
            self._fail(
                request, MalformedAnswer(f"{what} answers {request.kind} of {request.room!r}")
            )
        elif not request.future.done():
            request.future.set_result(answer)
        return True

    def refused(self, frame: wire.ErrorReply) -> bool:
        """Fail the request ``frame`` answers; False when it answers none of ours."""
        request = self._take(frame.id)
        if request is None:
            return False
        self._fail(request, Rejected(frame.code, frame.reason, room=request.room, id=request.id))
        return True

    def malformed(self, frame_id: str | None, reason: str) -> bool:
        """An answer to request ``frame_id`` that did not read: fail that request."""
        request = self._take(frame_id)
        if request is None:
            return False
        self._fail(request, MalformedAnswer(f"the answer to {request.kind}: {reason}"))
        return True

    def fail_all(self, error: BaseException) -> None:
        for request in list(self._by_id.values()):
            self._fail(request, error)
        self._by_id.clear()

    def _take(self, frame_id: str | None) -> PendingRequest | None:
        return self._by_id.pop(frame_id, None) if frame_id is not None else None

    @staticmethod
    def _fail(request: PendingRequest, error: BaseException) -> None:
        if not request.future.done():
            request.future.set_exception(error)
