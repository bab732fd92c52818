"""uvicorn's protocol classes built as uvicorn builds them, without a server or a socket."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import uvicorn
from uvicorn.server import ServerState

P = TypeVar("P")


def uvicorn_protocol(cls: type[P]) -> P:
    """An instance of ``cls`` (a uvicorn protocol class) with a default config."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    config = uvicorn.Config(app, lifespan="off")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol: P = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)  # type: ignore[call-arg]
        return protocol
    finally:
        loop.close()
