"""Turns one received WebSocket message into hub calls and answers. No sockets here."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from fanout.core.connection import Mode
from fanout.core.consumer import Consumer
from fanout.core.errormap import close_for, error_frame
from fanout.core.pipeline import Answer, PublishPipeline
from fanout.protocol import server_frames
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.envelope import OutFrame
from fanout.protocol.errors import BrokerError, FrameError, ProtocolViolation
from fanout.protocol.frames import (
    PERSONAL_PREFIX,
    Auth,
    HistoryRequest,
    PresenceRequest,
    Publish,
    Subscribe,
    Unsubscribe,
    decode_binary,
    decode_text,
    personal_room,
)


async def dispatch(
    consumer: Consumer,
    text: str | None,
    data: bytes | None,
    pipeline: PublishPipeline | None = None,
) -> None:
    """Handle one message from the client. Raises ProtocolViolation to close.

    With a ``pipeline``, a ``fanout.v1`` publish is started and answered later (in
    order); any other frame first waits for the publishes before it.
    """
    conn = consumer.connection
    if conn.mode is Mode.PLAIN:
        payload = text if text is not None else (data or b"")
        room = consumer.info.room
        if not consumer.access.may_publish(room) or not consumer.hub.clients_may_publish(room):
            # A plain client has no error frame: it is told by the close code.
            raise ProtocolViolation(CloseCode.POLICY, f"not allowed to publish to {room!r}")
        try:
            await consumer.on_message(room, payload)
        except BrokerError as exc:
            raise ProtocolViolation(*close_for(exc)) from exc
        return
    try:
        frame = decode_text(text) if text is not None else decode_binary(data or b"")
    except FrameError as exc:
        await _send_in_order(consumer, pipeline, exc)
        return
    if isinstance(frame, Publish):
        if pipeline is None:
            answer = await _publish(consumer, frame)
            if isinstance(answer, OutFrame):
                conn.answer(answer)
        else:
            await pipeline.submit(_publish(consumer, frame))
        return
    if pipeline is not None:
        await pipeline.drain()
    frame_id = None if isinstance(frame, Subscribe | Unsubscribe) else frame.id
    answer = await _answer(consumer, frame, _request(consumer, frame), frame_id)
    if isinstance(answer, OutFrame):
        conn.answer(answer)


async def refuse(
    consumer: Consumer,
    text: str | None,
    data: bytes | None,
    pipeline: PublishPipeline | None,
    code: ErrorCode,
    reason: str,
) -> None:
    """Answer a frame that will not be handled (over a rate limit) with an ``error``,
    naming its ``id`` when it has one, in order with the answers before it."""
    try:
        frame = decode_text(text) if text is not None else decode_binary(data or b"")
        frame_id = getattr(frame, "id", None)
    except FrameError as exc:
        frame_id = exc.frame_id
    await _send_in_order(consumer, pipeline, FrameError(code, reason, frame_id=frame_id))


async def _send_in_order(
    consumer: Consumer, pipeline: PublishPipeline | None, exc: FrameError
) -> None:
    error = error_frame(exc)
    if pipeline is None:
        consumer.connection.answer(error)
    else:  # after the answers to the publishes before it
        await pipeline.submit(_ready(error))


async def _ready(answer: Answer) -> Answer:
    return answer


async def _publish(consumer: Consumer, frame: Publish) -> Answer:
    """Publish and return the ``ack`` (or ``error``) to send; ProtocolViolation raises."""

    async def publish() -> OutFrame | None:
        _not_personal(frame.room, "publish to")
        if not consumer.access.may_publish(frame.room):
            raise FrameError(
                ErrorCode.FORBIDDEN, f"your token does not grant publish to {frame.room!r}"
            )
        if not consumer.hub.clients_may_publish(frame.room):
            raise FrameError(
                ErrorCode.FORBIDDEN, f"clients may not publish to {frame.room!r} (room options)"
            )
        body = await consumer.on_publish(frame.room, frame.data)
        if frame.ephemeral:
            await consumer.hub.publish_ephemeral(frame.room, body)
            return None if frame.id is None else server_frames.ack_ephemeral(frame.id, frame.room)
        published = await consumer.publish(frame.room, body, id=frame.id)
        if frame.id is None:
            return None
        return server_frames.ack(frame.id, frame.room, published.epoch, published.offset)

    return await _answer(consumer, frame, publish(), frame.id)


async def _request(
    consumer: Consumer,
    frame: Subscribe | Unsubscribe | Auth | PresenceRequest | HistoryRequest,
) -> OutFrame | None:
    if isinstance(frame, Auth):
        return _refresh(consumer, frame)
    if isinstance(frame, Unsubscribe):
        _not_personal(frame.room, "unsubscribe from")
        await consumer.leave(frame.room)
        return None
    if not consumer.access.may_subscribe(frame.room):
        raise FrameError(
            ErrorCode.FORBIDDEN, f"your token does not grant subscribe to {frame.room!r}"
        )
    if isinstance(frame, Subscribe):
        _not_personal(frame.room, "subscribe to")
        await consumer.on_subscribe(frame.room)
        await consumer.join(frame.room, frame.since)
        return None
    # Reading a room without subscribing needs what subscribing needs: the grant (above),
    # the application's on_subscribe, and a personal room only one's own.
    if frame.room.startswith(PERSONAL_PREFIX):
        subject = consumer.access.subject
        if subject is None or frame.room != personal_room(subject):
            _not_personal(frame.room, "read")
    else:
        await consumer.on_subscribe(frame.room)
    hub = consumer.hub
    if isinstance(frame, HistoryRequest):
        found = await hub.history(frame.room, limit=frame.limit, since=frame.since)
        return server_frames.history(
            frame.room, found.epoch, found.latest, found.first_kept, found.messages, frame.id
        )
    if frame.stats:
        stats = await hub.presence_stats(frame.room)
        return server_frames.presence_stats(frame.room, stats.connections, stats.users, frame.id)
    members = await hub.presence_members(frame.room)
    return server_frames.presence(frame.room, [m.to_json() for m in members], frame.id)


def _not_personal(room: str, what: str) -> None:
    if room.startswith(PERSONAL_PREFIX):
        raise FrameError(
            ErrorCode.FORBIDDEN,
            f"cannot {what} {room!r}: rooms starting with '{PERSONAL_PREFIX}' are personal"
            " rooms the server manages",
        )


def _refresh(consumer: Consumer, frame: Auth) -> OutFrame:
    """Take a new token: same subject, and it must still grant every room joined."""
    new = consumer.access.refreshed(frame.token)
    for room in consumer.connection.subscriptions:
        if not new.may_subscribe(room) and not room.startswith(PERSONAL_PREFIX):
            raise FrameError(
                ErrorCode.FORBIDDEN,
                f"the new token does not grant {room!r}, which this connection is subscribed"
                " to: unsubscribe first",
            )
    consumer.set_access(new)
    # The token's own exp (expires_at may add the configured clock-skew leeway).
    exp = new.claims.get("exp", new.expires_at)
    return server_frames.authorized(frame.id, new.subject, exp)


async def _answer(
    consumer: Consumer,
    frame: object,
    work: Coroutine[Any, Any, OutFrame | None],
    frame_id: str | None,
) -> OutFrame | None:
    """Run ``work``; its frame, or the ``error`` frame for what it raised."""
    try:
        return await work
    except ProtocolViolation:
        raise
    except Exception as exc:
        # An application handler's failure: this client is told, nobody else is affected.
        shown = f"Auth(id={frame.id!r}, token=[redacted])" if isinstance(frame, Auth) else frame
        return error_frame(exc, frame_id, context=f"{consumer.connection!r}: {shown}")
