"""What a run or a sweep was run with, and where: its configuration, machine, versions."""

from __future__ import annotations

from fanout.lab import fmt
from fanout.lab.document import JSONObject, mapping, strings, text
from fanout.lab.report.html.markup import e, kv


def config_line(config: JSONObject) -> str:
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


def config_table(config: JSONObject) -> str:
    if not config:
        return '<p class="missing">No configuration recorded.</p>'
    return kv((str(k), e(v)) for k, v in config.items())


def provenance(raw: JSONObject) -> str:
    machine = mapping(raw, "machine")
    versions = mapping(raw, "versions")
    rows: list[tuple[str, str]] = [
        ("created", e(text(raw, "created", fmt.MISSING))),
        ("command", f"<code>{e(' '.join(strings(raw, 'argv')))}</code>"),
        ("git commit", e(text(raw, "git_commit", "not in a git checkout"))),
    ]
    rows += [(f"machine {k}", e(v)) for k, v in machine.items()]
    rows += [(f"version {k}", e(v)) for k, v in versions.items()]
    return "<details><summary>Machine and versions</summary>" + kv(rows) + "</details>"
