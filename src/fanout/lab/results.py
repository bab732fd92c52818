"""The results document of a run (``fanout.lab.run/1``), written: totals, provenance.

The layout is described in ``docs/lab-results.md``; the diagnosis and ``fanout report``
read it back through :mod:`fanout.lab.document`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from fanout.lab.config import BenchConfig
from fanout.lab.document import RUN_SCHEMA
from fanout.lab.histogram import Histogram

_VERSIONED = ("fanout", "uvicorn", "websockets", "fastapi", "starlette", "uvloop", "orjson")


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "memory_bytes": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_commit() -> str | None:
    """The commit of the checkout the lab runs from (or of the working directory)."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return None


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": list(argv if argv is not None else sys.argv),
        "git_commit": git_commit(),
        "machine": machine(),
        "versions": versions(),
    }


def totals(config: BenchConfig, outcome: dict[str, Any]) -> dict[str, Any]:
    # How long sending lasted: shorter than the configured duration when --count was reached.
    sending_s = float(outcome.get("sending_s") or config.duration_s) or config.duration_s
    receivers = [r for f in outcome["finals"] for r in f["receivers"]]
    senders = [s for f in outcome["finals"] for s in f["senders"]]
    stable = [r for r in receivers if r["kind"] == "stable"]
    close_codes: dict[str, int] = {}
    connect_errors: dict[str, int] = {}
    for f in outcome["finals"]:
        for code, n in f["close_codes"].items():
            close_codes[str(code)] = close_codes.get(str(code), 0) + int(n)
        for kind, n in f["connect_errors"].items():
            connect_errors[kind] = connect_errors.get(kind, 0) + int(n)
    expected = sum(r["expected"] or 0 for r in stable)
    delivered = sum(r["delivered"] for r in stable)
    holes = sum(r["lost_holes"] for r in stable)
    stuck = sum(r["lost_stuck"] for r in stable)
    return {
        "sent": sum(s["sent"] for s in senders),
        "skipped": sum(s["skipped"] for s in senders),
        "acked": sum(s["acked"] for s in senders),
        "send_errors": sum(s["send_errors"] for s in senders),
        "expected": expected,
        "delivered": delivered,
        "delivered_all": sum(r["delivered"] for r in receivers),
        "lost": holes + stuck,
        "lost_holes": holes,
        "lost_stuck": stuck,
        "gap_announced": sum(r["gap_announced"] for r in stable),
        "duplicated": sum(r["duplicated"] for r in receivers),
        "out_of_order": sum(r["out_of_order"] for r in receivers),
        "connect_failures": sum(1 for r in [*receivers, *senders] if r["connect_error"]),
        "close_codes": close_codes,
        "connect_errors": connect_errors,
        "churn_connects": sum(int(f["churn_connects"]) for f in outcome["finals"]),
        "sending_s": round(sending_s, 3),
        "deliveries_per_s": round(sum(r["delivered"] for r in receivers) / sending_s, 1),
        "slow": _kind_totals([r for r in receivers if r["kind"] == "slow"]),
        "churn": _kind_totals([r for r in receivers if r["kind"] == "churn"]),
    }


def _kind_totals(receivers: list[dict[str, Any]]) -> dict[str, Any]:
    codes: dict[str, int] = {}
    for r in receivers:
        if r["close_code"] is not None:
            codes[str(r["close_code"])] = codes.get(str(r["close_code"]), 0) + 1
    return {
        "count": len(receivers),
        "expected": sum(r["expected"] or 0 for r in receivers),
        "delivered": sum(r["delivered"] for r in receivers),
        "lost_holes": sum(r["lost_holes"] for r in receivers),
        "lost_stuck": sum(r["lost_stuck"] for r in receivers),
        "close_codes": codes,
    }


def latency(outcome: dict[str, Any]) -> dict[str, float]:
    hist = Histogram()
    for f in outcome["finals"]:
        hist.merge(Histogram.from_json(f["histogram"]))
    return hist.summary_ms()


#: A tick shorter than this (the last one of a run that ended early) holds a few ms of
#: CPU: noise, not a measure of the generator's load.
MIN_TICK_S = 0.25


def generator_cpu(config: BenchConfig, timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """Each generator process's mean CPU while sending (% of one core), each tick weighted
    by the time it covers; ticks shorter than :data:`MIN_TICK_S` are left out."""
    spans: list[tuple[dict[str, Any], float]] = []
    previous = 0.0
    for entry in timeline:
        spans.append((entry, float(entry["t"]) - previous))
        previous = float(entry["t"])
    sending = [(e, dt) for e, dt in spans if e["t"] <= config.duration_s] or spans
    measured = [(e, dt) for e, dt in sending if dt >= MIN_TICK_S]
    per_process: list[float] = []
    peak: list[float] = []
    for k in range(config.processes):
        cpus = [(e["generator_cpu"][k], dt) for e, dt in measured if len(e["generator_cpu"]) > k]
        weight = sum(dt for _, dt in cpus)
        per_process.append(round(sum(c * dt for c, dt in cpus) / weight, 1) if weight else 0.0)
        peak.append(max((c for c, _ in cpus), default=0.0))
    return {
        "processes": config.processes,
        "cpu_percent": per_process,
        "max_cpu_percent": max(per_process, default=0.0),
        "peak_cpu_percent": peak,
    }


def build_document(
    config: BenchConfig,
    outcome: dict[str, Any],
    *,
    argv: list[str] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    receivers = sorted(
        (r for f in outcome["finals"] for r in f["receivers"]), key=lambda r: int(r["id"])
    )
    senders = sorted(
        (s for f in outcome["finals"] for s in f["senders"]), key=lambda s: int(s["id"])
    )
    return {
        "schema": RUN_SCHEMA,
        **provenance(argv),
        "config": config.to_json(),
        "valid": True,
        "invalid_reasons": [],
        "totals": totals(config, outcome),
        "latency_ms": latency(outcome),
        "receivers": receivers,
        "senders": senders,
        "timeline": outcome["timeline"],
        "server": server,
        "generator": generator_cpu(config, outcome["timeline"]),
        "verdicts": [],
    }


def write(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
