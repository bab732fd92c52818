"""This node's side of presence: members to the store as they join and leave, a refresh
of all of them every ``refresh_s`` (so a dead node's members expire), and join/leave
events for the rooms that opt in (``fanout.core.room_options``).

The store (``Presence``) answers for every node; this class only writes what happens
here. Writes run in the background: a subscribe never waits for presence, and a
presence store that is down costs its answers (``presence`` requests get an error),
not the delivery of messages.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from fanout.core.connection import Connection
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.presence import Member, Presence, PresenceStats
from fanout.core.room_options import RoomRules
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FanoutError, FrameError

log = logging.getLogger("fanout.presence")


class Rosters:
    def __init__(
        self,
        store: Presence,
        *,
        refresh_s: float,
        rules: RoomRules,
        announce: Callable[[ControlEvent], Awaitable[None]],
    ) -> None:
        if not refresh_s > 0:
            raise ValueError("presence_refresh_s must be > 0")
        self.store = store
        self.refresh_s = refresh_s
        self.rules = rules
        self.node = secrets.token_hex(4)
        self._announce = announce
        self._members: dict[str, dict[Connection, Member]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None

    def kept(self, room: str) -> bool:
        return self.rules.of(room).presence

    def announced(self, room: str) -> bool:
        return self.rules.of(room).join_leave

    async def start(self) -> None:
        await self.store.start()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    def joined(self, room: str, conn: Connection) -> None:
        if not self.kept(room):
            return
        member = Member(
            conn=f"{self.node}-{conn.id}",
            user=conn.user,
            node=self.node,
            joined_at_ms=int(time.time() * 1000),
            info=dict(conn.info),
        )
        self._members.setdefault(room, {})[conn] = member
        self._spawn(self._write(room, member, ControlKind.JOIN))

    def left(self, room: str, conn: Connection) -> None:
        members = self._members.get(room)
        member = members.pop(conn, None) if members is not None else None
        if member is None:
            return
        if not members:
            del self._members[room]
        self._spawn(self._write(room, member, ControlKind.LEAVE))

    async def members(self, room: str) -> list[Member]:
        self._check(room)
        await self._written()
        return await self.store.members(room)

    async def stats(self, room: str) -> PresenceStats:
        self._check(room)
        await self._written()
        return await self.store.stats(room)

    async def _written(self) -> None:
        """Let this node's writes begun so far land first: an answer on this node
        reflects every join and leave that happened on it before the question."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def _check(self, room: str) -> None:
        if not self.kept(room):
            raise FrameError(ErrorCode.FORBIDDEN, f"presence is off for room {room!r}")

    async def _write(self, room: str, member: Member, kind: ControlKind) -> None:
        try:
            if kind is ControlKind.JOIN:
                await self.store.join(room, member)
            else:
                await self.store.leave(room, member.conn)
            if self.announced(room):
                await self._announce(ControlEvent(kind, room=room, member=member.to_json()))
        except FanoutError as exc:
            # The next refresh writes every member again; a leave that failed expires.
            log.warning("presence %s of %s in %r failed: %s", kind, member.conn, room, exc)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            entries = {room: list(members.values()) for room, members in self._members.items()}
            try:
                await self.store.refresh(entries)
            except FanoutError as exc:
                log.warning("presence refresh failed: %s", exc)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
