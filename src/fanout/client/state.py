"""Where a client stands: its state and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ClientState(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off between attempts
    FAILED = "failed"  # gave up; see the error operations raise
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientStats:
    connections: int
    pending_publishes: int
    duplicates_dropped: int
    holes_reported: int
