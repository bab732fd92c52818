"""``fanout serve``: flags generated from ``Settings``; parse and delegate, no logic here."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from fanout.flags import add_serve_flags
from fanout.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the hub (in-memory broker by default) with the chat page at /",
        description="Run the hub under uvicorn. WebSocket at /ws and /ws/{room}, chat page"
        " at /, health at /healthz, Prometheus metrics at /metrics. With --workers N,"
        " N processes share the port (the kernel spreads connections among them) and"
        " act as one hub through --broker redis://...; SIGTERM stops them all gracefully.",
    )
    add_serve_flags(serve)
    serve.set_defaults(handler=run)


def app(settings: Settings | None = None) -> FastAPI:
    """The app ``fanout serve`` runs: the hub with the chat page's consumer. Without
    settings (a ``--workers`` process), from the ``FANOUT_*`` environment."""
    from fanout.apps.chat import ChatConsumer
    from fanout.asgi.app import create_app

    return create_app(settings or Settings.from_env(), consumer=ChatConsumer)


# What each ``--workers`` process imports and calls to build its app.
APP_FACTORY = "fanout.cli.serve:app"


def run(args: argparse.Namespace) -> int:
    from fanout.asgi.server import check_workers, serve
    from fanout.asgi.wiring import wire

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    try:
        settings = Settings.from_env(**overrides)
        check_workers(settings, args.workers)
        wire(settings)  # everything the settings describe can be built
    except ValueError as exc:
        print(f"fanout serve: {exc}", file=sys.stderr)
        return 2
    serve(settings, app, APP_FACTORY, log_level=args.log_level, workers=args.workers)
    return 0
