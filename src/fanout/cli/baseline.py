"""``fanout baseline``: the article's server, exactly as written, to measure against."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_PORT = 8001


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "baseline",
        help="serve the article's FastAPI broadcast server (or its binary twin) at /ws",
        description="Serve the article's server verbatim (FastAPI + uvicorn with uvicorn's"
        " defaults, one WebSocket route /ws, an awaited broadcast loop) so its setup can be"
        " reproduced and measured: `fanout bench ws://127.0.0.1:8001/ws`. --binary serves"
        " its twin, which broadcasts binary frames (images) too; the article's own loop only"
        " handles text.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--binary",
        action="store_true",
        help="serve the binary-capable twin (text as the article, bytes broadcast as-is)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fanout.lab.baseline_server import serve_baseline

    serve_baseline(args.host, args.port, binary=args.binary, log_level=args.log_level)
    return 0
