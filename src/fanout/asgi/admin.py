"""``/admin``: a live dashboard of the hub, off unless ``admin_key`` is set.

- ``GET /admin`` is the page (``static/admin.html``, ``admin.js``, ``admin.css``: no
  external resources, a Content-Security-Policy that allows none). It asks for the
  key, keeps it in the tab's ``sessionStorage`` and polls ``/admin/stats`` once a second.
- ``GET /admin/stats`` answers ``Authorization: adminkey KEY`` (compared in constant
  time; 401 otherwise) with this process's numbers, and with ``metrics_dir`` set (several
  worker processes) every live worker's, one entry per process, from the files
  ``fanout.asgi.metrics`` keeps there::

      {"time": 1718000000.5, "node": 4242,
       "broker": {"label": "memory", "healthy": true, "reason": null},
       "nodes": [{"pid": 4242, "connections": 3, "rooms": 2, "outbox_bytes": 0,
                  "revocations": 0, "counters": {"published": 10, ...}}, ...],
       "totals": {"processes": 1, "connections": 3, ..., "counters": {...}}}

The page computes rates (publishes/s, deliveries/s) from successive counter values, so a
poll costs the hub what one ``/metrics`` scrape does: one pass over the connections to add
up their outbox bytes (O(connections); docs/guide.md has the figure at 10,000).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from fanout.asgi import metrics
from fanout.core.hub import Hub
from fanout.protocol.errors import StateError
from fanout.settings import Settings

SCHEME = "adminkey"
HEALTH_TIMEOUT_S = 0.8
# Nothing from elsewhere: the page's own script, style and stats requests only.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FILES = {
    "admin.html": "text/html; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
}
_GAUGES = ("connections", "rooms", "outbox_bytes", "revocations")


def add_routes(
    router: APIRouter,
    hub: Hub,
    settings: Settings,
    broker_label: str,
    ensure_started: Callable[[], Awaitable[None]],
) -> None:
    """The dashboard's routes on ``router``, if ``settings.admin_key`` turns it on."""
    if not settings.admin_key:
        return
    dashboard = Dashboard(hub, settings.admin_key, broker_label, ensure_started)
    if settings.metrics_dir:
        dashboard.workers = metrics.WorkerFiles(Path(settings.metrics_dir))
    router.add_api_route("/admin", _file("admin.html"), methods=["GET"], include_in_schema=False)
    for name in ("admin.js", "admin.css"):
        route = _file(name)
        router.add_api_route(f"/admin/{name}", route, methods=["GET"], include_in_schema=False)
    router.add_api_route("/admin/stats", dashboard.stats, methods=["GET"], include_in_schema=False)


class Dashboard:
    def __init__(
        self,
        hub: Hub,
        key: str,
        broker_label: str,
        ensure_started: Callable[[], Awaitable[None]],
    ) -> None:
        self.hub = hub
        self.key = key.encode()
        self.broker_label = broker_label
        self.ensure_started = ensure_started
        self.workers: metrics.WorkerFiles | None = None

    async def stats(self, request: Request) -> Response:
        reason = refusal(self.key, request.headers.get("authorization"))
        if reason is not None:
            return _json(401, {"code": "unauthorized", "reason": reason})
        broker = await self.broker_health()
        own = metrics.snapshot(self.hub)
        snapshots = [own]
        if self.workers is not None:
            found = self.workers.read_all()  # a few small files, as a /metrics scrape
            snapshots += [s for s in found if s["pid"] != own["pid"]]
        return _json(200, stats_body(own, snapshots, broker))

    async def broker_health(self) -> dict[str, Any]:
        reason: str | None = None
        try:
            await self.ensure_started()
        except StateError:
            reason = "shutting down"
        except Exception as exc:
            reason = f"hub did not start: {exc}"
        if reason is None and not self.hub.accepting:
            reason = "shutting down"
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                reason = reason or await self.hub.broker.health()
        except TimeoutError:
            reason = f"broker did not answer within {HEALTH_TIMEOUT_S} s"
        return {"label": self.broker_label, "healthy": reason is None, "reason": reason}


def refusal(key: bytes, header: str | None) -> str | None:
    """Why ``header`` does not carry the admin key, or None if it does (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != SCHEME or not given.strip():
        return f"send 'Authorization: {SCHEME} KEY'"
    # Header values arrive decoded as latin-1: encoding them back gives the bytes sent.
    if not hmac.compare_digest(given.strip().encode("latin-1"), key):
        return "wrong admin key"
    return None


def stats_body(
    own: metrics.Snapshot, snapshots: list[metrics.Snapshot], broker: dict[str, Any]
) -> dict[str, Any]:
    """What ``/admin/stats`` answers: each process's numbers (by pid) and their sum."""
    nodes = [_node(s) for s in sorted(snapshots, key=lambda s: int(s["pid"]))]
    total = metrics.merge(snapshots)
    totals = {
        "processes": len(nodes),
        **{name: total["gauges"].get(name, 0) for name in _GAUGES},
        "counters": total["counters"],
    }
    return {
        "time": time.time(),
        "node": own["pid"],
        "broker": broker,
        "nodes": nodes,
        "totals": totals,
    }


def _node(snap: metrics.Snapshot) -> dict[str, Any]:
    gauges = snap["gauges"]
    return {
        "pid": snap["pid"],
        "time": snap["time"],
        **{name: gauges.get(name, 0) for name in _GAUGES},
        "counters": snap["counters"],
    }


def _json(status: int, body: object) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("fanout.asgi").joinpath(f"static/{name}").read_bytes()


def _file(name: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(_static(name), media_type=_FILES[name], headers=_PAGE_HEADERS)

    return serve
