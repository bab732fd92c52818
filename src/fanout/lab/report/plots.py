"""The report's plots, each drawn with matplotlib (Agg) and returned as an SVG string.

Every function returns ``None`` when the document holds nothing to draw (no timeline,
no server samples, ...); the caller says why. Figures are built with
:class:`matplotlib.figure.Figure` directly, never registered with pyplot, so nothing
is left open after a plot is rendered. The SVG has its XML prolog and namespace
declarations stripped so it can be inlined in an HTML page, text is kept as ``<text>``
(small, searchable, escaped by matplotlib), and ids are derived from the content so
the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, PercentFormatter
from matplotlib.typing import RcKeyType

from fanout.lab import fmt
from fanout.lab.document import (
    JSONObject,
    RunDoc,
    SweepDoc,
    SweepStep,
    counts,
    number,
)
from fanout.lab.report.derive import lost_fraction, server_cpu_per_delivery_us

WIDE = (8.0, 3.2)
"""Size in inches of a time-series plot."""

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "fanout-report",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.8,
}
_NO_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_STYLE = re.compile(r"\s*<defs>\s*<style[^>]*>[^<]*</style>\s*</defs>")
_TAG = re.compile(r"<[^<>]+>")  # text content is escaped: a tag is all there is between < >
_ID = re.compile(r'\b(id)="([^"]+)"')
_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
SVG_CSS = "figure svg * { stroke-linejoin: round; stroke-linecap: butt; }"
"""The one rule matplotlib puts in each SVG's ``<style>``, for the page's CSS instead."""

_KIND_ORDER = ("stable", "slow", "sender", "churn")
_KIND_COLOURS = {
    "stable": "#4c78a8",
    "slow": "#e45756",
    "sender": "#72b7b2",
    "churn": "#b279a2",
}
_MiB = 1024.0 * 1024.0
_NOT_RUN = "#dddddd"


def _render(
    draw: Callable[[Figure], None], size: tuple[float, float] = WIDE, fit: bool = False
) -> str:
    """Draw on a new figure and return it as inline SVG.

    A time series has fixed margins (room for a second y axis on the right); ``fit``
    asks matplotlib to lay the figure out (rotated labels, colour bars), which costs
    about as much again as the drawing itself.
    """
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, layout="constrained" if fit else None)
        if not fit:
            fig.subplots_adjust(left=0.1, right=0.9, bottom=0.15, top=0.9)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    svg = _PROLOG.sub("", buf.getvalue(), count=1).strip()
    svg = _STYLE.sub("", svg, count=1)  # its rule is in the page's CSS, scoped to svg
    head, sep, body = svg.partition(">")  # the namespaces are only needed outside HTML
    svg = _NAMESPACES.sub("", head) + sep + body
    digest = hashlib.sha1(svg.encode(), usedforsecurity=False).hexdigest()[:10]
    return scope_ids(svg, f"f{digest}-")


def scope_ids(svg: str, prefix: str) -> str:
    """Prefix the ids of one SVG, and the references to them, so that several SVGs
    inlined in one page do not share ids (each plot's are prefixed with a digest of
    it; a page showing the same plot twice prefixes them again)."""

    def in_tag(tag: re.Match[str]) -> str:
        out = _ID.sub(lambda m: f'{m[1]}="{prefix}{m[2]}"', tag[0])
        out = _HREF.sub(lambda m: f'{m[1]}="#{prefix}{m[2]}"', out)
        return _URL.sub(lambda m: f"url(#{prefix}{m[1]})", out)

    return _TAG.sub(in_tag, svg)


def label(value: str) -> str:
    """User text made safe for a matplotlib label: no mathtext, no hidden ``_`` labels."""
    safe = value.replace("$", r"\$")
    return " " + safe if safe.startswith("_") else safe


def _times(rows: Sequence[JSONObject]) -> list[JSONObject]:
    return sorted(
        (r for r in rows if number(r, "t") is not None), key=lambda r: number(r, "t") or 0.0
    )


def _column(rows: Sequence[JSONObject], key: str, scale: float = 1.0) -> list[float]:
    """``row[key] * scale`` per row; NaN (a gap in the line) where it is missing."""
    return [math.nan if (v := number(r, key)) is None else v * scale for r in rows]


def _nan_unless_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value) if math.isfinite(value) else math.nan


def _has_data(*columns: Sequence[float]) -> bool:
    return any(not math.isnan(v) for column in columns for v in column)


def _plain_numbers(ax: Axes) -> None:
    """Tick labels such as ``900,000`` instead of an offset ``1e6``."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.decimal(v)))


