"""A connection's bounded outbound queue."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fanout.protocol.envelope import OutFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxLimits:
    max_messages: int = 4096
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("outbox limits must be >= 1")


class Outbox:
    """Frames waiting for one socket, bounded in count and bytes.

    Overflow policy: ``put`` refuses the frame and returns False; the caller closes the
    connection as a slow consumer (it can resume from its last offset). Frames are never
    dropped silently.
    """

    __slots__ = ("_frames", "bytes", "limits")

    def __init__(self, limits: OutboxLimits) -> None:
        self.limits = limits
        self._frames: deque[OutFrame] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: OutFrame) -> bool:
        size = frame.size
        if (
            len(self._frames) >= self.limits.max_messages
            or self.bytes + size > self.limits.max_bytes
        ):
            return False
        self._frames.append(frame)
        self.bytes += size
        return True

    def take_all(self) -> list[OutFrame]:
        frames = list(self._frames)
        self._frames.clear()
        self.bytes = 0
        return frames

    def clear(self) -> int:
        dropped = len(self._frames)
        self._frames.clear()
        self.bytes = 0
        return dropped
