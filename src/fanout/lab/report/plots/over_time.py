"""Plots of one run over time: latency, throughput, server memory, socket queues, CPU.

Each returns the plot as inline SVG, or ``None`` when the run holds nothing to draw (no
timeline, no server samples, ...): the caller says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fanout.lab import fmt
from fanout.lab.document import BUFFER_GAUGES, JSONObject, counts, finite, mapping, number
from fanout.lab.fmt import KIB, MIB
from fanout.lab.report.plots.svg import label, plain_numbers, render

_KIND_ORDER = ("stable", "slow", "sender", "churn")
_KIND_COLOURS = {
    "stable": "#4c78a8",
    "slow": "#e45756",
    "sender": "#72b7b2",
    "churn": "#b279a2",
}


def _times(rows: Sequence[JSONObject]) -> list[JSONObject]:
    return sorted(
        (r for r in rows if number(r, "t") is not None), key=lambda r: number(r, "t") or 0.0
    )


def _column(rows: Sequence[JSONObject], key: str, scale: float = 1.0) -> list[float]:
    """``row[key] * scale`` per row; NaN (a gap in the line) where it is missing."""
    return [math.nan if (v := number(r, key)) is None else v * scale for r in rows]


def _nan_unless_number(value: object) -> float:
    found = finite(value)
    return math.nan if found is None else found


def _has_data(*columns: Sequence[float]) -> bool:
    return any(not math.isnan(v) for column in columns for v in column)


def _time_axis(ax: Axes, title: str, ylabel: str, log: bool = False) -> None:
    ax.set_title(title, loc="left")
    ax.set_xlabel("time since sending started (s)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(left=0)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
        plain_numbers(ax)


def _positive(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v) and v > 0]


#: The latency axis is scaled to the data. The p99 SLO line is drawn at its height when
#: holding it stretches the axis no more than this much above the highest latency (a
#: log axis: ``SLO_STRETCH_LOG``); further up it would flatten the data into the floor,
#: so the plot names it at its top edge instead.
SLO_STRETCH = 1.5
SLO_STRETCH_LOG = 10.0
#: Latencies spanning more than this ratio are drawn on a log axis.
LOG_RATIO = 50.0
_HEADROOM = 1.15


@dataclass(frozen=True)
class LatencyScale:
    """How the latency plot's y axis is laid out."""

    log: bool
    bottom: float
    top: float
    slo_drawn: bool  # the SLO line is within the axis (else named at its top edge)


def latency_scale(values: Sequence[float], slo_ms: float | None) -> LatencyScale | None:
    """The y axis for these latencies (ms, NaN for none): fitted to the data, stretched
    to hold the SLO line only when that does not flatten the data; None without data."""
    known = [v for v in values if not math.isnan(v)]
    if not known:
        return None
    positive = _positive(known)
    highest = max(known)
    log = bool(positive) and max(positive) / min(positive) > LOG_RATIO
    slo = slo_ms if slo_ms is not None and slo_ms > 0 else None
    if log:
        slo_drawn = slo is not None and slo <= highest * SLO_STRETCH_LOG
        top = max(highest, slo if slo_drawn and slo is not None else 0.0) * 1.5
        return LatencyScale(True, min(positive) / 1.5, top, slo_drawn)
    slo_drawn = slo is not None and slo <= max(highest, 0.0) * SLO_STRETCH
    top = max(highest, slo if slo_drawn and slo is not None else 0.0) * _HEADROOM
    return LatencyScale(False, 0.0, top if top > 0 else 1.0, slo_drawn)


def latency_over_time(timeline: Sequence[JSONObject], slo_ms: float | None = None) -> str | None:
    """p50, p99 and max latency of each progress tick, on an axis fitted to them, with the
    p99 SLO as a line (or named at the top edge when it is far above the data)."""
    rows = _times(timeline)
    t = _column(rows, "t")
    series = [
        ("p50", _column(rows, "p50_ms"), "#4c78a8"),
        ("p99", _column(rows, "p99_ms"), "#f58518"),
        ("max", _column(rows, "max_ms"), "#e45756"),
    ]
    scale = latency_scale([v for _, values, _ in series for v in values], slo_ms)
    if scale is None:
        return None

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for name, values, colour in series:
            ax.plot(t, values, label=name, color=colour, linewidth=1.4, marker=".", markersize=3)
        slo = f"p99 SLO {fmt.ms(slo_ms)}"
        if slo_ms is not None and scale.slo_drawn:
            ax.axhline(slo_ms, color="#b00020", linestyle="--", linewidth=1, label=slo)
        title = "Latency per tick (send to receive)" + (", log scale" if scale.log else "")
        _time_axis(ax, title, "latency (ms)", log=scale.log)
        ax.set_ylim(scale.bottom, scale.top)
        if slo_ms is not None and not scale.slo_drawn:
            ax.annotate(
                f"{slo}: above this scale \u2191",
                xy=(1.0, 1.01),
                xycoords="axes fraction",
                ha="right",
                va="bottom",
                color="#b00020",
                fontsize=8,
            )
        ax.legend(loc="upper left")

    return render(draw)


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
            plain_numbers(right)
            handles.append(s_line)
        ax.legend(handles=handles, loc="lower right")

    return render(draw)


def _buffer_gauges(gauges: Sequence[JSONObject]) -> tuple[list[float], list[float], list[str]]:
    """(t, MiB) of the server's own buffer gauges (summed), and their names."""
    t: list[float] = []
    held: list[float] = []
    names: set[str] = set()
    for row in _times(gauges):
        values = mapping(row, "values")
        found = {n: v for n in BUFFER_GAUGES if (v := number(values, n)) is not None}
        if found:
            t.append(number(row, "t") or 0.0)
            held.append(sum(found.values()) / MIB)
            names.update(found)
    return t, held, sorted(names)


def server_memory_over_time(
    samples: Sequence[JSONObject], gauges: Sequence[JSONObject] = ()
) -> str | None:
    """The server's resident memory (MiB) over the run, with what its own buffer gauges
    (fanout's ``fanout_outbox_bytes``) say it held, when it publishes them."""
    rows = _times(samples)
    t = _column(rows, "t")
    rss = _column(rows, "rss_bytes", 1 / MIB)
    if not _has_data(rss):
        return None
    known = [v for v in rss if not math.isnan(v)]
    gauge_t, held, names = _buffer_gauges(gauges)

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        ax.plot(t, rss, color="#9d755d", linewidth=1.4, label="RSS")
        ax.fill_between(t, rss, color="#9d755d", alpha=0.15)
        if held:
            ax.plot(
                gauge_t,
                held,
                color="#4c78a8",
                linestyle="--",
                linewidth=1.2,
                marker=".",
                markersize=3,
                label=label(f"its buffers ({', '.join(names)})"),
            )
            ax.legend(loc="upper left")
        growth = known[-1] - known[0]
        _time_axis(
            ax,
            f"Server RSS: {known[0]:.0f} MiB at start, peak {max(known):.0f} MiB,"
            f" {growth:+.0f} MiB by the end",
            "RSS (MiB)",
        )

    return render(draw)


def _bytes_unit(peak_bytes: float) -> tuple[float, str]:
    for divisor, unit in ((MIB, "MiB"), (KIB, "KiB")):
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

    return render(draw)


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

    return render(draw)
