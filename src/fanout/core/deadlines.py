"""When a connection closes by itself: its token's expiry and the idle timeout. No I/O.

The caller passes both clocks: the wall clock (``time.time()``, which token expiry is
written in) and a monotonic one (for the idle timeout, which must not jump with NTP).
``fanout.core.watchdog`` runs these rules on one timer per connection.
"""

from __future__ import annotations

from fanout.protocol.codes import CloseCode

# Never sleep longer than this between checks: wall-clock jumps (NTP) should not
# keep an expired token alive for long.
MAX_SLEEP_S = 60.0


class Deadlines:
    __slots__ = ("idle_timeout_s", "last_frame")

    def __init__(self, *, idle_timeout_s: float, now: float) -> None:
        self.idle_timeout_s = idle_timeout_s  # 0: never idle
        self.last_frame = now

    def next_check(self, expires_at: float | None, wall: float, now: float) -> float | None:
        """Seconds until something may be due; None when nothing ever is."""
        delays: list[float] = []
        if expires_at is not None:
            delays.append(expires_at - wall)
        if self.idle_timeout_s > 0:
            delays.append(self.last_frame + self.idle_timeout_s - now)
        if not delays:
            return None
        return min(MAX_SLEEP_S, max(0.0, min(delays)))

    def due(
        self, expires_at: float | None, wall: float, now: float, *, in_rooms: bool
    ) -> tuple[CloseCode, str] | None:
        """The close that is due now, if any. A connection in a room is a listener, not
        idle: its idle clock starts again."""
        if expires_at is not None and wall >= expires_at:
            return CloseCode.POLICY, "token expired"
        idle = self.idle_timeout_s
        if idle > 0 and now - self.last_frame >= idle:
            if not in_rooms:
                return CloseCode.NORMAL, f"idle: no room and no frame for {idle:g} s"
            self.last_frame = now
        return None
