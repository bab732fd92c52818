"""Run the app under uvicorn with fanout's direct WebSocket transport."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from fanout.asgi.app import create_app
from fanout.asgi.direct import FanoutWebSocketProtocol
from fanout.settings import Settings


def uvicorn_config(
    settings: Settings, app: FastAPI | None = None, *, log_level: str = "info"
) -> uvicorn.Config:
    return uvicorn.Config(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        ws=FanoutWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval_s or None,
        ws_ping_timeout=settings.ping_timeout_s or None,
        timeout_graceful_shutdown=int(settings.shutdown_flush_s + settings.close_timeout_s + 1),
        log_level=log_level,
        lifespan="on",
    )


def serve(settings: Settings, *, log_level: str = "info") -> None:
    uvicorn.Server(uvicorn_config(settings, log_level=log_level)).run()
