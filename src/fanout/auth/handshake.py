"""The checks every WebSocket handshake passes before it is accepted: Origin, then token.

``Gate.admit`` takes the handshake's headers, query and cookies and returns the
connection's ``Access``, or raises ``Denied``; the endpoint answers a denial with
HTTP 403 and the reason, and never accepts the socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fanout.auth.origin import OriginPolicy
from fanout.auth.tokens import TokenError, TokenVerifier
from fanout.core.access import ANONYMOUS, Access

BEARER = "bearer "


class Denied(Exception):
    """A handshake refused before accept: ``status`` is the HTTP answer."""

    def __init__(self, reason: str, *, kind: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "origin", "token" or "room": the counter it bumps
        self.status = status


@dataclass(frozen=True, slots=True)
class Gate:
    origins: OriginPolicy = field(default_factory=OriginPolicy)
    # None: no auth configured, every connection is anonymous.
    verifier: TokenVerifier | None = None
    cookie: str = "fanout_token"
    query_param: str = "token"

    def admit(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        cookies: Mapping[str, str],
    ) -> Access:
        """``headers`` with lower-case names."""
        refusal = self.origins.refusal(headers.get("origin"), headers.get("host"))
        if refusal is not None:
            raise Denied(refusal, kind="origin")
        if self.verifier is None:
            return ANONYMOUS
        token = self.token_of(headers, query, cookies)
        if token is None:
            raise Denied(
                "no token: send 'Authorization: Bearer <token>', the"
                f" '{self.cookie}' cookie, or the '{self.query_param}' query parameter",
                kind="token",
            )
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            raise Denied(str(exc), kind="token") from exc

    def token_of(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        cookies: Mapping[str, str],
    ) -> str | None:
        """The token, from the first place that has one: header, cookie, query."""
        authorization = headers.get("authorization")
        if authorization is not None:
            if not authorization.lower().startswith(BEARER):
                raise Denied("the Authorization header must be 'Bearer <token>'", kind="token")
            return authorization[len(BEARER) :].strip()
        return cookies.get(self.cookie) or query.get(self.query_param) or None