def _time_axis(ax: Axes, title: str, ylabel: str, log: bool = False) -> None:
    ax.set_title(title, loc="left")
    ax.set_xlabel("time since sending started (s)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
        _plain_numbers(ax)


def _positive(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v) and v > 0]


# --- one run ---------------------------------------------------------------------------


def latency_over_time(timeline: Sequence[JSONObject], slo_ms: float | None = None) -> str | None:
    """p50, p99 and max latency of each progress tick, with the p99 SLO as a line."""
    rows = _times(timeline)
    t = _column(rows, "t")
    series = [
        ("p50", _column(rows, "p50_ms"), "#4c78a8"),
        ("p99", _column(rows, "p99_ms"), "#f58518"),
        ("max", _column(rows, "max_ms"), "#e45756"),
    ]
    if not _has_data(*(values for _, values, _ in series)):
        return None

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for name, values, colour in series:
            ax.plot(t, values, label=name, color=colour, linewidth=1.4, marker=".", markersize=3)
        if slo_ms is not None:
            ax.axhline(slo_ms, color="#b00020", linestyle="--", linewidth=1, label="p99 SLO")
        positive = _positive([v for _, values, _ in series for v in values])
        log = bool(positive) and max(positive) / min(positive) > 50
        title = "Latency per tick (send to receive)" + (", log scale" if log else "")
        _time_axis(ax, title, "latency (ms)", log=log)
        ax.legend(loc="upper left")

    return _render(draw)


def deliveries_over_time(timeline: Sequence[JSONObject]) -> str | None:
    """Messages delivered to receivers per second, and messages sent per second."""
    rows = _times(timeline)
    t = _column(rows, "t")
    delivered = _column(rows, "deliveries_per_s")
    sent_total = _column(rows, "sent")
    if not _has_data(delivered):
        return None
    sent_rate = [math.nan] * len(rows)
    for i in range(len(rows)):
        t0, s0 = (0.0, 0.0) if i == 0 else (t[i - 1], sent_total[i - 1])
        if t[i] > t0:
            sent_rate[i] = (sent_total[i] - s0) / (t[i] - t0)

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        (d_line,) = ax.plot(t, delivered, color="#4c78a8", linewidth=1.4, label="delivered/s")
        _time_axis(ax, "Throughput", "deliveries per second")
        handles = [d_line]
        if _has_data(sent_rate):
            right = ax.twinx()
            right.grid(False)
            right.spines["right"].set_visible(True)
            (s_line,) = right.plot(
                t, sent_rate, color="#54a24b", linestyle="--", linewidth=1.2, label="sent/s"
            )
            right.set_ylabel("messages sent per second")
            right.set_ylim(bottom=0)
            _plain_numbers(right)
            handles.append(s_line)
        ax.legend(handles=handles, loc="lower right")

    return _render(draw)


def server_memory_over_time(samples: Sequence[JSONObject]) -> str | None:
    """The server's resident memory (MiB) over the run."""
    rows = _times(samples)
    t = _column(rows, "t")
    rss = _column(rows, "rss_bytes", 1 / _MiB)
    if not _has_data(rss):
        return None
    known = [v for v in rss if not math.isnan(v)]

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        ax.plot(t, rss, color="#9d755d", linewidth=1.4)
        ax.fill_between(t, rss, color="#9d755d", alpha=0.15)
        growth = known[-1] - known[0]
        _time_axis(
            ax,
            f"Server RSS: {known[0]:.0f} MiB at start, peak {max(known):.0f} MiB,"
            f" {growth:+.0f} MiB by the end",
            "RSS (MiB)",
        )

    return _render(draw)


def _bytes_unit(peak_bytes: float) -> tuple[float, str]:
    for divisor, unit in ((_MiB, "MiB"), (1024.0, "KiB")):
        if peak_bytes >= divisor:
            return divisor, unit
    return 1.0, "bytes"


