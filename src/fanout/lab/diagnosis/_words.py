"""The wording every rule shares: severities, numbers in sentences, the verdict shape."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fanout.lab.diagnosis._values import KIB, MIB

Verdict = dict[str, Any]

BREAK = "break"
WARN = "warn"
INFO = "info"

CLOSE_NAMES = {
    1000: "normal",
    1001: "going away",
    1006: "connection dropped",
    1008: "policy",
    1009: "message too big",
    1011: "internal error",
    1013: "server full",
    4008: "slow consumer",
    4029: "rate limited",
}


# -- wording --------------------------------------------------------------------------


def fmt_int(value: float) -> str:
    return f"{round(value):,}"


def fmt_num(value: float) -> str:
    """A short decimal: 2.4, 12, 1,250."""
    if abs(value) >= 100 or float(value).is_integer():
        return fmt_int(value)
    return f"{value:.1f}".removesuffix(".0") if abs(value) >= 10 else f"{value:.2g}"


def fmt_pct(value: float) -> str:
    if 0 < value < 0.1:
        return f"{value:.2g} %"
    if 0 < value < 1:
        return f"{value:.1f} %"
    return f"{round(value)} %"


def fmt_ms(value: float) -> str:
    return f"{fmt_num(value)} ms"


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
        if value >= size:
            scaled = value / size
            text = f"{scaled:.0f}" if scaled >= 100 or scaled.is_integer() else f"{scaled:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
    return f"{round(value)} B"


def fmt_close(close: int) -> str:
    name = CLOSE_NAMES.get(close)
    return f"{close} ({name})" if name else str(close)


def fmt_codes(codes: Counter[int]) -> str:
    """``4008 (slow consumer)`` for one code, ``1011 (internal error) × 3, 1006 (...) × 1``."""
    if len(codes) == 1:
        return fmt_close(next(iter(codes)))
    return ", ".join(f"{fmt_close(close)} × {n}" for close, n in codes.most_common())


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{fmt_int(n)} {word if n == 1 else (words or word + 's')}"


def verdict(cause: str, severity: str, summary: str, evidence: dict[str, Any]) -> Verdict:
    return {"cause": cause, "severity": severity, "summary": summary, "evidence": evidence}
