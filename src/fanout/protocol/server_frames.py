"""Server-to-client control frames (everything but ``message``)."""

from __future__ import annotations

import base64

from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import Message, OutFrame, Payload, binary_envelope


def subscribed(room: str, epoch: str, offset: int, *, recovered: bool) -> OutFrame:
    return OutFrame.json(
        {
            "type": "subscribed",
            "room": room,
            "epoch": epoch,
            "offset": offset,
            "recovered": recovered,
        }
    )


def ack(frame_id: str, room: str, epoch: str, offset: int) -> OutFrame:
    return OutFrame.json(
        {"type": "ack", "id": frame_id, "room": room, "epoch": epoch, "offset": offset}
    )


def gap(room: str, epoch: str, first: int, last: int) -> OutFrame:
    return OutFrame.json({"type": "gap", "room": room, "epoch": epoch, "from": first, "to": last})


def error(code: ErrorCode, reason: str, frame_id: str | None = None) -> OutFrame:
    body: dict[str, object] = {"type": "error", "code": str(code), "reason": reason}
    if frame_id is not None:
        body["id"] = frame_id
    return OutFrame.json(body)


def authorized(frame_id: str | None, subject: str | None, expires_at: float | None) -> OutFrame:
    """The answer to an ``auth`` frame whose token was accepted."""
    body: dict[str, object] = {"type": "authorized", "sub": subject, "exp": expires_at}
    if frame_id is not None:
        body["id"] = frame_id
    return OutFrame.json(body)


def ephemeral(room: str, data: Payload) -> OutFrame:
    """A ``message`` with no epoch and no offset: not stored, not counted by clients."""
    if isinstance(data, bytes | bytearray | memoryview):
        header = {"type": "message", "room": room, "ephemeral": True}
        return OutFrame.binary(binary_envelope(header, bytes(data)))
    return OutFrame.json({"type": "message", "room": room, "data": data, "ephemeral": True})


def ack_ephemeral(frame_id: str, room: str) -> OutFrame:
    """The answer to an ephemeral publish with an ``id``: passed on, with no offset."""
    return OutFrame.json({"type": "ack", "id": frame_id, "room": room, "ephemeral": True})


def unsubscribed(room: str, reason: str) -> OutFrame:
    """The server ended this subscription (``/api/unsubscribe``): do not resubscribe."""
    return OutFrame.json({"type": "unsubscribed", "room": room, "reason": reason})


def presence(room: str, members: list[dict[str, object]], frame_id: str | None) -> OutFrame:
    return OutFrame.json(_with_id({"type": "presence", "room": room, "members": members}, frame_id))


def presence_stats(room: str, connections: int, users: int, frame_id: str | None) -> OutFrame:
    body = {"type": "presence_stats", "room": room, "connections": connections, "users": users}
    return OutFrame.json(_with_id(body, frame_id))


def member_event(kind: str, room: str, member: dict[str, object]) -> OutFrame:
    """``join`` or ``leave`` of one member, on rooms that opt in."""
    return OutFrame.json({"type": kind, "room": room, "member": member})


def history(
    room: str,
    epoch: str,
    latest: int,
    first_kept: int,
    messages: list[Message],
    frame_id: str | None,
) -> OutFrame:
    """Retained messages, answered without a subscription; binary data as base64."""
    items: list[dict[str, object]] = []
    for message in messages:
        data = message.data
        if isinstance(data, bytes | bytearray | memoryview):
            encoded = base64.b64encode(bytes(data)).decode()
            items.append({"offset": message.offset, "data": encoded, "encoding": "base64"})
        else:
            items.append({"offset": message.offset, "data": data})
    body = {
        "type": "history",
        "room": room,
        "epoch": epoch,
        "latest": latest,
        "first_kept": first_kept,
        "messages": items,
    }
    return OutFrame.json(_with_id(body, frame_id))


def _with_id(body: dict[str, object], frame_id: str | None) -> dict[str, object]:
    if frame_id is not None:
        body["id"] = frame_id
    return body
