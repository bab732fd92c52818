"""``hub.app``: the FastAPI app of one hub, whose ``/ws`` WebSockets skip the framework.

A WebSocket handled through FastAPI keeps Starlette's and FastAPI's middleware,
routing and three ``AsyncExitStack``s suspended for the connection's whole life:
about 12 KB per idle connection, a third of what fanout spent
(``bench/idle_memory.py``). ``HubApp`` hands ``/ws`` and ``/ws/{room}`` straight to
the endpoint instead, and everything else (HTTP routes, the lifespan, other paths) to
FastAPI as usual. A hub with an ``authenticate=`` hook keeps FastAPI's path: the hook
is a FastAPI dependency. Middleware added to ``hub.app`` does not see ``/ws``;
``hub.router`` included in your own app goes through your app's stack as any route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

DirectRoute = Callable[[WebSocket, str], Awaitable[None]]


class HubApp(FastAPI):
    def __init__(self, *args: Any, direct_ws: DirectRoute | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_ws = direct_ws

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = self._direct_ws
        if direct is not None and scope["type"] == "websocket":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            room = path[4:]
            if path == "/ws" or (path.startswith("/ws/") and room and "/" not in room):
                scope["app"] = self
                await direct(WebSocket(scope, receive, send), room or "lobby")
                return
        await super().__call__(scope, receive, send)
