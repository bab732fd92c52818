"""Publish-to-deliver latency and deliveries/s through Redis, next to the in-memory broker.

Three ways to run the same load, each a lab run (``fanout.lab``, ``fanout.v1`` clients,
every message accounted) with freshly started servers:

- ``memory``: one ``fanout serve`` with the in-memory broker, senders and receivers on it;
- ``redis 1 node``: one ``fanout serve --broker redis://...``, senders and receivers on
  it (every message goes through Redis and back to the same node);
- ``redis 2 nodes``: two ``fanout serve --broker redis://...`` sharing one Redis, the
  senders on node A, the receivers on node B (``fanout bench --sender-url``).

The script starts its own ``redis-server`` on a free 127.0.0.1 port for each Redis run
(never 6379, no persistence, in a temporary directory) and stops everything it started.
Latency is from the sender's write to the receiver's read (both ``CLOCK_MONOTONIC`` on
this machine). CPU is read from ``/proc`` for each fanout node, Redis, the lab's
generator processes and the rest of the machine, over the sending window.

    .venv/bin/python bench/redis_crossnode.py [--loads 1k,5k,10k,10k-spread,fanout]
        [--repeat 3] [--duration 10] [--results bench/RESULTS.md | -]

Writes every run's results JSON (``fanout report`` reads them) under
``bench/out/redis_crossnode-<time>/`` and the section ``redis_crossnode`` of
``bench/RESULTS.md``. About 10 minutes with the defaults on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nodes
import results_md
from fanout.lab.config import BenchConfig
from fanout.lab.interrupt import run_interruptible
from fanout.lab.session import run_bench
from fanout.settings import NO_CLIENT_LIMITS
from nodes import Started, commandstats, redis_server
from results_md import HOST, OTHER_LOAD_FLAG

TARGET_RATE = 10_000.0
TARGET_P99_MS = 5.0


@dataclass(frozen=True)
class Load:
    name: str
    rate: float  # messages/s over all senders
    senders: int
    receivers: int
    size: int = 200

    def describe(self) -> str:
        senders = f"{self.senders} sender{'s' if self.senders > 1 else ''}"
        return f"{self.rate:,.0f} msg/s, {senders}, {self.receivers} receivers"


LOADS = {
    "1k": Load("1k", 1_000.0, 2, 4),
    "5k": Load("5k", 5_000.0, 2, 4),
    "10k": Load("10k", TARGET_RATE, 2, 4),
    # The same 10,000 msg/s from many connections: each connection's publishes are
    # answered one after the other, so few senders also test the round trip per publish.
    "10k-spread": Load("10k-spread", TARGET_RATE, 20, 4),
    "fanout": Load("fanout", 1_000.0, 1, 50),
}
TOPOLOGIES = ("memory", "redis 1 node", "redis 2 nodes")


# -- the servers -----------------------------------------------------------------------------


def fanout_node(name: str, broker: str, log: Path) -> contextlib.AbstractContextManager[Started]:
    """``fanout serve`` on ``broker``, client limits off; stopped after."""
    # 5,000 msg/s from one sender connection: over the default per-connection rate limit.
    args = ["--broker", broker, "--log-level", "warning", *NO_CLIENT_LIMITS]
    return nodes.fanout_node(name, args, log)


# -- CPU over the sending window --------------------------------------------------------------


def _cpu_pressure_s() -> float | None:
    """Seconds during which some runnable task waited for a CPU (Linux PSI), if available."""
    try:
        text = Path("/proc/pressure/cpu").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            return int(fields["total"]) / 1e6
    return None


@dataclass
class CpuWatch:
    """CPU of each named process, ours in all and the machine's, between two progress ticks.

    The lab's progress ticks (every 0.5 s while sending) mark the window: from the first
    tick to the last one before the sending ends. The acks and deliveries counted at
    both ticks give the messages the servers handled meanwhile.
    """

    pids: dict[str, int]
    duration_s: float
    marks: list[dict[str, Any]] = field(default_factory=list)

    def progress(self, snapshot: dict[str, Any]) -> None:
        if snapshot.get("phase") != "sending" or float(snapshot["t"]) > self.duration_s:
            return
        mark = {
            "wall": time.monotonic(),
            "t": float(snapshot["t"]),
            "named": {name: results_md.cpu_s(pid) for name, pid in self.pids.items()},
            "ours": results_md.tree_cpu_s(),
            "busy": results_md.busy_s(),
            "pressure": _cpu_pressure_s(),
            "acked": int(snapshot["acked"]),
            "delivered": int(snapshot["delivered"]),
        }
        if self.marks:
            self.marks[1:] = [mark]
        else:
            self.marks.append(mark)

    def result(self) -> dict[str, Any]:
        if len(self.marks) < 2:
            return {}
        first, last = self.marks
        wall = max(1e-9, last["wall"] - first["wall"])
        ours = last["ours"] - first["ours"]
        return {
            "window_s": [round(first["t"], 2), round(last["t"], 2)],
            "seconds": {n: round(last["named"][n] - v, 3) for n, v in first["named"].items()},
            "percent": {
                n: round(100 * (last["named"][n] - v) / wall, 1) for n, v in first["named"].items()
            },
            "acked": last["acked"] - first["acked"],
            "delivered": last["delivered"] - first["delivered"],
            "ours_percent": round(100 * ours / wall, 1),
            "other_cores": round(max(0.0, (last["busy"] - first["busy"]) - ours) / wall, 2),
            # Share of the window in which some runnable task waited for a CPU.
            "cpu_wait_share": None
            if first["pressure"] is None or last["pressure"] is None
            else round((last["pressure"] - first["pressure"]) / wall, 3),
        }


def speed_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes (median of 5): how fast the cores are now.

    A shared VM's cores are not always as fast: the same work costs more CPU when the
    host is busy, which no counter inside the VM shows. Lower is faster.
    """
    times = []
    for _ in range(5):
        start, x = time.perf_counter(), 0
        for i in range(300_000):
            x += i
        times.append(time.perf_counter() - start)
    return round(sorted(times)[2] * 1000, 2)