def socket_queues_over_time(samples: Sequence[JSONObject]) -> str | None:
    """Bytes queued in the server's sockets: unsent data by receiver kind (stacked),
    the total, and unread data on the server's side (``recv_q_total``)."""
    rows = _times(samples)
    t = _column(rows, "t")
    send_total = _column(rows, "send_q_total")
    recv_total = _column(rows, "recv_q_total")
    by_kind = [counts(r, "send_q_by_kind") for r in rows]
    seen = {k for b in by_kind for k, v in b.items() if v}  # kinds that ever queued a byte
    kinds = [k for k in _KIND_ORDER if k in seen] + sorted(seen - set(_KIND_ORDER))
    stacks = [[float(b.get(k, 0)) for b in by_kind] for k in kinds]
    if not _has_data(send_total, recv_total) and not any(any(s) for s in stacks):
        return None
    peak = max(
        [v for v in send_total + recv_total if not math.isnan(v)]
        + [sum(col) for col in zip(*stacks, strict=True)]
        + [0.0]
    )
    divisor, unit = _bytes_unit(peak)

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        if kinds:
            ax.stackplot(
                t,
                [[v / divisor for v in s] for s in stacks],
                labels=[f"send-q {label(k)}" for k in kinds],
                colors=[_KIND_COLOURS.get(k, "#bab0ac") for k in kinds],
                alpha=0.55,
            )
        if _has_data(send_total):
            ax.plot(
                t,
                [v / divisor for v in send_total],
                color="black",
                linewidth=1.2,
                label="send-q total",
            )
        if _has_data(recv_total):
            ax.plot(
                t,
                [v / divisor for v in recv_total],
                color="#f58518",
                linestyle="--",
                linewidth=1.2,
                label="recv-q total",
            )
        _time_axis(ax, "Server socket queues (unsent / unread bytes)", f"queued ({unit})")
        ax.legend(loc="upper left")

    return _render(draw)


def cpu_over_time(timeline: Sequence[JSONObject], samples: Sequence[JSONObject]) -> str | None:
    """CPU of the server and of each generator process, in % of one core."""
    rows = _times(timeline)
    t_gen = _column(rows, "t")
    per_row = [r.get("generator_cpu") for r in rows]
    processes = max((len(v) for v in per_row if isinstance(v, list)), default=0)
    generators = [
        [_nan_unless_number(v[p] if isinstance(v, list) and p < len(v) else None) for v in per_row]
        for p in range(processes)
    ]
    srows = _times(samples)
    t_srv = _column(srows, "t")
    server = _column(srows, "cpu_percent")
    if not _has_data(server, *generators):
        return None

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        if _has_data(server):
            ax.plot(t_srv, server, color="#e45756", linewidth=1.6, label="server")
        for p, column in enumerate(generators):
            ax.plot(t_gen, column, linewidth=1.0, linestyle="--", label=f"generator {p}")
        ax.axhline(100, color="grey", linestyle=":", linewidth=1, label="one core")
        _time_axis(ax, "CPU", "CPU (% of one core)")
        ax.legend(loc="upper left", ncols=2)

    return _render(draw)


# --- a sweep ---------------------------------------------------------------------------


def _order(value: object) -> tuple[int, float, str]:
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, fmt.scalar(value))


def _axis_values(doc: SweepDoc, axis: str, steps: Sequence[SweepStep]) -> list[Any]:
    values: list[Any] = []
    for v in [*doc.axes.get(axis, []), *(doc.coordinate(s, axis) for s in steps)]:
        if v not in values:
            values.append(v)
    return sorted(values, key=_order)


def sweep_pairs(doc: SweepDoc) -> list[tuple[Any, Any]]:
    """The (receivers, slow) combinations of a sweep: one heatmap each."""
    pairs: list[tuple[Any, Any]] = []
    for step in doc.steps:
        pair = (doc.coordinate(step, "receivers"), doc.coordinate(step, "slow"))
        if pair not in pairs:
            pairs.append(pair)
    return sorted(pairs, key=lambda p: (_order(p[0]), _order(p[1])))


def pair_title(receivers: Any, slow: Any) -> str:
    return f"{fmt.scalar(receivers)} receivers, {fmt.slow(slow)}"


