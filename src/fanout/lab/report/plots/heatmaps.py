"""Heatmaps of a sweep: lost fraction and p99 latency over message size x rate, one
pair per (receivers, slow share) the sweep ran, broken steps outlined in red."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from fanout.lab import fmt
from fanout.lab.document import SweepDoc, SweepStep, number
from fanout.lab.report.derive import lost_fraction
from fanout.lab.report.plots.svg import label, render

_NOT_RUN = "#dddddd"


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

    return render(draw, (width, height), fit=True)


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
