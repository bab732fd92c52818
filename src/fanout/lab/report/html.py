"""The report as one self-contained HTML page: inline CSS, inline SVG, no URL fetched.

Every string that comes from a results file goes through :func:`html.escape` (the file
can hold hostile text: a server's exception message, its log lines, a URL). Only the
markup built here and the SVG rendered by matplotlib (which escapes its text) are
inserted as they are.
"""

from __future__ import annotations

import html
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from fanout.lab import fmt
from fanout.lab.document import (
    JSONObject,
    RunDoc,
    SweepDoc,
    Verdict,
    counts,
    integer,
    mapping,
    number,
    objects,
    strings,
    text,
)
from fanout.lab.report import plots
from fanout.lab.report.derive import lost_text, peak, server_cpu_per_delivery_us

_CSS = """
:root { --break: #b00020; --warn: #a15c00; --info: #1f5fa8; --ok: #1b7f3b; --muted: #666; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.5rem; color: #222; background: #fff; }
h1 { margin: 0 0 .25rem; font-size: 1.7rem; }
h2 { margin: 2.5rem 0 .5rem; padding-bottom: .25rem; border-bottom: 2px solid #ddd; }
h3 { margin: 1.5rem 0 .5rem; font-size: 1.05rem; }
section.doc { margin-bottom: 3rem; }
.muted, .target { color: var(--muted); }
.target code { color: #222; }
table { border-collapse: collapse; margin: .25rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kv th { width: 14rem; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: 12px;
         font-weight: 600; color: #fff; vertical-align: middle; }
.sev-break { background: var(--break); } .sev-warn { background: var(--warn); }
.sev-info { background: var(--info); } .sev-ok { background: var(--ok); }
.badge.invalid { background: var(--break); } .badge.valid { background: var(--ok); }
.verdict { border-left: 5px solid var(--info); padding: .4rem .8rem; margin: .6rem 0;
           background: #fafafa; }
.verdict.break { border-color: var(--break); } .verdict.warn { border-color: var(--warn); }
.verdict.ok { border-color: var(--ok); }
.verdict .cause { font-family: ui-monospace, monospace; font-weight: 600; }
.verdict table { margin: .4rem 0 .2rem; }
.invalid-banner { border: 2px solid var(--break); background: #fdecee; padding: .6rem 1rem;
                  margin: .75rem 0; }
.invalid-banner strong { color: var(--break); }
.lost { color: var(--break); font-weight: 600; }
figure { margin: .5rem 0 1.25rem; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
.missing { color: var(--muted); font-style: italic; }
pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; word-break: break-word; }
details { margin: .3rem 0; }
summary { cursor: pointer; }
nav ol { padding-left: 1.25rem; }
"""
_CSS += plots.SVG_CSS

_SEVERITIES = ("break", "warn", "info")


def e(value: object) -> str:
    """Escape any value (a string from the JSON, a number) for HTML text or attributes."""
    return html.escape(value if isinstance(value, str) else fmt.scalar(value), quote=True)


def _num(value: str) -> str:
    return f'<td class="num">{value}</td>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; ``headers`` are plain text, row cells are HTML (``<td>`` or fragments)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table: plain-text names, HTML values."""
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _severity(verdict: Verdict) -> str:
    if verdict.cause == "ok":
        return "ok"
    return verdict.severity if verdict.severity in _SEVERITIES else "info"


def _badge(verdict: Verdict) -> str:
    sev = _severity(verdict)
    return f'<span class="badge sev-{sev}">{e(verdict.cause)}</span>'


def _validity_badge(valid: bool) -> str:
    if valid:
        return '<span class="badge valid">valid</span>'
    return '<span class="badge invalid">INVALID</span>'


def _figure(svg: str | None, caption: str, missing: str) -> str:
    if svg is None:
        return f'<p class="missing">{e(caption)}: not drawn: {e(missing)}.</p>'
    return f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>"


# --- verdicts, totals, latency ---------------------------------------------------------


def _evidence(evidence: JSONObject) -> str:
    if not evidence:
        return ""
    rows = [(str(k), e(v)) for k, v in evidence.items()]
    return _table(["evidence", "value"], ([e(k), _num(v)] for k, v in rows))


