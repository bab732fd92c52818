"""Frames to the hub on the current connection, and the timers that send them again.

``link`` is the open connection, or None between connections. Every send, timer and
spawned task is tied to the connection it was made for: a timer that fires after its
connection is gone does nothing, because the next connection re-sends whatever is still
unanswered (``resume``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from fanout.backoff import Backoff
from fanout.client import wire
from fanout.client.auth import AuthRequest, TokenKeeper
from fanout.client.buffer import EventBuffer
from fanout.client.connect import Link
from fanout.client.publishes import PendingPublish, PendingPublishes
from fanout.client.requests import PendingRequest, PendingRequests
from fanout.client.subscriptions import Subscriptions


class Sender:
    def __init__(
        self,
        *,
        subs: Subscriptions,
        publishes: PendingPublishes,
        requests: PendingRequests,
        auth: TokenKeeper,
        events: EventBuffer,
        backoff: Backoff,
        publish_timeout_s: float,
    ) -> None:
        self.link: Link | None = None
        self._subs = subs
        self._publishes = publishes
        self._requests = requests
        self._auth = auth
        self._events = events
        self._backoff = backoff
        self._publish_timeout_s = publish_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def resume(self, link: Link) -> None:
        """Send on a new connection what is not sent on it yet: token refreshes, then
        subscribes, then publishes, then requests (each kind stops at a send that finds
        it closed)."""
        # Refreshes not answered yet first: the rooms may need the new grants.
        for request in self._auth.not_sent_on(link.number):
            await self.auth(request)
        for room in self._subs.rooms():
            # Checked again for each room: an earlier send may have yielded to an
            # application task that unsubscribed or subscribed meanwhile.
            if self._subs.needs_subscribe(room, link.number) and not (
                await self.subscribe(link, room)
            ):
                break
        for pending in self._publishes.not_sent_on(link.number):
            if not await self.publish(link, pending):
                break
        for asked in self._requests.not_sent_on(link.number):
            if self.link is not link:
                break
            await self.request(asked)

    async def subscribe(self, link: Link, room: str) -> bool:
        since = self._subs.sending(room, link.number)
        return await link.send(wire.encode_subscribe(room, since), text=True)

    async def auth(self, request: AuthRequest) -> None:
        link = self.link
        if link is not None:  # else the next handshake carries the token
            request.sent_on = link.number
            await link.send(wire.encode_auth(request.token, request.id), text=True)

    async def request(self, request: PendingRequest) -> None:
        """Send ``request`` on the open connection, if any (else the next one sends it)."""
        link = self.link
        if link is not None and request.sent_on != link.number:
            request.sent_on = link.number
            await link.send(request.frame, text=True)

    async def publish(self, link: Link, pending: PendingPublish) -> bool:
        pending.sent_on = link.number
        pending.cancel_timer()
        pending.timer = asyncio.get_running_loop().call_later(
            self._publish_timeout_s, self._publish_unanswered, pending, link
        )
        return await link.send(pending.frame, text=pending.is_text)

    def retry_publish_later(self, pending: PendingPublish) -> None:
        """After a retryable error: send ``pending`` again after a backoff delay."""
        pending.errors += 1
        pending.sent_on = 0  # a new connection sends it at once
        pending.cancel_timer()
        pending.timer = asyncio.get_running_loop().call_later(
            self._backoff.delay(pending.errors - 1), self._resend_publish, pending
        )

    def retry_subscribe_later(self, room: str) -> None:
        """After a retryable error: subscribe ``room`` again after a backoff delay."""
        self._subs.retry_later(room, self._backoff, self._resubscribe)

    def cancel(self) -> None:
        """The client stops: no spawned send runs any more."""
        for task in list(self._tasks):
            task.cancel()

    def _publish_unanswered(self, pending: PendingPublish, link: Link) -> None:
        pending.timer = None
        if self.link is not link or self._publishes.get(pending.id) is not pending:
            return
        if self._events.full:
            # The reader is parked on a full event buffer, so the answer may be sitting
            # unread in the socket: that is the application's pace, not a dead link.
            pending.timer = asyncio.get_running_loop().call_later(
                self._publish_timeout_s, self._publish_unanswered, pending, link
            )
            return
        link.drop(f"no answer to publish {pending.id!r} within {self._publish_timeout_s} s")

    def _resend_publish(self, pending: PendingPublish) -> None:
        pending.timer = None
        link = self.link
        if link is None or self._publishes.get(pending.id) is not pending:
            return
        if pending.sent_on != link.number:
            self._spawn(self.publish(link, pending))

    def _resubscribe(self, room: str) -> None:
        link = self.link
        if link is not None and self._subs.needs_subscribe(room, link.number):
            self._spawn(self.subscribe(link, room))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
