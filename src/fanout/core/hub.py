"""Rooms and their local members; takes publishes, fans out what the broker delivers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, TypeVar, cast

from fanout.core.broker import Broker, History, Published
from fanout.core.connection import Connection, Mode
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.eager import Finished, run_eagerly
from fanout.core.flush import FlushScheduler
from fanout.core.histogram import Histogram
from fanout.core.local_room import LocalRoom
from fanout.core.outbox import OutboxLimits
from fanout.core.presence import Member, Presence, PresenceStats
from fanout.core.publishing import PublishRules
from fanout.core.room_options import RoomRules
from fanout.core.rosters import Rosters
from fanout.core.subscription import EpochReset, LostRange, Subscription
from fanout.core.transport import Transport
from fanout.core.users import Users
from fanout.protocol import server_frames
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.envelope import Message, OutFrame, Payload
from fanout.protocol.errors import (
    BrokerTimeout,
    FrameError,
    InvalidPublish,
    ProtocolViolation,
    StateError,
)
from fanout.protocol.frames import Since, personal_room

log = logging.getLogger("fanout.hub")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubLimits:
    """The hub's limits; their defaults and meanings are in ``fanout.settings``."""

    max_connections: int
    max_rooms_per_connection: int
    max_connections_per_ip: int  # 0: no limit per address
    max_connections_per_user: int  # 0: no limit per user (on this node)
    max_revocations: int
    rooms: RoomRules  # options by room pattern (history, presence, client publishing)
    presence_refresh_s: float
    # Room names, ids and data sizes every publish is held to.
    publish: PublishRules
    publish_timeout_s: float
    close_timeout_s: float
    shutdown_flush_s: float
    write_delay_s: float  # 0: write at the end of the loop turn
    outbox: OutboxLimits

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_rooms_per_connection < 1:
            raise ValueError("max_connections and max_rooms_per_connection must be >= 1")
        if min(self.publish_timeout_s, self.close_timeout_s, self.shutdown_flush_s) <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_connections_per_ip < 0:
            raise ValueError("max_connections_per_ip must be >= 0 (0: no limit)")
        if not 0 <= self.write_delay_s <= 1:
            raise ValueError("write_delay_ms must be between 0 and 1000")


