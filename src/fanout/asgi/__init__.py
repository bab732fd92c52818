"""The only package that imports FastAPI/Starlette/uvicorn: the app, routes, pages."""

from fanout.asgi.app import create_app

__all__ = ["create_app"]
