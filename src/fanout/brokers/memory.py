"""The in-memory broker: one process, a bounded history ring per room."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from fanout.core.broker import BrokerListener, History, Published, Retention
from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Message, Payload
from fanout.protocol.errors import StateError


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryBrokerLimits:
    history_max_messages: int
    history_max_bytes: int
    history_total_max_bytes: int
    max_rooms: int
    idempotency_max_ids: int
    idempotency_ttl_s: float

    def __post_init__(self) -> None:
        for name in ("history_max_messages", "history_max_bytes", "history_total_max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_rooms < 1 or self.idempotency_max_ids < 0 or self.idempotency_ttl_s < 0:
            raise ValueError("max_rooms must be >= 1, idempotency limits >= 0")


class _Room:
    __slots__ = ("attached", "bytes", "epoch", "ids", "latest", "ring", "times")

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(6)
        self.latest = 0
        self.ring: deque[Message] = deque()
        self.times: deque[float] = deque()  # when each message of ``ring`` was stored
        self.bytes = 0
        # id -> (offset, monotonic time first seen), oldest first
        self.ids: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.attached = False


class MemoryBroker:
    """Default broker. History and idempotency live in this process and die with it;
    a restarted process starts new epochs, which clients see as ``recovered: false``."""

    def __init__(self, limits: MemoryBrokerLimits) -> None:
        self.limits = limits
        # Least recently active room first: eviction and global trimming start there.
        self._rooms: OrderedDict[str, _Room] = OrderedDict()
        self._total_bytes = 0
        self._listener: BrokerListener | None = None
        self.errors: dict[str, int] = {}  # the memory broker never fails a call

    @property
    def history_bytes(self) -> int:
        return self._total_bytes

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener

    async def close(self) -> None:
        self._listener = None

    async def health(self) -> str | None:
        return None

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        listener = self._listener
        if listener is None:
            raise StateError("MemoryBroker.publish_ephemeral before start()")
        state = self._rooms.get(room)
        if state is not None and state.attached:
            listener.on_ephemeral(room, data)

    async def control(self, event: ControlEvent) -> None:
        listener = self._listener
        if listener is None:
            raise StateError("MemoryBroker.control before start()")
        # One process: the hub's own revocation table is the only copy there is.
        asyncio.get_running_loop().call_soon(listener.on_control, event)

    async def attach(self, room: str) -> None:
        self._room(room).attached = True

    async def detach(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is not None:
            state.attached = False

    async def history(
        self,
        room: str,
        after: int | None,
        *,
        limit: int | None = None,
        retention: Retention | None = None,
    ) -> History:
        state = self._room(room)
        self._expire(state, retention, time.monotonic(), keep=0)
        ring = state.ring
        first_kept = ring[0].offset if ring else state.latest + 1
        if after is None:
            return History(state.epoch, state.latest, first_kept, [])
        start = max(after + 1, first_kept) - first_kept
        end = len(ring) if limit is None else min(len(ring), start + limit)
        messages = [ring[i] for i in range(start, end)] if start < end else []
        return History(state.epoch, state.latest, first_kept, messages)

    async def publish(
        self,
        room: str,
        data: Payload,
        *,
        msg_id: str | None = None,
        retention: Retention | None = None,
    ) -> Published:
        listener = self._listener
        if listener is None:
            raise StateError("MemoryBroker.publish before start()")
        state = self._room(room)
        if msg_id is not None:
            known = self._remember(state, msg_id)
            if known is not None:
                return Published(state.epoch, known, duplicate=True)
        state.latest += 1
        message = Message(room, state.epoch, state.latest, data)
        if msg_id is not None:
            self._record_id(state, msg_id, message.offset)
        self._append(state, message, retention)
        if state.attached:
            listener.on_message(message)
        return Published(state.epoch, message.offset)

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            self._evict_rooms(keep=1)
            state = _Room()
            self._rooms[room] = state
        else:
            self._rooms.move_to_end(room)
        return state

    def _remember(self, state: _Room, msg_id: str) -> int | None:
        """Forget ids past the time window, then return the offset of ``msg_id`` if known."""
        ids = state.ids
        oldest_allowed = time.monotonic() - self.limits.idempotency_ttl_s
        while ids and next(iter(ids.values()))[1] < oldest_allowed:
            ids.popitem(last=False)
        hit = ids.get(msg_id)
        return None if hit is None else hit[0]

    def _record_id(self, state: _Room, msg_id: str, offset: int) -> None:
        ids = state.ids
        ids[msg_id] = (offset, time.monotonic())
        while len(ids) > self.limits.idempotency_max_ids:
            ids.popitem(last=False)

    def _append(self, state: _Room, message: Message, retention: Retention | None) -> None:
        now = time.monotonic()
        if retention is not None:
            self._expire(state, retention, now, keep=0)
        state.ring.append(message)
        state.times.append(now)
        state.bytes += message.size
        self._total_bytes += message.size
        limits = self.limits
        most = limits.history_max_messages
        if retention is not None and retention.messages is not None:
            most = min(retention.messages, most)  # the room's own, smaller, history size
        while len(state.ring) > most or (
            state.bytes > limits.history_max_bytes and len(state.ring) > 1
        ):
            self._drop_oldest(state)
        if self._total_bytes > limits.history_total_max_bytes:
            # Trim the least recently active rooms first; the newest message always stays.
            for other in list(self._rooms.values()):
                while other.ring and self._total_bytes > limits.history_total_max_bytes:
                    if other is state and len(state.ring) == 1:
                        break
                    self._drop_oldest(other)
                if self._total_bytes <= limits.history_total_max_bytes:
                    break

    def _expire(self, state: _Room, retention: Retention | None, now: float, keep: int) -> None:
        """Drop messages older than the room's history age, keeping at least ``keep``."""
        if retention is None or retention.age_s is None:
            return
        cutoff = now - retention.age_s
        while len(state.ring) > keep and state.times[0] < cutoff:
            self._drop_oldest(state)

    def _drop_oldest(self, state: _Room) -> None:
        state.times.popleft()
        dropped = state.ring.popleft()
        state.bytes -= dropped.size
        self._total_bytes -= dropped.size

    def _evict_rooms(self, keep: int) -> None:
        """Make room for ``keep`` new rooms by forgetting the least recently active
        unattached ones beyond ``max_rooms``.

        A forgotten room that comes back gets a new epoch: clients learn that its history
        is unknown instead of seeing offsets restart silently. Rooms with local members are
        never forgotten, so the count may exceed ``max_rooms`` while they are all in use;
        that count is bounded by ``max_connections * max_rooms_per_connection``.
        """
        excess = len(self._rooms) + keep - self.limits.max_rooms
        if excess <= 0:
            return
        for name in [n for n, s in self._rooms.items() if not s.attached][:excess]:
            gone = self._rooms.pop(name)
            self._total_bytes -= gone.bytes
