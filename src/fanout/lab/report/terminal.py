"""The report in the terminal: rich tables of verdicts, totals, latency, breaking points.

Every string from a results file is wrapped in :class:`rich.text.Text`, so text such as
``[bold]`` in a server's exception message is shown as written, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from fanout.lab import fmt
from fanout.lab.document import (
    Cause,
    JSONObject,
    RunDoc,
    Severity,
    SweepDoc,
    Verdict,
    counts,
    mapping,
    number,
    strings,
    text,
)
from fanout.lab.report.derive import lost_fraction, lost_text, server_cpu_per_delivery_us

_STYLES: dict[str, str] = {
    Severity.BREAK: "bold red",
    Severity.WARN: "yellow",
    Severity.INFO: "cyan",
}
_OK_STYLE = "green"


def _style(verdict: Verdict) -> str:
    if verdict.cause == Cause.OK:
        return _OK_STYLE
    return _STYLES.get(verdict.severity, _STYLES[Severity.INFO])


def _evidence(evidence: JSONObject) -> str:
    return fmt.evidence_line(evidence)


def verdicts_table(verdicts: Sequence[Verdict]) -> RenderableType:
    """Severity, cause, summary and evidence of each verdict."""
    if not verdicts:
        return Text("no verdicts recorded", style="dim")
    table = Table(title="Verdicts", title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    table.add_column("severity")
    table.add_column("cause")
    table.add_column("summary", ratio=2)
    table.add_column("evidence", ratio=1, style="dim")
    for v in verdicts:
        style = _style(v)
        table.add_row(
            Text(v.severity, style=style),
            Text(v.cause, style=style),
            Text(v.summary),
            Text(_evidence(v.evidence)),
        )
    return table


def _lost(totals: JSONObject) -> Text:
    return Text(lost_text(totals), style="bold red" if number(totals, "lost") else "")


def _lost_short(totals: JSONObject) -> Text:
    lost = number(totals, "lost")
    fraction = lost_fraction(totals)
    shown = fmt.count(lost) + ("" if fraction is None else f" ({fmt.percent(fraction)})")
    return Text(shown, style="bold red" if lost else "")


def totals_table(totals: JSONObject, mode: str = "") -> Table:
    """The run's counters, one per row."""
    table = Table(title="Totals", title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("counter")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Text]] = [("sent", Text(fmt.count(number(totals, "sent"))))]
    if mode == "v1" or number(totals, "acked"):
        rows.append(("acked", Text(fmt.count(number(totals, "acked")))))
    for label, key in (
        ("send errors", "send_errors"),
        ("expected", "expected"),
        ("delivered", "delivered"),
    ):
        rows.append((label, Text(fmt.count(number(totals, key)))))
    rows.append(("lost (holes / stuck)", _lost(totals)))
    for label, key in (
        ("gap announced", "gap_announced"),
        ("duplicated", "duplicated"),
        ("out of order", "out_of_order"),
        ("connect failures", "connect_failures"),
    ):
        rows.append((label, Text(fmt.count(number(totals, key)))))
    rows += [
        ("close codes", Text(fmt.code_counts(counts(totals, "close_codes")))),
        ("connect errors", Text(fmt.code_counts(counts(totals, "connect_errors")))),
        ("deliveries/s", Text(fmt.decimal(number(totals, "deliveries_per_s")))),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table


def latency_table(latency: JSONObject, slo_ms: float | None = None) -> Table:
    """Count and percentiles of the latency, with the SLO verdict on p99."""
    table = Table(title="Latency (ms)", title_justify="left", box=box.SIMPLE_HEAD)
    keys = [("count", "count"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99")]
    keys += [("p99.9", "p999"), ("max", "max")]
    for label, _ in keys:
        table.add_column(label, justify="right")
    cells = [Text(fmt.count(number(latency, "count")))]
    cells += [Text(fmt.decimal(number(latency, key))) for _, key in keys[1:]]
    p99 = number(latency, "p99")
    if slo_ms is not None and p99 is not None and p99 > slo_ms:
        cells[3].stylize("bold red")
    if slo_ms is not None:
        table.add_column("p99 SLO", justify="right")
        cells.append(Text(fmt.decimal(slo_ms)))
    table.add_row(*cells)
    return table


def _header(name: str, valid: bool, config: JSONObject) -> Text:
    header = Text()
    header.append(name, style="bold")
    header.append("  ")
    header.append("valid" if valid else "INVALID", style="green" if valid else "bold white on red")
    url = text(config, "url")
    if url:
        header.append(f"  {url} ({text(config, 'mode', '?')})", style="dim")
    return header


def _default_name(doc: RunDoc | SweepDoc) -> str:
    """The file's name, or "run"/"sweep" for a document that is not from a file yet."""
    if doc.path.suffix == ".json":
        return doc.path.stem
    return "run" if isinstance(doc, RunDoc) else "sweep"


def render_run_summary(doc: RunDoc, name: str | None = None) -> RenderableType:
    """A run's verdicts, totals and latency; ``fanout bench`` prints it after a run."""
    parts: list[RenderableType] = [_header(name or _default_name(doc), doc.valid, doc.config)]
    if not doc.valid:
        reasons = "; ".join(doc.invalid_reasons) or "no reason recorded"
        parts.append(Text(f"invalid run (it does not measure the server): {reasons}", "red"))
    parts.append(verdicts_table(doc.verdicts))
    parts.append(totals_table(doc.totals, text(doc.config, "mode")))
    parts.append(latency_table(doc.latency, number(doc.config, "slo_p99_ms")))
    cpu_per = server_cpu_per_delivery_us(doc)
    if cpu_per is not None:
        parts.append(Text(f"server CPU per delivery: {fmt.decimal(cpu_per)} µs", style="dim"))
    return Group(*parts)


def breaking_points_table(doc: SweepDoc) -> RenderableType:
    """The first breaking configuration along each axis line of a sweep."""
    points = doc.breaking_points
    if not points:
        return Text("nothing broke within the swept range", style="green")
    table = Table(title="Breaking points", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("axis", "with", "last ok", "first break", "why"):
        table.add_column(column)
    for bp in points:
        axis = text(bp, "axis", "?")
        fixed = fmt.point(mapping(bp, "fixed"))
        table.add_row(
            Text(axis),
            Text(fixed),
            Text(fmt.axis_value(axis, bp.get("last_ok")) if "last_ok" in bp else fmt.MISSING),
            Text(fmt.axis_value(axis, bp.get("first_break")), style="bold red"),
            Text("; ".join(strings(bp, "reasons"))),
        )
    return table


def render_sweep_summary(doc: SweepDoc, name: str | None = None) -> RenderableType:
    """A sweep's step count and breaking points."""
    steps = doc.steps
    broke = sum(s.broke for s in steps)
    header = Text()
    header.append(name or _default_name(doc), style="bold")
    header.append(f"  sweep: {len(steps)} steps, {broke} broke", style="dim")
    return Group(header, breaking_points_table(doc))


def comparison_table(docs: Sequence[RunDoc], names: Sequence[str]) -> Table:
    """Several runs, one row each."""
    table = Table(title="Comparison", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("run", "valid", "verdicts", "deliveries/s", "lost", "p99 ms", "close codes"):
        table.add_column(
            column, justify="right" if column in {"deliveries/s", "p99 ms"} else "left"
        )
    for doc, name in zip(docs, names, strict=True):
        verdicts = Text()
        for i, v in enumerate(doc.verdicts):
            verdicts.append(("" if i == 0 else " ") + v.cause, style=_style(v))
        table.add_row(
            Text(name),
            Text("yes", "green") if doc.valid else Text("INVALID", "bold red"),
            verdicts,
            Text(fmt.decimal(number(doc.totals, "deliveries_per_s"))),
            _lost_short(doc.totals),
            Text(fmt.decimal(number(doc.latency, "p99"))),
            Text(fmt.code_counts(counts(doc.totals, "close_codes"))),
        )
    return table


def print_summary(
    docs: Sequence[RunDoc | SweepDoc], names: Sequence[str], console: Console
) -> None:
    """Print every document's summary, and a comparison when there are several runs."""
    runs = [(d, n) for d, n in zip(docs, names, strict=True) if isinstance(d, RunDoc)]
    for doc, name in zip(docs, names, strict=True):
        if isinstance(doc, RunDoc):
            console.print(render_run_summary(doc, name))
        else:
            console.print(render_sweep_summary(doc, name))
        console.print()
    if len(runs) >= 2:
        console.print(comparison_table([d for d, _ in runs], [n for _, n in runs]))