def _grid(
    doc: SweepDoc, receivers: Any, slow: Any
) -> tuple[list[Any], list[Any], dict[tuple[int, int], SweepStep]]:
    steps = [
        s
        for s in doc.steps
        if doc.coordinate(s, "receivers") == receivers and doc.coordinate(s, "slow") == slow
    ]
    sizes = _axis_values(doc, "size", steps)
    rates = _axis_values(doc, "rate", steps)
    cells: dict[tuple[int, int], SweepStep] = {}
    for step in steps:  # a repeated point: the last run of it wins
        size, rate = doc.coordinate(step, "size"), doc.coordinate(step, "rate")
        cells[(sizes.index(size), rates.index(rate))] = step
    return sizes, rates, cells


def _heatmap(
    doc: SweepDoc,
    receivers: Any,
    slow: Any,
    title: str,
    colour_label: str,
    value: Callable[[SweepStep], float | None],
    annotate: Callable[[SweepStep, float | None], str],
    log: bool,
    as_percent: bool = False,
) -> str | None:
    sizes, rates, cells = _grid(doc, receivers, slow)
    if not cells:
        return None
    values = {key: value(step) for key, step in cells.items()}
    known = [v for v in values.values() if v is not None]
    positive = [v for v in known if v > 0]
    norm: Normalize
    if log and positive and max(positive) / min(positive) > 10:
        norm = LogNorm(vmin=min(positive), vmax=max(positive))
        floor = min(positive)  # a log scale cannot show 0: it is drawn as the smallest
    else:
        norm = Normalize(vmin=0.0, vmax=max([*known, 0.0]) or 1.0)
        floor = 0.0
    cmap = matplotlib.colormaps["YlOrRd"].resampled(64)  # 64 colour-bar steps, not 256
    matrix = [
        [
            math.nan if (v := values.get((i, j))) is None else max(v, floor)
            for j in range(len(rates))
        ]
        for i in range(len(sizes))
    ]
    cells_or_bad = np.ma.masked_invalid(np.array(matrix, dtype=float))
    width = min(11.0, max(5.0, 1.6 + 1.5 * len(rates)))
    height = min(8.0, max(2.6, 1.3 + 0.7 * len(sizes)))

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        ax.grid(False)
        ax.set_facecolor(_NOT_RUN)  # masked cells (not run, no value) let it show through
        # Vector cells (pcolormesh), not an image: imshow would embed a PNG in the SVG.
        image = ax.pcolormesh(
            np.arange(len(rates) + 1) - 0.5,
            np.arange(len(sizes) + 1) - 0.5,
            cells_or_bad,
            cmap=cmap,
            norm=norm,
            edgecolors="white",
            linewidth=1.0,
        )
        ax.set_xticks(range(len(rates)), [fmt.rate(r) for r in rates])
        ax.set_yticks(range(len(sizes)), [fmt.size(s) for s in sizes])
        ax.set_xlabel("rate per sender (messages/s)")
        ax.set_ylabel("message size")
        ax.set_title(
            f"{title}, {label(pair_title(receivers, slow))}\n(red outline: the step broke)",
            loc="left",
        )
        bar = fig.colorbar(image, ax=ax, label=colour_label, shrink=0.9)
        if bar.solids is not None:  # vector, not the PNG matplotlib embeds for a long bar
            bar.solids.set_rasterized(False)
        if as_percent:
            bar.formatter = PercentFormatter(xmax=1.0, decimals=None)
        for i in range(len(sizes)):
            for j in range(len(rates)):
                step = cells.get((i, j))
                if step is None:
                    ax.text(j, i, "not run", ha="center", va="center", color="#666666")
                    continue
                v = matrix[i][j]
                dark = not math.isnan(v) and float(norm(v)) > 0.6
                note = annotate(step, values[(i, j)]) + ("\nBROKE" if step.broke else "")
                ax.text(
                    j,
                    i,
                    label(note),
                    ha="center",
                    va="center",
                    color="white" if dark else "black",
                    fontweight="bold" if step.broke else "normal",
                )
                if step.broke:
                    ax.add_patch(
                        Rectangle(
                            (j - 0.47, i - 0.47),
                            0.94,
                            0.94,
                            fill=False,
                            edgecolor="#b00020",
                            linewidth=3.0,
                        )
                    )

    return _render(draw, (width, height), fit=True)


