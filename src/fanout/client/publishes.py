"""Publishes that are not answered yet, kept by ``id`` until acked or refused."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fanout.client import wire
from fanout.client.errors import Rejected
from fanout.client.events import Ack, Data
from fanout.protocol.codes import ErrorCode


@dataclass(eq=False, slots=True)
class PendingPublish:
    id: str
    room: str
    frame: bytes
    is_text: bool
    future: asyncio.Future[Ack]
    # The connection (by number) this publish was last sent on; a new connection
    # re-sends every publish not sent on it yet.
    sent_on: int = 0
    # Retryable errors so far: drives the delay before sending again.
    errors: int = 0
    # Callers awaiting the answer (the same id may be published twice concurrently).
    waiters: int = 0
    # The answer watchdog or the retry delay, whichever is running.
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class PendingPublishes:
    """In publish order, so that a new connection re-sends them in that order."""

    def __init__(self) -> None:
        self._by_id: dict[str, PendingPublish] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, msg_id: str) -> PendingPublish | None:
        return self._by_id.get(msg_id)

    def add(self, pending: PendingPublish) -> None:
        self._by_id[pending.id] = pending

    def discard(self, pending: PendingPublish) -> None:
        if self._by_id.get(pending.id) is pending:
            del self._by_id[pending.id]
        pending.cancel_timer()

    def resolve(self, ack: Ack) -> bool:
        """Answer the publish ``ack`` is for; False for an unknown id (a late duplicate)."""
        pending = self._by_id.pop(ack.id, None)
        if pending is None:
            return False
        pending.cancel_timer()
        if not pending.future.done():
            pending.future.set_result(ack)
        return True

    def fail(self, pending: PendingPublish, error: BaseException) -> None:
        self.discard(pending)
        if not pending.future.done():
            pending.future.set_exception(error)

    def fail_all(self, error: BaseException) -> None:
        for pending in list(self._by_id.values()):
            self.fail(pending, error)

    def not_sent_on(self, connection: int) -> list[PendingPublish]:
        return [p for p in self._by_id.values() if p.sent_on != connection]

    def fail_too_big(self, connection: int, reason: str) -> None:
        """``connection`` was closed with 1009: fail the publishes sent on it."""
        # The hub does not say which frame was too big; re-sending would close the next
        # connection the same way, so fail what was in flight.
        for pending in [p for p in self._by_id.values() if p.sent_on == connection]:
            error = Rejected(
                "too_big", reason or "message too big", room=pending.room, id=pending.id
            )
            self.fail(pending, error)


def encode_publish(
    room: str, data: Data, msg_id: str, ephemeral: bool, max_bytes: int
) -> tuple[bytes, bool]:
    """The frame of a publish and whether it is text; Rejected when it is larger than
    ``max_bytes``, TypeError for data that is not JSON-serialisable."""
    frame, is_text = wire.encode_publish(room, data, msg_id, ephemeral=ephemeral)
    if len(frame) > max_bytes:
        reason = f"publish of {len(frame)} bytes exceeds max_message_bytes ({max_bytes})"
        raise Rejected(str(ErrorCode.BAD_FRAME), reason, room=room, id=msg_id)
    return frame, is_text
