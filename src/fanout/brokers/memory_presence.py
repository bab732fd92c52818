"""Presence in one process: who is in which room, in dicts.

It holds only what ``join`` and ``refresh`` put there: ``leave`` removes an entry, and an
entry not written again for ``ttl_s`` is dropped on the room's next use (so the contract
is the one the Redis store keeps for many nodes). Stats are O(1): a per-room map of
user -> live connections keeps the distinct users counted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from fanout.core.presence import Member, PresenceLimits, PresenceStats


class _Room:
    __slots__ = ("entries", "users")

    def __init__(self) -> None:
        # conn -> (member, expiry); every write moves the entry to the end and the TTL is
        # the same for all, so the soonest to expire come first.
        self.entries: OrderedDict[str, tuple[Member, float]] = OrderedDict()
        # user -> number of its connections in ``entries`` (anonymous ones not counted)
        self.users: dict[str, int] = {}

    def add_user(self, user: str | None) -> None:
        if user is not None:
            self.users[user] = self.users.get(user, 0) + 1

    def drop_user(self, user: str | None) -> None:
        if user is not None:
            left = self.users[user] - 1
            if left:
                self.users[user] = left
            else:
                del self.users[user]


class MemoryPresence:
    """The presence store of a hub on the in-memory broker (one process)."""

    def __init__(
        self, limits: PresenceLimits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._rooms: dict[str, _Room] = {}

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    async def join(self, room: str, member: Member) -> None:
        self._write(room, member, self._clock())

    async def leave(self, room: str, conn: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        entry = state.entries.pop(conn, None)
        if entry is not None:
            state.drop_user(entry[0].user)
        self._live(room, self._clock())

    async def members(self, room: str) -> list[Member]:
        state = self._live(room, self._clock())
        return [] if state is None else [member for member, _ in state.entries.values()]

    async def stats(self, room: str) -> PresenceStats:
        state = self._live(room, self._clock())
        if state is None:
            return PresenceStats(0, 0)
        return PresenceStats(len(state.entries), len(state.users))

    async def refresh(self, entries: Mapping[str, Sequence[Member]]) -> None:
        now = self._clock()
        for room, members in entries.items():
            for member in members:
                self._write(room, member, now)

    def _write(self, room: str, member: Member, now: float) -> None:
        state = self._live(room, now) or self._rooms.setdefault(room, _Room())
        old = state.entries.pop(member.conn, None)
        if old is not None:
            state.drop_user(old[0].user)
        state.entries[member.conn] = (member, now + self.limits.ttl_s)
        state.add_user(member.user)

    def _live(self, room: str, now: float) -> _Room | None:
        """The room with its expired entries dropped; None (and forgotten) when empty."""
        state = self._rooms.get(room)
        if state is None:
            return None
        entries = state.entries
        while entries:
            conn, (member, expiry) = next(iter(entries.items()))
            if expiry > now:
                break
            del entries[conn]
            state.drop_user(member.user)
        if not entries:
            del self._rooms[room]
            return None
        return state
