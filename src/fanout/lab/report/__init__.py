"""``fanout report``: results files in, one self-contained HTML page and a terminal summary out.

* :mod:`.load` reads and checks a results file (``fanout.lab.run/1`` or
  ``fanout.lab.sweep/1``, see ``docs/lab-results.md``) into the views of
  :mod:`fanout.lab.document`;
* :mod:`.derive` computes what the document does not hold (lost share, CPU per delivery);
  :mod:`.names` labels the documents; numbers are written by :mod:`fanout.lab.fmt`;
* :mod:`.plots` draws the plots as inline SVG (matplotlib, Agg);
* :mod:`.html` assembles the page; :mod:`.terminal` prints the rich tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from fanout.lab.document import RUN_SCHEMA, SWEEP_SCHEMA, RunDoc, SweepDoc, SweepStep, Verdict
from fanout.lab.report.html import render_html
from fanout.lab.report.load import ReportError, load_results
from fanout.lab.report.names import derive_names
from fanout.lab.report.plots import (
    compare_runs,
    cpu_over_time,
    deliveries_over_time,
    latency_over_time,
    loss_heatmap,
    p99_heatmap,
    server_memory_over_time,
    socket_queues_over_time,
    sweep_pairs,
)
from fanout.lab.report.terminal import (
    print_summary,
    render_run_summary,
    render_sweep_summary,
)

__all__ = [
    "RUN_SCHEMA",
    "SWEEP_SCHEMA",
    "ReportError",
    "RunDoc",
    "SweepDoc",
    "SweepStep",
    "Verdict",
    "compare_runs",
    "cpu_over_time",
    "deliveries_over_time",
    "derive_names",
    "latency_over_time",
    "load_results",
    "loss_heatmap",
    "p99_heatmap",
    "print_summary",
    "render_html",
    "render_run_summary",
    "render_sweep_summary",
    "server_memory_over_time",
    "socket_queues_over_time",
    "sweep_pairs",
    "write_report",
]


def write_report(paths: Sequence[Path], out: Path, console: Console) -> None:
    """Read every results file, write the HTML page to ``out`` and print the summary.

    Raises :class:`ReportError` (naming the file) when a file is not a results
    document or ``out`` cannot be written; nothing is written then.
    """
    if not paths:
        raise ReportError("no results files given")
    docs = [load_results(p) for p in paths]
    names = derive_names(docs)
    page = render_html(docs, names)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{out}: cannot write the report ({exc.strerror or exc})") from exc
    print_summary(docs, names, console)
    console.print(Text.assemble("report written to ", (str(out), "bold")))