def loss_heatmap(doc: SweepDoc, receivers: Any, slow: Any) -> str | None:
    """Lost fraction (lost / expected) of every size x rate step at one (receivers, slow);
    cells annotated with the percentage and count, broken steps outlined in red."""

    def annotate(step: SweepStep, v: float | None) -> str:
        lost = number(step.totals, "lost")
        return "n/a" if v is None else f"{fmt.percent(v)}\n({fmt.count(lost)} lost)"

    return _heatmap(
        doc,
        receivers,
        slow,
        "Lost messages",
        "lost fraction (lost / expected)",
        lambda step: lost_fraction(step.totals),
        annotate,
        log=False,
        as_percent=True,
    )


def p99_heatmap(doc: SweepDoc, receivers: Any, slow: Any) -> str | None:
    """p99 latency (ms) of every size x rate step at one (receivers, slow)."""
    return _heatmap(
        doc,
        receivers,
        slow,
        "p99 latency",
        "p99 latency (ms)",
        lambda step: number(step.latency, "p99"),
        lambda step, v: fmt.ms(v) if v is not None else "n/a",
        log=True,
    )


# --- several runs ----------------------------------------------------------------------


def _bars(
    ax: Axes,
    names: Sequence[str],
    values: Sequence[float | None],
    invalid: Sequence[bool],
    title: str,
    ylabel: str,
    colour: str,
) -> None:
    xs = list(range(len(names)))
    heights = [0.0 if v is None else v for v in values]
    bars = ax.bar(xs, heights, color=colour, edgecolor="black", linewidth=0.5)
    for bar, bad in zip(bars, invalid, strict=True):
        if bad:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    for x, v in zip(xs, values, strict=True):
        ax.annotate(
            "n/a" if v is None else fmt.decimal(v),
            (x, 0.0 if v is None else v),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(xs, [label(n) for n in names], rotation=20, ha="right")
    ax.set_title(title, loc="left")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max([*heights, 0.0]) * 1.15 or 1.0)
    _plain_numbers(ax)


def compare_runs(docs: Sequence[RunDoc], names: Sequence[str]) -> str:
    """Side-by-side bars of several runs: deliveries/s, p99, lost, server CPU per
    delivery, close codes and connect failures. Invalid runs are hatched."""
    invalid = [not d.valid for d in docs]
    shown = [n + (" (invalid)" if bad else "") for n, bad in zip(names, invalid, strict=True)]
    per_close = [counts(d.totals, "close_codes") for d in docs]
    codes = sorted({code for c in per_close for code in c})

    def draw(fig: Figure) -> None:
        axes = fig.subplots(2, 3).flatten()
        _bars(
            axes[0],
            shown,
            [number(d.totals, "deliveries_per_s") for d in docs],
            invalid,
            "Deliveries per second",
            "deliveries/s",
            "#4c78a8",
        )
        _bars(
            axes[1],
            shown,
            [number(d.latency, "p99") for d in docs],
            invalid,
            "p99 latency",
            "ms",
            "#f58518",
        )
        _bars(
            axes[2],
            shown,
            [number(d.totals, "lost") for d in docs],
            invalid,
            "Lost messages",
            "messages",
            "#e45756",
        )
        _bars(
            axes[3],
            shown,
            [server_cpu_per_delivery_us(d) for d in docs],
            invalid,
            "Server CPU per delivery (n/a: not observed)",
            "CPU µs / delivery",
            "#9d755d",
        )
        ax = axes[4]
        if codes:
            width = 0.8 / len(codes)
            for k, code in enumerate(codes):
                xs = [i - 0.4 + width * (k + 0.5) for i in range(len(docs))]
                ax.bar(xs, [c.get(code, 0) for c in per_close], width, label=label(code))
            ax.legend(title="close code", loc="upper right")
        else:
            ax.text(
                0.5,
                0.5,
                "no close codes",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#666666",
            )
        ax.set_xticks(range(len(docs)), [label(n) for n in shown], rotation=20, ha="right")
        ax.set_title("Close codes sent by the server", loc="left")
        ax.set_ylabel("connections")
        _bars(
            axes[5],
            shown,
            [number(d.totals, "connect_failures") for d in docs],
            invalid,
            "Connections that never opened",
            "connections",
            "#b279a2",
        )

    return _render(draw, (11.0, 6.4), fit=True)
