"""What one node tells every node: disconnect, unsubscribe or revoke a user; a member
joined or left a room (for rooms whose subscribers get join/leave events).

A control event goes through the broker to every node (the one that sent it
included): ``Broker.control``. Each node applies it to its own connections of that
user (``Hub.on_control``). A revocation is also kept by the broker until it expires,
so a node that starts later, or relinks after an outage, refuses the user too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError


class ControlKind(enum.StrEnum):
    DISCONNECT = "disconnect"
    UNSUBSCRIBE = "unsubscribe"
    REVOKE = "revoke"
    # A member joined or left a room whose subscribers get join/leave events.
    JOIN = "join"
    LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class ControlEvent:
    kind: ControlKind
    user: str | None = None
    room: str | None = None  # UNSUBSCRIBE
    jti: str | None = None  # REVOKE: one token instead of a user
    until: float | None = None  # REVOKE: unix seconds
    reason: str = ""
    member: Mapping[str, Any] | None = None  # JOIN, LEAVE: the member as clients see it

    @property
    def key(self) -> str:
        """What a revocation is kept under: ``user:<id>`` or ``jti:<id>``."""
        return f"user:{self.user}" if self.user is not None else f"jti:{self.jti}"

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"kind": str(self.kind), "reason": self.reason}
        for name in ("user", "room", "jti", "until", "member"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ControlEvent:
        """FrameError for anything that is not a control event."""
        try:
            body = orjson.loads(raw)
            kind = ControlKind(body["kind"])
            until = body.get("until")
            event = cls(
                kind,
                user=_text(body.get("user")),
                room=_text(body.get("room")),
                jti=_text(body.get("jti")),
                until=float(until) if until is not None else None,
                reason=str(body.get("reason", ""))[:200],
                member=_mapping(body.get("member")),
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise FrameError(ErrorCode.BAD_FRAME, f"not a control event: {exc}") from None
        return event


def _mapping(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
