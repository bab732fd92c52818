"""How the lab writes numbers: in the report's tables and plots, and in verdict summaries.

Two registers, one module. A report's cells (HTML, terminal, plot labels) show a
measurement with up to three significant digits and ``–`` for a missing value:
:func:`count`, :func:`decimal`, :func:`ms`, :func:`percent` (of a fraction),
:func:`size`, :func:`rate`. A verdict's summary is a sentence that rounds harder (two
significant digits, no ``.0``): :func:`short`, :func:`short_ms`, :func:`short_pct`
(of a percentage), :func:`short_bytes`. Whole counts read the same in both
(:func:`count`). The summaries are stored in results documents, so neither register
may change its output.

A verdict's evidence is stored as plain numbers named with their unit (``..._bytes``,
``..._ms``, ``..._per_s``); :func:`evidence` shows one in that unit, for people:
``4.2 MiB`` rather than ``4404019``, ``350 ms`` rather than ``0.35``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

MISSING = "–"
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB

# -- in a report: tables and plots ----------------------------------------------------


def count(value: float | None) -> str:
    """An integer count with thousands separators: ``12,345``."""
    if value is None:
        return MISSING
    return f"{round(value):,}"


def decimal(value: float | None) -> str:
    """A measurement with as many decimals as are meaningful: ``0.812``, ``2.4``, ``1,234``."""
    if value is None or not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    if magnitude >= 100 or (magnitude >= 1 and value == int(value)):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def ms(value: float | None) -> str:
    return MISSING if value is None else f"{decimal(value)} ms"


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with enough digits to tell a small loss from none."""
    if fraction is None:
        return MISSING
    if fraction == 0:
        return "0%"
    pct = fraction * 100
    if pct >= 10:
        return f"{pct:.0f}%"
    if pct >= 0.1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%"


def size(value: object) -> str:
    """A byte count: ``200 B``, ``64 KiB``, ``1.5 MiB``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return scalar(value)
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if abs(amount) < 1024 or unit == "MiB":
            break
        amount /= 1024
    shown = f"{amount:.0f}" if amount == int(amount) else f"{amount:.1f}"
    return f"{shown} {unit}"


def rate(value: object) -> str:
    """A message rate per sender; null means "as fast as possible"."""
    if value is None:
        return "max"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return scalar(value)
    return f"{decimal(float(value))}/s"


def slow(value: object) -> str:
    """The slow-receiver setting: a fraction (sweeps) or a number of receivers."""
    if value == 0 and not isinstance(value, bool):
        return "no slow receivers"
    if isinstance(value, float) and 0 < value < 1:
        return f"{value * 100:g}% slow"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} slow"
    return f"slow {scalar(value)}"


def point(coordinates: Mapping[str, object]) -> str:
    """A sweep point: ``size 64 KiB, rate 1,000/s, receivers 10, no slow receivers``."""
    return ", ".join(
        axis_value(k, v) if k == "slow" else f"{k} {axis_value(k, v)}"
        for k, v in coordinates.items()
    )


def axis_value(axis: str, value: object) -> str:
    """A sweep coordinate, formatted for its axis."""
    if axis == "size":
        return size(value)
    if axis == "rate":
        return rate(value)
    if axis == "slow":
        return slow(value)
    return scalar(value)


def scalar(value: object) -> str:
    """Any JSON value as short text (strings as they are, the rest as JSON)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    return json.dumps(value, sort_keys=True, default=str)


def code_counts(codes: Mapping[str, int]) -> str:
    """``{"1009": 1, "4008": 3}`` as ``1009×1, 4008×3``; none as ``none``."""
    if not codes:
        return "none"
    return ", ".join(f"{code}×{n:,}" for code, n in sorted(codes.items()))


# -- in a sentence: verdict summaries -------------------------------------------------


def short(value: float) -> str:
    """A short decimal: 2.4, 12, 1,250."""
    if abs(value) >= 100 or float(value).is_integer():
        return count(value)
    return f"{value:.1f}".removesuffix(".0") if abs(value) >= 10 else f"{value:.2g}"


def short_pct(value: float) -> str:
    """A percentage (``value`` is already in percent): ``0.012 %``, ``0.5 %``, ``92 %``."""
    if 0 < value < 0.1:
        return f"{value:.2g} %"
    if 0 < value < 1:
        return f"{value:.1f} %"
    return f"{round(value)} %"


def short_ms(value: float) -> str:
    return f"{short(value)} ms"


def short_bytes(value: float) -> str:
    """A byte count: ``200 B``, ``64 KiB``, ``2.5 MiB``, ``1 GiB``."""
    for unit, factor in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if value >= factor:
            scaled = value / factor
            shown = f"{scaled:.0f}" if scaled >= 100 or scaled.is_integer() else f"{scaled:.1f}"
            return f"{shown.removesuffix('.0')} {unit}"
    return f"{round(value)} B"


def signed_bytes(value: float) -> str:
    """:func:`short_bytes` for a change, which may be negative: ``-12 MiB``."""
    return ("-" if value < 0 else "") + short_bytes(abs(value))


def duration(seconds: float) -> str:
    """A duration in the unit that reads best: ``0.35 ms``, ``12 ms``, ``2.5 s``, ``4.2 min``."""
    magnitude = abs(seconds)
    if magnitude == 0:
        return "0 s"
    if magnitude < 1:
        return short_ms(seconds * 1000)
    if magnitude < 120:
        return f"{short(seconds)} s"
    return f"{short(seconds / 60)} min"


# -- in a verdict's evidence ----------------------------------------------------------

# (suffix of the key, what the number is): the longest suffixes first.
_UNITS: tuple[tuple[str, str], ...] = (
    ("_mib_per_s", "mib/s"),
    ("_bytes_per_s", "bytes/s"),
    ("_per_s", "/s"),
    ("_bytes", "bytes"),
    ("_mib", "mib"),
    ("_ms", "ms"),
    ("_s", "s"),
    ("_percent", "percent"),
    ("_share", "share"),
)


def _unit(key: str) -> str:
    name = key.lower()
    if name == "bytes":
        return "bytes"
    return next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")


def _in_unit(value: float, unit: str) -> str:
    if unit == "bytes":
        return signed_bytes(value)
    if unit == "mib":
        return signed_bytes(value * MIB)
    if unit == "bytes/s":
        return f"{signed_bytes(value)}/s"
    if unit == "mib/s":
        return f"{signed_bytes(value * MIB)}/s"
    if unit == "ms":
        return duration(value / 1000)
    if unit == "s":
        return duration(value)
    if unit == "percent":
        return ("-" if value < 0 else "") + short_pct(abs(value))
    if unit == "share":
        return ("-" if value < 0 else "") + short_pct(abs(value) * 100)
    if unit == "/s":
        return f"{short(value)}/s"
    return count(value) if float(value).is_integer() else short(value)


def evidence(key: str, value: Any) -> str:
    """One evidence value in the unit its key names: ``rss_end_bytes`` as ``214 MiB``,
    ``p99_ms`` as ``2.4 ms``, ``slope_mib_per_s`` as ``24 MiB/s``, ``busy_share`` as
    ``62 %``; a count with separators; a list item by item; anything else as JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return scalar(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return scalar(value)
        return _in_unit(float(value), _unit(key))
    if isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return ", ".join(evidence(key, v) for v in value) or "none"
    return scalar(value)


def evidence_line(items: Mapping[str, Any]) -> str:
    """A verdict's evidence on one line: ``growth: +152 MiB, p99: 2.4 ms``."""
    return ", ".join(f"{key}={evidence(key, value)}" for key, value in items.items())