def _verdicts(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return '<p class="muted">No verdicts recorded for this run.</p>'
    order = {"break": 0, "warn": 1, "info": 2, "ok": 3}
    parts = []
    for v in sorted(verdicts, key=lambda v: order[_severity(v)]):
        sev = _severity(v)
        parts.append(
            f'<div class="verdict {sev}">'
            f'<span class="badge sev-{sev}">{e(v.severity)}</span> '
            f'<span class="cause">{e(v.cause)}</span>: {e(v.summary)}'
            f"{_evidence(v.evidence)}</div>"
        )
    return "".join(parts)


def _lost_cell(totals: JSONObject) -> str:
    cls = ' class="lost"' if number(totals, "lost") else ""
    return f"<span{cls}>{e(lost_text(totals))}</span>"


def _totals(totals: JSONObject, mode: str) -> str:
    if not totals:
        return '<p class="missing">No totals in this file.</p>'
    rows: list[tuple[str, str]] = [
        ("sent", e(fmt.count(number(totals, "sent")))),
    ]
    if mode == "v1" or number(totals, "acked"):
        rows.append(("acked", e(fmt.count(number(totals, "acked")))))
    rows += [
        ("send errors", e(fmt.count(number(totals, "send_errors")))),
        ("expected", e(fmt.count(number(totals, "expected")))),
        ("delivered", e(fmt.count(number(totals, "delivered")))),
        ("lost (holes / stuck)", _lost_cell(totals)),
        ("gap announced", e(fmt.count(number(totals, "gap_announced")))),
        ("duplicated", e(fmt.count(number(totals, "duplicated")))),
        ("out of order", e(fmt.count(number(totals, "out_of_order")))),
        ("deliveries/s", e(fmt.decimal(number(totals, "deliveries_per_s")))),
        ("close codes", e(fmt.code_counts(counts(totals, "close_codes")))),
        ("connect failures", e(fmt.count(number(totals, "connect_failures")))),
        ("connect errors", e(fmt.code_counts(counts(totals, "connect_errors")))),
        ("churn connects", e(fmt.count(number(totals, "churn_connects")))),
    ]
    return _kv(rows)


_LATENCY_KEYS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))


def _latency(latency: JSONObject, slo_ms: float | None) -> str:
    if not latency:
        return '<p class="missing">No latency measured (nothing was delivered).</p>'
    headers = ["count", *(name for name, _ in _LATENCY_KEYS)]
    row = [_num(e(fmt.count(number(latency, "count"))))]
    row += [_num(e(fmt.ms(number(latency, key)))) for _, key in _LATENCY_KEYS]
    if slo_ms is not None:
        headers.append("p99 SLO")
        p99 = number(latency, "p99")
        over = p99 is not None and p99 > slo_ms
        row.append(_num(e(f"{fmt.ms(slo_ms)} ({'missed' if over else 'met'})")))
    return _table(headers, [row])


def _receivers_by_kind(receivers: Sequence[JSONObject]) -> str:
    if not receivers:
        return ""
    kinds: dict[str, list[JSONObject]] = {}
    for r in receivers:
        kinds.setdefault(text(r, "kind", "?"), []).append(r)
    rows = []
    for kind, group in kinds.items():

        def total(key: str, group: list[JSONObject] = group) -> str:
            return e(fmt.count(sum(number(r, key) or 0.0 for r in group)))

        codes = Counter(text(r, "close_code") for r in group if r.get("close_code") is not None)
        errors = Counter(text(r, "connect_error") for r in group if r.get("connect_error"))
        rows.append(
            [
                e(kind),
                _num(e(fmt.count(len(group)))),
                _num(total("expected")),
                _num(total("delivered")),
                _num(total("lost_holes")),
                _num(total("lost_stuck")),
                e(fmt.code_counts(dict(codes))),
                e(fmt.code_counts(dict(errors))),
            ]
        )
    headers = ["kind", "connections", "expected", "delivered", "lost holes", "lost stuck"]
    return "<h3>Receivers by kind</h3>" + _table([*headers, "close codes", "connect errors"], rows)


# --- one run ---------------------------------------------------------------------------


