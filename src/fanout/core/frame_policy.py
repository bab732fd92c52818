"""What each frame a client sends may cost, decided before it is handled. No I/O.

- Size: a frame over ``max_message_bytes`` closes the connection with 1009 (servers
  other than fanout's own may not enforce the limit themselves).
- Rate: token buckets for frames and bytes (``fanout.core.ratelimit``). Over them a
  ``fanout.v1`` frame is refused with ``error`` ``rate_limited`` and the connection
  stays; a ``fanout.v1`` client still over its rate after the grace time is closed with
  4029. A plain client, which has no error frame, is paced: its frame waits (``PACE``,
  for ``pace_s``) until its tokens refill, and the socket is not read meanwhile, so TCP
  slows the sender down; nothing is lost and it stays connected.
- Fairness: after ``FRAMES_PER_TURN`` frames the connection lets the others in.

The caller passes the time; tests drive the policy with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fanout.core.ratelimit import RateLimiter, Verdict
from fanout.protocol.codes import CloseCode
from fanout.protocol.errors import ProtocolViolation

# Frames one connection handles before the event loop serves the others.
FRAMES_PER_TURN = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameLimits:
    """Defaults and meanings are in ``fanout.settings``."""

    max_message_bytes: int
    rate_frames_per_s: float  # 0: no limit
    rate_bytes_per_s: float  # 0: no limit
    rate_limit_grace_s: float

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be >= 1")
        if min(self.rate_frames_per_s, self.rate_bytes_per_s, self.rate_limit_grace_s) < 0:
            raise ValueError("rate limits must be >= 0 (0: no limit)")

    def describe_rates(self) -> str:
        """The limits that are on, for the reason clients are given."""
        rates = [
            f"{self.rate_frames_per_s:g} frames/s" if self.rate_frames_per_s else "",
            f"{self.rate_bytes_per_s / 1_048_576:g} MiB/s" if self.rate_bytes_per_s else "",
        ]
        return " and ".join(r for r in rates if r) + " per connection"


class Admission(Enum):
    HANDLE = "handle"
    REFUSE = "refuse"  # answer with error rate_limited, do not handle
    PACE = "pace"  # wait ``pace_s`` without reading, then ``readmit``


class FramePolicy:
    """One connection's per-frame checks."""

    __slots__ = ("_limiter", "_limits", "_plain", "_size", "frames", "pace_s")

    def __init__(self, limits: FrameLimits, *, plain: bool, now: float) -> None:
        self._limits = limits
        self._plain = plain
        self.frames = 0
        self.pace_s = 0.0
        self._size = 0  # the paced frame's size
        self._limiter: RateLimiter | None = None
        if limits.rate_frames_per_s or limits.rate_bytes_per_s:
            self._limiter = RateLimiter(
                frames_per_s=limits.rate_frames_per_s,
                bytes_per_s=limits.rate_bytes_per_s,
                grace_s=limits.rate_limit_grace_s,
                now=now,
            )

    def admit(self, text: str | None, data: bytes | None, now: float) -> Admission:
        """HANDLE or REFUSE this frame; ProtocolViolation (1009, 4029) closes."""
        self.frames += 1
        limit = self._limits.max_message_bytes
        # A str holds at most 4 UTF-8 bytes per character: encode only when that matters.
        if text is not None:
            size = len(text) if len(text) * 4 <= limit else len(text.encode())
        else:
            size = len(data or b"")
        if size > limit:
            raise ProtocolViolation(CloseCode.TOO_BIG, f"message over {limit} bytes")
        limiter = self._limiter
        if limiter is None:
            return Admission.HANDLE
        if self._plain:
            self._size = size
            return self.readmit(now)
        verdict = limiter.check(size, now)
        if verdict is Verdict.ALLOW:
            return Admission.HANDLE
        if verdict is Verdict.CLOSE:
            raise RateLimitClose(f"rate limit exceeded ({self._limits.describe_rates()})")
        return Admission.REFUSE

    def readmit(self, now: float) -> Admission:
        """A paced frame asks again: HANDLE, or PACE for ``pace_s`` more."""
        assert self._limiter is not None
        self.pace_s = self._limiter.wait_s(self._size, now)
        return Admission.PACE if self.pace_s > 0 else Admission.HANDLE

    @property
    def refusal_reason(self) -> str:
        return f"over {self._limits.describe_rates()}: not handled; slow down and retry"

    def turn_over(self) -> bool:
        """True once every ``FRAMES_PER_TURN`` frames: time to let the others in."""
        return self.frames % FRAMES_PER_TURN == 0


class RateLimitClose(ProtocolViolation):
    """A connection closed for its rate (4029)."""

    def __init__(self, reason: str) -> None:
        super().__init__(CloseCode.RATE_LIMITED, reason)
