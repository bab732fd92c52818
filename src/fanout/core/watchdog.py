"""Per-connection deadlines: the token's expiry and the idle timeout, on one timer.

One ``call_at`` per connection, re-armed only when it fires (or the token changes):
receiving a frame just stores the time, so the hot path pays one attribute write.
"""

from __future__ import annotations

import asyncio
import time

from fanout.core.connection import Connection, ConnState
from fanout.core.consumer import Consumer
from fanout.protocol.codes import CloseCode

# Never sleep longer than this between checks: wall-clock jumps (NTP) should not
# keep an expired token alive for long.
_MAX_SLEEP_S = 60.0


class Watchdog:
    """Closes ``consumer``'s connection with 1008 when its token expires, and with
    1000 when it has had no room and sent no frame for ``idle_timeout_s`` (0: never)."""

    __slots__ = ("_conn", "_consumer", "_handle", "_idle_s", "_loop", "last_frame")

    def __init__(self, consumer: Consumer, *, idle_timeout_s: float) -> None:
        self._consumer = consumer
        self._conn: Connection = consumer.connection
        self._idle_s = idle_timeout_s
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self.last_frame = self._loop.time()
        consumer.access_changed = self.rearm
        self.rearm()

    def touch(self) -> None:
        self.last_frame = self._loop.time()

    def rearm(self) -> None:
        self.cancel()
        delay = self._next_check()
        if delay is not None:
            self._handle = self._loop.call_at(self._loop.time() + delay, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _next_check(self) -> float | None:
        delays: list[float] = []
        expires_at = self._consumer.access.expires_at
        if expires_at is not None:
            delays.append(expires_at - time.time())
        if self._idle_s > 0:
            delays.append(self.last_frame + self._idle_s - self._loop.time())
        if not delays:
            return None
        return min(_MAX_SLEEP_S, max(0.0, min(delays)))

    def _fire(self) -> None:
        self._handle = None
        conn = self._conn
        if conn.state is not ConnState.OPEN:
            return
        expires_at = self._consumer.access.expires_at
        if expires_at is not None and time.time() >= expires_at:
            conn.close(CloseCode.POLICY, "token expired")
            return
        now = self._loop.time()
        if self._idle_s > 0 and now - self.last_frame >= self._idle_s:
            if not conn.subscriptions:
                conn.close(CloseCode.NORMAL, f"idle: no room and no frame for {self._idle_s:g} s")
                return
            self.last_frame = now  # in a room: a listener, not idle; look again later
        self.rearm()
