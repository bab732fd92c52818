"""How a Connection writes. The core never knows which server it runs under."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fanout.protocol.envelope import OutFrame


class WriteThroughWatcher(Protocol):
    """Who writes to a transport without waiting (a ``Connection``)."""

    write_through: Callable[[bytes], None] | None


class Transport(Protocol):
    """One WebSocket's write side.

    A direct transport can take frames synchronously (it keeps its watcher's
    ``write_through`` set while the socket accepts data without blocking); any transport
    can be written with ``send``.
    """

    def watch(self, watcher: WriteThroughWatcher) -> None:
        """Set ``watcher.write_through`` now and at every change: the socket's own write
        while it takes data without blocking (no backpressure, not closing), else None.
        An attribute kept current, not a check: fan-out reads it once per recipient and
        calls it with one piece of bytes (whole frames)."""

    def write_now(self, frames: list[OutFrame]) -> None:
        """Write several frames in one go, without waiting. Only while the watcher's
        ``write_through`` is set."""

    async def send(self, frames: list[OutFrame]) -> None:
        """Write, waiting for the socket to drain as needed."""

    def close(self, code: int, reason: str, *, timeout_s: float) -> None:
        """Start the closing handshake now; abort if the peer has not closed by ``timeout_s``.
        Must not wait for queued data to drain (a stalled peer never drains it)."""
