"""The checks every WebSocket handshake passes before it is accepted: Origin, then token.

``Gate.admit`` takes the handshake's headers, query and cookies and returns the
connection's ``Access``, or raises ``HandshakeDenied``; the endpoint answers a denial with
HTTP 403 and the reason, and never accepts the socket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from fanout.auth.identity import Identity
from fanout.auth.origin import OriginPolicy
from fanout.auth.tokens import TokenError, TokenVerifier
from fanout.core.access import ANONYMOUS, Access
from fanout.protocol.errors import HandshakeDenied

BEARER = "bearer "


def is_loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header (``name[:port]``) names this machine."""
    if host is None:
        return True  # HTTP/1.0 without Host: not a browser
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Gate:
    origins: OriginPolicy = field(default_factory=OriginPolicy)
    # None: no auth configured, every connection is anonymous.
    verifier: TokenVerifier | None = None
    cookie: str = "fanout_token"
    query_param: str = "token"
    # The application's own hook authenticates (its result is passed to ``admit``).
    hooked: bool = False
    # An anonymous hub on loopback: the Host must name this machine too. Otherwise a
    # page whose domain re-resolves to 127.0.0.1 (DNS rebinding) would be same-origin.
    loopback_host_only: bool = False

    def admit(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        cookies: Mapping[str, str],
        identity: object = None,
    ) -> Access:
        """``headers`` with lower-case names; ``identity``: what the application's hook
        returned, when the hub has one."""
        host = headers.get("host")
        if self.loopback_host_only and not is_loopback_host(host):
            raise HandshakeDenied(
                f"Host {str(host)[:100]!r} is not this machine: an anonymous hub on loopback"
                " answers only to localhost and loopback addresses (configure auth, or"
                " --allow-anonymous, to serve other names)",
                kind="origin",
            )
        refusal = self.origins.refusal(headers.get("origin"), host)
        if refusal is not None:
            raise HandshakeDenied(refusal, kind="origin")
        if self.hooked:
            if identity is None:
                raise HandshakeDenied("not authenticated", kind="token")
            return Identity.of(identity).access()
        if self.verifier is None:
            return ANONYMOUS
        token = self.token_of(headers, query, cookies)
        if token is None:
            raise HandshakeDenied(
                "no token: send 'Authorization: Bearer <token>', the"
                f" '{self.cookie}' cookie, or the '{self.query_param}' query parameter",
                kind="token",
            )
        try:
            return self.verifier.verify(token)
        except TokenError as exc:
            raise HandshakeDenied(str(exc), kind="token") from exc

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
                raise HandshakeDenied(
                    "the Authorization header must be 'Bearer <token>'", kind="token"
                )
            return authorization[len(BEARER) :].strip()
        return cookies.get(self.cookie) or query.get(self.query_param) or None
