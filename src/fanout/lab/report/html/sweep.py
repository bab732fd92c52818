"""One sweep's section: breaking points, heatmaps, every step in the order it ran."""

from __future__ import annotations

from fanout.lab import fmt
from fanout.lab.document import SweepDoc, counts, mapping, number, strings, text
from fanout.lab.report import plots
from fanout.lab.report.html.markup import badge, e, figure, lost_cell, num_cell, table
from fanout.lab.report.html.provenance import config_line, config_table, provenance


def _breaking_points(doc: SweepDoc) -> str:
    points = doc.breaking_points
    if not points:
        if any(s.broke for s in doc.steps):
            return '<p class="muted">Steps broke, but no breaking point was recorded.</p>'
        return '<p class="muted">Nothing broke within the swept range.</p>'
    rows = []
    for bp in points:
        axis = text(bp, "axis", "?")
        rows.append(
            [
                e(axis),
                e(fmt.point(mapping(bp, "fixed"))),
                num_cell(e(fmt.axis_value(axis, bp.get("last_ok")) if "last_ok" in bp else "–")),
                num_cell(e(fmt.axis_value(axis, bp.get("first_break")))),
                e("; ".join(strings(bp, "reasons"))),
            ]
        )
    return table(["axis", "with", "last ok", "first break", "why it broke"], rows)


def _steps(doc: SweepDoc) -> str:
    steps = doc.steps
    if not steps:
        return '<p class="missing">The sweep ran no steps.</p>'
    axes = list(doc.axes) or sorted({k for s in steps for k in s.point})
    rows = []
    for i, step in enumerate(steps, 1):
        t = step.totals
        result = (
            '<span class="badge sev-break">broke</span>'
            if step.broke
            else '<span class="badge sev-ok">ok</span>'
        )
        rows.append(
            [
                num_cell(str(i)),
                *(num_cell(e(fmt.axis_value(a, doc.coordinate(step, a)))) for a in axes),
                result + ("" if step.valid else ' <span class="badge invalid">INVALID</span>'),
                e("; ".join(step.reasons + step.invalid_reasons)),
                num_cell(e(fmt.count(number(t, "delivered")))),
                num_cell(e(fmt.count(number(t, "expected")))),
                num_cell(lost_cell(t)),
                num_cell(e(fmt.ms(number(step.latency, "p99")))),
                e(fmt.code_counts(counts(t, "close_codes"))),
                " ".join(badge(v) for v in step.verdicts),
            ]
        )
    headers = ["#", *axes, "result", "reasons", "delivered", "expected", "lost", "p99"]
    return table([*headers, "close codes", "verdicts"], rows)


def _heatmaps(doc: SweepDoc) -> str:
    pairs = plots.sweep_pairs(doc)
    if not pairs:
        return '<p class="missing">No heatmaps: the sweep ran no steps.</p>'
    out = []
    for receivers, slow in pairs:
        title = plots.pair_title(receivers, slow)
        out.append(
            figure(
                plots.loss_heatmap(doc, receivers, slow),
                f"Lost fraction by message size and rate, {title}",
                "no step at this point",
            )
        )
        out.append(
            figure(
                plots.p99_heatmap(doc, receivers, slow),
                f"p99 latency by message size and rate, {title}",
                "no step at this point",
            )
        )
    return "".join(out)


def sweep_section(doc: SweepDoc, name: str, anchor: str) -> str:
    axes = "; ".join(
        f"{k}: {', '.join(fmt.axis_value(k, v) for v in values)}" for k, values in doc.axes.items()
    )
    steps = doc.steps
    broke = sum(s.broke for s in steps)
    return "".join(
        [
            f'<section class="doc sweep" id="{anchor}">',
            f'<h2>{e(name)} <span class="muted">(sweep)</span></h2>',
            f'<p class="target">{e(config_line(doc.base_config))}<br>'
            f"axes {e(axes or 'none recorded')}<br>"
            f"{len(steps)} steps, {broke} broke · file <code>{e(str(doc.path))}</code></p>",
            "<h3>Breaking points</h3>",
            _breaking_points(doc),
            "<h3>Heatmaps</h3>",
            _heatmaps(doc),
            "<h3>Steps, in the order they ran</h3>",
            _steps(doc),
            "<h3>Base configuration</h3>",
            config_table(doc.base_config),
            provenance(doc.raw),
            "</section>",
        ]
    )
