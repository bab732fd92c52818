"""Server-to-client control frames (everything but ``message``)."""

from __future__ import annotations

from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import OutFrame


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
