"""Reading a run document safely: accessors that never raise, and small statistics.

A run document (``fanout.lab.run/1``, see ``docs/lab-results.md``) has optional parts:
``server`` may be null, the timeline may be empty, older or partial documents may lack
keys. Every accessor here returns a neutral value (``None``, ``0``, ``{}``, ``[]``)
instead of raising, so that the rules can be written as plain arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

KIB = 1024
MIB = 1024 * 1024


# -- safe accessors -------------------------------------------------------------------


#: Larger magnitudes are no measurement (and would overflow the arithmetic): missing.
ABSURD = 1e15


def num(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:  # an int beyond float
        return None
    return result if math.isfinite(result) and abs(result) <= ABSURD else None


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


def at(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


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
