"""The numbers a rule reads from a run document, and small statistics over them.

On top of :func:`fanout.lab.document.finite`, the rules refuse magnitudes no
measurement has (:data:`ABSURD`) and read counts and close codes leniently; each
returns a neutral value (``None``, ``0``) instead of raising, so that the rules can be
written as plain arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fanout.lab.document import finite

#: Larger magnitudes are no measurement (and would overflow the arithmetic): missing.
ABSURD = 1e15


def num(value: Any) -> float | None:
    """``value`` as a finite float no larger than :data:`ABSURD`, or ``None``."""
    result = finite(value)
    return result if result is not None and abs(result) <= ABSURD else None


def num0(value: Any) -> float:
    found = num(value)
    return 0.0 if found is None else found


def count(value: Any) -> int:
    """A non-negative integer count; anything else counts as 0."""
    return max(0, int(num0(value)))


def code(value: Any) -> int | None:
    """A close code, from a number or from a numeric string (JSON object keys)."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    found = num(value)
    return None if found is None else int(found)


def numbers(value: Any) -> list[float]:
    if not isinstance(value, list):
        return []
    return [x for x in (num(item) for item in value) if x is not None]


# -- statistics -----------------------------------------------------------------------


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``y`` over ``x``; ``None`` with fewer than two distinct x."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def thirds(values: Sequence[float]) -> tuple[float, float] | None:
    """Means of the first and of the last third (at least one value each)."""
    if len(values) < 3:
        return None
    size = len(values) // 3
    first, last = mean(values[:size]), mean(values[-size:])
    if first is None or last is None:
        return None
    return first, last
