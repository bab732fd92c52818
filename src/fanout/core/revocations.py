"""Users and tokens refused at the handshake until a time: one node's table. No I/O.

Filled from the broker's kept revocations when a node starts or relinks, and from
``revoke`` control events; bounded: past ``max_entries`` the entries that end soonest
give way (a full table is a warning in the log, not a crash).
"""

from __future__ import annotations

import heapq


class Revocations:
    __slots__ = ("_until", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._until: dict[str, float] = {}  # "user:<id>" or "jti:<id>" -> unix seconds

    def __len__(self) -> int:
        return len(self._until)

    def add(self, key: str, until: float, now: float) -> bool:
        """Keep ``key`` refused until ``until``; False if the table had to drop one."""
        if until <= now:
            self._until.pop(key, None)
            return True
        self._until[key] = max(until, self._until.get(key, 0.0))
        if len(self._until) <= self.max_entries:
            return True
        self.prune(now)
        overflow = len(self._until) - self.max_entries
        for old in heapq.nsmallest(overflow, self._until, key=self._until.__getitem__):
            del self._until[old]
        return overflow <= 0

    def refusal(self, user: str | None, jti: str | None, now: float) -> float | None:
        """Until when this user or token is refused, or None."""
        found: float | None = None
        for key in (f"user:{user}" if user is not None else None, f"jti:{jti}" if jti else None):
            if key is None:
                continue
            until = self._until.get(key)
            if until is not None and until > now:
                found = max(found or 0.0, until)
        return found

    def prune(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
