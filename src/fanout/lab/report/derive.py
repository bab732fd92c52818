"""Numbers the report computes from a document rather than reads from it."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from fanout.lab import fmt
from fanout.lab.document import JSONObject, RunDoc, number


def lost_fraction(totals: JSONObject) -> float | None:
    """``lost / expected``; None when either is missing or nothing was expected."""
    lost = number(totals, "lost")
    expected = number(totals, "expected")
    if lost is None or expected is None or expected <= 0:
        return None
    return lost / expected


def lost_text(totals: JSONObject) -> str:
    """``lost (holes h / stuck s), p% of expected``: the same words in every view."""
    shown = fmt.count(number(totals, "lost"))
    holes, stuck = number(totals, "lost_holes"), number(totals, "lost_stuck")
    if holes is not None or stuck is not None:
        shown += f" (holes {fmt.count(holes)} / stuck {fmt.count(stuck)})"
    fraction = lost_fraction(totals)
    if fraction is not None:
        shown += f", {fmt.percent(fraction)} of expected"
    return shown


def server_cpu_seconds(samples: Sequence[JSONObject]) -> float | None:
    """CPU time the server used over its samples (each ``cpu_percent`` covers the
    interval since the sample before it); None without at least one usable sample."""
    points = sorted(
        (t, cpu)
        for s in samples
        if (t := number(s, "t")) is not None and (cpu := number(s, "cpu_percent")) is not None
    )
    if not points:
        return None
    steps = [b[0] - a[0] for a, b in itertools.pairwise(points) if b[0] > a[0]]
    first = points[0][0] if points[0][0] > 0 else (statistics.median(steps) if steps else 0.0)
    total = points[0][1] / 100.0 * first
    for (t0, _), (t1, cpu) in itertools.pairwise(points):
        total += cpu / 100.0 * max(0.0, t1 - t0)
    return total


def server_cpu_per_delivery_us(doc: RunDoc) -> float | None:
    """Server CPU microseconds per delivered message, when the server was observed."""
    delivered = number(doc.totals, "delivered")
    cpu_s = server_cpu_seconds(doc.server_samples)
    if cpu_s is None or delivered is None or delivered <= 0:
        return None
    return cpu_s / delivered * 1e6


def peak(samples: Sequence[JSONObject], key: str) -> float | None:
    """The largest ``key`` over the samples, None when no sample has it."""
    values = [v for s in samples if (v := number(s, key)) is not None]
    return max(values) if values else None
