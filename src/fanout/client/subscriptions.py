"""The rooms the application subscribed to, where each subscribe stands, and the
personal room the server subscribes by itself."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from fanout.backoff import Backoff
from fanout.client.errors import Rejected
from fanout.client.events import Subscribed
from fanout.client.rooms import RoomTracker
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError
from fanout.protocol.frames import check_room as check_room_syntax

log = logging.getLogger("fanout.client")


def is_server_room(room: str) -> bool:
    """Rooms starting with ``@`` are managed by the server: a client may not subscribe,
    unsubscribe or publish there. The personal room ``@<user>`` is one."""
    return room.startswith("@")


def check_room(room: str, *, client_managed: bool = False) -> None:
    """Raise Rejected for a room name the hub would refuse; with ``client_managed``, also
    for a server-managed room, which a client may not (un)subscribe nor publish to."""
    try:
        check_room_syntax(room)
    except FrameError as exc:
        raise Rejected(str(exc.code), exc.reason, room=room) from None
    if client_managed and is_server_room(room):
        reason = "rooms starting with '@' are managed by the server"
        raise Rejected(str(ErrorCode.FORBIDDEN), reason, room=room)


class Subscriptions:
    """Rooms are remembered across connections; requests and answers are per connection.

    The hub answers a connection's requests in order, and its ``error`` frames for a
    subscribe carry no id. So the subscribes sent on the current connection and not
    answered yet are kept in order: an id-less error belongs to the oldest one.

    The personal room (``user_room``) is tracked like any room (position, exactly-once,
    gaps) but never subscribed by the client: the server subscribes each connection of
    the user to it and announces it with a ``subscribed`` nobody asked for; the client
    resumes it by putting its position in the handshake (``user_since``).
    """

    def __init__(self) -> None:
        self.tracker = RoomTracker()
        self._unanswered: deque[str] = deque()
        self._sent: dict[str, int] = {}  # room -> connection it was last sent on
        self._confirmed: dict[str, Subscribed] = {}  # answered on the current connection
        self._errors: dict[str, int] = {}  # retryable errors in a row
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._waiters: dict[str, list[asyncio.Future[Subscribed]]] = {}
        self.user_room: str | None = None
        self._personal_announced = False  # on the current connection

    def __contains__(self, room: object) -> bool:
        return room in self.tracker

    def rooms(self) -> list[str]:
        """The rooms a new connection subscribes to (all but the personal room)."""
        return [room for room in self.tracker.positions if room != self.user_room]

    def user_since(self) -> tuple[str, int] | None:
        """Where the personal room stands, for the next handshake's ``user_since``."""
        return self.tracker.since(self.user_room) if self.user_room is not None else None

    def personal(self, frame: Subscribed) -> None:
        """Adopt the room of ``frame`` as the personal room when it is the server's
        announcement of it: a server-managed room nobody asked for, the first on this
        connection (the server sends it first). Other unasked frames change nothing."""
        room = frame.room
        if not is_server_room(room) or room in self._unanswered:
            return
        if room == self.user_room:
            self._personal_announced = True
            return  # resumed: the tracker applies recovered, gap, or a new epoch
        if self._personal_announced:
            log.warning(
                "ignoring a second personal room %r (this connection has %r)", room, self.user_room
            )
            return
        if self.user_room is not None:  # another user now (a token for someone else)
            self.tracker.remove(self.user_room)
        self._personal_announced = True
        self.user_room = room
        self.tracker.add(room)

    def confirmed(self, room: str) -> Subscribed | None:
        return self._confirmed.get(room)

    def waiter(self, room: str) -> asyncio.Future[Subscribed]:
        """Remember ``room`` and return a future for its next confirmation."""
        self.tracker.add(room)
        future: asyncio.Future[Subscribed] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(room, []).append(future)
        return future

    def drop_waiter(self, room: str, future: asyncio.Future[Subscribed]) -> None:
        waiters = self._waiters.get(room)
        if waiters is not None and future in waiters:
            waiters.remove(future)

    def new_connection(self) -> None:
        self._unanswered.clear()
        self._confirmed.clear()
        self._personal_announced = False

    def awaiting_answer(self, room: str) -> bool:
        """A subscribe of ``room`` is out on this connection, not answered yet."""
        return room in self._unanswered

    def needs_subscribe(self, room: str, connection: int) -> bool:
        return room in self.tracker and self._sent.get(room) != connection

    def was_sent_on(self, room: str, connection: int) -> bool:
        return self._sent.get(room) == connection

    def sending(self, room: str, connection: int) -> tuple[str, int] | None:
        """Record a subscribe about to go out on ``connection``; returns its ``since``."""
        self._cancel_timer(room)
        self._sent[room] = connection
        self._unanswered.append(room)
        return self.tracker.since(room)

    def answered(self, frame: Subscribed) -> None:
        room = frame.room
        # Absent from _unanswered: the epoch changed under a live subscription.
        if room in self._unanswered:
            self._unanswered.remove(room)
        if room not in self.tracker:
            return
        self._confirmed[room] = frame
        self._errors.pop(room, None)
        for waiter in self._waiters.pop(room, []):
            if not waiter.done():
                waiter.set_result(frame)

    def refused(self) -> str | None:
        """The room of the subscribe an id-less ``error`` answers (maybe unsubscribed
        since), or None when no subscribe is unanswered."""
        return self._unanswered.popleft() if self._unanswered else None

    def retry_later(self, room: str, backoff: Backoff, resend: Callable[[str], None]) -> None:
        """After a retryable error: call ``resend(room)`` after a backoff delay. A new
        connection subscribes at once instead."""
        errors = self._errors[room] = self._errors.get(room, 0) + 1
        self._sent.pop(room, None)
        self._cancel_timer(room)
        self._timers[room] = asyncio.get_running_loop().call_later(
            backoff.delay(errors - 1), self._fire, room, resend
        )

    def _fire(self, room: str, resend: Callable[[str], None]) -> None:
        self._timers.pop(room, None)
        resend(room)

    def forget(self, room: str, error: BaseException) -> None:
        """Forget ``room``; whoever waits for its confirmation gets ``error``."""
        if room == self.user_room:
            self.user_room = None
        self.tracker.remove(room)
        self._sent.pop(room, None)
        self._errors.pop(room, None)
        self._confirmed.pop(room, None)
        self._cancel_timer(room)
        _fail(self._waiters.pop(room, []), error)

    def fail_waiters(self, error: BaseException) -> None:
        """The client stops: every waiter gets ``error``, no timer fires any more."""
        for room in list(self._waiters):
            _fail(self._waiters.pop(room), error)
        for room in list(self._timers):
            self._cancel_timer(room)

    def _cancel_timer(self, room: str) -> None:
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()


def _fail(waiters: list[asyncio.Future[Subscribed]], error: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
