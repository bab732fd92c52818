"""The whole page: title, contents, a comparison of the runs, then each document."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from fanout.lab.document import RunDoc, SweepDoc
from fanout.lab.report import plots
from fanout.lab.report.html.comparison import comparison_section
from fanout.lab.report.html.markup import e
from fanout.lab.report.html.run import run_section
from fanout.lab.report.html.style import CSS
from fanout.lab.report.html.sweep import sweep_section


def _contents(docs: Sequence[RunDoc | SweepDoc], names: Sequence[str], compare: bool) -> str:
    items = ['<li><a href="#comparison">Comparison</a></li>'] if compare else []
    for i, (doc, name) in enumerate(zip(docs, names, strict=True), 1):
        if isinstance(doc, RunDoc):
            causes = ", ".join(v.cause for v in doc.verdicts) or "no verdicts"
            what = f"run, {causes}" + ("" if doc.valid else ", INVALID")
        else:
            what = f"sweep, {len(doc.steps)} steps"
        items.append(
            f'<li><a href="#doc-{i}">{e(name)}</a> <span class="muted">{e(what)}</span></li>'
        )
    return f"<nav><ol>{''.join(items)}</ol></nav>"


_SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)  # text in an SVG is escaped: no "</svg>"


def _number_figures(body: str) -> str:
    """Number the page's plots into their ids: the same plot shown twice (two copies
    of one results file) must not give the page two elements with one id."""
    numbers = itertools.count(1)
    return _SVG.sub(lambda m: plots.scope_ids(m[0], f"p{next(numbers)}-"), body)


def render_html(
    docs: Sequence[RunDoc | SweepDoc],
    names: Sequence[str],
    title: str = "fanout lab report",
) -> str:
    """The whole report page: a comparison first when there are several runs, then each
    run (verdicts first) and each sweep (breaking points, heatmaps, steps)."""
    if len(docs) != len(names):
        raise ValueError("one name per document")
    runs = [(d, n) for d, n in zip(docs, names, strict=True) if isinstance(d, RunDoc)]
    compare = len(runs) >= 2
    sections: list[str] = []
    if compare:
        sections.append(comparison_section(runs))
    for i, (doc, name) in enumerate(zip(docs, names, strict=True), 1):
        if isinstance(doc, RunDoc):
            sections.append(run_section(doc, name, f"doc-{i}"))
        else:
            sections.append(sweep_section(doc, name, f"doc-{i}"))
    created = sorted({d.created for d in docs if d.created})
    when = f"{created[0]} to {created[-1]}" if len(created) > 1 else "".join(created)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{e(title)}</h1>",
            f'<p class="muted">{len(docs)} result file{"s" if len(docs) != 1 else ""}'
            f"{' · ' + e(when) if when else ''}</p>",
            _contents(docs, names, compare),
            _number_figures("".join(sections)),
            "</body></html>\n",
        ]
    )
