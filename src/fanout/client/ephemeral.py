"""Ephemeral publishes (typing indicators, cursors): sent once, on the open connection.

An ephemeral message is only worth something now. Unlike a publish it is not kept
across connections: re-sent after a reconnect it would tell the room's subscribers of
then a stale ``typing...``. So it always carries an ``id`` (the hub's answer, or its
refusal, comes back to the caller rather than as an error nobody asked for) and:

- with no open connection it is dropped at once (``Dropped``);
- when the connection ends, or stays silent for ``publish_timeout_s``, before the
  hub's answer, it is dropped (``Dropped``): it may or may not have been passed on;
- any refusal, ``rate_limited`` and ``unavailable`` included, is final (``Rejected``).

No I/O here but the one send on the link the caller hands in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fanout.client import wire
from fanout.client.connect import Link
from fanout.client.errors import Dropped, Rejected
from fanout.client.events import EphemeralAck


@dataclass(eq=False, slots=True)
class _Waiting:
    room: str
    connection: int
    future: asyncio.Future[EphemeralAck]


class EphemeralSends:
    """Ephemeral publishes sent and not answered yet, by id."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._by_id

    async def send(
        self,
        link: Link | None,
        room: str,
        msg_id: str,
        frame: tuple[bytes, bool],
        timeout_s: float,
    ) -> EphemeralAck:
        """Send ``frame`` (bytes, is text) on ``link`` and wait for the hub's answer."""
        if link is None:
            raise Dropped("no open connection (not kept for the next one)", room=room, id=msg_id)
        if msg_id in self._by_id:
            raise ValueError(f"ephemeral publish id {msg_id!r} is already in flight")
        future: asyncio.Future[EphemeralAck] = asyncio.get_running_loop().create_future()
        self._by_id[msg_id] = _Waiting(room, link.number, future)
        try:
            if not await link.send(frame[0], text=frame[1]):
                raise Dropped("the connection closed before it was sent", room=room, id=msg_id)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            reason = f"no answer within {timeout_s} s"
            raise Dropped(reason, room=room, id=msg_id) from None
        finally:
            self._by_id.pop(msg_id, None)

    def acked(self, ack: EphemeralAck) -> bool:
        """Settle the ephemeral publish ``ack`` answers; False when it answers none."""
        waiting = self._by_id.get(ack.id)
        if waiting is None or waiting.room != ack.room:
            return False
        del self._by_id[ack.id]
        _settle(waiting.future, ack)
        return True

    def refused(self, frame: wire.ErrorReply) -> bool:
        """Fail the ephemeral publish ``frame`` answers (never retried); False when none."""
        waiting = self._by_id.pop(frame.id, None) if frame.id is not None else None
        if waiting is None:
            return False
        _settle(waiting.future, Rejected(frame.code, frame.reason, room=waiting.room, id=frame.id))
        return True

    def connection_ended(self, connection: int) -> None:
        """Connection ``connection`` is gone: what was sent on it is dropped, not re-sent."""
        for msg_id, waiting in list(self._by_id.items()):
            if waiting.connection == connection:
                del self._by_id[msg_id]
                reason = "the connection ended before the hub answered (not sent again)"
                _settle(waiting.future, Dropped(reason, room=waiting.room, id=msg_id))

    def fail_all(self, error: BaseException) -> None:
        for waiting in self._by_id.values():
            _settle(waiting.future, error)
        self._by_id.clear()


def _settle(future: asyncio.Future[EphemeralAck], outcome: EphemeralAck | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