def _config_line(config: JSONObject) -> str:
    if not config:
        return "no configuration recorded"
    parts = [
        f"{text(config, 'url', '?')} ({text(config, 'mode', '?')})",
        f"{fmt.scalar(config.get('receivers'))} receivers",
        f"{fmt.scalar(config.get('senders'))} senders",
        f"{fmt.scalar(config.get('rooms'))} rooms",
        f"{fmt.size(config.get('size'))} {text(config, 'kind')}".strip(),
        f"rate {fmt.rate(config.get('rate'))}",
        f"{fmt.scalar(config.get('duration_s'))} s",
    ]
    if config.get("slow"):
        parts.append(f"{fmt.scalar(config.get('slow'))} slow after {config.get('slow_after_s')} s")
    if config.get("churn"):
        parts.append(f"{fmt.scalar(config.get('churn'))} churning")
    return " · ".join(parts)


def _config_table(config: JSONObject) -> str:
    if not config:
        return '<p class="missing">No configuration recorded.</p>'
    return _kv((str(k), e(v)) for k, v in config.items())


def _invalid_banner(valid: bool, reasons: Sequence[str]) -> str:
    if valid:
        return ""
    items = "".join(f"<li>{e(r)}</li>" for r in reasons) or "<li>no reason recorded</li>"
    return (
        '<div class="invalid-banner"><strong>INVALID RUN: the load generator, not the'
        " server, was the bottleneck; these numbers do not measure the server.</strong>"
        f"<ul>{items}</ul></div>"
    )


def _run_plots(doc: RunDoc) -> str:
    timeline, samples, server = doc.timeline, doc.server_samples, doc.server
    no_timeline = "the run recorded no timeline samples (its timeline is empty)"
    if server is None:
        no_server = "no server was observed for this run (server: null)"
    else:
        no_server = "the server was observed but left no samples"
    slo = number(doc.config, "slo_p99_ms")
    parts = [
        _figure(
            plots.latency_over_time(timeline, slo),
            "Latency percentiles per tick (ms)",
            no_timeline if not timeline else "no tick carried a latency (nothing was delivered)",
        ),
        _figure(
            plots.deliveries_over_time(timeline),
            "Deliveries per second",
            no_timeline if not timeline else "no tick carried a delivery rate",
        ),
        _figure(
            plots.cpu_over_time(timeline, samples),
            "CPU of the server and of the generator processes (% of one core)",
            "neither the generator's nor the server's CPU was sampled",
        ),
        _figure(
            plots.server_memory_over_time(samples),
            "Server resident memory (MiB)",
            no_server if not samples else "no sample carried rss_bytes",
        ),
        _figure(
            plots.socket_queues_over_time(samples),
            "Server socket queues: unsent bytes by receiver kind, unread bytes",
            no_server if not samples else "no sample carried queue sizes",
        ),
    ]
    return "<h3>Over time</h3>" + "".join(parts)


def _server(doc: RunDoc) -> str:
    server = doc.server
    if server is None:
        return (
            '<h3>Server</h3><p class="missing">Not observed (server: null): the lab samples'
            " a server's CPU, memory and sockets only when it runs on the same machine.</p>"
        )
    samples = doc.server_samples
    rss = peak(samples, "rss_bytes")
    cpu_per = server_cpu_per_delivery_us(doc)
    rows: list[tuple[str, str]] = [
        ("pid", e(server.get("pid"))),
        ("command", f"<code>{e(text(server, 'command'))}</code>"),
        ("port", e(server.get("port"))),
        ("exit code", e(server.get("exit_code"))),
        ("samples", e(fmt.count(len(samples)))),
        ("peak CPU", e(f"{fmt.decimal(peak(samples, 'cpu_percent'))} % of one core")),
        ("peak RSS", e(fmt.size(rss) if rss is not None else fmt.MISSING)),
        ("peak send-q total", e(fmt.size(peak(samples, "send_q_total")))),
        ("peak recv-q total", e(fmt.size(peak(samples, "recv_q_total")))),
        ("CPU per delivery", e(f"{fmt.decimal(cpu_per)} µs" if cpu_per else fmt.MISSING)),
    ]
    out = ["<h3>Server</h3>", _kv(rows)]
    exceptions = objects(server, "exceptions")
    if exceptions:
        out.append("<h3>Server exceptions</h3>")
        for exc in exceptions:
            head = f"{text(exc, 'type', '?')}: {text(exc, 'message')}"
            n = integer(exc, "count")
            out.append(
                f"<details><summary><code>{e(head)}</code> × {e(fmt.count(n))}</summary>"
                f"<pre>{e(text(exc, 'text'))}</pre></details>"
            )
    log_tail = strings(server, "log_tail")
    if log_tail:
        out.append(
            f"<details><summary>Server log, last {len(log_tail)} lines</summary>"
            f"<pre>{e(chr(10).join(log_tail))}</pre></details>"
        )
    metrics = mapping(server, "metrics")
    for when in ("before", "after"):
        if isinstance(metrics.get(when), str):
            out.append(
                f"<details><summary>Server metrics {when} the run</summary>"
                f"<pre>{e(metrics[when])}</pre></details>"
            )
    return "".join(out)


