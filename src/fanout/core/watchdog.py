"""Per-connection deadlines (``fanout.core.deadlines``) on one asyncio timer.

One ``call_at`` per connection, re-armed only when it fires (or the token changes):
receiving a frame just stores the time, so the hot path pays one attribute write.
"""

from __future__ import annotations

import asyncio
import time

from fanout.core.connection import Connection, ConnState
from fanout.core.consumer import Consumer
from fanout.core.deadlines import Deadlines


class Watchdog:
    """Closes ``consumer``'s connection with 1008 when its token expires, and with
    1000 when it has had no room and sent no frame for ``idle_timeout_s`` (0: never)."""

    __slots__ = ("_conn", "_consumer", "_deadlines", "_handle", "_loop")

    def __init__(self, consumer: Consumer, *, idle_timeout_s: float) -> None:
        self._consumer = consumer
        self._conn: Connection = consumer.connection
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(idle_timeout_s=idle_timeout_s, now=self._loop.time())
        self._handle: asyncio.TimerHandle | None = None
        consumer.access_changed = self.rearm
        self.rearm()

    def touch(self) -> None:
        self._deadlines.last_frame = self._loop.time()

    def rearm(self) -> None:
        self.cancel()
        now = self._loop.time()
        delay = self._deadlines.next_check(self._consumer.access.expires_at, time.time(), now)
        if delay is not None:
            self._handle = self._loop.call_at(now + delay, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        conn = self._conn
        if conn.state is not ConnState.OPEN:
            return
        due = self._deadlines.due(
            self._consumer.access.expires_at,
            time.time(),
            self._loop.time(),
            in_rooms=bool(conn.subscriptions),
        )
        if due is not None:
            conn.close(*due)
            return
        self.rearm()
