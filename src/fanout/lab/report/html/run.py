"""One run's section: verdicts first, then totals, latency, receivers, plots, server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from fanout.lab import fmt
from fanout.lab.document import JSONObject, RunDoc, Verdict, counts, number, objects, text
from fanout.lab.report import plots
from fanout.lab.report.html.markup import (
    CLASS_ORDER,
    e,
    figure,
    kv,
    lost_cell,
    num_cell,
    severity_class,
    table,
    validity_badge,
)
from fanout.lab.report.html.provenance import config_line, config_table, provenance
from fanout.lab.report.html.server import server_section


def _evidence(evidence: JSONObject) -> str:
    if not evidence:
        return ""
    rows = [(str(k), e(fmt.evidence(str(k), v))) for k, v in evidence.items()]
    return table(["evidence", "value"], ([e(k), num_cell(v)] for k, v in rows))


def _verdicts(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return '<p class="muted">No verdicts recorded for this run.</p>'
    parts = []
    for v in sorted(verdicts, key=lambda v: CLASS_ORDER.index(severity_class(v))):
        sev = severity_class(v)
        parts.append(
            f'<div class="verdict {sev}">'
            f'<span class="badge sev-{sev}">{e(v.severity)}</span> '
            f'<span class="cause">{e(v.cause)}</span>: {e(v.summary)}'
            f"{_evidence(v.evidence)}</div>"
        )
    return "".join(parts)


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
        ("lost (holes / stuck)", lost_cell(totals)),
        ("gap announced", e(fmt.count(number(totals, "gap_announced")))),
        ("duplicated", e(fmt.count(number(totals, "duplicated")))),
        ("out of order", e(fmt.count(number(totals, "out_of_order")))),
        ("deliveries/s", e(fmt.decimal(number(totals, "deliveries_per_s")))),
        ("close codes", e(fmt.code_counts(counts(totals, "close_codes")))),
        ("connect failures", e(fmt.count(number(totals, "connect_failures")))),
        ("connect errors", e(fmt.code_counts(counts(totals, "connect_errors")))),
        ("churn connects", e(fmt.count(number(totals, "churn_connects")))),
    ]
    return kv(rows)


_LATENCY_KEYS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))


def _latency(latency: JSONObject, slo_ms: float | None) -> str:
    if not latency:
        return '<p class="missing">No latency measured (nothing was delivered).</p>'
    headers = ["count", *(name for name, _ in _LATENCY_KEYS)]
    row = [num_cell(e(fmt.count(number(latency, "count"))))]
    row += [num_cell(e(fmt.ms(number(latency, key)))) for _, key in _LATENCY_KEYS]
    if slo_ms is not None:
        headers.append("p99 SLO")
        p99 = number(latency, "p99")
        over = p99 is not None and p99 > slo_ms
        row.append(num_cell(e(f"{fmt.ms(slo_ms)} ({'missed' if over else 'met'})")))
    return table(headers, [row])


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
                num_cell(e(fmt.count(len(group)))),
                num_cell(total("expected")),
                num_cell(total("delivered")),
                num_cell(total("lost_holes")),
                num_cell(total("lost_stuck")),
                e(fmt.code_counts(dict(codes))),
                e(fmt.code_counts(dict(errors))),
            ]
        )
    headers = ["kind", "connections", "expected", "delivered", "lost holes", "lost stuck"]
    return "<h3>Receivers by kind</h3>" + table([*headers, "close codes", "connect errors"], rows)


def _invalid_banner(valid: bool, reasons: Sequence[str]) -> str:
    if valid:
        return ""
    items = "".join(f"<li>{e(r)}</li>" for r in reasons) or "<li>no reason recorded</li>"
    return (
        '<div class="invalid-banner"><strong>INVALID RUN: these numbers do not measure the'
        " server.</strong>"
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
        figure(
            plots.latency_over_time(timeline, slo),
            "Latency percentiles per tick (ms)",
            no_timeline if not timeline else "no tick carried a latency (nothing was delivered)",
        ),
        figure(
            plots.deliveries_over_time(timeline),
            "Deliveries per second",
            no_timeline if not timeline else "no tick carried a delivery rate",
        ),
        figure(
            plots.cpu_over_time(timeline, samples),
            "CPU of the server and of the generator processes (% of one core)",
            "neither the generator's nor the server's CPU was sampled",
        ),
        figure(
            plots.server_memory_over_time(samples, objects(server or {}, "gauges")),
            "Server resident memory (MiB), and its own buffers when it publishes them",
            no_server if not samples else "no sample carried rss_bytes",
        ),
        figure(
            plots.socket_queues_over_time(samples),
            "Server socket queues: unsent bytes by receiver kind, unread bytes",
            no_server if not samples else "no sample carried queue sizes",
        ),
    ]
    return "<h3>Over time</h3>" + "".join(parts)


def run_section(doc: RunDoc, name: str, anchor: str) -> str:
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
            f"<h2>{e(name)} {validity_badge(doc.valid)}</h2>",
            f'<p class="target">{e(config_line(doc.config))}<br>'
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
            server_section(doc),
            gen,
            "<h3>Configuration</h3>",
            config_table(doc.config),
            provenance(doc.raw),
            "</section>",
        ]
    )
