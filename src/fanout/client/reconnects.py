"""When the client reconnects: the next delay, from how the last connections went.

Pure bookkeeping over a ``Backoff``: no clock, no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from fanout.backoff import Backoff


@dataclass(slots=True)
class Reconnects:
    """Which delay comes next, from what happened to the last connections.

    The backoff grows with every failed attempt and with every connection that ended
    before lasting ``backoff.max_s``: a hub that accepts and drops at once (full,
    overloaded) is retried no faster than one that refuses. A connection that lasted
    starts the backoff over.
    """

    backoff: Backoff
    max_attempts: int | None = None
    streak: int = 0  # connections in a row that failed or did not last
    failed: int = 0  # failed attempts since the last successful one

    def attempt_failed(self, rand: float | None = None) -> float | None:
        """The delay before the next attempt, or None: ``max_attempts`` reached."""
        self.failed += 1
        self.streak += 1
        if self.max_attempts is not None and self.failed >= self.max_attempts:
            return None
        return self.backoff.delay(self.streak - 1, rand)

    def connected(self) -> None:
        self.failed = 0

    def disconnected(self, lasted_s: float, rand: float | None = None) -> float:
        """The delay before reconnecting after a connection that was up ``lasted_s``."""
        if lasted_s >= self.backoff.max_s:
            self.streak = 0
        delay = self.backoff.delay(self.streak, rand)
        self.streak += 1
        return delay
