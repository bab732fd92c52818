"""Coalesces writes: connections touched during one loop iteration are flushed once."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class FlushScheduler:
    """Collects dirty connections and flushes them in one callback at the end of the
    current event-loop iteration, so consecutive frames for a socket become one write."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Flushable] = []
        self._scheduled = False

    def mark(self, conn: Flushable) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for conn in dirty:
            conn.flush()
