"""What the bench scripts share: their ``RESULTS.md`` sections and JSON reports, the
machine's load, latency percentiles, lab runs.

``bench/RESULTS.md`` holds one section per benchmark script; each rewrites only its own.
A section sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; the text
outside the sections (the findings written by hand) is kept as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from fanout.lab.observe.sampler import machine_cpu_seconds
from fanout.lab.results import machine, versions

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
# Other processes busier than this (cores) during a run: the run is flagged as disturbed.
OTHER_LOAD_FLAG = 0.25


def replace_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    current = path.read_text() if path.exists() else ""
    start = current.find(begin)
    stop = current.find(end, start)
    if start >= 0 and stop >= 0:
        updated = current[:start] + block + current[stop + len(end) :]
    else:
        updated = current.rstrip() + ("\n\n" if current.strip() else "") + block + "\n"
    path.write_text(updated)


def publish_section(results: str, name: str, text: str) -> None:
    """Print a script's section and write it into ``results`` (a path; "-" leaves it alone)."""
    print(text)
    if results != "-":
        replace_section(Path(results), name, text)


def add_run_arguments(parser: argparse.ArgumentParser, quiet_wait_s: float, when: str) -> None:
    """``--quiet-wait`` (at most ``quiet_wait_s``, ``when``), ``--out`` and ``--results``."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=quiet_wait_s,
        help=f"seconds to wait at most for other processes to leave the CPUs {when}",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    parser.add_argument(
        "--results", default=str(BENCH_DIR / "RESULTS.md"), help="'-' to leave it alone"
    )


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it, as the sections show it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_report(
    name: str,
    stamp: dt.datetime,
    out: Path,
    head: dict[str, Any],
    measured: dict[str, Any],
) -> dict[str, Any]:
    """A script's JSON report, written to ``OUT/NAME-<stamp>.json`` and returned.

    Its fields in order: date, command, machine, versions, ``head`` (the script's
    settings), the JSON's own path, then ``measured``.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = (out / f"{name}-{stamp:%Y%m%d-%H%M%S}.json").resolve()
    report = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", f"bench/{name}.py", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(),
        **head,
        "json": shown_path(path),
        **measured,
    }
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def measured_code() -> dict[str, str | None]:
    """The commit of the fanout code this run imports, and how the code differs from it.

    Normally this checkout (its HEAD, and whether files are modified). A copy elsewhere
    (``PYTHONPATH=/tmp/copy/src``, to measure a fixed version while the checkout
    changes) names its commit and the difference in ``COMMIT`` next to its ``src``.
    """
    import fanout

    src = Path(fanout.__file__).resolve().parent.parent
    if src == ROOT / "src":
        note = " with uncommitted changes" if git_dirty() else ""
        return {"commit": git("rev-parse", "HEAD") or None, "note": note}
    marker = src.parent / "COMMIT"
    lines = marker.read_text().splitlines() if marker.exists() else []
    note = f" (copy in `{src}`" + (f": {lines[1].strip()}" if len(lines) > 1 else "") + ")"
    return {"commit": lines[0].strip() if lines else None, "note": note}


def percentiles(samples_s: Sequence[float]) -> dict[str, Any]:
    """p50, p99 and max in milliseconds (rounded to µs) of latencies in seconds, and n."""
    ordered = sorted(samples_s)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0), "n": len(ordered)}


