"""This node's connections by user: per-user limits, revocations, control events.

``Hub`` owns one ``Users``. A connection with a user (a token's ``sub``, an app hook's
id) is indexed here while it is open; control events from any node (``Hub.on_control``)
act on the connections found here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fanout.core.connection import Connection
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.revocations import Revocations
from fanout.protocol import server_frames
from fanout.protocol.codes import CloseCode
from fanout.protocol.errors import ProtocolViolation

log = logging.getLogger("fanout.users")


class Users:
    __slots__ = ("_by_user", "dropped_revocations", "max_per_user", "revocations")

    def __init__(self, *, max_per_user: int, max_revocations: int) -> None:
        if max_per_user < 0:
            raise ValueError("max_connections_per_user must be >= 0 (0: no limit)")
        self.max_per_user = max_per_user
        self.revocations = Revocations(max_revocations)
        self.dropped_revocations = 0
        self._by_user: dict[str, set[Connection]] = {}

    def __len__(self) -> int:
        return len(self._by_user)

    def admit(self, user: str | None) -> None:
        """ProtocolViolation 1013 if ``user`` already has its most connections here."""
        limit = self.max_per_user
        if user is not None and limit and len(self._by_user.get(user, ())) >= limit:
            raise ProtocolViolation(
                CloseCode.SERVER_FULL, f"too many connections for this user (limit {limit})"
            )

    def add(self, conn: Connection) -> None:
        if conn.user is not None:
            self._by_user.setdefault(conn.user, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user) if conn.user is not None else None
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_user[conn.user]  # type: ignore[arg-type]

    def connections_of(self, user: str) -> list[Connection]:
        return list(self._by_user.get(user, ()))

    def refusal(self, user: str | None, jti: str | None) -> str | None:
        """Why a handshake of this user or token is refused now, or None."""
        until = self.revocations.refusal(user, jti, time.time())
        if until is None:
            return None
        return f"revoked until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}"

    def apply(self, event: ControlEvent, leave: Callable[[Connection, str], None]) -> int:
        """Act on this node's connections; how many were affected. ``leave(conn, room)``
        takes a connection out of a room."""
        if event.kind is ControlKind.REVOKE:
            if event.until is not None and not self.revocations.add(
                event.key, event.until, time.time()
            ):
                self.dropped_revocations += 1
                log.warning(
                    "revocation table full (%d): the revocations ending soonest were dropped",
                    self.revocations.max_entries,
                )
            targets = self._revoked_targets(event)
            reason = event.reason or "revoked"
        else:
            targets = self.connections_of(event.user) if event.user is not None else []
            reason = event.reason or "disconnected by the server"
        if event.kind is ControlKind.UNSUBSCRIBE:
            room = event.room or ""
            hit = [conn for conn in targets if room in conn.subscriptions]
            for conn in hit:
                leave(conn, room)
                conn.enqueue(server_frames.unsubscribed(room, reason))
            return len(hit)
        for conn in targets:
            conn.close(CloseCode.DISCONNECTED, reason)
        return len(targets)

    def _revoked_targets(self, event: ControlEvent) -> list[Connection]:
        if event.user is not None:
            return self.connections_of(event.user)
        return [
            conn
            for conns in self._by_user.values()
            for conn in conns
            if conn.jti is not None and conn.jti == event.jti
        ]
