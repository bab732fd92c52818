"""Scrape a Prometheus ``/metrics`` endpoint of a server on this machine, read its gauges
and the buffer bounds a fanout hub states there."""

from __future__ import annotations

import http.client
import math
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BYTES = 16 * 1024 * 1024
#: At most this many gauges are kept from one page (the first ones it lists).
MAX_GAUGES = 64

_UNLABELLED = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\S+)(?:\s+\S+)?\s*$")


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


def parse_gauges(page: str) -> dict[str, float]:
    """The unlabelled gauges of a Prometheus text page, ``{name: value}``.

    Only samples whose ``# TYPE`` says ``gauge`` count (counters and histograms say
    nothing about what the server holds now); labelled series, values that are not
    finite numbers and anything past :data:`MAX_GAUGES` are left out.
    """
    types: dict[str, str] = {}
    found: dict[str, float] = {}
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        match = _UNLABELLED.match(line)
        if match is None or types.get(match[1]) != "gauge" or match[1] in found:
            continue
        try:
            value = float(match[2])
        except ValueError:
            continue
        if math.isfinite(value):
            found[match[1]] = value
            if len(found) >= MAX_GAUGES:
                break
    return found


#: The bounds a fanout hub states on its page (``fanout.asgi.metrics``), by the names the
#: results document gives them (``server.bounds``, docs/lab-results.md).
BOUND_GAUGES = {
    "fanout_message_limit_bytes": "max_message_bytes",
    "fanout_outbox_limit_messages": "outbox_max_messages",
    "fanout_outbox_limit_bytes": "outbox_max_bytes",
    "fanout_history_room_limit_messages": "history_max_messages",
    "fanout_history_room_limit_bytes": "history_max_bytes",
    "fanout_history_limit_bytes": "history_total_max_bytes",
}


def bounds_from_page(page: str | None) -> dict[str, Any] | None:
    """The buffer bounds a server states on its metrics page; None when it states
    none (any server but a fanout hub)."""
    gauges = parse_gauges(page or "")
    found: dict[str, Any] = {
        key: int(gauges[name]) for name, key in BOUND_GAUGES.items() if name in gauges
    }
    if not found:
        return None
    # A hub whose broker holds the rooms' history (Redis) states 0 for this process.
    found["history_in_process"] = found.get("history_total_max_bytes", 0) > 0
    found["workers"] = int(gauges.get("fanout_processes", 1))
    return found