def _provenance(raw: JSONObject) -> str:
    machine = mapping(raw, "machine")
    versions = mapping(raw, "versions")
    rows: list[tuple[str, str]] = [
        ("created", e(text(raw, "created", fmt.MISSING))),
        ("command", f"<code>{e(' '.join(strings(raw, 'argv')))}</code>"),
        ("git commit", e(text(raw, "git_commit", "not in a git checkout"))),
    ]
    rows += [(f"machine {k}", e(v)) for k, v in machine.items()]
    rows += [(f"version {k}", e(v)) for k, v in versions.items()]
    return "<details><summary>Machine and versions</summary>" + _kv(rows) + "</details>"


def _run_section(doc: RunDoc, name: str, anchor: str) -> str:
    mode = text(doc.config, "mode")
    generator = doc.generator
    gen = ""
    if generator:
        gen = (
            f'<p class="muted">Generator: {e(fmt.scalar(generator.get("processes")))}'
            f" processes, peak {e(fmt.decimal(number(generator, 'max_cpu_percent')))} % of one"
            " core.</p>"
        )
    return "".join(
        [
            f'<section class="doc run" id="{anchor}">',
            f"<h2>{e(name)} {_validity_badge(doc.valid)}</h2>",
            f'<p class="target">{e(_config_line(doc.config))}<br>'
            f"file <code>{e(str(doc.path))}</code></p>",
            _invalid_banner(doc.valid, doc.invalid_reasons),
            "<h3>Verdicts</h3>",
            _verdicts(doc.verdicts),
            "<h3>Totals</h3>",
            _totals(doc.totals, mode),
            "<h3>Latency (send to receive)</h3>",
            _latency(doc.latency, number(doc.config, "slo_p99_ms")),
            _receivers_by_kind(doc.receivers),
            _run_plots(doc),
            _server(doc),
            gen,
            "<h3>Configuration</h3>",
            _config_table(doc.config),
            _provenance(doc.raw),
            "</section>",
        ]
    )


# --- several runs ----------------------------------------------------------------------


def _comparison(runs: Sequence[tuple[RunDoc, str]]) -> str:
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
                _validity_badge(doc.valid),
                " ".join(_badge(v) for v in doc.verdicts) or '<span class="muted">none</span>',
                _num(e(fmt.decimal(number(t, "deliveries_per_s")))),
                _num(
                    e(f"{fmt.count(number(t, 'delivered'))} / {fmt.count(number(t, 'expected'))}")
                ),
                _num(_lost_cell(t)),
                _num(e(fmt.ms(number(lat, "p50")))),
                _num(e(fmt.ms(number(lat, "p99")))),
                _num(e(fmt.ms(number(lat, "max")))),
                _num(e(f"{fmt.decimal(cpu_per)} µs" if cpu_per else fmt.MISSING)),
                _num(e(fmt.size(rss) if rss is not None else fmt.MISSING)),
                e(fmt.code_counts(counts(t, "close_codes"))),
                _num(e(fmt.count(number(t, "connect_failures")))),
            ]
        )
    svg = plots.compare_runs([d for d, _ in runs], [n for _, n in runs])
    return "".join(
        [
            '<section class="doc comparison" id="comparison">',
            f"<h2>Comparison of {len(runs)} runs</h2>",
            _table(headers, rows),
            _figure(svg, "The runs side by side (hatched bars: invalid runs)", ""),
            "</section>",
        ]
    )


