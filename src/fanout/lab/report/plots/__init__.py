"""The report's plots, each drawn with matplotlib (Agg) and returned as an SVG string.

* :mod:`.svg`: the figure style, rendering to inline SVG, ids, safe labels;
* :mod:`.over_time`: one run's time series (latency, throughput, memory, queues, CPU);
* :mod:`.heatmaps`: a sweep's loss and p99 over size x rate;
* :mod:`.comparison`: several runs side by side.

Every function returns ``None`` when the document holds nothing to draw (no timeline,
no server samples, ...); the caller says why.
"""

from __future__ import annotations

from fanout.lab.report.plots.comparison import compare_runs
from fanout.lab.report.plots.heatmaps import loss_heatmap, p99_heatmap, pair_title, sweep_pairs
from fanout.lab.report.plots.over_time import (
    cpu_over_time,
    deliveries_over_time,
    latency_over_time,
    server_memory_over_time,
    socket_queues_over_time,
)
from fanout.lab.report.plots.svg import SVG_CSS, label, scope_ids

__all__ = [
    "SVG_CSS",
    "compare_runs",
    "cpu_over_time",
    "deliveries_over_time",
    "label",
    "latency_over_time",
    "loss_heatmap",
    "p99_heatmap",
    "pair_title",
    "scope_ids",
    "server_memory_over_time",
    "socket_queues_over_time",
    "sweep_pairs",
]