class Hub:
    """The rooms of this process. Implements the broker's listener interface."""

    def __init__(
        self,
        broker: Broker,
        limits: HubLimits,
        presence: Presence,
    ) -> None:
        self.broker = broker
        self.limits = limits
        self.users = Users(
            max_per_user=limits.max_connections_per_user, max_revocations=limits.max_revocations
        )
        self.rosters = Rosters(
            presence,
            refresh_s=limits.presence_refresh_s,
            rules=limits.rooms,
            announce=self.send_control,
        )
        self.connections: set[Connection] = set()
        self.counters: Counter[str] = Counter()
        # Publish to ack (the broker's part included), and how long frames waited for
        # their write after being queued (per flush).
        self.publish_latency = Histogram()
        self.write_wait = Histogram()
        self._rooms: dict[str, LocalRoom] = {}
        self._per_ip: Counter[str] = Counter()
        self._flusher: FlushScheduler | None = None
        self._accepting = False

    @property
    def accepting(self) -> bool:
        """False before start and once shutdown began."""
        return self._accepting

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    async def start(self) -> None:
        self._flusher = FlushScheduler(
            asyncio.get_running_loop(), self.limits.write_delay_s, waits=self.write_wait
        )
        await self.broker.start(self)
        await self.rosters.start()
        self._accepting = True

    async def close(self) -> None:
        """Graceful stop: flush every outbox (bounded), close clients with 1001."""
        self._accepting = False
        conns = list(self.connections)
        if conns:
            await asyncio.gather(*(self.shut_down(c) for c in conns), return_exceptions=True)
        await self.rosters.close()
        await self.broker.close()

    async def shut_down(self, conn: Connection) -> None:
        """Flush what ``conn`` has queued (bounded by ``shutdown_flush_s``), close 1001."""
        if self._flusher is not None:
            # Messages still in a room's batch (a write delay) go out, or to the
            # outboxes that drain() waits for, before anything is closed.
            self._flusher.flush_now()
        await conn.drain(self.limits.shutdown_flush_s)
        conn.close(CloseCode.GOING_AWAY, "server shutting down")

    # -- connections ---------------------------------------------------------------

    def connect(
        self,
        transport: Transport,
        *,
        mode: Mode,
        client: str = "",
        user: str | None = None,
        jti: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Register a new connection or raise ProtocolViolation (1013 when full)."""
        if self._flusher is None:
            raise StateError("Hub.connect before start()")
        if not self._accepting:
            raise ProtocolViolation(CloseCode.GOING_AWAY, "server shutting down")
        if len(self.connections) >= self.limits.max_connections:
            self.counters["refused_full"] += 1
            raise ProtocolViolation(CloseCode.SERVER_FULL, "server full")
        ip = _ip_of(client)
        per_ip = self.limits.max_connections_per_ip
        if per_ip and self._per_ip[ip] >= per_ip:
            self.counters["refused_per_ip"] += 1
            raise ProtocolViolation(
                CloseCode.SERVER_FULL, f"too many connections from this address (limit {per_ip})"
            )
        try:
            self.users.admit(user)
        except ProtocolViolation:
            self.counters["refused_per_user"] += 1
            raise
        conn = Connection(
            transport,
            mode=mode,
            outbox_limits=self.limits.outbox,
            flusher=self._flusher,
            close_timeout_s=self.limits.close_timeout_s,
            client=client,
            user=user,
            jti=jti,
            info=info,
            on_closing=self._on_closing,
            on_closed=self._on_closed,
            before_own=self._hand_over_waiting,
        )
        self.connections.add(conn)
        self.users.add(conn)
        self._per_ip[ip] += 1
        self.counters["connections_total"] += 1
        return conn

    def _on_closing(self, conn: Connection) -> None:
        # Called from inside the fan-out (an outbox overflowed): rooms are not changed
        # here. The connection stays in them, refusing frames, until its socket is gone.
        if conn.close_code == CloseCode.SLOW_CONSUMER:
            self.counters["slow_consumer_closes"] += 1

    def _hand_over_waiting(self, conn: Connection) -> None:
        """What ``conn``'s rooms hold for it until the flush, queued now."""
        rooms = self._rooms
        for room, sub in conn.subscriptions.items():
            local = rooms.get(room)
            if local is not None and local.batch:
                local.hand_to(sub)

    def _on_closed(self, conn: Connection) -> None:
        self.counters[f"closes_{conn.close_code or 'none'}"] += 1
        log.debug("closed %r: code %s %s", conn, conn.close_code, conn.close_reason)
        if conn.dropped:
            why = "slow_consumer" if conn.close_code == CloseCode.SLOW_CONSUMER else "closed"
            self.counters[f"dropped_{why}"] += conn.dropped
        if conn in self.connections:
            self.connections.discard(conn)
            self.users.remove(conn)
            ip = _ip_of(conn.client)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
        for room in list(conn.subscriptions):
            self._leave_local(conn, room)

    # -- rooms -----------------------------------------------------------------------

    def check_room(self, room: object) -> str:
        """``room`` if it is a valid room name on this hub, else FrameError ``bad_room``."""
        return self.limits.publish.room(room)

    async def subscribe(self, conn: Connection, room: str, since: Since | None = None) -> None:
        """Join ``room``: ``subscribed``, then what was missed after ``since``, then live.

        Plain connections get no control frames and no replay.
        """
        if room in conn.subscriptions:
            self._leave_local(conn, room)
        if len(conn.subscriptions) >= self.limits.max_rooms_per_connection:
            raise FrameError(
                ErrorCode.TOO_MANY_ROOMS,
                f"at most {self.limits.max_rooms_per_connection} rooms per connection",
            )
        sub = Subscription(conn, room)
        conn.subscriptions[room] = sub
        local = self._rooms.get(room)
        if local is None:
            if self._flusher is None:
                raise StateError("Hub.subscribe before start()")
            local = self._rooms[room] = LocalRoom(
                room, self._flusher, self.counters, self.limits.outbox
            )
        if conn.mode is Mode.PLAIN:
            sub.go_live()
            local.plain.append(conn)
        else:
            local.v1.append(sub)
        try:
            # Attach before reading history, so nothing published in between is missed:
            # live events that arrive meanwhile are held by the subscription.
            if local.attached is None:
                local.attached = asyncio.ensure_future(self.broker.attach(room))
            try:
                await self._broker_call(asyncio.shield(local.attached))
            except BaseException:
                if local.attached.done():
                    local.attached = None  # failed: the next member tries again
                raise
            if conn.mode is Mode.V1:
                after = since.offset if since is not None else None
                retention = self.limits.rooms.retention(room)
                history = await self._broker_call(
                    self.broker.history(room, after, retention=retention)
                )
                replay = sub.replay(history, since)
                for frame in replay.frames:
                    conn.enqueue(frame)
                self.counters["replayed"] += replay.replayed
        except BaseException:
            self._leave_local(conn, room)
            raise
        self.rosters.joined(room, conn)

    async def unsubscribe(self, conn: Connection, room: str) -> None:
        if room not in conn.subscriptions:
            raise FrameError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {room!r}")
        self._leave_local(conn, room)

    def _leave_local(self, conn: Connection, room: str) -> None:
        sub = conn.subscriptions.pop(room, None)
        local = self._rooms.get(room)
        if sub is None or local is None:
            return
        if conn.mode is Mode.PLAIN:
            local.plain.remove(conn)
        else:
            local.v1.remove(sub)
        self.rosters.left(room, conn)
        if not local:
            del self._rooms[room]
            # Detaching is bookkeeping for the broker; nobody waits for it.
            task = asyncio.get_running_loop().create_task(self._detach(room))
            task.add_done_callback(_log_failure)

    async def _detach(self, room: str) -> None:
        if room not in self._rooms:
            await self.broker.detach(room)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, room: str, data: Payload, *, msg_id: str | None = None) -> Published:
        """Publish to every member of ``room`` on every node; answered within
        ``publish_timeout_s``. InvalidPublish (a bad room, id or data, or too large) is
        raised before anything is stored; BrokerError means not stored, or unknown: a
        retry with the same ``msg_id`` is safe."""
        room, data = self.limits.publish.check(room, data, msg_id)
        retention = self.limits.rooms.retention(room)
        started = time.perf_counter()
        published = await self._broker_call(
            self.broker.publish(room, data, msg_id=msg_id, retention=retention)
        )
        self.publish_latency.observe(time.perf_counter() - started)
        self.counters["duplicates" if published.duplicate else "published"] += 1
        return published

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        """Deliver to ``room``'s current subscribers on every node, without an offset and
        without storing it (typing indicators, cursors): a late or reconnecting client
        never gets it, and no client counts it."""
        room, data = self.limits.publish.check(room, data)
        await self._broker_call(self.broker.publish_ephemeral(room, data))
        self.counters["published_ephemeral"] += 1

    def clients_may_publish(self, room: str) -> bool:
        """Whether the room's options let clients publish (else only the app and the API)."""
        return self.limits.rooms.of(room).client_publish

    async def publish_to_user(
        self, user: str, data: Payload, *, msg_id: str | None = None
    ) -> Published:
        """Publish to ``user``'s personal room: every connection of that user, on every
        node, with a room's guarantees (offsets, resume, acks)."""
        if not isinstance(user, str) or not user:
            raise InvalidPublish(ErrorCode.BAD_FRAME, "'user' must be a non-empty string")
        return await self.publish(personal_room(user), data, msg_id=msg_id)

    async def history(self, room: str, *, limit: int, since: int | None) -> History:
        """Retained messages without subscribing: the last ``limit``, or the first
        ``limit`` after offset ``since``."""
        room = self.check_room(room)
        retention = self.limits.rooms.retention(room)
        head = await self._broker_call(self.broker.history(room, None, retention=retention))
        if since is None:
            since = max(head.first_kept - 1, head.latest - limit)
        elif since > head.latest:
            raise FrameError(
                ErrorCode.BAD_FRAME,
                f"'since' {since} is beyond the room's latest offset {head.latest}",
            )
        found = await self._broker_call(
            self.broker.history(room, since, limit=limit, retention=retention)
        )
        return History(found.epoch, found.latest, found.first_kept, found.messages[:limit])

    async def presence_members(self, room: str) -> list[Member]:
        return await self._broker_call(self.rosters.members(self.check_room(room)))

    async def presence_stats(self, room: str) -> PresenceStats:
        return await self._broker_call(self.rosters.stats(self.check_room(room)))

    # -- users on every node ------------------------------------------------------------

    async def send_control(self, event: ControlEvent) -> None:
        """Tell every node (this one included); BrokerError if it could not be sent."""
        await self._broker_call(self.broker.control(event))

    def on_ephemeral(self, room: str, data: Payload) -> None:
        """Fan an ephemeral message out to local members: no offset, nothing to hold."""
        local = self._rooms.get(room)
        if local is None:
            return
        local.flush()  # after the messages handed over before it
        if local.v1:
            frame = server_frames.ephemeral(room, data)
            for sub in local.v1:
                if sub.pending is None:
                    sub.conn.enqueue(frame)
        if local.plain:
            frame = OutFrame.of(data)
            for conn in local.plain:
                conn.enqueue(frame)
        self.counters["deliveries_ephemeral"] += len(local.v1) + len(local.plain)

    def on_control(self, event: ControlEvent) -> None:
        """A control event from some node: act on this node's connections."""
        self.counters[f"control_{event.kind}"] += 1
        if event.kind in (ControlKind.JOIN, ControlKind.LEAVE):
            self._member_event(event)
            return
        self.users.apply(event, self._leave_local)

    def _member_event(self, event: ControlEvent) -> None:
        local = self._rooms.get(event.room or "")
        if local is None or event.member is None or not local.v1:
            return
        local.flush()
        frame = server_frames.member_event(str(event.kind), local.name, dict(event.member))
        for sub in local.v1:
            if sub.pending is None:
                sub.conn.enqueue(frame)

    async def _broker_call(self, call: Awaitable[T]) -> T:
        """``call``, answered within ``publish_timeout_s``. Brokers raise BrokerErrors
        themselves (each maps its own failures once, at its boundary). A call that
        answers without waiting (the memory broker's) needs no timer."""
        try:
            # A coroutine's own type first: the ABC's isinstance runs Python code.
            if type(call) is CoroutineType or isinstance(call, Coroutine):
                started = run_eagerly(cast(Coroutine[Any, Any, T], call))
                if isinstance(started, Finished):
                    return started.value
                call = started
            async with asyncio.timeout(self.limits.publish_timeout_s):
                return await call
        except TimeoutError as exc:
            raise BrokerTimeout(
                f"broker did not answer within {self.limits.publish_timeout_s} s"
            ) from exc

    # -- BrokerListener: the fan-out ----------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Fan a message out to local members, at the next flush. Never awaits."""
        local = self._rooms.get(message.room)
        if local is not None:
            local.add(message)

    def on_reset(self, room: str, epoch: str, latest: int) -> None:
        """The broker lost the room's history: tell every live subscriber explicitly."""
        if room in self._rooms:
            self.counters["epoch_resets"] += 1
            self._to_subscribers(room, EpochReset(epoch, latest))

    def on_gap(self, room: str, epoch: str, first: int, last: int) -> None:
        """The broker cannot deliver ``first..last``: each subscriber gets a ``gap``."""
        if room in self._rooms:
            self.counters["gaps"] += 1
            self._to_subscribers(room, LostRange(epoch, first, last))

    def _to_subscribers(self, room: str, event: EpochReset | LostRange) -> None:
        local = self._rooms[room]
        local.flush()  # the messages handed over before the event come before it
        for sub in local.v1:
            if not sub.hold(event):
                frame = sub.judge(event)
                if frame is not None:
                    sub.conn.enqueue(frame)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("background broker call failed: %r", task.exception())


def _ip_of(client: str) -> str:
    """The address part of ``host:port`` (IPv6 included)."""
    return client.rsplit(":", 1)[0] if ":" in client else client
