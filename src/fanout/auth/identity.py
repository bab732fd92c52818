"""Your application's own users: what an ``authenticate=`` hook returns.

The hook runs before the socket is accepted. It is an ordinary FastAPI dependency (it
may take ``websocket: WebSocket``, ``Cookie(...)``, ``Header(...)``, or
``Depends(get_current_user)`` of your app) and returns:

- an ``Identity``: the user's id, your user object, and the rooms it may subscribe and
  publish to (``*`` patterns as in token grants);
- any other object: your user object, allowed every room (its ``id`` attribute, or
  its ``str()``, names it); your ``Consumer`` hooks may still ``deny()``;
- ``None``: refused with HTTP 403. Raising ``HTTPException(401, ...)`` refuses with
  that status and detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fanout.auth.grants import RoomGrants
from fanout.core.access import Access
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError

EVERY_ROOM = ("*",)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, as your application's authentication says."""

    id: str
    user: Any = None
    subscribe: Iterable[str] = EVERY_ROOM
    publish: Iterable[str] = EVERY_ROOM
    # Unix time after which the connection is closed with 1008 (None: never).
    expires_at: float | None = None
    # Public information shown to others in presence (a display name, an avatar URL).
    info: Mapping[str, Any] = field(default_factory=dict)

    def access(self) -> IdentityAccess:
        return IdentityAccess(
            subject=self.id,
            identity=self.user,
            info=dict(self.info),
            expires_at=self.expires_at,
            grants=RoomGrants(tuple(self.subscribe), tuple(self.publish)),
        )

    @classmethod
    def of(cls, returned: object) -> Identity:
        """What a hook returned, as an Identity (not None: the caller refuses that)."""
        if isinstance(returned, Identity):
            return returned
        name = getattr(returned, "id", returned)
        return cls(id=str(name), user=returned)


@dataclass(frozen=True, slots=True)
class IdentityAccess:
    """``Access`` from an ``Identity``."""

    subject: str | None
    identity: Any
    info: Mapping[str, Any]
    expires_at: float | None
    grants: RoomGrants
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def may_subscribe(self, room: str) -> bool:
        return self.grants.may_subscribe(room)

    def may_publish(self, room: str) -> bool:
        return self.grants.may_publish(room)

    def refreshed(self, token: str) -> Access:
        raise FrameError(
            ErrorCode.BAD_FRAME,
            "this hub authenticates with the application's own hook, not tokens:"
            " reconnect to authenticate again",
        )
