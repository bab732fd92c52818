"""The Origin check that stops cross-site WebSocket hijacking.

Browsers send ``Origin`` with every WebSocket handshake and, unlike for ``fetch``,
enforce nothing themselves: a page on any site may open a socket to the hub, with the
user's cookies. So the hub refuses, before accepting, an Origin that is neither its
own (same host and port as the ``Host`` header) nor on the allowlist.

A handshake without ``Origin`` does not come from a browser page (the Python client,
wscat, curl, servers); it is let through here and left to token auth.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normalise(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased with the default port dropped; None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _host_of(origin: str) -> str:
    """``host[:port]`` of a normalised origin, as a ``Host`` header would name it."""
    return origin.split("://", 1)[1]


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """``allowed``: extra origins (``https://app.example.com``), or ``*`` for any."""

    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for origin in self.allowed:
            if origin != "*" and _normalise(origin) is None:
                raise ValueError(f"allowed origin {origin!r} is not scheme://host[:port] (or '*')")

    @classmethod
    def parse(cls, text: str) -> OriginPolicy:
        """From a comma-separated list, as the settings hold it."""
        return cls(tuple(part.strip() for part in text.split(",") if part.strip()))

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """None when a handshake with these headers may proceed, else why not."""
        if origin is None:
            return None
        if "*" in self.allowed:
            return None
        normal = _normalise(origin)
        if normal is None:
            return f"Origin {origin[:100]!r} is not an origin"
        if host is not None and _host_of(normal) == _strip_default_port(host.lower(), normal):
            return None
        if any(_normalise(allowed) == normal for allowed in self.allowed):
            return None
        return f"Origin {normal} is not allowed"


def _strip_default_port(host: str, origin: str) -> str:
    """``Host: example.com:443`` names the same place as ``https://example.com``."""
    scheme = origin.split("://", 1)[0]
    suffix = f":{_DEFAULT_PORTS[scheme]}"
    return host[: -len(suffix)] if host.endswith(suffix) else host
