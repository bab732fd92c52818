"""A latency histogram in the spirit of HDR: log-linear buckets, 3 significant digits.

Values are microseconds. Below 2048 us every value has its own bucket; above, each power
of two is split into 1024 buckets, so a bucket is at most 0.1 % wide relative to its
value. Counts live in a dict (bucket key -> count): a run spanning 10 us to 10 s uses a
few thousand keys at most, merging histograms from several processes is adding dicts,
and the JSON form is that dict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_LINEAR = 2048
_SUB_BITS = 11


def bucket_of(value_us: int) -> int:
    if value_us < _LINEAR:
        return value_us if value_us > 0 else 0
    shift = value_us.bit_length() - _SUB_BITS
    return (shift << _SUB_BITS) | (value_us >> shift)


def lowest_of(key: int) -> int:
    shift = key >> _SUB_BITS
    if not shift:
        return key
    return (key & (_LINEAR - 1)) << shift


def highest_of(key: int) -> int:
    shift = key >> _SUB_BITS
    return lowest_of(key) + (1 << shift) - 1 if shift else key


class Histogram:
    __slots__ = ("counts", "max_us", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.max_us = 0

    def record(self, value_us: int) -> None:
        key = bucket_of(value_us)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1
        if value_us > self.max_us:
            self.max_us = value_us

    def record_ns(self, values_ns: Iterable[int]) -> None:
        """Record many nanosecond values (the receive loop collects them in an array)."""
        counts = self.counts
        n = 0
        top = self.max_us
        for ns in values_ns:
            v = ns // 1000
            if v < _LINEAR:
                key = v if v > 0 else 0
            else:
                shift = v.bit_length() - _SUB_BITS
                key = (shift << _SUB_BITS) | (v >> shift)
            counts[key] = counts.get(key, 0) + 1
            if v > top:
                top = v
            n += 1
        self.total += n
        self.max_us = top

    def merge(self, other: Histogram) -> None:
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)

    def percentile_us(self, q: float) -> int:
        """The value at or below which ``q`` percent of the recorded values lie."""
        if not self.total:
            return 0
        rank = max(1, round(self.total * q / 100.0))
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return min(highest_of(key), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float]:
        """The figures the results JSON carries (``latency_ms``)."""
        return {
            "count": self.total,
            "p50": self.percentile_us(50) / 1000,
            "p90": self.percentile_us(90) / 1000,
            "p99": self.percentile_us(99) / 1000,
            "p999": self.percentile_us(99.9) / 1000,
            "max": self.max_us / 1000,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "us",
            "max": self.max_us,
            "counts": {str(k): v for k, v in self.counts.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        h = cls()
        h.counts = {int(k): int(v) for k, v in data.get("counts", {}).items()}
        h.total = sum(h.counts.values())
        h.max_us = int(data.get("max", 0))
        return h
