"""Room grants: which rooms a token lets a connection subscribe to and publish to.

A token carries them in its ``fanout`` claim::

    {"sub": "alice", "exp": 1767225600,
     "fanout": {"subscribe": ["chat.*", "news"], "publish": ["chat.*"]}}

Each entry is a room name, or a pattern where ``*`` stands for any run of room
characters (``chat.*`` grants ``chat.lobby`` and ``chat.eu.paris``; ``*`` grants every
room). A missing list grants nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

CLAIM = "fanout"
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9_.:@\-*]{1,128}")


class GrantError(ValueError):
    """A ``fanout`` claim that is not the documented shape."""


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts = [".*".join(re.escape(piece) for piece in p.split("*")) for p in patterns]
    return re.compile("|".join(f"(?:{part})" for part in parts))


class RoomGrants:
    """The rooms one token grants, compiled once per token."""

    __slots__ = ("_pub", "_sub", "publish", "subscribe")

    def __init__(self, subscribe: Iterable[str] = (), publish: Iterable[str] = ()) -> None:
        self.subscribe = tuple(subscribe)
        self.publish = tuple(publish)
        for pattern in (*self.subscribe, *self.publish):
            if not isinstance(pattern, str) or not _PATTERN_CHARS.fullmatch(pattern):
                raise GrantError(
                    f"room pattern {pattern!r} is not 1-128 characters of"
                    " A-Z a-z 0-9 _ . : @ - and *"
                )
        self._sub = _compile(self.subscribe)
        self._pub = _compile(self.publish)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RoomGrants)
            and self.subscribe == other.subscribe
            and self.publish == other.publish
        )

    def __hash__(self) -> int:
        return hash((self.subscribe, self.publish))

    def __repr__(self) -> str:
        return f"RoomGrants(subscribe={self.subscribe!r}, publish={self.publish!r})"

    def may_subscribe(self, room: str) -> bool:
        return self._sub is not None and self._sub.fullmatch(room) is not None

    def may_publish(self, room: str) -> bool:
        return self._pub is not None and self._pub.fullmatch(room) is not None

    def to_claim(self) -> dict[str, list[str]]:
        return {"subscribe": list(self.subscribe), "publish": list(self.publish)}

    @classmethod
    def both(cls, patterns: Iterable[str]) -> RoomGrants:
        rooms = tuple(patterns)
        return cls(subscribe=rooms, publish=rooms)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> RoomGrants:
        """The grants of a verified token's claims; GrantError when malformed."""
        claim = claims.get(CLAIM)
        if claim is None:
            return cls()
        if not isinstance(claim, dict):
            raise GrantError(f"the '{CLAIM}' claim must be an object with subscribe/publish lists")
        lists: dict[str, tuple[str, ...]] = {}
        for action in ("subscribe", "publish"):
            value = claim.get(action, [])
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise GrantError(f"'{CLAIM}.{action}' must be a list of room names or patterns")
            if len(value) > 256:
                raise GrantError(f"'{CLAIM}.{action}' lists more than 256 patterns")
            lists[action] = tuple(value)
        return cls(subscribe=lists["subscribe"], publish=lists["publish"])
