"""``create_app(settings)``: the FastAPI app with ``/ws``, ``/``, ``/healthz``, ``/metrics``."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from fanout.asgi.endpoint import ConsumerFactory, Endpoint
from fanout.asgi.wiring import wire
from fanout.auth import redact
from fanout.core.broker import Broker
from fanout.core.consumer import Consumer
from fanout.core.hub import Hub
from fanout.settings import Settings

HEALTH_TIMEOUT_S = 0.8


def create_app(
    settings: Settings | None = None,
    *,
    consumer: ConsumerFactory | None = None,
    broker: Broker | None = None,
) -> FastAPI:
    """A FastAPI app serving one hub; ConfigError if the settings cannot work.

    ``consumer`` builds each connection's handlers (default: the base ``Consumer``,
    which broadcasts plain frames and allows every ``fanout.v1`` request)."""
    settings = settings or Settings()
    wiring = wire(settings, broker)
    hub = wiring.hub

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        # Everything built so far (FastAPI, pydantic, the hub) lives as long as the process:
        # move it out of the collector's sight, so full collections do not walk it again
        # and again while messages flow (each one a pause in every delivery).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await hub.close()

    app = FastAPI(title="fanout", lifespan=lifespan)
    app.state.hub = hub
    app.state.settings = settings
    redact.install(settings.auth_query_param)
    endpoint = Endpoint(hub, consumer or Consumer, wiring.gate, wiring.session)
    app.add_api_websocket_route("/ws", endpoint)
    app.add_api_websocket_route("/ws/{room}", endpoint)

    @app.get("/healthz")
    async def healthz() -> Response:
        reason: str | None = None if hub.accepting else "shutting down"
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                reason = reason or await hub.broker.health()
        except TimeoutError:
            reason = f"broker did not answer within {HEALTH_TIMEOUT_S} s"
        body = {
            "status": "ok" if reason is None else "unavailable",
            "broker": wiring.broker_label,
            "connections": len(hub.connections),
            "rooms": hub.room_count,
        }
        if reason is not None:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if reason is None else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(render_metrics(hub), media_type="text/plain; version=0.0.4")

    if settings.chat_page:
        page = resources.files("fanout.asgi").joinpath("static/chat.html").read_text("utf-8")

        @app.get("/", response_class=HTMLResponse)
        async def chat_page() -> HTMLResponse:
            return HTMLResponse(page)

    return app


def render_metrics(hub: Hub) -> str:
    """Prometheus text exposition of the hub's counters and gauges."""
    lines = [
        "# TYPE fanout_connections gauge",
        f"fanout_connections {len(hub.connections)}",
        "# TYPE fanout_rooms gauge",
        f"fanout_rooms {hub.room_count}",
        "# TYPE fanout_outbox_bytes gauge",
        f"fanout_outbox_bytes {sum(c.queued_bytes for c in hub.connections)}",
    ]
    for name in sorted(hub.counters):
        lines.append(f"# TYPE fanout_{name} counter")
        lines.append(f"fanout_{name} {hub.counters[name]}")
    return "\n".join(lines) + "\n"
