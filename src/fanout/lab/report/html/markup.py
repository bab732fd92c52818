"""The markup the page is built of: escaping, tables, badges, figures.

Every string that comes from a results file goes through :func:`e` (the file can hold
hostile text: a server's exception message, its log lines, a URL); cells built here are
HTML.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from fanout.lab import fmt
from fanout.lab.document import Cause, JSONObject, Severity, Verdict, number
from fanout.lab.report.derive import lost_text

_SEVERITIES = tuple(Severity)
#: A verdict's classes, in the order the page lists them.
CLASS_ORDER = (*_SEVERITIES, "ok")


def e(value: object) -> str:
    """Escape any value (a string from the JSON, a number) for HTML text or attributes."""
    return html.escape(value if isinstance(value, str) else fmt.scalar(value), quote=True)


def num_cell(value: str) -> str:
    return f'<td class="num">{value}</td>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table; ``headers`` are plain text, row cells are HTML (``<td>`` or fragments)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table: plain-text names, HTML values."""
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def severity_class(verdict: Verdict) -> str:
    """The verdict's class on the page: its severity, or ``ok`` for the ``ok`` cause."""
    if verdict.cause == Cause.OK:
        return "ok"
    return verdict.severity if verdict.severity in _SEVERITIES else Severity.INFO


def badge(verdict: Verdict) -> str:
    sev = severity_class(verdict)
    return f'<span class="badge sev-{sev}">{e(verdict.cause)}</span>'


def validity_badge(valid: bool) -> str:
    if valid:
        return '<span class="badge valid">valid</span>'
    return '<span class="badge invalid">INVALID</span>'


def figure(svg: str | None, caption: str, missing: str) -> str:
    if svg is None:
        return f'<p class="missing">{e(caption)}: not drawn: {e(missing)}.</p>'
    return f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>"


def lost_cell(totals: JSONObject) -> str:
    cls = ' class="lost"' if number(totals, "lost") else ""
    return f"<span{cls}>{e(lost_text(totals))}</span>"
