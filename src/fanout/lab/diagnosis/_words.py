"""The wording the rules share beyond numbers: close codes by name, plurals, lists."""

from __future__ import annotations

from collections import Counter

from fanout.lab import fmt

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


def close_name(close: int) -> str:
    """``4008 (slow consumer)``; a code without a name as it is."""
    name = CLOSE_NAMES.get(close)
    return f"{close} ({name})" if name else str(close)


def close_counts(codes: Counter[int]) -> str:
    """``4008 (slow consumer)`` for one code, ``1011 (internal error) × 3, 1006 (...) × 1``."""
    if len(codes) == 1:
        return close_name(next(iter(codes)))
    return ", ".join(f"{close_name(close)} × {n}" for close, n in codes.most_common())


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{fmt.count(n)} {word if n == 1 else (words or word + 's')}"


def either_and(*parts: str) -> str:
    """The parts that are not empty, joined with "and": ``3 duplicated and 2 out-of-order``."""
    return " and ".join(part for part in parts if part)