def report_lines(report: dict[str, Any], shares: str) -> list[str]:
    """Date, command, machine (then ``shares``: what shared its cores, the load meanwhile),
    commit and raw numbers of a report :func:`write_report` wrote, as a section lists them."""
    m, code = report["machine"], report["code"]
    return [
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}`",
        f"- Machine: {m['cpu_model']}, {m['cpus']} cores, Python {m['python']},"
        f" {report['redis']}; {shares}",
        f"- Commit: `{(code['commit'] or 'unknown')[:12]}`{code['note'] or ''}",
        f"- Raw numbers: `{report['json']}`",
    ]


def provenance_lines(report: dict[str, Any]) -> list[str]:
    """Date, command, machine, versions, commit and raw numbers of a script's JSON report."""
    m = report["machine"]
    dirty = " (with uncommitted changes)" if report.get("git_dirty") else ""
    commit = report.get("git_commit") or "unknown"
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    return [
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}`",
        f"- Machine: {m['cpu_model']}, {m['cpus']} cores, {m['platform']}",
        f"- Python {m['python']}; {versions}",
        f"- Commit: `{commit[:12]}`{dirty}",
        f"- Raw numbers: `{report['json']}`",
    ]


def git(*args: str) -> str:
    """What ``git ARGS`` prints in this checkout ("" when git fails)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def git_dirty() -> bool:
    """True when tracked files of this checkout differ from its HEAD."""
    return bool(git("status", "--porcelain", "--untracked-files=no"))


# -- the machine's load -------------------------------------------------------------------


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, idle and iowait excluded)."""
    return machine_cpu_seconds()[0]


def user_system_s(pid: int) -> tuple[float, float]:
    """User-space and kernel CPU seconds of a process so far (0s once it is gone): the
    first is the server's own code, the second mostly the kernel's sockets."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0, 0.0
    return float(t.user), float(t.system)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    return sum(user_system_s(pid))


def tree_cpu_s() -> float:
    """CPU seconds of this process and every process below it (servers, generators)."""
    me = psutil.Process()
    return cpu_s(me.pid) + sum(cpu_s(c.pid) for c in me.children(recursive=True))


def wait_for_quiet(max_wait_s: float, limit_cores: float = 0.25, sample_s: float = 0.5) -> float:
    """Wait (at most ``max_wait_s``) until other processes leave the CPUs; return their load.

    The machine may be shared: another job's load lands in the latency of the servers
    and in their system time (wake-ups, preemption), so runs start on a quiet machine
    when they can and report the load they saw when they cannot. What this process and
    its children (the servers, the lab's generators) use is not counted.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        busy, ours, t = busy_s(), tree_cpu_s(), time.monotonic()
        time.sleep(sample_s)
        load = max(0.0, (busy_s() - busy) - (tree_cpu_s() - ours)) / (time.monotonic() - t)
        if load < limit_cores or time.monotonic() >= deadline:
            return load


class OtherLoad:
    """Other processes' load around a run: waits for quiet first (at most ``max_wait_s``),
    then counts the cores they use until ``figures``."""

    def __init__(self, max_wait_s: float) -> None:
        self.before = wait_for_quiet(max_wait_s, OTHER_LOAD_FLAG)
        self._busy, self._ours, self.start = busy_s(), tree_cpu_s(), time.monotonic()

    def figures(self) -> dict[str, float]:
        """``other_cores_before`` (while waiting) and ``other_cores`` (since then)."""
        other = (busy_s() - self._busy) - (tree_cpu_s() - self._ours)
        return {
            "other_cores_before": round(self.before, 2),
            "other_cores": round(max(0.0, other) / (time.monotonic() - self.start), 2),
        }


# -- lab results (``fanout.lab.run/1``, read as the dict ``docs/lab-results.md`` describes) --


def finished_at(doc: dict[str, Any], key: str) -> float:
    """Seconds from the start until ``key`` (delivered, acked) reached its final count."""
    duration = float(doc["config"]["duration_s"])
    timeline = doc["timeline"]
    if not timeline:
        return duration
    final = timeline[-1][key]
    done = next(float(e["t"]) for e in timeline if e[key] >= final)
    return max(duration, done)


def provenance(doc: dict[str, Any]) -> dict[str, Any]:
    """The machine, versions and commit a lab run recorded, plus whether files differ."""
    return {
        "machine": doc["machine"],
        "versions": doc["versions"],
        "git_commit": doc["git_commit"],
        "git_dirty": git_dirty(),
    }
