"""The bounded queue between the socket reader and ``Client.events()``."""

from __future__ import annotations

import asyncio
from collections import deque

from fanout.client.events import Event


class EndOfEvents(Exception):
    """No event will come any more (the client was closed)."""


class EventBuffer:
    """FIFO of events with an end.

    ``put`` waits while the buffer is full. That is deliberate: the reader stops reading
    the socket, TCP pushes back, and a hub whose outbox for us overflows closes us with
    4008; we then resume from the last delivered offset. Memory stays bounded and
    nothing is lost, at worst the hub reports a gap.
    """

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self._items: deque[Event] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._ended = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_items

    async def put(self, event: Event) -> None:
        while self.full and not self._ended:
            self._writable.clear()
            await self._writable.wait()
        if self._ended:
            return
        self._items.append(event)
        self._readable.set()

    async def get(self) -> Event:
        """The next event. Once ended and drained: raises the error given to ``end``,
        or EndOfEvents."""
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise EndOfEvents
            self._readable.clear()
            await self._readable.wait()
        event = self._items.popleft()
        if len(self._items) < self.max_items:
            self._writable.set()
        return event

    def end(self, error: BaseException | None = None) -> None:
        """No more events; what is queued can still be read, then ``get`` raises."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._readable.set()
        self._writable.set()
