"""A room's members on this node, and the messages on their way to them.

The broker hands the hub each message as it comes; the room keeps it in its batch and
asks the flush scheduler for a turn. At the flush (the end of the loop turn, or the
write delay later) every member gets the whole batch in one write, the same frame
objects for all of them. A member with frames of its own still waiting (an ``ack``, a
replay, a socket pushing back) gets the batch queued behind those instead, in its
bounded outbox: the order on each socket is the order the frames were queued in.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

from fanout.core.connection import Connection, Mode
from fanout.core.outbox import OutboxLimits
from fanout.core.subscription import Subscription
from fanout.protocol.envelope import Message, OutFrame, joined_wire

if TYPE_CHECKING:
    from fanout.core.flush import FlushScheduler


class LocalRoom:
    __slots__ = ("_counters", "_flusher", "_outbox", "attached", "batch", "name", "plain", "v1")

    def __init__(
        self, name: str, flusher: FlushScheduler, counters: Counter[str], outbox: OutboxLimits
    ) -> None:
        self.name = name
        # The broker's attach, shared by everyone who joins while it is under way.
        self.attached: asyncio.Future[None] | None = None
        self.v1: list[Subscription] = []
        self.plain: list[Connection] = []
        # Messages handed over since the last flush, in the order the broker gave them.
        self.batch: list[Message] = []
        self._flusher = flusher
        self._counters = counters
        # A batch larger than an outbox may hold is queued, not written at once: the
        # outbox bound (and 4008 past it) applies to what one flush hands a member.
        self._outbox = outbox

    def __bool__(self) -> bool:
        return bool(self.v1 or self.plain)

    def add(self, message: Message) -> None:
        """Deliver ``message`` at the next flush. Never waits."""
        if not self.batch:
            self._flusher.mark_room(self)
        self.batch.append(message)

    def flush(self) -> None:
        """Hand the batch to every member now (also called before an event that must
        follow the messages handed over before it: a ``gap``, a new epoch)."""
        batch = self.batch
        if not batch:
            return
        self.batch = []
        if self.v1:
            self._to_v1(batch)
        if self.plain:
            frames = [message.plain_frame() for message in batch]
            if self._fits(frames):
                wire = joined_wire(frames)
                if wire is None or self._flusher.delay_s:
                    for conn in self.plain:
                        conn.deliver(frames, wire)
                else:
                    # Connection.deliver()'s common case inlined (one Python call less
                    # per recipient, bench/hotpath.py): nothing of the connection's own
                    # waits and its socket takes data, so the shared bytes go straight
                    # through.
                    for conn in self.plain:
                        write = conn.fast_write
                        if write is not None:
                            write(wire)
                        else:
                            conn.deliver(frames, wire)
            else:
                for conn in self.plain:
                    conn.enqueue_all(frames)
        self._counters["deliveries"] += (len(self.v1) + len(self.plain)) * len(batch)

    def hand_to(self, sub: Subscription) -> None:
        """``sub``'s share of the batch, queued now: a frame of its connection's own is
        about to follow. The flush then skips what was handed over."""
        if sub.conn.mode is Mode.PLAIN:
            self.flush()  # plain members keep no offset to skip by: everyone, now
            return
        if sub.pending is not None:
            return  # held at the flush, for the end of the replay
        for message in self.batch:
            if message.offset > sub.offset and message.epoch == sub.epoch:
                sub.offset = message.offset
                sub.conn.enqueue(message.v1_frame())

    def _fits(self, frames: list[OutFrame]) -> bool:
        # One frame (a flush per message, the common case) without a generator.
        size = frames[0].size if len(frames) == 1 else sum(frame.size for frame in frames)
        return self._outbox.holds(len(frames), size)

    def _to_v1(self, batch: list[Message]) -> None:
        frames = [message.v1_frame() for message in batch]
        fits = self._fits(frames)
        wire = joined_wire(frames) if fits else None
        first, last = batch[0], batch[-1]
        epoch, offset, latest = first.epoch, first.offset, last.offset
        # The whole batch goes to each member in one piece when it is one epoch in
        # offset order (as a broker delivers it): a member takes all of it or, where
        # its own position says otherwise, the rules below message by message.
        whole = len(batch) == 1 or (
            latest - offset == len(batch) - 1 and all(m.epoch == epoch for m in batch)
        )
        # ``wire`` to write straight through where Connection.deliver() would write it at
        # once; None where it decides: under a write delay (one write per flush), or
        # frames too large to join.
        direct = None if self._flusher.delay_s else wire
        # Subscription.hold() and Subscription.accepts(), inlined: this loop runs once
        # per recipient, and method calls here cost a measurable share of its time
        # (bench/hotpath.py). tests/core/test_hub_fanout.py holds both to one rule.
        for sub in self.v1:
            if sub.pending is not None:
                sub.pending.extend(batch)
            elif whole and offset > sub.offset and epoch == sub.epoch:
                sub.offset = latest
                if not fits:
                    sub.conn.enqueue_all(frames)
                elif direct is not None and (write := sub.conn.fast_write) is not None:
                    write(direct)  # Connection.deliver()'s common case, inlined
                else:
                    sub.conn.deliver(frames, wire)
            else:
                taken: list[OutFrame] = []
                for message, frame in zip(batch, frames, strict=True):
                    if message.offset > sub.offset and message.epoch == sub.epoch:
                        sub.offset = message.offset
                        taken.append(frame)
                if taken:
                    sub.conn.enqueue_all(taken)  # rare: no need to write at once
