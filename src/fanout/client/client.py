"""The client: one task keeps a connection open, resumes rooms, re-sends publishes.

Concurrency model: everything runs on one event loop, so state needs no locks. One
runner task owns the connection (open, read, reconnect); application tasks call
``subscribe``/``publish``, which send directly when a connection is open and otherwise
leave the work to the runner's next connection. Timers (the publish answer watchdog,
retry delays) are loop callbacks tied to a connection number, so a timer that fires
after its connection is gone does nothing.

Here: the public API and the connection loop. What goes out and the timers that send
again are in ``sender``; what each received frame does is in ``receiver``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Literal, Self, overload

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fanout.backoff import Backoff
from fanout.client import wire
from fanout.client.auth import TokenKeeper
from fanout.client.buffer import EndOfEvents, EventBuffer
from fanout.client.connect import (
    RETRYABLE_CONNECT_ERRORS,
    Link,
    check_url,
    closed_for_good,
    describe,
    handshake_url,
    open_connection,
)
from fanout.client.ephemeral import EphemeralSends
from fanout.client.errors import ClientClosed, ClientError, Refused, Unreachable
from fanout.client.events import (
    Ack,
    Connected,
    ConnectFailed,
    Data,
    Disconnected,
    EphemeralAck,
    Event,
    History,
    Presence,
    PresenceStats,
    Subscribed,
)
from fanout.client.publishes import PendingPublish, PendingPublishes, encode_publish
from fanout.client.receiver import Receiver
from fanout.client.reconnects import Reconnects
from fanout.client.requests import A, PendingRequests
from fanout.client.sender import Sender
from fanout.client.state import ClientState, ClientStats
from fanout.client.subscriptions import Subscriptions, check_room, is_server_room
from fanout.protocol.codes import CloseCode
from fanout.protocol.frames import MAX_ID_CHARS

log = logging.getLogger("fanout.client")

MiB = 1024 * 1024
# Room for the envelope around the largest payload the hub accepts.
_FRAME_SLACK = 64 * 1024
# The close code for a connection that ended without a close frame (cut, aborted).
_ABNORMAL_CLOSURE = 1006


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
    ``request_timeout_s``: how long ``presence``/``presence_stats``/``history`` wait
    for their answer (through reconnects) by default.

    A connection whose identity has a user id is subscribed by the hub to its personal
    room ``@<user>`` (``user_room``), whose events come like any room's and which is
    resumed after every reconnect. A close 1008 or 4003 (kicked) stops the client.
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
        request_timeout_s: float = 10.0,
    ) -> None:
        check_url(url)
        if publish_timeout_s <= 0 or open_timeout_s <= 0 or request_timeout_s <= 0:
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
        self.request_timeout_s = request_timeout_s
        self.headers = dict(headers) if headers else None
        self._auth = TokenKeeper(token, headers)
        self._state = ClientState.IDLE
        self._failure: ClientError | None = None
        self._events = EventBuffer(max_queued_events)
        self._subs = Subscriptions()
        self._rooms = self._subs.tracker
        self._publishes = PendingPublishes()
        self._requests = PendingRequests()
        self._ephemeral = EphemeralSends()
        self._sender = Sender(
            subs=self._subs,
            publishes=self._publishes,
            requests=self._requests,
            auth=self._auth,
            events=self._events,
            backoff=self.backoff,
            publish_timeout_s=publish_timeout_s,
        )
        self._receiver = Receiver(
            subs=self._subs,
            publishes=self._publishes,
            auth=self._auth,
            sender=self._sender,
            requests=self._requests,
            ephemeral=self._ephemeral,
        )
        self._connections = 0
        self._runner: asyncio.Task[None] | None = None

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

    @property
    def user_room(self) -> str | None:
        """The personal room (``@<user>``) the hub subscribed this client to, once it
        announced it; None for an identity without a user id."""
        return self._subs.user_room

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
        link = self._sender.link
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
        check_room(room, client_managed=True)
        confirmed = self._subs.confirmed(room)
        if confirmed is not None:
            return confirmed
        waiter = self._subs.waiter(room)
        try:
            link = self._sender.link
            if link is not None and self._subs.needs_subscribe(room, link.number):
                await self._sender.subscribe(link, room)
            return await waiter
        finally:
            self._subs.drop_waiter(room, waiter)

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving ``room`` and forget its position."""
        self._check_usable()
        if is_server_room(room):
            check_room(room, client_managed=True)
        if room not in self._subs:
            return
        link = self._sender.link
        was_sent = link is not None and self._subs.was_sent_on(room, link.number)
        self._subs.forget(room, ClientError(f"unsubscribed from {room!r} while subscribing"))
        if link is not None and was_sent:
            await link.send(wire.encode_unsubscribe(room), text=True)

    # -- publishing -------------------------------------------------------------------

    @overload
    async def publish(
        self, room: str, data: Data, *, id: str | None = None, ephemeral: Literal[False] = False
    ) -> Ack: ...
    @overload
    async def publish(
        self, room: str, data: Data, *, id: str | None = None, ephemeral: Literal[True]
    ) -> EphemeralAck: ...
    async def publish(
        self, room: str, data: Data, *, id: str | None = None, ephemeral: bool = False
    ) -> Ack | EphemeralAck:
        """Publish ``data`` (any JSON value, or bytes sent as a binary frame) and return
        the hub's ack.

        Re-sent with the same ``id`` (generated when not given) after a reconnect, an
        ``unavailable``/``timeout``/``rate_limited`` error, or no answer within
        ``publish_timeout_s``, until acked: the hub stores it once. Raises Rejected for
        a refusal a retry cannot fix, TypeError for data that is not JSON-serialisable.
        Cancel (e.g. with ``asyncio.timeout``) to stop retrying.

        ``ephemeral=True`` (typing indicators, cursors): not stored, no offset, for the
        room's current subscribers only; returns an EphemeralAck. Sent once, on the open
        connection, never again: raises Dropped when none is open or it ends (or stays
        silent for ``publish_timeout_s``) before the hub answers, Rejected for any
        refusal (``rate_limited`` included).
        """
        self._check_usable()
        check_room(room, client_managed=True)
        msg_id = uuid.uuid4().hex if id is None else id
        if not msg_id or len(msg_id) > MAX_ID_CHARS:
            raise ValueError(f"a publish id must be 1-{MAX_ID_CHARS} characters")
        pending = self._publishes.get(msg_id)
        if (pending is not None and (ephemeral or pending.room != room)) or (
            msg_id in self._ephemeral
        ):
            raise ValueError(f"publish id {msg_id!r} is already in flight")
        if ephemeral:
            once = encode_publish(room, data, msg_id, True, self.max_message_bytes)
            return await self._ephemeral.send(
                self._sender.link, room, msg_id, once, self.publish_timeout_s
            )
        if pending is None:
            frame, is_text = encode_publish(room, data, msg_id, False, self.max_message_bytes)
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            pending = PendingPublish(msg_id, room, frame, is_text, future)
            self._publishes.add(pending)
            link = self._sender.link
            if link is not None:
                await self._sender.publish(link, pending)
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

    # -- requests -------------------------------------------------------------------------

    async def presence(self, room: str, *, timeout: float | None = None) -> Presence:
        """Who is in ``room`` now (one member per connection). Waits through reconnects
        for ``timeout`` (default ``request_timeout_s``), then raises TimeoutError; raises
        Rejected when the hub refuses (``forbidden``: not granted or presence off for the
        room, ``bad_room``, ``unavailable``: try later)."""
        encode = functools.partial(wire.encode_presence, room)
        return await self._ask(Presence, room, encode, timeout)

    async def presence_stats(self, room: str, *, timeout: float | None = None) -> PresenceStats:
        """How many connections and distinct users are in ``room``; as ``presence``."""
        encode = functools.partial(wire.encode_presence_stats, room)
        return await self._ask(PresenceStats, room, encode, timeout)

    async def history(
        self, room: str, *, limit: int = 100, since: int | None = None, timeout: float | None = None
    ) -> History:
        """Messages of ``room`` without subscribing: the last ``limit`` (1-1000), or with
        ``since`` the first ``limit`` after that offset (to page forward). Changes no
        subscription nor position; errors as ``presence``."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1-1000")
        if since is not None and since < 0:
            raise ValueError("since must be an offset >= 0")
        encode = functools.partial(wire.encode_history, room, limit=limit, since=since)
        return await self._ask(History, room, encode, timeout)

    async def _ask(
        self, expects: type[A], room: str, encode: Callable[[str], bytes], timeout: float | None
    ) -> A:
        self._check_usable()
        check_room(room)
        timeout_s = self.request_timeout_s if timeout is None else timeout
        return await self._requests.ask(expects, room, encode, self._sender.request, timeout_s)

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
        await self._auth.refresh(token, self._sender.auth, self.backoff)

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
                        handshake_url(self.url, self._subs.user_since()),
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
                final = closed_for_good(code, reason)
                if final is not None:
                    await self._events.put(Disconnected(code, reason, None))
                    self._stop(final, ClientState.FAILED)
                    return
                if code == CloseCode.TOO_BIG:
                    self._publishes.fail_too_big(number, reason)
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
        link = self._sender.link = Link(ws, self._connections)
        self._subs.new_connection()
        self._state = ClientState.CONNECTED
        code: int | None = None
        reason = ""
        try:
            await self._events.put(Connected(self.url, link.number))
            await self._sender.resume(link)
            while True:
                for event in self._receiver.received(await ws.recv()):
                    await self._events.put(event)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else _ABNORMAL_CLOSURE
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
        except Exception:
            link.drop("client error")  # do not leave the socket open behind a failure
            raise
        finally:
            self._sender.link = None
            self._subs.new_connection()
            self._ephemeral.connection_ended(link.number)
        return code, link.drop_reason or reason, link.number

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
        self._ephemeral.fail_all(error)
        self._requests.fail_all(error)
        self._subs.fail_waiters(error)
        self._auth.fail_all(error)
        self._sender.cancel()
        self._events.end(None if isinstance(error, ClientClosed) else error)
