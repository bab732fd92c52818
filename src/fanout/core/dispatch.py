"""Turns one received WebSocket message into hub calls and answers. No sockets here."""

from __future__ import annotations

import logging

from fanout.core.connection import Mode
from fanout.core.consumer import Consumer
from fanout.protocol import server_frames
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.errors import BrokerError, FrameError, ProtocolViolation
from fanout.protocol.frames import Publish, Subscribe, Unsubscribe, decode_binary, decode_text

log = logging.getLogger("fanout.dispatch")


async def dispatch(consumer: Consumer, text: str | None, data: bytes | None) -> None:
    """Handle one message from the client. Raises ProtocolViolation to close."""
    conn = consumer.connection
    if conn.mode is Mode.PLAIN:
        payload = text if text is not None else (data or b"")
        try:
            await consumer.on_message(consumer.info.room, payload)
        except BrokerError as exc:
            # A plain client has no error frame; it is told by the close code.
            raise ProtocolViolation(CloseCode.INTERNAL, f"broker: {exc}") from exc
        return
    frame_id: str | None = None
    try:
        frame = decode_text(text) if text is not None else decode_binary(data or b"")
        if isinstance(frame, Publish):
            frame_id = frame.id
            body = await consumer.on_publish(frame.room, frame.data)
            published = await consumer.publish(frame.room, body, id=frame.id)
            if frame.id is not None:
                conn.enqueue(
                    server_frames.ack(frame.id, frame.room, published.epoch, published.offset)
                )
        elif isinstance(frame, Subscribe):
            await consumer.on_subscribe(frame.room)
            await consumer.join(frame.room, frame.since)
        elif isinstance(frame, Unsubscribe):
            await consumer.leave(frame.room)
    except FrameError as exc:
        conn.enqueue(server_frames.error(exc.code, exc.reason, exc.frame_id or frame_id))
    except BrokerError as exc:
        conn.enqueue(server_frames.error(exc.code, str(exc), frame_id))
    except ProtocolViolation:
        raise
    except Exception as exc:
        # An application handler failed: this client is told, nobody else is affected.
        log.exception("handler failed on %r", conn)
        conn.enqueue(
            server_frames.error(
                ErrorCode.INTERNAL, f"handler error: {type(exc).__name__}", frame_id
            )
        )
