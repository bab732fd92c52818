"""One client's frames, handled in the order they came: per-frame policy, then dispatch.

Whatever transport receives the frames (fanout's direct one, any ASGI server) feeds
them to ``Session.receive``; what a frame costs is decided by ``FramePolicy`` and what
it does by ``dispatch``. A ``ProtocolViolation`` raised here ends the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from fanout.core.connection import Mode
from fanout.core.consumer import Consumer
from fanout.core.dispatch import dispatch, refuse
from fanout.core.frame_policy import Admission, FrameLimits, FramePolicy, RateLimitClose
from fanout.core.pipeline import PublishPipeline
from fanout.core.watchdog import Watchdog
from fanout.protocol.codes import ErrorCode


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLimits:
    """Defaults and meanings are in ``fanout.settings``."""

    frames: FrameLimits
    publishes_in_flight: int
    idle_timeout_s: float

    def __post_init__(self) -> None:
        if self.publishes_in_flight < 1:
            raise ValueError("publishes_in_flight must be >= 1")
        if self.idle_timeout_s < 0:
            raise ValueError("idle_timeout_s must be >= 0 (0: never)")


class Session:
    __slots__ = ("_consumer", "_counters", "_pipeline", "_policy", "watchdog")

    def __init__(self, consumer: Consumer, limits: SessionLimits, counters: Counter[str]) -> None:
        conn = consumer.connection
        self._consumer = consumer
        self._counters = counters
        self._policy = FramePolicy(
            limits.frames, plain=conn.mode is Mode.PLAIN, now=time.monotonic()
        )
        self._pipeline = (
            PublishPipeline(conn, limits.publishes_in_flight) if conn.mode is Mode.V1 else None
        )
        self.watchdog = Watchdog(consumer, idle_timeout_s=limits.idle_timeout_s)

    async def receive(self, text: str | None, data: bytes | None) -> None:
        """Handle one frame from the client; ProtocolViolation closes the connection."""
        policy = self._policy
        if policy.turn_over():
            # The transport does not wait while frames are queued, and neither may the
            # handling (a plain publish to the memory broker never does): let the others
            # in now and then, however fast this client sends.
            await asyncio.sleep(0)
        try:
            admission = policy.admit(text, data, time.monotonic())
        except RateLimitClose:
            self._counters["rate_limited"] += 1
            self._counters["rate_limit_closes"] += 1
            raise
        if admission is Admission.PACE:
            # A plain client over its rate: not reading meanwhile is what tells it.
            self._counters["paced"] += 1
            while admission is Admission.PACE:
                await asyncio.sleep(policy.pace_s)
                admission = policy.readmit(time.monotonic())
        self.watchdog.touch()
        if admission is Admission.HANDLE:
            await dispatch(self._consumer, text, data, self._pipeline)
            return
        self._counters["rate_limited"] += 1
        await refuse(
            self._consumer,
            text,
            data,
            self._pipeline,
            ErrorCode.RATE_LIMITED,
            policy.refusal_reason,
        )

    def end(self) -> None:
        self.watchdog.cancel()
