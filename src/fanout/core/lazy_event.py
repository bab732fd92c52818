"""An ``asyncio.Event`` that costs two slots until someone waits on it.

A connection carries a few flags that are set and cleared all the time but waited on
rarely (its socket's writability, its end). ``asyncio.Event`` allocates a deque of
waiters each (about 380 bytes); with 10,000 idle connections that adds up
(``bench/idle_memory.py``).
"""

from __future__ import annotations

import asyncio


class LazyEvent:
    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: asyncio.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    def clear(self) -> None:
        self._flag = False
        if self._event is not None:
            self._event.clear()

    async def wait(self) -> bool:
        if self._flag:
            return True
        if self._event is None:
            self._event = asyncio.Event()
        return await self._event.wait()
