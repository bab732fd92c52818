"""A connection's bounded outbound queue."""

from __future__ import annotations

from dataclasses import dataclass

from fanout.protocol.envelope import OutFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxLimits:
    max_messages: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("outbox limits must be >= 1")

    def holds(self, messages: int, size: int) -> bool:
        """Whether an outbox may hold ``messages`` frames of ``size`` bytes in all
        (``Outbox.put`` applies the same bound inline, once per frame)."""
        return messages <= self.max_messages and size <= self.max_bytes


class Outbox:
    """Frames waiting for one socket, bounded in count and bytes.

    Overflow policy: ``put`` refuses the frame and returns False; the caller closes the
    connection as a slow consumer (it can resume from its last offset). Frames are never
    dropped silently.
    """

    __slots__ = ("_frames", "_max_bytes", "_max_messages", "bytes", "limits")

    def __init__(self, limits: OutboxLimits) -> None:
        self.limits = limits
        # Copied out of the (frozen) limits: put() runs once per recipient per message.
        self._max_messages = limits.max_messages
        self._max_bytes = limits.max_bytes
        # A list, not a deque: frames are only appended and taken all at once, and
        # take_all() can then hand over the list itself instead of copying it.
        self._frames: list[OutFrame] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: OutFrame) -> bool:
        size = frame.size
        frames = self._frames
        if len(frames) >= self._max_messages or self.bytes + size > self._max_bytes:
            return False
        frames.append(frame)
        self.bytes += size
        return True

    def take_all(self) -> list[OutFrame]:
        frames = self._frames
        self._frames = []
        self.bytes = 0
        return frames

    def clear(self) -> int:
        dropped = len(self._frames)
        self._frames.clear()
        self.bytes = 0
        return dropped
