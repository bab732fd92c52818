"""A latency histogram cheap enough for the publish path: fixed bucket bounds, one
``bisect`` and two additions per observation. Exposition lives in ``fanout.asgi.metrics``.
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds: 0.1 ms to 10 s, about three buckets per decade.
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Observations at or below each bound, then the total (Prometheus' buckets)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out
