"""Exponential backoff with jitter, as a pure value: no clock, no sleeping.

Shared by the client (reconnects, retries) and the Redis broker (relinking to Redis);
it depends on nothing else in fanout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Attempt 0 waits about ``initial_s``, each later one ``multiplier`` times longer,
    never more than ``max_s``.

    ``jitter`` is the fraction of each delay that is random: the delay is uniform in
    ``[ceiling * (1 - jitter), ceiling]``. Clients that lost the same server then come
    back spread out instead of all in the same instant. With ``multiplier >= 2`` and
    ``jitter <= 0.5`` delays never shrink from one attempt to the next until the cap;
    at the cap they vary within ``[max_s * (1 - jitter), max_s]``.
    """

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")

    def ceiling(self, attempt: int) -> float:
        """The delay for ``attempt`` (0-based) before jitter."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        try:
            grown = self.initial_s * self.multiplier**attempt
        except OverflowError:  # a client retrying for days: just stay at the cap
            return self.max_s
        return min(self.max_s, grown)

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """The jittered delay for ``attempt``; ``rand`` in [0, 1) replaces the random draw."""
        draw = random.random() if rand is None else rand
        return self.ceiling(attempt) * (1.0 - self.jitter * draw)
