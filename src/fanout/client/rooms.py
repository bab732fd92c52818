"""Where each subscribed room stands, and the rules that keep delivery exactly-once.

Pure bookkeeping: feed it what the server sent, get back what the application should
see. The server already promises order and no duplicates; the client checks anyway,
because a duplicate or a silent hole here would be a wrong answer to the application.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fanout.client.events import Event, Gap, Message, Subscribed

log = logging.getLogger("fanout.client")


@dataclass(slots=True)
class Position:
    """The last offset delivered to the application, in ``epoch`` (None: not yet known)."""

    epoch: str | None = None
    offset: int = 0


@dataclass(slots=True)
class RoomTracker:
    positions: dict[str, Position] = field(default_factory=dict)
    duplicates_dropped: int = 0
    holes_reported: int = 0

    def add(self, room: str) -> None:
        self.positions.setdefault(room, Position())

    def remove(self, room: str) -> None:
        self.positions.pop(room, None)

    def __contains__(self, room: object) -> bool:
        return room in self.positions

    def since(self, room: str) -> tuple[str, int] | None:
        """What to resume ``room`` from, or None when nothing was delivered yet."""
        pos = self.positions.get(room)
        if pos is None or pos.epoch is None:
            return None
        return pos.epoch, pos.offset

    def subscribed(self, frame: Subscribed) -> list[Event]:
        pos = self.positions.get(frame.room)
        if pos is None:
            return []
        if pos.epoch != frame.epoch or frame.offset < pos.offset:
            # A new history (or a first subscribe), or one that no longer reaches what
            # was delivered: what we knew is void, live messages follow its latest.
            pos.epoch, pos.offset = frame.epoch, frame.offset
        # Same epoch: the replay (or a gap, when recovered is false) continues from
        # what was delivered, which pos.offset already says.
        return [frame]

    def message(self, msg: Message) -> list[Event]:
        pos = self.positions.get(msg.room)
        if pos is None:
            return []  # unsubscribed meanwhile
        if pos.epoch != msg.epoch:
            log.warning(
                "dropping %s/%s: not the subscribed epoch %s", msg.room, msg.epoch, pos.epoch
            )
            return []
        if msg.offset <= pos.offset:
            self.duplicates_dropped += 1
            return []
        events: list[Event] = []
        if msg.offset > pos.offset + 1:
            # The server skipped offsets without saying so: say it, never a silent hole.
            self.holes_reported += 1
            log.warning("room %s: offsets %d-%d missing", msg.room, pos.offset + 1, msg.offset - 1)
            events.append(Gap(msg.room, msg.epoch, pos.offset + 1, msg.offset - 1))
        pos.offset = msg.offset
        events.append(msg)
        return events

    def gap(self, gap: Gap) -> list[Event]:
        pos = self.positions.get(gap.room)
        if pos is None or pos.epoch != gap.epoch or gap.last <= pos.offset:
            return []
        # Everything after what was delivered up to gap.last is missing, whatever
        # ``from`` says, so the reported range starts right after pos.offset.
        first = pos.offset + 1
        pos.offset = gap.last
        return [Gap(gap.room, gap.epoch, first, gap.last)]
