"""``fanout report RUN.json [RUN2.json ...] -o report.html``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="turn results JSON files into one self-contained HTML page and a terminal table",
        description="Read one or more results files written by `fanout bench` (runs or"
        " sweeps) and write one self-contained HTML page with the plots and the diagnosis"
        " (latency percentiles, deliveries/s, server RSS and socket queues over time; a"
        " loss heatmap for sweeps; side-by-side bars for several runs). The same summary is"
        " printed as tables.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("report.html"),
        help="HTML file to write (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console

        from fanout.lab.report import ReportError, write_report
    except ImportError as exc:
        print(
            f"fanout report: the lab needs its extras ({exc.name} is missing):"
            " pip install 'fanout[lab]'",
            file=sys.stderr,
        )
        return 2
    try:
        write_report(args.results, args.out, Console())
    except ReportError as exc:
        print(f"fanout report: {exc}", file=sys.stderr)
        return 2
    return 0
