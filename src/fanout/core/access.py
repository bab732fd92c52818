"""What one connection may do: the interface the hub checks, whatever issued it.

``fanout.auth`` builds an ``Access`` from a verified token or from the application's
own hook (``fanout.auth.identity``); without auth every
connection gets ``ANONYMOUS``, which may do everything. The core never sees tokens:
it asks ``may_subscribe`` / ``may_publish`` for each client request (the application's
own ``on_subscribe`` / ``on_publish`` hooks run after, and may still ``deny()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FrameError


class Access(Protocol):
    @property
    def subject(self) -> str | None:
        """Who the connection is (the token's ``sub``), None when anonymous."""

    @property
    def claims(self) -> Mapping[str, Any]:
        """Every claim of the verified token (empty when anonymous)."""

    @property
    def identity(self) -> Any:
        """The application's own user object (from an ``authenticate=`` hook), else None."""

    @property
    def info(self) -> Mapping[str, Any]:
        """Public information about the user, shown in presence (a token's ``info``
        claim, an ``Identity``'s ``info``)."""

    @property
    def expires_at(self) -> float | None:
        """Unix time after which the connection is closed with 1008, unless refreshed."""

    def may_subscribe(self, room: str) -> bool: ...

    def may_publish(self, room: str) -> bool: ...

    def refreshed(self, token: str) -> Access:
        """The access a new token gives this connection; raises FrameError if refused."""


class _Anonymous:
    """No auth configured: every room, no expiry."""

    subject: str | None = None
    claims: Mapping[str, Any] = MappingProxyType({})
    expires_at: float | None = None
    identity: Any = None
    info: Mapping[str, Any] = MappingProxyType({})

    def may_subscribe(self, room: str) -> bool:
        return True

    def may_publish(self, room: str) -> bool:
        return True

    def refreshed(self, token: str) -> Access:
        raise FrameError(ErrorCode.BAD_FRAME, "this hub has no auth configured: nothing to refresh")


ANONYMOUS: Access = _Anonymous()
