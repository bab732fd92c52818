"""Per-room sequencing of what the pub/sub link delivers.

Pub/sub alone loses messages silently (a dropped link, a restarted Redis, a Redis that
cut a slow subscriber). Each message carries its offset, so a node can tell: the next
offset is delivered, an old one is dropped, a jump is filled from the room's stream
before anything later is delivered. While a room is being filled, live messages wait in
its backlog. What the stream no longer holds becomes a gap; a new epoch becomes a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from fanout.backoff import Backoff
from fanout.core.broker import BrokerListener, History
from fanout.protocol.envelope import Message
from fanout.protocol.errors import BrokerError

log = logging.getLogger("fanout.redis")

Fetch = Callable[[str, int | None], Awaitable[History]]
NewEpoch = Callable[[str, str], Awaitable[str]]


class Feed:
    """One attached room: where its stream stands on this node."""

    __slots__ = (
        "address",
        "again",
        "backlog",
        "catching_up",
        "channel",
        "confirmed",
        "detached",
        "epoch",
        "established",
        "last",
        "retired",
        "room",
    )

    def __init__(self, room: str, channel: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.room = room
        self.channel = channel
        # The Redis master whose pub/sub link carries this room's channel.
        self.address: tuple[str, int] | None = None
        self.epoch = ""
        self.last = 0
        # Live messages held back while the room is not in sequence yet (None: in sequence).
        self.backlog: list[Message] | None = []
        # Epochs this node has left; late messages of theirs are ignored.
        self.retired: set[str] = set()
        self.confirmed: asyncio.Future[None] = loop.create_future()
        self.established = False
        self.detached = False
        self.catching_up: asyncio.Task[None] | None = None
        # Set when a catch-up is asked for while one runs: its read may predate what
        # was missed since (the link dropped again), so it must read once more.
        self.again = False

    def confirm(self) -> None:
        if not self.confirmed.done():
            self.confirmed.set_result(None)

    def fail_confirmation(self, exc: BaseException) -> None:
        if not self.confirmed.done():
            self.confirmed.set_exception(exc)
            self.confirmed.exception()  # retrieved: nobody may be waiting any more


class Sequencer:
    """Hands each feed's messages to the listener in offset order, or says what is lost."""

    def __init__(
        self,
        listener: BrokerListener,
        fetch: Fetch,
        new_epoch: NewEpoch,
        *,
        backlog_max: int,
        retry_max_s: float,
    ) -> None:
        self._listener = listener
        self._fetch = fetch
        self._new_epoch = new_epoch
        self._backlog_max = backlog_max
        self._backoff = Backoff(initial_s=0.05, max_s=retry_max_s)
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def start_at(self, feed: Feed, epoch: str, latest: int) -> None:
        """The room was just subscribed and stands at ``epoch``/``latest``."""
        feed.epoch = epoch
        feed.last = latest
        feed.established = True
        self._release(feed)

    def hold(self, feed: Feed) -> None:
        """The link is being re-established: keep live messages until ``resync``."""
        if feed.backlog is None:
            feed.backlog = []

    def resync(self, feed: Feed) -> None:
        """Subscribed again after a lost link: fetch whatever was missed meanwhile."""
        self._catch_up_later(feed)

    def receive(self, feed: Feed, message: Message) -> None:
        backlog = feed.backlog
        if backlog is None:
            self._accept(feed, message)
            return
        if len(backlog) >= self._backlog_max:
            # Everything held is in the stream too: drop it and let a later jump fetch it.
            backlog.clear()
        backlog.append(message)

    def _accept(self, feed: Feed, message: Message) -> None:
        if message.epoch != feed.epoch:
            if message.epoch in feed.retired:
                return
            self._reset(feed, message.epoch)
        offset = message.offset
        if offset <= feed.last:
            return
        if offset == feed.last + 1:
            feed.last = offset
            self._listener.on_message(message)
            return
        feed.backlog = [message]
        self._catch_up_later(feed)

    def _reset(self, feed: Feed, epoch: str) -> None:
        log.warning("room %r: redis lost its history, new epoch %s", feed.room, epoch)
        feed.retired.add(feed.epoch)
        feed.epoch = epoch
        feed.last = 0
        self._listener.on_reset(feed.room, epoch, 0)

    def _catch_up_later(self, feed: Feed) -> None:
        if feed.backlog is None:
            feed.backlog = []
        if feed.catching_up is not None and not feed.catching_up.done():
            feed.again = True
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(feed))
        feed.catching_up = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, feed: Feed) -> None:
        attempt = 0
        while not feed.detached:
            feed.again = False
            try:
                await self._fill(feed)
            except (BrokerError, OSError, TimeoutError) as exc:
                delay = self._backoff.delay(attempt)
                log.warning(
                    "room %r: catching up failed (%s); again in %.2f s", feed.room, exc, delay
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if feed.again:
                continue
            feed.catching_up = None
            self._release(feed)
            return

    async def _fill(self, feed: Feed) -> None:
        """Deliver everything from ``feed.last`` up to the room's latest offset."""
        listener = self._listener
        while not feed.detached:
            history = await self._fetch(feed.room, feed.last)
            if feed.detached:
                return
            if history.epoch != feed.epoch:
                self._reset(feed, history.epoch)
                continue
            if history.latest < feed.last:
                # Same epoch, fewer messages: Redis came back from an older snapshot.
                # Offsets would repeat with other contents, so the epoch must change.
                await self._new_epoch(feed.room, feed.epoch)
                continue
            for message in history.messages:
                if message.offset <= feed.last:
                    continue
                if message.offset > feed.last + 1:
                    listener.on_gap(feed.room, feed.epoch, feed.last + 1, message.offset - 1)
                feed.last = message.offset
                listener.on_message(message)
            if feed.last < history.latest and not history.messages:
                listener.on_gap(feed.room, feed.epoch, feed.last + 1, history.latest)
                feed.last = history.latest
            if feed.last >= history.latest:
                return

    def _release(self, feed: Feed) -> None:
        """Back in sequence: deliver what was held (which may start another catch-up)."""
        backlog, feed.backlog = feed.backlog or [], None
        for i, message in enumerate(backlog):
            if feed.backlog is not None:
                feed.backlog.extend(backlog[i:])
                return
            self._accept(feed, message)
