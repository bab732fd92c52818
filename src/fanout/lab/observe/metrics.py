"""Scrape a Prometheus ``/metrics`` endpoint of a server on this machine."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BYTES = 16 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 200, not a hop to somewhere else."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def check_local_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is http(s) on 127.0.0.1, localhost or ::1."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"metrics URL must be http:// or https://, got {url!r}")
    if parts.hostname not in LOCAL_HOSTS:
        raise ValueError(
            f"metrics URL must point at this machine (127.0.0.1, localhost or ::1), got {url!r}"
        )


def scrape(url: str, timeout_s: float = 2.0) -> str | None:
    """The body of ``GET url``, or None when it is absent, not 200, or unreachable.

    Network errors never raise; a URL that is not on this machine raises ``ValueError``.
    Proxies from the environment are ignored and redirects are not followed.
    """
    check_local_url(url)
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            if response.status != 200:
                return None
            body: bytes = response.read(MAX_BYTES)
    except (OSError, http.client.HTTPException, ValueError):
        # URLError and HTTPError are OSErrors; so are refused, reset and timed out.
        return None
    return body.decode("utf-8", errors="replace")
