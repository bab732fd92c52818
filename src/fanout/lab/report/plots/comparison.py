"""Several runs side by side: one bar chart per measure, invalid runs hatched."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fanout.lab import fmt
from fanout.lab.document import RunDoc, counts, number
from fanout.lab.report.derive import server_cpu_per_delivery_us
from fanout.lab.report.plots.svg import label, plain_numbers, render


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
    plain_numbers(ax)


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

    return render(draw, (11.0, 6.4), fit=True)
