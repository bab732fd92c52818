"""The ``fanout`` command: ``serve``, ``publish``, ``bench``, ``report``, ``baseline``, ``token``.

Each subcommand lives in its own module, which adds its parser and handles its
arguments; the lab's modules are imported only when a lab command runs, so the hub
does not need the lab's dependencies.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

from fanout.cli import baseline, bench, publish, report, serve, token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout", description="Real-time WebSocket hub on FastAPI, and its load lab."
    )
    parser.add_argument("--version", action="version", version=f"fanout {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    publish.add_parser(commands)
    bench.add_parser(commands)
    report.add_parser(commands)
    baseline.add_parser(commands)
    token.add_parser(commands)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("fanout")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