# -- one run -----------------------------------------------------------------------------------


def run_point(
    load: Load, topology: str, *, duration_s: float, drain_s: float, quiet_s: float, logs: Path
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        redis = None
        if topology != "memory":
            redis = stack.enter_context(redis_server(logs))
        broker = f"redis://{HOST}:{redis.port}/0" if redis else "memory"
        node_a = stack.enter_context(fanout_node("node A", broker, logs / "node-a.log"))
        node_b = node_a
        if topology == "redis 2 nodes":
            node_b = stack.enter_context(fanout_node("node B", broker, logs / "node-b.log"))
        config = BenchConfig(
            url=node_b.ws,
            sender_url=node_a.ws if node_b is not node_a else None,
            mode="v1",
            receivers=load.receivers,
            senders=load.senders,
            rooms=1,
            size=load.size,
            rate=load.rate / load.senders,
            duration_s=duration_s,
            drain_s=drain_s,
            slo_p99_ms=TARGET_P99_MS,
            # The lab observes the receivers' node (socket queues, CPU, log).
            server_pid=node_b.pid,
        )
        pids = {s.name: s.pid for s in (node_a, node_b, redis) if s is not None}
        watch = CpuWatch(pids, duration_s)
        quiet_before = results_md.wait_for_quiet(quiet_s, OTHER_LOAD_FLAG, sample_s=1.0)
        probe = speed_probe_ms()
        argv = [*sys.argv, f"# {load.name} / {topology}"]
        doc = run_bench(config, argv=argv, progress=watch.progress)
        doc["crossnode"] = {
            "load": load.name,
            "topology": topology,
            "cpu": watch.result(),
            "other_cores_before": round(quiet_before, 2),
            "speed_probe_ms": probe,
            "redis_commandstats": commandstats(redis.port) if redis else None,
            "code": results_md.measured_code(),
        }
        return doc


# -- the section -------------------------------------------------------------------------------


def _other(doc: dict[str, Any]) -> float:
    return float(doc["crossnode"]["cpu"].get("other_cores", 0.0))


def chosen(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median p99 (the upper one of two), among the undisturbed runs."""
    calm = [d for d in runs if _other(d) <= OTHER_LOAD_FLAG] or runs
    calm.sort(key=lambda d: float(d["latency_ms"]["p99"]))
    return calm[len(calm) // 2]


def _ours(doc: dict[str, Any]) -> str:
    ours = doc["crossnode"]["cpu"].get("ours_percent")
    return "" if ours is None else f"{ours / 100:.2f} cores"


def _waiting(doc: dict[str, Any]) -> str:
    share = doc["crossnode"]["cpu"].get("cpu_wait_share")
    return "" if share is None else f"{share:.0%}"


def _probe(doc: dict[str, Any]) -> str:
    probe = doc["crossnode"].get("speed_probe_ms")
    return "" if probe is None else f"{probe:.1f} ms"


def _verdicts(doc: dict[str, Any]) -> str:
    causes = [v["cause"] for v in doc["verdicts"] if v["cause"] != "ok"]
    if not doc.get("valid", True):
        causes.append("invalid")
    return ", ".join(causes) or "ok"


@dataclass(frozen=True)
class Row:
    """The figures of one run that the section shows."""

    sent_per_s: float
    acked_per_s: float
    deliveries_per_s: float
    last_delivery_s: float
    cpu_percent: dict[str, float]
    # CPU microseconds per message handled in the window (acked, or delivered per receiver).
    cpu_us: dict[str, float]
    redis_script_us: float | None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Row:
        t = doc["totals"]
        duration = float(doc["config"]["duration_s"])
        delivered_at = results_md.finished_at(doc, "delivered")
        stats = doc["crossnode"]["redis_commandstats"] or {}
        script = stats.get("evalsha") or stats.get("eval")
        cpu = doc["crossnode"]["cpu"]
        return cls(
            sent_per_s=t["sent"] / duration,
            acked_per_s=t["acked"] / results_md.finished_at(doc, "acked"),
            deliveries_per_s=doc["timeline"][-1]["delivered"] / delivered_at
            if doc["timeline"]
            else 0.0,
            last_delivery_s=delivered_at,
            cpu_percent=dict(cpu.get("percent", {})),
            cpu_us=cls._cpu_us(cpu, int(doc["config"]["receivers"])),
            redis_script_us=script["usec_per_call"] if script else None,
        )

    @staticmethod
    def _cpu_us(cpu: dict[str, Any], receivers: int) -> dict[str, float]:
        """The receivers' node per message it delivered; the others per message acked."""
        per: dict[str, float] = {}
        for name, seconds in cpu.get("seconds", {}).items():
            handled = cpu["acked"]
            if name == "node B":
                handled = cpu["delivered"] / max(1, receivers)
            if handled:
                per[name] = 1e6 * float(seconds) / handled
        return per

    def us_per_message(self, name: str) -> str:
        return f"{self.cpu_us[name]:.0f}" if name in self.cpu_us else ""

    def percent(self, name: str) -> str:
        return f"{self.cpu_percent[name]:.0f}%" if name in self.cpu_percent else ""


def section(
    groups: list[tuple[Load, str, list[dict[str, Any]]]], meta: dict[str, Any], notes: list[str]
) -> str:
    lines = [
        "## Publish-to-deliver latency through Redis, across nodes",
        "",
        "Generated by `bench/redis_crossnode.py`: lab runs (`fanout.v1` clients that publish"
        " with an `id` and count every ack and delivery), each with freshly started servers"
        " and its own `redis-server` on a free loopback port. *memory*: one `fanout serve`,"
        " in-memory broker; *redis 1 node*: one `fanout serve --broker redis://...`, senders"
        " and receivers on it; *redis 2 nodes*: two such nodes sharing the Redis, senders on"
        " node A, receivers on node B (`fanout bench --sender-url`). One room, 200-byte"
        f" messages. Target (issue 4): p99 under {TARGET_P99_MS:g} ms at"
        f" {TARGET_RATE:,.0f} msg/s.",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['cpu_model']}, {meta['machine']['cpus']} cores,"
        f" Python {meta['machine']['python']}, {meta['redis']}; the lab's generator, the"
        " fanout node(s) and Redis share the cores, nothing pinned",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in sorted(meta['versions'].items()))}",
        f"- Commit: {meta['code']}",
        f"- Raw results: `{meta['out']}` (`fanout report` reads them); {meta['runs']}",
        "",
        "| load | broker, nodes | sent msg/s | acked msg/s | deliveries/s | last delivery |"
        " p50 ms | p90 ms | p99 ms | max ms | lost | other load | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for load, topology, runs in groups:
        doc = chosen(runs)
        row, t, lat = Row.of(doc), doc["totals"], doc["latency_ms"]
        p99s = sorted(float(d["latency_ms"]["p99"]) for d in runs)
        p99 = f"{lat['p99']:.2f}"
        if len(runs) > 1:
            p99 += f" ({p99s[0]:.2f}-{p99s[-1]:.2f})"
        lines.append(
            f"| {load.describe()} | {topology} | {row.sent_per_s:,.0f} |"
            f" {row.acked_per_s:,.0f} | {row.deliveries_per_s:,.0f} |"
            f" {row.last_delivery_s:.1f} s | {lat['p50']:.2f} | {lat['p90']:.2f} |"
            f" **{p99}** | {lat['max']:.1f} | {t['lost']:,} | {_other(doc):.2f} cores |"
            f" {_verdicts(doc)} |"
        )
    lines += [
        "",
        "Where the CPU goes (same runs): each process's CPU over the sending window, and"
        " its CPU time per message it handled meanwhile.",
        "",
        "| load | broker, nodes | node A | node B | Redis | node A µs/msg | node B µs/msg |"
        " Redis µs/msg | Redis µs per publish script | generator | all of the run |"
        " waiting for a CPU | speed probe |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        " ---: |",
    ]
    for load, topology, runs in groups:
        doc = chosen(runs)
        row = Row.of(doc)
        script = "" if row.redis_script_us is None else f"{row.redis_script_us:.0f}"
        lines.append(
            f"| {load.describe()} | {topology} | {row.percent('node A')} |"
            f" {row.percent('node B')} | {row.percent('redis')} |"
            f" {row.us_per_message('node A')} | {row.us_per_message('node B')} |"
            f" {row.us_per_message('redis')} | {script} |"
            f" {doc['generator']['max_cpu_percent']:.0f}% | {_ours(doc)} | {_waiting(doc)} |"
            f" {_probe(doc)} |"
        )
    lines += [
        "",
        "- *sent*: messages the senders wrote per second of the sending window; *acked*:"
        " acks per second until the last ack; *deliveries/s*: deliveries per second until"
        " the last delivery, which came *last delivery* seconds after the start (more than"
        " the sending time: the servers fell behind and caught up afterwards).",
        "- Latency: the sender's write to the receiver's read, both `CLOCK_MONOTONIC`, so it"
        " includes the lab's own scheduling delay. Each row is the run with the median p99"
        " (the upper one of two)"
        f" among the row's runs not disturbed by other processes (more than {OTHER_LOAD_FLAG}"
        " cores), or among all when every run was; the range of all the row's p99 in"
        " brackets. *other load*: cores used meanwhile by processes that are not the run's."
        f" *verdict*: the lab's, with the objective set to the target (`latency_slo`: p99"
        f" over {TARGET_P99_MS:g} ms).",
        "- CPU from `/proc` (user + system, % of one core); *node A* serves the senders (and"
        " the receivers with one node), *node B* the receivers. *Redis µs per publish"
        " script*: Redis's own time per `EVALSHA` of the publish script (`INFO"
        " commandstats`); *generator*: the lab's generator process (one), its CPU while"
        " sending; *all of the run*: the nodes, Redis, the generator and this script;"
        " *waiting for a CPU*: share of the window in which some runnable task of the"
        " machine waited for a core (Linux PSI, `/proc/pressure/cpu`, *some*); *speed"
        " probe*: a fixed pure-Python loop timed just before the run (median of 5; lower is"
        " faster): on a shared VM the same work costs more CPU when the host is busy.",
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _target_note(groups: list[tuple[Load, str, list[dict[str, Any]]]]) -> list[str]:
    notes = []
    for load, topology, runs in groups:
        if load.rate != TARGET_RATE or topology != "redis 2 nodes":
            continue
        doc = chosen(runs)
        p99, lost = float(doc["latency_ms"]["p99"]), int(doc["totals"]["lost"])
        met = p99 < TARGET_P99_MS and lost == 0
        within = sum(
            1
            for d in runs
            if float(d["latency_ms"]["p99"]) < TARGET_P99_MS and not int(d["totals"]["lost"])
        )
        notes.append(
            f"- **Target {'met' if met else 'missed'}** at {load.describe()}, across nodes:"
            f" p99 {p99:.2f} ms in the row's run (target < {TARGET_P99_MS:g} ms), {lost:,}"
            f" lost; p99 under {TARGET_P99_MS:g} ms with nothing lost in {within} of"
            f" {len(runs)} runs."
        )
    return notes


def _run_and_save(
    load: Load, topology: str, args: argparse.Namespace, out_dir: Path, repeat: int, attempt: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fanout-crossnode-") as tmp:
        doc = run_point(
            load,
            topology,
            duration_s=args.duration,
            drain_s=args.drain,
            quiet_s=args.quiet_wait,
            logs=Path(tmp),
        )
    slug = topology.replace(" ", "-")
    path = out_dir / f"{load.name}-{slug}-run{repeat + 1}-try{attempt + 1}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    lat, cpu, t = doc["latency_ms"], doc["crossnode"]["cpu"], doc["totals"]
    print(
        f"{load.name:>10} {topology:<14} p50 {lat['p50']:.2f} p99 {lat['p99']:.2f}"
        f" max {lat['max']:.1f} ms, acked {t['acked']:,}/{t['sent']:,}, lost {t['lost']:,},"
        f" cpu {cpu.get('percent')}, other {cpu.get('other_cores')} cores",
        flush=True,
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--loads", default=",".join(LOADS), help="comma-separated, of: " + ", ".join(LOADS)
    )
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help="comma-separated, of: " + ", ".join(TOPOLOGIES),
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="seconds to wait for late messages (a server behind catches up meanwhile)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per row, in turns")
    retries = "extra runs of a row when other processes disturbed it (all runs are kept)"
    parser.add_argument("--retries", type=int, default=2, help=retries)
    results_md.add_run_arguments(parser, 60.0, "before each run")
    parser.add_argument(
        "--from-dir", type=Path, help="rewrite the section from a previous run's directory"
    )
    args = parser.parse_args(argv)
    loads = [LOADS[name] for name in args.loads.split(",")]
    topologies = [t for t in TOPOLOGIES if t in args.topologies.split(",")]
    stamp = dt.datetime.now(dt.UTC)
    out_dir = (args.from_dir or args.out / f"redis_crossnode-{stamp:%Y%m%d-%H%M%S}").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if args.from_dir:
        for path in sorted(out_dir.glob("*.json")):
            doc = json.loads(path.read_text())
            key = (doc["crossnode"]["load"], doc["crossnode"]["topology"])
            runs.setdefault(key, []).append(doc)
            stamp = min(stamp, dt.datetime.fromisoformat(doc["created"]))
    else:
        for repeat in range(args.repeat):
            for load in loads:
                for topology in topologies:
                    for attempt in range(1 + max(0, args.retries)):
                        doc = _run_and_save(load, topology, args, out_dir, repeat, attempt)
                        runs.setdefault((load.name, topology), []).append(doc)
                        if _other(doc) <= OTHER_LOAD_FLAG:
                            break
    groups = [
        (load, topology, runs[(load.name, topology)])
        for load in loads
        for topology in topologies
        if (load.name, topology) in runs
    ]
    count = sum(len(r) for _, _, r in groups)
    found = {
        (d["crossnode"]["code"]["commit"], d["crossnode"]["code"]["note"])
        for _, _, r in groups
        for d in r
    }
    codes = "; ".join(f"`{(c or 'unknown')[:12]}`{n or ''}" for c, n in sorted(found, key=str))
    durations = "/".join(
        sorted({f"{d['config']['duration_s']:g}" for _, _, r in groups for d in r})
    )
    meta = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": groups[0][2][0]["machine"],
        "versions": groups[0][2][0]["versions"],
        "code": codes,
        "redis": nodes.redis_version(),
        "out": results_md.shown_path(out_dir),
        "runs": f"{count} runs of {durations} s sending each, in turns",
    }
    results_md.publish_section(
        args.results, "redis_crossnode", section(groups, meta, _target_note(groups))
    )
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
