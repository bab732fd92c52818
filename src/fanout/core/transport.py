"""How a Connection writes. The core never knows which server it runs under."""

from __future__ import annotations

from typing import Protocol

from fanout.protocol.envelope import OutFrame


class Transport(Protocol):
    """One WebSocket's write side.

    A direct transport can take frames synchronously (``ready`` is true while the socket
    accepts data without blocking); any transport can be written with ``send``.
    """

    def ready(self) -> bool:
        """True if ``write_now`` may be called (the socket is not applying backpressure)."""

    def write_now(self, frames: list[OutFrame]) -> None:
        """Write without waiting. Only called while ``ready()``."""

    async def send(self, frames: list[OutFrame]) -> None:
        """Write, waiting for the socket to drain as needed."""

    def close(self, code: int, reason: str, *, timeout_s: float) -> None:
        """Start the closing handshake now; abort if the peer has not closed by ``timeout_s``.
        Must not wait for queued data to drain (a stalled peer never drains it)."""
