"""The only package that imports FastAPI/Starlette/uvicorn: the app, routes, pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fanout.asgi.app import create_app as create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: an emitter (fanout.asgi.emitters) needs no web framework.
    if name == "create_app":
        from fanout.asgi.app import create_app

        return create_app
    raise AttributeError(f"module 'fanout.asgi' has no attribute {name!r}")
