"""``fanout serve``: flags generated from ``Settings``; parse and delegate, no logic here."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from fanout.cli.settings_flags import add_settings_flags
from fanout.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def _worker_count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes >= 1, got {raw!r}")
    return count


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the hub (in-memory broker by default) with the chat page at /",
        description="Run the hub under uvicorn. WebSocket at /ws and /ws/{room}, chat page"
        " at /, health at /healthz, Prometheus metrics at /metrics. With --workers N,"
        " N processes share the port (the kernel spreads connections among them) and"
        " act as one hub through --broker redis://...; SIGTERM stops them all gracefully.",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        metavar="LEVEL",
        choices=["critical", "error", "warning", "info", "debug"],
        help="critical, error, warning, info or debug (default: info)",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="INT",
        help="worker processes listening on the same port (default: 1, this process); more"
        " than 1 needs --broker redis://HOST:PORT/DB, since with the in-memory broker each"
        " worker would be a separate hub",
    )
    add_settings_flags(serve, "settings", "each also read from FANOUT_<NAME> in the environment")
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
