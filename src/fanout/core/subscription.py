"""One connection's membership of one room, and the rules of its delivery. No I/O.

A subscription starts *replaying*: live events the broker hands over meanwhile are
held. ``replay`` takes the room's history and what the client asked to resume from,
and returns, in order: ``subscribed`` (with ``recovered``), a ``gap`` if history no
longer reaches back far enough, the retained messages, then the held live events.
From then on each live event is judged on its own:

- a message is delivered once, in offset order, only within the subscription's epoch;
- a lost range (``gap``) is announced only for offsets not yet delivered;
- a new epoch (the broker lost the room) is announced with ``subscribed`` again,
  ``recovered: false``.

Methods return the frames to send; the caller writes them. Tests drive these rules
with plain values (tests/core/test_subscription.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from fanout.protocol import server_frames
from fanout.protocol.envelope import Message, OutFrame
from fanout.protocol.frames import Since

if TYPE_CHECKING:
    from fanout.core.broker import History
    from fanout.core.connection import Connection


class LostRange(NamedTuple):
    """Offsets ``first..last`` of ``epoch`` that the broker no longer holds."""

    epoch: str
    first: int
    last: int


class EpochReset(NamedTuple):
    """The broker lost the room: ``epoch`` begins after ``latest``."""

    epoch: str
    latest: int


# What the broker may hand a room while a subscription is still being replayed.
LiveEvent = Message | LostRange | EpochReset


class Replay(NamedTuple):
    frames: list[OutFrame]
    replayed: int  # messages that came from history


class Subscription:
    """How far ``room`` has been delivered to ``conn``."""

    __slots__ = ("conn", "epoch", "offset", "pending", "room")

    def __init__(self, conn: Connection, room: str) -> None:
        self.conn = conn
        self.room = room
        self.epoch = ""
        self.offset = 0
        # While not None the subscription is replaying: live events wait here.
        self.pending: list[LiveEvent] | None = []

    def __repr__(self) -> str:
        return f"<Subscription {self.room!r} {self.epoch}:{self.offset} of {self.conn!r}>"

    @property
    def replaying(self) -> bool:
        return self.pending is not None

    def go_live(self) -> None:
        """Deliver live events as they come, without a replay (plain clients)."""
        self.pending = None

    def replay(self, history: History, since: Since | None) -> Replay:
        """End the replay: the frames that begin this subscription."""
        room = self.room
        self.epoch = history.epoch
        self.offset = history.latest
        frames: list[OutFrame] = []
        messages: list[Message] = []
        if since is not None and since.epoch == history.epoch and since.offset <= history.latest:
            recovered = history.first_kept <= since.offset + 1
            frames.append(
                server_frames.subscribed(room, history.epoch, history.latest, recovered=recovered)
            )
            if not recovered:
                frames.append(
                    server_frames.gap(room, history.epoch, since.offset + 1, history.first_kept - 1)
                )
            messages = history.messages
        else:
            frames.append(
                server_frames.subscribed(room, history.epoch, history.latest, recovered=False)
            )
        frames.extend(message.v1_frame() for message in messages)
        pending, self.pending = self.pending or [], None
        for event in pending:
            frame = self.judge(event)
            if frame is not None:
                frames.append(frame)
        return Replay(frames, len(messages))

    def judge(self, event: LiveEvent) -> OutFrame | None:
        """The frame a live event becomes for this subscription, if any."""
        if isinstance(event, LostRange):
            return self.lost(event)
        if isinstance(event, EpochReset):
            return self.reset(event)
        return event.v1_frame() if self.accepts(event.epoch, event.offset) else None

    def accepts(self, epoch: str, offset: int) -> bool:
        """Whether a live message is delivered now (and counts as delivered).

        The fan-out calls this once per recipient: it takes the message's fields, not
        the message, and holds the event itself while replaying (see ``hold``)."""
        if offset > self.offset and epoch == self.epoch:
            self.offset = offset
            return True
        return False

    def hold(self, event: LiveEvent) -> bool:
        """Keep ``event`` for the end of the replay; False if not replaying."""
        if self.pending is None:
            return False
        self.pending.append(event)
        return True

    def reset(self, reset: EpochReset) -> OutFrame | None:
        if reset.epoch == self.epoch:
            return None
        self.epoch = reset.epoch
        self.offset = reset.latest
        return server_frames.subscribed(self.room, reset.epoch, reset.latest, recovered=False)

    def lost(self, lost: LostRange) -> OutFrame | None:
        if lost.epoch != self.epoch or lost.last <= self.offset:
            return None
        first = max(lost.first, self.offset + 1)
        self.offset = lost.last
        return server_frames.gap(self.room, lost.epoch, first, lost.last)
