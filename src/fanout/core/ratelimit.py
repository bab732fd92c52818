"""Per-connection rate limits: token buckets for frames and bytes, and when to give up.

Each frame a client sends costs one frame token and its size in byte tokens. Buckets
hold one second's worth and refill continuously. A frame is let through when its
bucket holds at least its cost (a frame larger than one second's bytes needs a full
bucket, and leaves it in debt), so any frame within ``max_message_bytes`` can pass.

A refused frame costs nothing. The connection is told (``error`` ``rate_limited``);
if it is still being refused ``grace_s`` after its first refusal, without a pause of
``grace_s`` between refusals, it is closed with 4029. A client that cannot be told
(plain) is paced instead: ``wait_s`` says how long until its frame fits. Pure
arithmetic: the caller passes the time.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


class TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self.stamp = now

    def wait_s(self, cost: float) -> float:
        """Seconds until ``cost`` may be taken (after a ``refill``)."""
        return max(0.0, min(cost, self.capacity) - self.tokens) / self.rate

    def refill(self, cost: float, now: float) -> bool:
        """Refill for the time passed; whether ``cost`` may now be taken."""
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock that went backwards gives nothing and takes nothing
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.stamp = now
        return self.tokens >= min(cost, self.capacity)


class RateLimiter:
    """One connection's limits; a rate of 0 means unlimited."""

    __slots__ = ("_bytes", "_frames", "_last_refused", "_limited_since", "grace_s", "refused")

    def __init__(
        self, *, frames_per_s: float, bytes_per_s: float, grace_s: float, now: float
    ) -> None:
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self._frames = TokenBucket(frames_per_s, now) if frames_per_s > 0 else None
        self._bytes = TokenBucket(bytes_per_s, now) if bytes_per_s > 0 else None
        self.grace_s = grace_s
        self.refused = 0
        self._limited_since = 0.0
        self._last_refused: float | None = None

    def check(self, size: int, now: float) -> Verdict:
        frames, data = self._frames, self._bytes
        if (frames is not None and not frames.refill(1, now)) or (
            data is not None and not data.refill(size, now)
        ):
            return self._refused(now)
        if frames is not None:
            frames.tokens -= 1
        if data is not None:
            data.tokens -= size
        return Verdict.ALLOW

    def wait_s(self, size: int, now: float) -> float:
        """0 with the frame's cost taken if it fits now; else the seconds until it will,
        nothing taken (pacing: the caller stops reading that long, then asks again)."""
        frames, data = self._frames, self._bytes
        fits_frames = frames is None or frames.refill(1, now)
        fits_bytes = data is None or data.refill(size, now)
        if fits_frames and fits_bytes:
            if frames is not None:
                frames.tokens -= 1
            if data is not None:
                data.tokens -= size
            return 0.0
        return max(
            frames.wait_s(1) if frames is not None else 0.0,
            data.wait_s(size) if data is not None else 0.0,
        )

    def _refused(self, now: float) -> Verdict:
        self.refused += 1
        last = self._last_refused
        if last is None or now - last > self.grace_s:
            self._limited_since = now
        self._last_refused = now
        if now - self._limited_since >= self.grace_s:
            return Verdict.CLOSE
        return Verdict.REFUSE
