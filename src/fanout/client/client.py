"""The client: one task keeps a connection open, resumes rooms, re-sends publishes.

Concurrency model: everything runs on one event loop, so state needs no locks. One
runner task owns the connection (open, read, reconnect); application tasks call
``subscribe``/``publish``, which send directly when a connection is open and otherwise
leave the work to the runner's next connection. Timers (the publish answer watchdog,
retry delays) are loop callbacks tied to a connection number, so a timer that fires
after its connection is gone does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fanout.backoff import Backoff
from fanout.client import wire
from fanout.client.auth import AuthRequest, TokenKeeper
from fanout.client.buffer import EndOfEvents, EventBuffer
from fanout.client.connect import (
    RETRYABLE_CONNECT_ERRORS,
    Link,
    check_url,
    describe,
    open_connection,
)
from fanout.client.errors import (
    RETRYABLE_CODES,
    ClientClosed,
    ClientError,
    Refused,
    Rejected,
    Unreachable,
)
from fanout.client.events import (
    Ack,
    Connected,
    ConnectFailed,
    Data,
    Disconnected,
    Event,
    Gap,
    Message,
    Subscribed,
    SubscribeFailed,
)
from fanout.client.publishes import PendingPublish, PendingPublishes
from fanout.client.reconnects import Reconnects
from fanout.client.subscriptions import Subscriptions
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.errors import FrameError
from fanout.protocol.frames import MAX_ID_CHARS, check_room

log = logging.getLogger("fanout.client")

MiB = 1024 * 1024
# Room for the envelope around the largest payload the hub accepts.
_FRAME_SLACK = 64 * 1024
# The close code for a connection that ended without a close frame (cut, aborted).
_ABNORMAL_CLOSURE = 1006


class ClientState(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off between attempts
    FAILED = "failed"  # gave up; see the error operations raise
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientStats:
    connections: int
    pending_publishes: int
    duplicates_dropped: int
    holes_reported: int


class Client:
    """An asyncio client for the fanout hub (``fanout.v1``)::

        async with Client("ws://127.0.0.1:8000/ws") as client:
            await client.subscribe("lobby")
            await client.publish("lobby", {"text": "hi"})
            async for event in client.events():
                ...

    It reconnects by itself with exponential backoff and jitter, resumes every room from
    the last offset it delivered, and re-sends every unanswered publish with the same
    ``id`` until the hub acks it.

    ``publish_timeout_s``: a publish unanswered for this long on a connection means the
    connection is dead; it is dropped and the publish re-sent on the next one. Keep it
    above the hub's own ``publish_timeout_s``, within which the hub always answers.
    ``max_attempts``: consecutive failed connection attempts before giving up (None:
    never). ``max_queued_events``: events held for ``events()`` before the client stops
    reading the socket (the hub then applies its slow-consumer rule).
    ``token``: sent as ``Authorization: Bearer <token>`` with every handshake; replace
    it on the live connection with ``refresh_token`` before it expires.
    """

    def __init__(
        self,
        url: str,
        *,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        backoff_jitter: float = 0.5,
        publish_timeout_s: float = 10.0,
        open_timeout_s: float = 5.0,
        max_attempts: int | None = None,
        max_message_bytes: int = 16 * MiB,
        max_queued_events: int = 1000,
        ping_interval_s: float | None = 20.0,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        check_url(url)
        if publish_timeout_s <= 0 or open_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be >= 1")
        self.url = url
        self.backoff = Backoff(backoff_initial_s, backoff_max_s, jitter=backoff_jitter)
        self.publish_timeout_s = publish_timeout_s
        self.open_timeout_s = open_timeout_s
        self.max_attempts = max_attempts
        self.max_message_bytes = max_message_bytes
        self.ping_interval_s = ping_interval_s
        self.headers = dict(headers) if headers else None
        self._auth = TokenKeeper(token, headers)
        self._state = ClientState.IDLE
        self._failure: ClientError | None = None
        self._events = EventBuffer(max_queued_events)
        self._subs = Subscriptions()
        self._rooms = self._subs.tracker
        self._publishes = PendingPublishes()
        self._link: Link | None = None
        self._connections = 0
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def stats(self) -> ClientStats:
        return ClientStats(
            connections=self._connections,
            pending_publishes=len(self._publishes),
            duplicates_dropped=self._rooms.duplicates_dropped,
            holes_reported=self._rooms.holes_reported,
        )

    def position(self, room: str) -> tuple[str, int] | None:
        """(epoch, offset) of the last message of ``room`` handed to the application."""
        return self._rooms.since(room)

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._state is ClientState.CLOSED:
            raise ClientClosed("client closed")
        if self._runner is None:
            self._state = ClientState.CONNECTING
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout-client {self.url}"
            )

    async def close(self) -> None:
        """Stop: pending operations raise ClientClosed, ``events()`` ends after what is
        already queued, the connection is closed with 1000."""
        if self._state is ClientState.CLOSED:
            return
        link = self._link
        self._stop(self._failure or ClientClosed("client closed"), ClientState.CLOSED)
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if link is not None:
            await link.ws.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- rooms ------------------------------------------------------------------------

    async def subscribe(self, room: str) -> Subscribed:
        """Subscribe to ``room`` and return the hub's confirmation.

        The room is remembered: after a reconnect it is resumed from the last delivered
        offset. Waits through reconnects; raises Rejected if the hub refuses the room.
        """
        self._check_usable()
        _check_room(room)
        confirmed = self._subs.confirmed(room)
        if confirmed is not None:
            return confirmed
        waiter = self._subs.waiter(room)
        try:
            link = self._link
            if link is not None and self._subs.needs_subscribe(room, link.number):
                await self._send_subscribe(link, room)
            return await waiter
        finally:
            self._subs.drop_waiter(room, waiter)

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room`` and forget its position."""
        self._check_usable()
        if room not in self._subs:
            return
        link = self._link
        was_sent = link is not None and self._subs.was_sent_on(room, link.number)
        self._subs.forget(room, ClientError(f"unsubscribed from {room!r} while subscribing"))
        if link is not None and was_sent:
            await link.send(wire.encode_unsubscribe(room), text=True)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, room: str, data: Data, *, id: str | None = None) -> Ack:
        """Publish ``data`` (any JSON value, or bytes sent as a binary frame) and return
        the hub's ack.

        Re-sent with the same ``id`` (generated when not given) after a reconnect, an
        ``unavailable``/``timeout``/``rate_limited`` error, or no answer within
        ``publish_timeout_s``, until acked: the hub stores it once. Raises Rejected for
        a refusal a retry cannot fix, TypeError for data that is not JSON-serialisable.
        Cancel (e.g. with ``asyncio.timeout``) to stop retrying.
        """
        self._check_usable()
        _check_room(room)
        msg_id = uuid.uuid4().hex if id is None else id
        if not msg_id or len(msg_id) > MAX_ID_CHARS:
            raise ValueError(f"a publish id must be 1-{MAX_ID_CHARS} characters")
        pending = self._publishes.get(msg_id)
        if pending is not None and pending.room != room:
            raise ValueError(f"publish id {msg_id!r} is already in flight for {pending.room!r}")
        if pending is None:
            frame, is_text = wire.encode_publish(room, data, msg_id)
            if len(frame) > self.max_message_bytes:
                raise Rejected(
                    str(ErrorCode.BAD_FRAME),
                    f"publish of {len(frame)} bytes exceeds max_message_bytes"
                    f" ({self.max_message_bytes})",
                    room=room,
                    id=msg_id,
                )
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            pending = PendingPublish(msg_id, room, frame, is_text, future)
            self._publishes.add(pending)
            link = self._link
            if link is not None:
                await self._send_publish(link, pending)
        pending.waiters += 1
        try:
            # Shielded: one caller giving up must not cancel the answer for another
            # caller of the same id.
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            pending.waiters -= 1
            if pending.waiters == 0:
                self._publishes.discard(pending)
                pending.future.cancel()
            raise

    # -- auth ---------------------------------------------------------------------------

    async def refresh_token(self, token: str) -> None:
        """Give the connection a new token (same subject) before the current one expires.

        Returns once the hub took it; from then on every reconnect sends it. Raises
        Rejected (code ``unauthorized``: it does not verify; ``forbidden``: another
        subject, or it no longer grants a room this client is in) and keeps the old one.
        Sent again after a ``rate_limited`` answer; if the connection drops first, the
        next handshake carries it (and a hub refusing it there stops the client: Refused).
        """
        self._check_usable()
        await self._auth.refresh(token, self._send_auth, self.backoff)

    # -- events -----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order. Ends after ``close()``; raises Unreachable or Refused
        once the client gave up (after the events that came before)."""
        while True:
            try:
                event = await self._events.get()
            except EndOfEvents:
                return
            yield event

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError after ``timeout`` seconds, ClientClosed once closed."""
        try:
            async with asyncio.timeout(timeout):
                return await self._events.get()
        except EndOfEvents:
            raise ClientClosed("client closed") from None

    # -- the connection loop ------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        reconnects = Reconnects(self.backoff, self.max_attempts)
        try:
            while True:
                self._state = ClientState.CONNECTING
                try:
                    ws = await open_connection(
                        self.url,
                        open_timeout_s=self.open_timeout_s,
                        ping_interval_s=self.ping_interval_s,
                        max_size=self.max_message_bytes + _FRAME_SLACK,
                        headers=self._auth.handshake_headers(),
                    )
                except Refused as exc:
                    await self._events.put(ConnectFailed(reconnects.failed + 1, str(exc), None))
                    self._stop(exc, ClientState.FAILED)
                    return
                except RETRYABLE_CONNECT_ERRORS as exc:
                    error = describe(exc)
                    retry_in = reconnects.attempt_failed()
                    await self._events.put(ConnectFailed(reconnects.failed, error, retry_in))
                    if retry_in is None:
                        self._stop(Unreachable(reconnects.failed, error), ClientState.FAILED)
                        return
                    await self._wait(retry_in)
                    continue
                reconnects.connected()
                opened = loop.time()
                code, reason, number = await self._session(ws)
                if code == CloseCode.POLICY:
                    await self._events.put(Disconnected(code, reason, None))
                    self._stop(Refused(reason or "policy violation", code=code), ClientState.FAILED)
                    return
                if code == CloseCode.TOO_BIG:
                    self._fail_too_big(number, reason)
                retry_in = reconnects.disconnected(loop.time() - opened)
                await self._events.put(Disconnected(code, reason, retry_in))
                await self._wait(retry_in)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here: fail loudly rather than leave callers hanging
            log.exception("fanout client loop failed")
            self._stop(ClientError(f"client loop failed: {exc!r}"), ClientState.FAILED)

    async def _wait(self, delay: float) -> None:
        self._state = ClientState.WAITING
        await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> tuple[int | None, str, int]:
        """Resume rooms and publishes on ``ws``, then read until it closes."""
        self._connections += 1
        link = self._link = Link(ws, self._connections)
        self._subs.new_connection()
        self._state = ClientState.CONNECTED
        code: int | None = None
        reason = ""
        try:
            await self._events.put(Connected(self.url, link.number))
            # Refreshes not answered yet first: the rooms may need the new grants.
            for request in self._auth.not_sent_on(link.number):
                await self._send_auth(request)
            for room in self._subs.rooms():
                # Checked again for each room: an earlier send may have yielded to an
                # application task that unsubscribed or subscribed meanwhile.
                if self._subs.needs_subscribe(room, link.number) and not (
                    await self._send_subscribe(link, room)
                ):
                    break
            for pending in self._publishes.not_sent_on(link.number):
                if not await self._send_publish(link, pending):
                    break
            while True:
                await self._handle(await ws.recv())
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else _ABNORMAL_CLOSURE
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
        except Exception:
            link.drop("client error")  # do not leave the socket open behind a failure
            raise
        finally:
            self._link = None
            self._subs.new_connection()
        return code, link.drop_reason or reason, link.number

    # -- received frames ----------------------------------------------------------------

    async def _handle(self, raw: str | bytes) -> None:
        try:
            frame = wire.decode(raw)
        except wire.MalformedFrame as exc:
            # Dropped, not fatal: if it was a message, the next one reveals the hole.
            log.warning("ignoring a malformed frame from the hub: %s", exc)
            return
        events: list[Event]
        if isinstance(frame, Message):
            events = self._rooms.message(frame)
        elif isinstance(frame, Subscribed):
            events = self._rooms.subscribed(frame)
            self._subs.answered(frame)
        elif isinstance(frame, Gap):
            events = self._rooms.gap(frame)
        elif isinstance(frame, Ack):
            self._publishes.resolve(frame)
            return
        elif isinstance(frame, wire.Authorized):
            self._auth.authorized(frame)
            return
        elif isinstance(frame, wire.ErrorReply):
            events = self._on_error(frame)
        else:
            events = [frame]
        for event in events:
            await self._events.put(event)

    def _on_error(self, frame: wire.ErrorReply) -> list[Event]:
        if self._auth.refused(frame):
            return []
        if frame.id is not None:
            pending = self._publishes.get(frame.id)
            if pending is None:
                return []  # a late answer to a publish already settled
            if frame.code in RETRYABLE_CODES:
                self._retry_publish_later(pending)
            else:
                error = Rejected(frame.code, frame.reason, room=pending.room, id=pending.id)
                self._publishes.fail(pending, error)
            return []
        if frame.code == ErrorCode.NOT_SUBSCRIBED:
            return []  # an unsubscribe that crossed a subscribe the hub had refused
        room = self._subs.refused()
        if room is None:
            log.warning("error from the hub: %s: %s", frame.code, frame.reason)
            return []
        if room not in self._subs:
            return []  # unsubscribed meanwhile
        if frame.code in RETRYABLE_CODES:
            self._subs.retry_later(room, self.backoff, self._resubscribe)
            return []
        self._subs.forget(room, Rejected(frame.code, frame.reason, room=room))
        return [SubscribeFailed(room, frame.code, frame.reason)]

    # -- sending, retries and timers ----------------------------------------------------

    async def _send_subscribe(self, link: Link, room: str) -> bool:
        since = self._subs.sending(room, link.number)
        return await link.send(wire.encode_subscribe(room, since), text=True)

    async def _send_auth(self, request: AuthRequest) -> None:
        link = self._link
        if link is not None:  # else the next handshake carries the token
            request.sent_on = link.number
            await link.send(wire.encode_auth(request.token, request.id), text=True)

    async def _send_publish(self, link: Link, pending: PendingPublish) -> bool:
        pending.sent_on = link.number
        pending.cancel_timer()
        pending.timer = asyncio.get_running_loop().call_later(
            self.publish_timeout_s, self._publish_unanswered, pending, link
        )
        return await link.send(pending.frame, text=pending.is_text)

    def _publish_unanswered(self, pending: PendingPublish, link: Link) -> None:
        pending.timer = None
        if self._link is not link or self._publishes.get(pending.id) is not pending:
            return
        if self._events.full:
            # The reader is parked on a full event buffer, so the answer may be sitting
            # unread in the socket: that is the application's pace, not a dead link.
            pending.timer = asyncio.get_running_loop().call_later(
                self.publish_timeout_s, self._publish_unanswered, pending, link
            )
            return
        link.drop(f"no answer to publish {pending.id!r} within {self.publish_timeout_s} s")

    def _retry_publish_later(self, pending: PendingPublish) -> None:
        pending.errors += 1
        pending.sent_on = 0  # a new connection sends it at once
        pending.cancel_timer()
        pending.timer = asyncio.get_running_loop().call_later(
            self.backoff.delay(pending.errors - 1), self._resend_publish, pending
        )

    def _resend_publish(self, pending: PendingPublish) -> None:
        pending.timer = None
        link = self._link
        if link is None or self._publishes.get(pending.id) is not pending:
            return
        if pending.sent_on != link.number:
            self._spawn(self._send_publish(link, pending))

    def _resubscribe(self, room: str) -> None:
        link = self._link
        if link is not None and self._subs.needs_subscribe(room, link.number):
            self._spawn(self._send_subscribe(link, room))

    def _fail_too_big(self, number: int, reason: str) -> None:
        # The hub closed with 1009 and does not say which frame was too big; re-sending
        # would close the next connection the same way, so fail what was in flight.
        for pending in self._publishes.sent_on(number):
            error = Rejected(
                "too_big", reason or "message too big", room=pending.room, id=pending.id
            )
            self._publishes.fail(pending, error)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- state ----------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._state is ClientState.IDLE:
            raise ClientError("client not started: use 'async with Client(...)' or start()")

    def _stop(self, error: ClientError, state: ClientState) -> None:
        """Settle everything that waits with ``error``; no more events after the queued."""
        self._state = state
        self._failure = error
        self._publishes.fail_all(error)
        self._subs.fail_waiters(error)
        self._auth.fail_all(error)
        for task in list(self._tasks):
            task.cancel()
        self._events.end(None if isinstance(error, ClientClosed) else error)


def _check_room(room: str) -> None:
    try:
        check_room(room)
    except FrameError as exc:
        raise Rejected(str(exc.code), exc.reason, room=room) from None
