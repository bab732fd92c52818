"""Several runs compared: one row each, and the runs side by side as bars."""

from __future__ import annotations

from collections.abc import Sequence

from fanout.lab import fmt
from fanout.lab.document import RunDoc, counts, number
from fanout.lab.report import plots
from fanout.lab.report.derive import peak, server_cpu_per_delivery_us
from fanout.lab.report.html.markup import (
    badge,
    e,
    figure,
    lost_cell,
    num_cell,
    table,
    validity_badge,
)


def comparison_section(runs: Sequence[tuple[RunDoc, str]]) -> str:
    headers = [
        "run",
        "valid",
        "verdicts",
        "deliveries/s",
        "delivered / expected",
        "lost",
        "p50",
        "p99",
        "max",
        "server CPU / delivery",
        "peak RSS",
        "close codes",
        "connect failures",
    ]
    rows = []
    for doc, name in runs:
        t, lat = doc.totals, doc.latency
        cpu_per = server_cpu_per_delivery_us(doc)
        rss = peak(doc.server_samples, "rss_bytes")
        rows.append(
            [
                e(name),
                validity_badge(doc.valid),
                " ".join(badge(v) for v in doc.verdicts) or '<span class="muted">none</span>',
                num_cell(e(fmt.decimal(number(t, "deliveries_per_s")))),
                num_cell(
                    e(f"{fmt.count(number(t, 'delivered'))} / {fmt.count(number(t, 'expected'))}")
                ),
                num_cell(lost_cell(t)),
                num_cell(e(fmt.ms(number(lat, "p50")))),
                num_cell(e(fmt.ms(number(lat, "p99")))),
                num_cell(e(fmt.ms(number(lat, "max")))),
                num_cell(e(f"{fmt.decimal(cpu_per)} µs" if cpu_per else fmt.MISSING)),
                num_cell(e(fmt.size(rss) if rss is not None else fmt.MISSING)),
                e(fmt.code_counts(counts(t, "close_codes"))),
                num_cell(e(fmt.count(number(t, "connect_failures")))),
            ]
        )
    svg = plots.compare_runs([d for d, _ in runs], [n for _, n in runs])
    return "".join(
        [
            '<section class="doc comparison" id="comparison">',
            f"<h2>Comparison of {len(runs)} runs</h2>",
            table(headers, rows),
            figure(svg, "The runs side by side (hatched bars: invalid runs)", ""),
            "</section>",
        ]
    )
