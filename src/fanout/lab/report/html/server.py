"""What the lab saw of the server a run was pointed at: its figures, exceptions and log."""

from __future__ import annotations

from fanout.lab import fmt
from fanout.lab.document import RunDoc, integer, mapping, objects, strings, text
from fanout.lab.report.derive import peak, server_cpu_per_delivery_us
from fanout.lab.report.html.markup import e, kv


def server_section(doc: RunDoc) -> str:
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
    out = ["<h3>Server</h3>", kv(rows)]
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
