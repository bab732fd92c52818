"""Coalesces writes: rooms and connections touched during one loop iteration are
flushed once, or, with a write delay, those touched within that delay."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from fanout.core.histogram import Histogram

log = logging.getLogger("fanout.flush")


class Flushable(Protocol):
    def flush(self) -> None: ...


class FlushScheduler:
    """Collects dirty rooms and connections and flushes them in one callback at the
    end of the current event-loop iteration, so consecutive frames for a socket become
    one write.

    With ``delay_s`` > 0 the callback runs ``delay_s`` after the first mark: each
    connection is written at most once per delay, and what arrived for it meanwhile
    leaves in that one write (a frame waits at most ``delay_s``). Rooms flush first:
    what they hand a connection that has frames waiting joins those frames."""

    __slots__ = ("_dirty", "_loop", "_marked_at", "_rooms", "_scheduled", "_waits", "delay_s")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay_s: float = 0.0,
        *,
        waits: Histogram | None = None,
    ) -> None:
        self._loop = loop
        self.delay_s = delay_s
        self._dirty: list[Flushable] = []
        self._rooms: list[Flushable] = []
        self._scheduled = False
        # How long each flush's frames waited since the first was queued (per flush).
        self._waits = waits
        self._marked_at = 0.0

    def mark(self, conn: Flushable) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._schedule()

    def mark_room(self, room: Flushable) -> None:
        self._rooms.append(room)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        self._marked_at = self._loop.time()
        if self.delay_s > 0:
            self._loop.call_later(self.delay_s, self._run)
        else:
            self._loop.call_soon(self._run)

    def flush_now(self) -> None:
        """Flush what is marked now (at shutdown, before connections are drained)."""
        if self._rooms or self._dirty:
            self._run()

    def _run(self) -> None:
        marked_at = self._marked_at
        rooms, self._rooms = self._rooms, []
        try:
            for room in rooms:
                _flush(room)  # may queue frames on connections: they are flushed below
        finally:
            dirty, self._dirty = self._dirty, []
            self._scheduled = False
            if self._rooms:  # marked meanwhile: not in this pass
                self._schedule()
        if self._waits is not None:
            self._waits.observe(self._loop.time() - marked_at)
        for conn in dirty:
            _flush(conn)


def _flush(item: Flushable) -> None:
    """One room's or connection's flush: a failure is logged and stays its own (the
    others in the pass, and every later pass, still run)."""
    try:
        item.flush()
    except Exception:
        log.exception("flushing %r failed", item)
