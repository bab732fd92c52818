"""What the bench scripts share: their ``RESULTS.md`` sections, the machine's load, lab runs.

``bench/RESULTS.md`` holds one section per benchmark script; each rewrites only its own.
A section sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``; the text
outside the sections (the findings written by hand) is kept as it is.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

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
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


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
