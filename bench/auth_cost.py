"""What auth and limits cost per delivery: ``fanout-v1`` with them on, next to off.

The same load as ``fanout_vs_article.py`` (one publisher, 200-byte messages at a fixed
rate, S ``fanout.v1`` subscribers of one room, spread over the lab's generator processes), against
two ``fanout serve`` set-ups that take turns, run by run, in one run of this script:

- **off**: anonymous (no key configured, clients send no token), per-connection rate
  limits and the per-address connection limit off
  (``--rate-frames-per-s 0 --rate-bytes-per-s 0 --max-connections-per-ip 0``);
- **on**: an HMAC secret (``FANOUT_AUTH_SECRET``), every client connects with
  ``?token=<token>`` granting subscribe and publish to the run's room,
  and the default limits, so that the grant checks run on every subscribe and publish
  and the rate limiter on every frame. Where the bench itself would exceed a default
  (the publisher above 1,000 frames/s, more than 1,000 clients from 127.0.0.1), that
  limit is raised just above the bench's load (``security_setup``): the limiter runs,
  and refuses nothing. The server's refusal counters (``/metrics``) are read after
  every run and shown: they must be 0.

Reported: server CPU per delivery for both (median of the runs, range), their ratio,
and the difference per message (times S: the cost of the checks on one publish).
Token verification happens once per connection, at the handshake, before the measured
interval: it is not part of the per-delivery figure.

Run: ``.venv/bin/python bench/auth_cost.py`` (about 8 minutes on 2 cores).
Writes ``bench/out/auth_cost-<time>.json``, each run's lab results in
``bench/out/auth_cost-<time>/`` and the ``auth_cost`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fanout.lab.interrupt import run_interruptible
from fanout_vs_article import (
    PAYLOAD_BYTES,
    RATE_HEADROOM,
    ROOM,
    TARGETS,
    RunResult,
    add_arguments,
    cost_cell,
    flag_lines,
    median_run,
    parse_rates,
    prepare,
    run_announced,
    write_report,
)
from results_md import provenance_lines, replace_section

OFF = TARGETS["fanout-v1"]
ON = TARGETS["fanout-v1-auth"]


def run_all(args: argparse.Namespace) -> tuple[list[RunResult], dict[str, Any]]:
    """Every run's row, and the last run's lab document (machine, versions, commit)."""
    results: list[RunResult] = []
    doc: dict[str, Any] = {}
    for subscribers, rate in parse_rates(args.rates):
        for repeat in range(args.repeat):
            # Alternate which goes first, so that neither always follows the other.
            for target in (OFF, ON) if repeat % 2 == 0 else (ON, OFF):
                label = "on" if target.auth else "off"
                r, doc = run_announced(
                    f"auth+limits {label}", target, subscribers, rate, repeat, args
                )
                results.append(r)
    return results, doc


def refused(r: RunResult) -> int:
    return sum(
        n
        for name, n in r.server_counters.items()
        if name.startswith("refused_") or name.startswith("rate_limit")
    )


def table_lines(results: list[RunResult]) -> tuple[list[str], list[str]]:
    """The table rows and one summary sentence per load."""
    loads = list(dict.fromkeys((r.subscribers, r.rate) for r in results))
    rows = [
        "| subs | msg/s | CPU us/delivery, off | CPU us/delivery, on | on / off"
        " | on - off per message (us) | p50 / p99 ms, off | p50 / p99 ms, on"
        " | lost (off / on) | refused (on) | limits on |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    summary: list[str] = []
    for subs, rate in loads:
        off = [r for r in results if (r.subscribers, r.rate) == (subs, rate) and not r.auth]
        on = [r for r in results if (r.subscribers, r.rate) == (subs, rate) and r.auth]
        if not off or not on:
            continue
        m_off, m_on = median_run(off), median_run(on)
        ratio = m_on.us_per_delivery / m_off.us_per_delivery
        per_message = (m_on.us_per_delivery - m_off.us_per_delivery) * subs
        limits = " ".join(m_on.server_args) or "defaults"
        rows.append(
            f"| {subs} | {rate:g} | {cost_cell(off)} | {cost_cell(on)} | {ratio:.3f}"
            f" | {per_message:+.1f} | {m_off.latency_ms['p50']:.2f} / {m_off.latency_ms['p99']:.2f}"
            f" | {m_on.latency_ms['p50']:.2f} / {m_on.latency_ms['p99']:.2f}"
            f" | {sum(r.lost for r in off)} / {sum(r.lost for r in on)}"
            f" | {sum(refused(r) for r in on)} | {limits} |"
        )
        summary.append(
            f"- {subs} subscribers at {rate:g} msg/s: {m_off.us_per_delivery:.2f} us per"
            f" delivery off, {m_on.us_per_delivery:.2f} us on ({ratio:.3f} of off,"
            f" {per_message:+.1f} us per message)."
        )
    return rows, summary


def write_results(path: Path, report: dict[str, Any], results: list[RunResult]) -> None:
    pinned = " (server pinned to CPU 0, clients to the others)" if report["pinned"] else ""
    rows, summary = table_lines(results)
    lines = [
        "## The cost of auth and limits, per delivery",
        "",
        "Generated by `bench/auth_cost.py` (`.venv/bin/python bench/auth_cost.py --help`).",
        "",
        *provenance_lines(report),
        "",
        f"`fanout serve`, 1 publisher, {PAYLOAD_BYTES}-byte messages at a fixed rate for"
        f" {report['duration_s']:g} s per run, S `fanout.v1` subscribers of one room spread"
        f" over {report['procs']} generator processes{pinned}; auth and limits off and on"
        f" take turns, run by run. Each cell is the median of {report['repeat']} runs by CPU"
        " per delivery (the range in brackets). 'on - off per message' is the difference"
        " times S: what the checks cost on one publish. 'refused' sums the server's"
        " `refused_*` and `rate_limit*` counters over the 'on' runs: 0 means the limiter"
        " checked every frame and refused none.",
        "",
        *rows,
        "",
        "### Summary",
        "",
        *summary,
        "",
    ]
    clean = "None: no generator over 90% busy, no loss, no refusal, every run kept its rate."
    lines += flag_lines(results, lambda r: "on" if r.auth else "off", clean)
    lines += ["", *METHOD]
    replace_section(path, "auth_cost", "\n".join(lines))


METHOD = [
    "### How it is measured",
    "",
    "- Load, clients, CPU and latency exactly as in the 'fanout vs the article's server'"
    " section (`bench/fanout_vs_article.py`, whose `run_one` this script calls: lab runs):"
    " server CPU (user + system, /proc) from the moment every client is connected to the"
    " lab's first progress report at which the subscribers had everything, divided by the"
    " deliveries counted then.",
    "- **off**: `python -m fanout.cli serve --port N --log-level warning"
    " --rate-frames-per-s 0 --rate-bytes-per-s 0 --max-connections-per-ip 0`, no key"
    " configured (every connection anonymous), clients send no token.",
    "- **on**: the same server with `FANOUT_AUTH_SECRET` (a fresh 32-byte secret, HS256)"
    " and the default limits (1,000 frames/s and 32 MiB/s per connection, grace 2 s;"
    " 1,000 connections per address); every client's handshake carries the token in its"
    " URL, `?token=...` (`fanout.auth.tokens.mint_token`, `sub` bench, 1 h,"
    f' `fanout: {{"subscribe": ["{ROOM}"], "publish": ["{ROOM}"]}}`). Where the bench itself'
    " exceeds a default, that limit is raised just above it ('limits on' column): the"
    f" frame rate to {RATE_HEADROOM:g} times the publisher's rate, the per-address limit"
    " to the number of clients (all connect from 127.0.0.1).",
    "- What 'on' adds per publish: the token's publish grant (a compiled pattern) and"
    " the rate limiter's two token buckets; per subscribe, the subscribe grant; per"
    " connection, the token's verification and the per-address count, both at the"
    " handshake, before the measured interval. Origin is checked in both (the clients"
    " send none). The idle timeout and the connection's watchdog run in both.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    add_arguments(parser, repeat=5)
    args = parser.parse_args(argv)
    stamp, json_path = prepare(args, "auth_cost")
    results, doc = run_all(args)
    rows, summary = table_lines(results)
    print("\n".join([*rows, "", *summary]))
    write_report(args, stamp, json_path, results, doc, write_results)
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