# --- a sweep ---------------------------------------------------------------------------


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
                _num(e(fmt.axis_value(axis, bp.get("last_ok")) if "last_ok" in bp else "–")),
                _num(e(fmt.axis_value(axis, bp.get("first_break")))),
                e("; ".join(strings(bp, "reasons"))),
            ]
        )
    return _table(["axis", "with", "last ok", "first break", "why it broke"], rows)


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
                _num(str(i)),
                *(_num(e(fmt.axis_value(a, doc.coordinate(step, a)))) for a in axes),
                result + ("" if step.valid else ' <span class="badge invalid">INVALID</span>'),
                e("; ".join(step.reasons + step.invalid_reasons)),
                _num(e(fmt.count(number(t, "delivered")))),
                _num(e(fmt.count(number(t, "expected")))),
                _num(_lost_cell(t)),
                _num(e(fmt.ms(number(step.latency, "p99")))),
                e(fmt.code_counts(counts(t, "close_codes"))),
                " ".join(_badge(v) for v in step.verdicts),
            ]
        )
    headers = ["#", *axes, "result", "reasons", "delivered", "expected", "lost", "p99"]
    return _table([*headers, "close codes", "verdicts"], rows)


def _heatmaps(doc: SweepDoc) -> str:
    pairs = plots.sweep_pairs(doc)
    if not pairs:
        return '<p class="missing">No heatmaps: the sweep ran no steps.</p>'
    out = []
    for receivers, slow in pairs:
        title = plots.pair_title(receivers, slow)
        out.append(
            _figure(
                plots.loss_heatmap(doc, receivers, slow),
                f"Lost fraction by message size and rate, {title}",
                "no step at this point",
            )
        )
        out.append(
            _figure(
                plots.p99_heatmap(doc, receivers, slow),
                f"p99 latency by message size and rate, {title}",
                "no step at this point",
            )
        )
    return "".join(out)


def _sweep_section(doc: SweepDoc, name: str, anchor: str) -> str:
    axes = "; ".join(
        f"{k}: {', '.join(fmt.axis_value(k, v) for v in values)}" for k, values in doc.axes.items()
    )
    steps = doc.steps
    broke = sum(s.broke for s in steps)
    return "".join(
        [
            f'<section class="doc sweep" id="{anchor}">',
            f'<h2>{e(name)} <span class="muted">(sweep)</span></h2>',
            f'<p class="target">{e(_config_line(doc.base_config))}<br>'
            f"axes {e(axes or 'none recorded')}<br>"
            f"{len(steps)} steps, {broke} broke · file <code>{e(str(doc.path))}</code></p>",
            "<h3>Breaking points</h3>",
            _breaking_points(doc),
            "<h3>Heatmaps</h3>",
            _heatmaps(doc),
            "<h3>Steps, in the order they ran</h3>",
            _steps(doc),
            "<h3>Base configuration</h3>",
            _config_table(doc.base_config),
            _provenance(doc.raw),
            "</section>",
        ]
    )


# --- the page --------------------------------------------------------------------------


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
        sections.append(_comparison(runs))
    for i, (doc, name) in enumerate(zip(docs, names, strict=True), 1):
        if isinstance(doc, RunDoc):
            sections.append(_run_section(doc, name, f"doc-{i}"))
        else:
            sections.append(_sweep_section(doc, name, f"doc-{i}"))
    created = sorted({d.created for d in docs if d.created})
    when = f"{created[0]} to {created[-1]}" if len(created) > 1 else "".join(created)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{e(title)}</h1>",
            f'<p class="muted">{len(docs)} result file{"s" if len(docs) != 1 else ""}'
            f"{' · ' + e(when) if when else ''}</p>",
            _contents(docs, names, compare),
            _number_figures("".join(sections)),
            "</body></html>\n",
        ]
    )
