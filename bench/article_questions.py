"""The article's question, answered with the lab: how large, how fast, how many, what breaks.

Each scenario runs against the article's server (``fanout baseline``, or its binary
twin for images) and against ``fanout serve`` with the same clients (plain mode, as the
article's), every step a complete lab run with its own freshly started server:

- ``size``: real PNG images to 10 receivers at 2/s, growing until delivery stops;
- ``rate``: 200-byte messages to 100 receivers, the rate growing until loss, errors or
  p99 over 100 ms;
- ``clients``: 200-byte messages at 50/s, the receivers growing;
- ``stall``: one receiver of 50 stops reading (64 KiB messages at 50/s);
- ``vanish``: 20 extra clients vanish (TCP reset) and come back every 0.2 s while 50
  receivers get 200/s.

    .venv/bin/python bench/article_questions.py [--only rate,stall] [--results -]

Writes every run's results JSON under ``bench/out/article_questions-<time>/`` (readable
with ``fanout report``), one HTML report there, and the section ``article_questions`` of
``bench/RESULTS.md``. About 6 minutes on 2 cores; every run is bounded and local.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout.lab.config import BenchConfig, format_size
from fanout.lab.interrupt import run_interruptible
from fanout.lab.net import free_port
from fanout.lab.session import run_bench
from fanout.lab.sweep import Axes, point_label, sweep
from fanout.settings import NO_CLIENT_LIMITS
from results_md import replace_section

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    name: str
    argv: tuple[str, ...]  # the port is appended

    def command(self, port: int) -> str:
        return shlex.join([*self.argv, "--port", str(port), "--log-level", "warning"])


FANOUT = (sys.executable, "-m", "fanout.cli")
ARTICLE = Server("article", (*FANOUT, "baseline"))
ARTICLE_BINARY = Server("article (binary twin)", (*FANOUT, "baseline", "--binary"))
# The sweeps go past fanout's per-client limits on purpose (one sender at 3,000 msg/s,
# 4,000 receivers from 127.0.0.1): they measure the hub, not its limits.
FANOUT_SERVE = Server("fanout", (*FANOUT, "serve", *NO_CLIENT_LIMITS))


@dataclass(frozen=True)
class Scenario:
    name: str
    question: str
    base: dict[str, Any]
    axes: Axes
    servers: tuple[Server, ...] = (ARTICLE, FANOUT_SERVE)
    notes: list[str] = field(default_factory=list)


MiB = 1024 * 1024

SCENARIOS = [
    Scenario(
        "size",
        "How large can an image be before delivery stops?",
        # A 15 MiB image takes a while to cross: only loss and errors count here.
        {"kind": "png", "receivers": 10, "duration_s": 3.0, "drain_s": 5.0, "slo_p99_ms": 5000.0},
        Axes(
            sizes=(64 * 1024, MiB, 4 * MiB, 15 * MiB, 17 * MiB),
            rates=(2.0,),
            receivers=(10,),
            slow_shares=(0.0,),
        ),
        servers=(ARTICLE_BINARY, FANOUT_SERVE),
    ),
    Scenario(
        "rate",
        "How many messages per second to 100 receivers before it falls behind?",
        {"receivers": 100, "size": 200, "duration_s": 4.0, "drain_s": 3.0},
        Axes(
            sizes=(200,),
            rates=(250.0, 500.0, 1000.0, 2000.0, 3000.0),
            receivers=(100,),
            slow_shares=(0.0,),
        ),
    ),
    Scenario(
        "clients",
        "How many receivers at 50 messages/s?",
        {"size": 200, "duration_s": 4.0, "drain_s": 3.0, "connect_timeout_s": 30.0},
        Axes(sizes=(200,), rates=(50.0,), receivers=(250, 1000, 2000, 4000), slow_shares=(0.0,)),
    ),
    Scenario(
        "stall",
        "What does one receiver that stops reading do to the others?",
        {"size": 64 * 1024, "duration_s": 5.0, "drain_s": 3.0, "slow_after_s": 1.0},
        Axes(sizes=(64 * 1024,), rates=(50.0,), receivers=(50,), slow_shares=(0.02,)),
    ),
    Scenario(
        "vanish",
        "What do clients vanishing mid-broadcast do to the others?",
        {
            "size": 200,
            "duration_s": 5.0,
            "drain_s": 3.0,
            "churn": 20,
            "churn_every_s": 0.2,
            "churn_abort": True,
        },
        Axes(sizes=(200,), rates=(200.0,), receivers=(50,), slow_shares=(0.0,)),
    ),
]


def run_scenario(
    scenario: Scenario, server: Server, out_dir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    placeholder = f"ws://{HOST}:1/ws"
    base = BenchConfig(url=placeholder, **scenario.base)
    step_no = 0

    def one(config: BenchConfig, label: str) -> dict[str, Any]:
        nonlocal step_no
        step_no += 1
        port = free_port()
        config = config.replace(url=f"ws://{HOST}:{port}/ws", server_cmd=server.command(port))
        doc = run_bench(config, argv=[*sys.argv, f"# {scenario.name}/{server.name}: {label}"])
        slug = server.name.split()[0]
        path = out_dir / f"{scenario.name}-{slug}-{step_no:02d}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return doc

    log(f"== {scenario.name} / {server.name}: {scenario.question}")
    return sweep(base, scenario.axes, one, argv=sys.argv, announce=log)


def _verdict_text(step: dict[str, Any]) -> str:
    parts = []
    for v in step["verdicts"]:
        if v["cause"] == "ok":
            continue
        parts.append(f"**{v['cause']}**: {v['summary']}")
    return "<br>".join(parts) or "ok"


def _axis_value(axis: str, value: Any) -> str:
    if value is None:
        return "none"
    if axis == "size":
        return format_size(int(value))
    if axis == "slow":
        return f"{float(value):.0%} slow"
    return f"{value:g}"


def section(results: list[tuple[Scenario, Server, dict[str, Any]]], meta: dict[str, Any]) -> str:
    lines = [
        "## The article's question, answered by the lab",
        "",
        "Generated by `bench/article_questions.py` (lab runs, plain-mode clients as the"
        " article's, each step with a freshly started server).",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['cpu_model']}, {meta['machine']['cpus']} cores,"
        f" Python {meta['machine']['python']}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in sorted(meta['versions'].items()))}",
        f"- Commit: `{(meta['commit'] or 'unknown')[:12]}`",
        f"- Raw results: `{meta['out']}` (`fanout report` reads them)",
        "",
    ]
    seen: list[Scenario] = []
    for s, _, _ in results:
        if all(s is not other for other in seen):
            seen.append(s)
    for scenario in seen:
        lines += [f"### {scenario.name}: {scenario.question}", ""]
        lines += [
            "| server | step | delivered / expected | lost | p99 ms | server CPU | verdict |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for s, server, doc in results:
            if s is not scenario:
                continue
            for step in doc["steps"]:
                t = step["totals"]
                cpu = step.get("server_cpu_percent")
                lines.append(
                    f"| {server.name} | {point_label(step['point'])} |"
                    f" {t['delivered']:,} / {t['expected']:,} | {t['lost']:,} |"
                    f" {step['latency_ms']['p99']:.1f} |"
                    f" {'' if cpu is None else f'{cpu:.0f}%'} | {_verdict_text(step)} |"
                )
        lines.append("")
        for s, server, doc in results:
            if s is not scenario:
                continue
            if not doc["breaking_points"]:
                lines.append(f"- {server.name}: no break in this grid.")
            for bp in doc["breaking_points"]:
                axis = bp["axis"]
                why = "; ".join(bp["reasons"])
                if axis == "point":
                    lines.append(f"- {server.name}: broke at {point_label(bp['fixed'])}: {why}")
                    continue
                lines.append(
                    f"- {server.name}: first break at {axis} {_axis_value(axis, bp['first_break'])}"
                    f" (last ok: {_axis_value(axis, bp['last_ok'])}): {why}"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    parser.add_argument(
        "--results", default=str(BENCH_DIR / "RESULTS.md"), help="'-' to leave it alone"
    )
    parser.add_argument(
        "--from-dir",
        type=Path,
        help="rewrite the section from a previous run's directory instead of running again",
    )
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    stamp = dt.datetime.now(dt.UTC)
    out_dir = (args.from_dir or args.out / f"article_questions-{stamp:%Y%m%d-%H%M%S}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in chosen:
        for server in scenario.servers:
            sweep_path = out_dir / f"{scenario.name}-{server.name.split()[0]}-sweep.json"
            if args.from_dir:
                doc = json.loads(sweep_path.read_text())
                stamp = dt.datetime.fromisoformat(doc["created"])
            else:
                doc = run_scenario(scenario, server, out_dir, lambda m: print(m, flush=True))
                _add_server_cpu(doc, out_dir, scenario, server)
                sweep_path.write_text(json.dumps(doc, indent=1) + "\n")
            results.append((scenario, server, doc))
    first = results[0][2]  # a sweep document: where and with what it ran
    meta = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": first["machine"],
        "versions": first["versions"],
        "commit": first["git_commit"],
        "out": str(out_dir.relative_to(BENCH_DIR.parent)),
    }
    text = section(results, meta)
    print(text)
    if args.results != "-":
        replace_section(Path(args.results), "article_questions", text)
    _report(out_dir)
    return 0


def _add_server_cpu(doc: dict[str, Any], out_dir: Path, scenario: Scenario, server: Server) -> None:
    """Each step's mean server CPU while sending, from the step's own run file."""
    slug = server.name.split()[0]
    runs = sorted(out_dir.glob(f"{scenario.name}-{slug}-[0-9][0-9].json"))
    for step, path in zip(doc["steps"], runs, strict=False):
        run = json.loads(path.read_text())
        duration = float(run["config"]["duration_s"])
        samples = [
            s["cpu_percent"]
            for s in (run.get("server") or {}).get("samples", [])
            if 0 <= s["t"] <= duration
        ]
        step["server_cpu_percent"] = sum(samples) / len(samples) if samples else None


def _report(out_dir: Path) -> None:
    from rich.console import Console

    from fanout.lab.report import ReportError, write_report

    sweeps = sorted(out_dir.glob("*-sweep.json"))
    try:
        write_report(sweeps, out_dir / "report.html", Console(stderr=True))
    except ReportError as exc:
        print(f"report not written: {exc}", file=sys.stderr)


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
