"""fanout on a Redis Cluster: latency across nodes, publishes/s per shard, cluster bus cost.

One run, on this machine, everything on 127.0.0.1 (each ``redis-server`` on a free port,
never 6379; clusters formed by ``tests/support/redis_cluster.py``, Redis's default
``cluster-node-timeout`` of 15 s), measures:

1. **Latency across nodes.** The ``10k`` load of ``bench/redis_crossnode.py`` (10,000
   msg/s from 2 senders on node A, 4 receivers on node B, one room, 200-byte messages;
   lab runs that account for every message), and 2,500 and 1,000 msg/s of the same shape
   (``--loads``: what 2 slow cores sustain), through two ``fanout serve`` nodes on one
   standalone ``redis-server`` and on a 3-master/3-replica Redis Cluster, the latter with
   the default ``--redis-ack-replicas 1`` (a publish is acked once its master's replica
   has it: a group-committed ``WAIT``) and with ``--redis-ack-replicas 0``. Interleaved
   rounds, fresh servers for every run.
2. **Publishes/s through 1 and 3 shards.** ``fanout.Emitter`` (fanout's own publish
   path) publishing flat out from ``--concurrency`` coroutines per process, 200-byte JSON
   payloads with an id, over 256 rooms spread over every slot, into a cluster of 1 master
   (all slots) and one of 3 masters (one replica each, publishes acked after ``WAIT``),
   from 1 and from 2 publisher processes. Publishes/s, every process's CPU (``/proc``)
   per publish, Redis's own time per publish script (``INFO commandstats``), and which
   side ran out of CPU.
3. **Cluster bus cost.** Bytes on the cluster bus per message (the kernel's byte counters
   of every bus connection, ``ss -ti``, idle gossip subtracted) and bus messages per
   message (``CLUSTER INFO``), for fanout's publishes (``SPUBLISH`` inside its script)
   and, for comparison, plain ``PUBLISH``; plus the replication stream per publish.

    .venv/bin/python bench/redis_cluster.py [--quick] [--rounds 3] [--duration 10]
        [--json FILE] [--results bench/RESULTS.md | -]

Writes ``bench/out/redis_cluster-<time>.json`` (and ``--json FILE``), the lab runs'
documents under ``bench/out/redis_cluster-<time>/`` and the section ``redis_cluster`` of
``bench/RESULTS.md`` (with ``--quick`` only when ``--results`` is given). About 15 minutes
on a quiet machine; ``--quick`` about 1.5 minutes. Every wait is bounded; every server and
process it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

import fanout
import nodes
import results_md
from fanout.brokers.redis.emitter import RedisEmitter
from fanout.brokers.redis.layout import RoomKeys
from fanout.brokers.redis.options import RedisTarget
from fanout.brokers.redis.slots import key_slot
from fanout.brokers.redis.topology import discover
from fanout.lab.config import BenchConfig
from fanout.lab.interrupt import run_interruptible
from fanout.lab.session import run_bench
from fanout.settings import NO_CLIENT_LIMITS
from redis_crossnode import LOADS as CROSSNODE_LOADS
from redis_crossnode import TARGET_P99_MS, CpuWatch, Load, Row, chosen, speed_probe_ms
from results_md import HOST, OTHER_LOAD_FLAG, busy_s, cpu_s, percentiles, tree_cpu_s

sys.path.insert(0, str(results_md.ROOT))
from tests.support.redis import encode_command
from tests.support.redis_cluster import RedisCluster, call, cluster_info, info

NAME = "redis_cluster"
PAYLOAD_BYTES = 200
ROOMS = 256
# Every room's history is full (trimmed on each publish, as in a long-lived room) once the
# warm-up has published ROOMS * HISTORY messages.
HISTORY = 100
NODE_TIMEOUT_MS = 15_000  # Redis's default: its gossip rate is the one deployments see
CHILD_START_S = 2.5  # a publisher process: interpreter, imports, first connection
SATURATED = 0.9  # of a core (one process) or of the machine's cores
# redis_crossnode's loads, and one between its 1k and 5k (same shape)
LOADS = {**CROSSNODE_LOADS, "2.5k": Load("2.5k", 2_500.0, 2, 4)}
SUBSCRIBED_LINKS = (0, 1, 10)  # fanout nodes with members in a room: links subscribed
LAB_ROOM = BenchConfig(url=f"ws://{HOST}:1/ws").room_name(0)  # the latency runs' one room


@dataclass(frozen=True)
class Deployment:
    """Where the two nodes of a latency run publish: one Redis, or a cluster."""

    name: str
    cluster: bool
    ack_replicas: int

    def flags(self) -> list[str]:
        return ["--redis-ack-replicas", str(self.ack_replicas)]


DEPLOYMENTS = (
    Deployment("one Redis", cluster=False, ack_replicas=1),  # no replica: acked at once
    Deployment("cluster, ack after 1 replica", cluster=True, ack_replicas=1),
    Deployment("cluster, ack 0 (no WAIT)", cluster=True, ack_replicas=0),
)


_BEGAN = time.monotonic()


def say(text: str) -> None:
    """A progress line, with the seconds since the script started."""
    print(f"{time.monotonic() - _BEGAN:5.0f} s  {text}", flush=True)


def room_names(count: int) -> list[str]:
    """Rooms whose slots spread over every master (CRC16 of the name, as Redis hashes)."""
    return [f"room-{i}" for i in range(count)]


def unique_tag(index: int = 0) -> str:
    """A prefix for publish ids never used before: a repeated id is a duplicate, which
    Redis answers without storing or publishing anything."""
    return f"t{time.monotonic_ns()}-{index}"


def payload() -> dict[str, str]:
    """A JSON object of exactly PAYLOAD_BYTES bytes once encoded."""
    data = {"type": "chat", "user": "bench", "text": ""}
    data["text"] = "x" * (PAYLOAD_BYTES - len(orjson.dumps(data)))
    return data


@contextlib.contextmanager
def cluster(directory: Path, masters: int, replicas: int = 1) -> Iterator[RedisCluster]:
    """A private Redis Cluster in its own directory under ``directory``, its replicas
    online as fanout sees them (``settle``); stopped after."""
    where = Path(tempfile.mkdtemp(prefix=f"cluster-{masters}x{replicas}-", dir=directory))
    with RedisCluster(
        where, masters=masters, replicas=replicas, node_timeout_ms=NODE_TIMEOUT_MS
    ) as formed:
        began = time.monotonic()
        settle(formed, replicas)
        say(
            f"      cluster of {masters} master(s) x {1 + replicas} formed in"
            f" {formed.startup_s or 0:.1f} s, replicas online for fanout after"
            f" {time.monotonic() - began:.1f} s more"
        )
        yield formed


def settle(formed: RedisCluster, replicas: int, timeout_s: float = 30.0) -> None:
    """Write a key on every master, then wait until fanout's own discovery sees every
    master's replicas online.

    Redis 7.0's CLUSTER SHARDS calls a replica that has replicated nothing yet
    ``loading``, and fanout counts only online replicas: on a cluster nothing was ever
    written to, publishes would be acked without WAIT until the replicas' offsets have
    gone round the cluster bus (a node's topology refresh then finds them; an Emitter
    refreshes only after an error).
    """
    for master in formed.masters():
        owned = formed.slots_of(master)
        key = next(k for k in (f"settle-{i}" for i in itertools.count()) if key_slot(k) in owned)
        call(master, "SET", key, "1")
    target = RedisTarget.parse(formed.seed_url)
    deadline = time.monotonic() + timeout_s
    while True:
        topology = asyncio.run(discover(target, 2.0, []))
        online = [len(shard.replicas) for shard in topology.shards]
        if all(n >= replicas for n in online):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"replicas online per master after {timeout_s:g} s: {online}")
        time.sleep(0.2)


def script_stats(port: int) -> dict[str, float]:
    """Calls and Redis's own µs of the publish script (EVALSHA) and of WAIT so far."""
    stats = nodes.commandstats(port)
    script, wait = stats.get("evalsha", {}), stats.get("wait", {})
    return {
        "calls": script.get("calls", 0.0),
        "usec": script.get("usec", 0.0),
        "waits": wait.get("calls", 0.0),
    }


# -- 1. latency across nodes ------------------------------------------------------------------


@contextlib.contextmanager
def redis_for(dep: Deployment, logs: Path) -> Iterator[tuple[str, dict[str, int], int]]:
    """(broker URL, the Redis processes to watch by name, the port whose commandstats
    count the room's publishes): the master that owns the lab's room, and its replica."""
    if not dep.cluster:
        with nodes.redis_server(logs) as redis:
            yield f"redis://{HOST}:{redis.port}/0", {"redis": redis.pid}, redis.port
        return
    with cluster(logs, masters=3) as formed:
        owner = formed.master_of_slot(key_slot(LAB_ROOM))
        watched = {"redis": owner.pid, "replica": formed.replica_of(owner).pid}
        yield formed.seed_url, watched, owner.port


def latency_run(
    dep: Deployment, load: Load, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """One lab run of ``load`` across two nodes on ``dep``: the lab's document, with the
    fields ``redis_crossnode.Row`` reads under ``crossnode``."""
    with contextlib.ExitStack() as stack:
        broker, redis_pids, stats_port = stack.enter_context(redis_for(dep, logs))
        flags = ["--broker", broker, "--log-level", "warning", *NO_CLIENT_LIMITS, *dep.flags()]
        a = stack.enter_context(nodes.fanout_node("node A", flags, logs / "node-a.log"))
        b = stack.enter_context(nodes.fanout_node("node B", flags, logs / "node-b.log"))
        config = BenchConfig(
            url=b.ws,
            sender_url=a.ws,
            mode="v1",
            receivers=load.receivers,
            senders=load.senders,
            rate=load.rate / load.senders,
            size=load.size,
            duration_s=args.duration,
            drain_s=args.drain,
            slo_p99_ms=TARGET_P99_MS,
            server_pid=b.pid,  # the lab observes the receivers' node
        )
        watch = CpuWatch({"node A": a.pid, "node B": b.pid, **redis_pids}, args.duration)
        quiet = results_md.wait_for_quiet(args.quiet_wait, OTHER_LOAD_FLAG, sample_s=1.0)
        probe = speed_probe_ms()
        doc = run_bench(config, argv=[*sys.argv, f"# {dep.name}"], progress=watch.progress)
        stats = nodes.commandstats(stats_port)
        doc["crossnode"] = {
            "load": load.name,
            "topology": dep.name,
            "cpu": watch.result(),
            "other_cores_before": round(quiet, 2),
            "speed_probe_ms": probe,
            "redis_commandstats": stats,
            "code": results_md.measured_code(),
        }
        return doc


def latency_summary(dep: Deployment, load: Load, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures the section shows for one load on one deployment: its chosen run and
    the ranges."""
    doc = chosen(runs)
    row = Row.of(doc)
    stats = doc["crossnode"]["redis_commandstats"]
    scripts = stats.get("evalsha", {}).get("calls", 0.0)
    waits = stats.get("wait", {}).get("calls", 0.0)
    lat, totals = doc["latency_ms"], doc["totals"]
    return {
        "load": load.name,
        "load_text": load.describe(),
        "deployment": dep.name,
        "runs": len(runs),
        "p99_ms_each_run": [float(d["latency_ms"]["p99"]) for d in runs],
        "other_cores_each_run": [d["crossnode"]["cpu"].get("other_cores", 0.0) for d in runs],
        "speed_probe_ms": doc["crossnode"]["speed_probe_ms"],
        "lost_each_run": [int(d["totals"]["lost"]) for d in runs],
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "sent_per_s": round(row.sent_per_s),
        "acked_per_s": round(row.acked_per_s),
        "lost": totals["lost"],
        "cpu_percent": row.cpu_percent,
        "cpu_us_per_message": {k: round(v, 1) for k, v in row.cpu_us.items()},
        "redis_script_us": row.redis_script_us,
        "publishes_per_wait": round(scripts / waits, 1) if waits else None,
        "other_cores": doc["crossnode"]["cpu"].get("other_cores"),
        "verdicts": [v["cause"] for v in doc["verdicts"] if v["cause"] != "ok"],
        "valid": doc.get("valid", True),
        "run_file": doc.get("saved_as"),
    }


def measure_latency(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        order = DEPLOYMENTS[round_no % 3 :] + DEPLOYMENTS[: round_no % 3]
        for load, dep in ((load, dep) for load in args.loads for dep in order):
            for attempt in range(1 + args.retries):
                label = f"{load.name}-round{round_no + 1}-try{attempt + 1}"
                doc = latency_attempt(dep, load, args, out_dir, label)
                runs.setdefault((load.name, dep.name), []).append(doc)
                other = float(doc["crossnode"]["cpu"].get("other_cores", 0.0))
                if other <= OTHER_LOAD_FLAG:
                    break
                if attempt < args.retries:
                    say(f"      disturbed (other processes used {other} cores): once more")
    return [
        latency_summary(dep, load, runs[(load.name, dep.name)])
        for load in args.loads
        for dep in DEPLOYMENTS
    ]


def latency_attempt(
    dep: Deployment, load: Load, args: argparse.Namespace, out_dir: Path, label: str
) -> dict[str, Any]:
    """One latency run, saved as ``out_dir/latency-<deployment>-<label>.json``."""
    say(f"[1/3] {label}: {load.describe()}, {dep.name}")
    with tempfile.TemporaryDirectory(prefix="fanout-cluster-lat-") as tmp:
        doc = latency_run(dep, load, args, Path(tmp))
    slug = re.sub(r"[^a-z0-9]+", "-", dep.name.lower()).strip("-")
    path = out_dir / f"latency-{slug}-{label}.json"
    doc["saved_as"] = results_md.shown_path(path)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    lat, cpu = doc["latency_ms"], doc["crossnode"]["cpu"]
    say(
        f"      p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} max {lat['max']:.1f} ms,"
        f" lost {doc['totals']['lost']:,}, cpu {cpu.get('percent')}, other"
        f" {cpu.get('other_cores')} cores, speed probe {doc['crossnode']['speed_probe_ms']} ms"
    )
    return doc


# -- 2. publishes/s through 1 and 3 shards -----------------------------------------------------


@dataclass(frozen=True)
class PublisherSpec:
    """What one publisher process (or part 3's in-process run) does."""

    url: str
    tag: str  # prefix of its publish ids (``unique_tag``)
    concurrency: int
    start_at: float  # time.monotonic(): CLOCK_MONOTONIC, one clock for every process
    duration_s: float
    ack_replicas: int = 1
    count: int | None = None  # stop after this many publishes (no window figures)


async def publish_flat_out(spec: PublisherSpec) -> dict[str, Any]:
    """``spec.concurrency`` coroutines publish back to back through one ``fanout.Emitter``
    until ``start_at + duration_s`` (or ``count`` publishes); figures of the publishes
    begun from ``start_at`` on, and this process's CPU over that window."""
    settings = fanout.Settings(history_max_messages=HISTORY, redis_ack_replicas=spec.ack_replicas)
    rooms, data = room_names(ROOMS), payload()
    end = spec.start_at + spec.duration_s
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0

    async def publisher(emitter: RedisEmitter) -> None:
        nonlocal issued
        while spec.count is None or issued < spec.count:
            began = time.monotonic()
            if began >= end:
                return
            n, issued = issued, issued + 1
            try:
                await emitter.publish(rooms[n % ROOMS], data, id=f"{spec.tag}-{n}")
            except fanout.BrokerError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > 100:
                    raise
                continue
            if began >= spec.start_at:
                latencies.append(time.monotonic() - began)

    async with fanout.Emitter(spec.url, settings=settings) as emitter:
        await emitter.publish(rooms[0], data)  # topology known, links up, script loaded
        ready = time.monotonic()
        tasks = [asyncio.create_task(publisher(emitter)) for _ in range(spec.concurrency)]
        cpu = None
        if spec.count is None:
            await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
            cpu = time.process_time()
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            cpu = time.process_time() - cpu
        await asyncio.gather(*tasks)
    figures: dict[str, Any] = {
        "published": len(latencies),
        "cpu_s": cpu,
        "ready_late_s": round(max(0.0, ready - spec.start_at), 3),
        "errors": len(errors),
        **percentiles(latencies),
    }
    if errors:
        figures["first_error"] = errors[0]
    return figures


def _take(cluster: RedisCluster) -> dict[str, Any]:
    """CPU of every Redis process, the masters' script counters, the machine's time."""
    masters, replicas = cluster.masters(), cluster.replicas()
    return {
        "at": time.monotonic(),
        "masters": [cpu_s(m.pid) for m in masters],
        "replicas": [cpu_s(r.pid) for r in replicas],
        "stats": [script_stats(m.port) for m in masters],
        "busy": busy_s(),
        "ours": tree_cpu_s(),
    }


def _start_publishers(specs: Sequence[PublisherSpec]) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--publisher"]
    return [
        subprocess.Popen(
            [*argv, json.dumps(dataclasses.asdict(s))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for s in specs
    ]


def _collect(children: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> list[Any]:
    results = []
    for child in children:
        out, err = child.communicate(timeout=timeout_s)
        if child.returncode != 0:
            raise RuntimeError(f"publisher exited {child.returncode}:\n{err.decode()[-3000:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def throughput_point(
    formed: RedisCluster, processes: int, args: argparse.Namespace
) -> dict[str, Any]:
    """``processes`` publisher processes flat out into ``formed`` over one window."""
    quiet = results_md.wait_for_quiet(args.quiet_wait, OTHER_LOAD_FLAG)
    start_at = time.monotonic() + CHILD_START_S + args.warmup
    specs = [
        PublisherSpec(formed.seed_url, unique_tag(i), args.concurrency, start_at, args.window)
        for i in range(processes)
    ]
    children = _start_publishers(specs)
    try:
        time.sleep(max(0.0, start_at - time.monotonic()))
        before = _take(formed)
        time.sleep(max(0.0, start_at + args.window - time.monotonic()))
        after = _take(formed)
        publishers = _collect(children, timeout_s=30 + args.window)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    elapsed = after["at"] - before["at"]
    total = sum(int(p["published"]) for p in publishers)
    masters = [b - a for a, b in zip(before["masters"], after["masters"], strict=True)]
    replicas = [b - a for a, b in zip(before["replicas"], after["replicas"], strict=True)]
    calls = [b["calls"] - a["calls"] for a, b in zip(before["stats"], after["stats"], strict=True)]
    usec = sum(b["usec"] - a["usec"] for a, b in zip(before["stats"], after["stats"], strict=True))
    waits = sum(
        b["waits"] - a["waits"] for a, b in zip(before["stats"], after["stats"], strict=True)
    )
    publisher_cpu = [float(p["cpu_s"]) for p in publishers]
    ours = after["ours"] - before["ours"]

    def per_publish(seconds: float) -> float | None:
        return round(seconds / total * 1e6, 2) if total else None

    return {
        "masters": len(masters),
        "processes": processes,
        "publishes": total,
        "publishes_per_s": round(total / args.window, 1),
        "p50_ms": [p.get("p50_ms") for p in publishers],
        "p99_ms": [p.get("p99_ms") for p in publishers],
        "errors": sum(int(p["errors"]) for p in publishers),
        "first_error": next((p["first_error"] for p in publishers if "first_error" in p), None),
        "ready_late_s": max(float(p["ready_late_s"]) for p in publishers),
        "publisher_cores": [round(c / elapsed, 3) for c in publisher_cpu],
        "master_cores": [round(c / elapsed, 3) for c in masters],
        "replica_cores": [round(c / elapsed, 3) for c in replicas],
        "publishes_per_master": [int(c) for c in calls],
        "publisher_cpu_us_per_publish": per_publish(sum(publisher_cpu)),
        "master_cpu_us_per_publish": per_publish(sum(masters)),
        "replica_cpu_us_per_publish": per_publish(sum(replicas)),
        "script_us_per_publish": round(usec / sum(calls), 2) if sum(calls) else None,
        "publishes_per_wait": round(sum(calls) / waits, 1) if waits else None,
        "machine_cores": round((after["busy"] - before["busy"]) / elapsed, 3),
        "other_cores": round(max(0.0, after["busy"] - before["busy"] - ours) / elapsed, 2),
        "other_cores_before": round(quiet, 2),
    }


def limited_by(point: dict[str, Any], cpus: int) -> str:
    """Which side ran out of CPU in a throughput point, in words."""
    pubs, masters = point["publisher_cores"], point["master_cores"]
    machine = point["machine_cores"]
    parts = [
        "publisher " + "+".join(f"{c:.2f}" for c in pubs),
        "masters " + "+".join(f"{c:.2f}" for c in masters),
        f"replicas {sum(point['replica_cores']):.2f}",
    ]
    cores = ", ".join(parts) + " cores"
    if machine >= SATURATED * cpus:
        busiest = "publishers" if sum(pubs) >= sum(masters) else "Redis"
        return f"the machine ({machine:.2f} of {cpus} cores busy; most to the {busiest}): {cores}"
    if max(pubs) >= SATURATED:
        return f"the publisher (Python, a full core): {cores}"
    if max(masters) >= SATURATED:
        return f"a Redis master (a full core): {cores}"
    return (
        f"no process at a full core, the machine not full (round trips, waits for a core): {cores}"
    )


def measure_throughput(args: argparse.Namespace, logs: Path) -> list[dict[str, Any]]:
    points = []
    shapes = (1, 3)
    for round_no in range(args.rounds):
        for masters in shapes[round_no % 2 :] + shapes[: round_no % 2]:
            with cluster(logs, masters=masters) as formed:
                spread = rooms_per_master(formed)
                for processes in (1, 2) if round_no % 2 == 0 else (2, 1):
                    say(
                        f"[2/3] round {round_no + 1}/{args.rounds}: {masters} master(s),"
                        f" {processes} publisher process(es), {args.concurrency} coroutines"
                        " each"
                    )
                    point = throughput_point(formed, processes, args)
                    point["round"] = round_no + 1
                    point["rooms_per_master"] = spread
                    point["limited_by"] = limited_by(point, os.cpu_count() or 1)
                    say(
                        f"      {point['publishes_per_s']:,.0f} publishes/s, Redis masters"
                        f" {point['master_cpu_us_per_publish']} µs/publish, publishers"
                        f" {point['publisher_cpu_us_per_publish']} µs/publish, errors"
                        f" {point['errors']}; limited by {point['limited_by']}"
                    )
                    points.append(point)
    return points


def rooms_per_master(formed: RedisCluster) -> list[int]:
    """How many of the publishers' rooms each master owns, masters by lowest slot."""
    slots = [key_slot(room) for room in room_names(ROOMS)]
    owned = [formed.slots_of(m) for m in formed.masters()]
    return [sum(1 for s in slots if s in mine) for mine in owned]


# -- 3. the cluster bus --------------------------------------------------------------------------

_BYTES_SENT = re.compile(r"\bbytes_sent:(\d+)")


def _ports(line: str) -> set[int]:
    """The ports of the ``ADDRESS:PORT`` columns of one ``ss`` socket line."""
    found = set()
    for token in line.split():
        address, colon, port = token.rpartition(":")
        if colon and address and port.isdigit():
            found.add(int(port))
    return found


def bus_bytes(bus_ports: set[int]) -> tuple[int, int]:
    """(bytes sent so far, sockets) over every TCP connection to or from a cluster bus
    port, from the kernel's counters (``ss -ti``). Both ends of each connection are on
    this machine, so every byte is counted once, by the end that sent it."""
    out = subprocess.run(
        ["ss", "-tinH"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    total = sockets = 0
    ours = False
    for line in out.splitlines():
        if not line[:1].isspace():
            ours = bool(_ports(line) & bus_ports)
            sockets += ours
        elif ours and (sent := _BYTES_SENT.search(line)):
            total += int(sent.group(1))
    return total, sockets


def bus_sample(formed: RedisCluster) -> dict[str, Any]:
    """Bus bytes and sockets, bus messages sent by type (``CLUSTER INFO`` of every node,
    summed; ``all`` for every type) and the masters' replication stream bytes so far."""
    sent, sockets = bus_bytes(set(formed.bus_ports.values()))
    messages: dict[str, int] = {}
    for node in formed.nodes:
        for key, value in cluster_info(node).items():
            if key.startswith("cluster_stats_messages_") and key.endswith("_sent"):
                kind = key.removeprefix("cluster_stats_messages_").removesuffix("sent")
                kind = kind.removesuffix("_") or "all"
                messages[kind] = messages.get(kind, 0) + int(value)
    repl = sum(int(info(m, "stats")["total_net_repl_output_bytes"]) for m in formed.masters())
    return {
        "at": time.monotonic(),
        "bytes": sent,
        "sockets": sockets,
        "messages": messages,
        "repl": repl,
    }


def bus_delta(
    before: dict[str, Any], after: dict[str, Any], count: int, idle: dict[str, Any] | None
) -> dict[str, Any]:
    """What ``count`` messages cost on the bus between two samples, the idle gossip
    (bytes and replication bytes per second of ``idle``) subtracted."""
    seconds = after["at"] - before["at"]
    kinds = set(before["messages"]) | set(after["messages"])
    messages = {k: after["messages"].get(k, 0) - before["messages"].get(k, 0) for k in kinds}
    raw, repl = after["bytes"] - before["bytes"], after["repl"] - before["repl"]
    figures: dict[str, Any] = {
        "messages": count,
        "seconds": round(seconds, 3),
        "bus_bytes": raw,
        "bus_messages": {k: v for k, v in sorted(messages.items()) if v},
        "sockets": [before["sockets"], after["sockets"]],
        "repl_bytes": repl,
    }
    if idle is None:
        figures["bus_bytes_per_s"] = round(raw / seconds)
        figures["bus_messages_per_s"] = round(messages.get("all", 0) / seconds, 1)
        figures["repl_bytes_per_s"] = round(repl / seconds)
        return figures
    gossip = idle["bus_bytes_per_s"] * seconds
    publishes = messages.get("publish", 0) + messages.get("publishshard", 0)
    figures["gossip_bytes_subtracted"] = round(gossip)
    figures["bus_bytes_per_message"] = round((raw - gossip) / count, 1)
    figures["bus_publish_messages_per_message"] = round(publishes / count, 3)
    figures["bytes_per_bus_publish_message"] = (
        round((raw - gossip) / publishes, 1) if publishes else None
    )
    figures["repl_bytes_per_message"] = round(
        (repl - idle["repl_bytes_per_s"] * seconds) / count, 1
    )
    return figures


def plain_publishes(port: int, count: int) -> None:
    """``count`` plain PUBLISHes of the payload on the rooms' channels, pipelined, to the
    node at ``port`` (what a cluster does with a PUBLISH, for comparison)."""
    data = orjson.dumps(payload())
    channels = [RoomKeys.of("fanout", room).channel for room in room_names(ROOMS)]
    with socket.create_connection((HOST, port), timeout=10) as conn:
        for first in range(0, count, 500):
            batch = range(first, min(count, first + 500))
            conn.sendall(
                b"".join(encode_command("PUBLISH", channels[i % ROOMS], data) for i in batch)
            )
            replies = b""
            while replies.count(b"\r\n") < len(batch):
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection mid-batch")
                replies += chunk


def emit(formed: RedisCluster, count: int, concurrency: int) -> None:
    """``count`` publishes through ``fanout.Emitter`` in this process, all acked."""
    spec = PublisherSpec(
        formed.seed_url, unique_tag(), concurrency, time.monotonic(), 600.0, count=count
    )
    done = uvloop.run(publish_flat_out(spec))
    if done["errors"] or done["published"] != count:
        raise RuntimeError(f"not every publish succeeded: {done}")


class Subscribers:
    """``links`` connections to every master, each SSUBSCRIBEd to the channels of the
    rooms that master owns: what ``links`` fanout nodes with members in every room hold
    (one pub/sub link per master each). A thread reads and counts what Redis sends."""

    def __init__(self, formed: RedisCluster, links: int) -> None:
        self.received = 0
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        for master in formed.masters() if links else []:
            owned = formed.slots_of(master)
            rooms = [r for r in room_names(ROOMS) if key_slot(r) in owned]
            # One channel per SSUBSCRIBE: a cluster refuses channels of several slots.
            command = b"".join(
                encode_command("SSUBSCRIBE", RoomKeys.of("fanout", r).channel) for r in rooms
            )
            for _ in range(links):
                sock = socket.create_connection((HOST, master.port), timeout=5)
                sock.sendall(command)
                sock.setblocking(False)
                self._socks.append(sock)
        self._thread = threading.Thread(target=self._drain, name="subscribers", daemon=True)

    def _drain(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self._socks:
                selector.register(sock, selectors.EVENT_READ, sock)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.05):
                    ready: socket.socket = key.data
                    with contextlib.suppress(BlockingIOError):
                        self.received += len(ready.recv(1 << 16))

    def settled(self, quiet_s: float = 0.3, timeout_s: float = 30.0) -> int:
        """Bytes received so far, once nothing more came for ``quiet_s``."""
        deadline = time.monotonic() + timeout_s
        last = -1
        while self.received != last and time.monotonic() < deadline:
            last = self.received
            time.sleep(quiet_s)
        return self.received

    def __enter__(self) -> Subscribers:
        self._thread.start()
        self.settled()  # the subscriptions confirmed
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self._socks:
            sock.close()


def subscribed_cost(
    formed: RedisCluster, links: int, count: int, concurrency: int
) -> dict[str, Any]:
    """Redis's CPU per publish while ``links`` node links subscribe to every room."""
    masters, replicas = formed.masters(), formed.replicas()
    with Subscribers(formed, links) as subscribers:
        before = sum(cpu_s(m.pid) for m in masters), sum(cpu_s(r.pid) for r in replicas)
        received = subscribers.received
        emit(formed, count, concurrency)
        received = subscribers.settled() - received
        after = sum(cpu_s(m.pid) for m in masters), sum(cpu_s(r.pid) for r in replicas)
    return {
        "links": links,
        "messages": count,
        "master_cpu_us_per_publish": round((after[0] - before[0]) / count * 1e6, 1),
        "replica_cpu_us_per_publish": round((after[1] - before[1]) / count * 1e6, 1),
        "delivered_bytes_per_publish": round(received / count, 1),
    }


def measure_bus(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    count = args.bus_messages
    with cluster(logs, masters=3) as formed:
        say(f"[3/3] cluster bus: {args.idle:g} s idle (gossip only)")
        start = bus_sample(formed)
        time.sleep(args.idle)
        idle = bus_delta(start, bus_sample(formed), 0, None)
        publishes: dict[str, Any] = {}
        runs = (
            ("fanout publish (SPUBLISH in its script)", emit),
            ("plain PUBLISH", lambda f, n, _: plain_publishes(f.masters()[0].port, n)),
        )
        for what, publish in runs:
            say(f"[3/3] cluster bus: {count:,} x {what}")
            before = bus_sample(formed)
            publish(formed, count, args.concurrency)
            publishes[what] = bus_delta(before, bus_sample(formed), count, idle)
            say(
                f"      {publishes[what]['bus_bytes_per_message']:,} bus bytes per message,"
                f" {publishes[what]['bus_publish_messages_per_message']} bus messages per"
                f" message, {publishes[what]['repl_bytes_per_message']:,} replication bytes"
                " per message"
            )
        subscribed = []
        for round_no in range(args.rounds):
            for links in SUBSCRIBED_LINKS:
                say(
                    f"[3/3] round {round_no + 1}/{args.rounds}: Redis CPU per publish,"
                    f" {count:,} publishes, {links} node link(s) subscribed to every room"
                )
                point = subscribed_cost(formed, links, count, args.concurrency)
                point["round"] = round_no + 1
                subscribed.append(point)
                say(
                    f"      masters {point['master_cpu_us_per_publish']} µs/publish,"
                    f" replicas {point['replica_cpu_us_per_publish']} µs/publish,"
                    f" {point['delivered_bytes_per_publish']:,} bytes delivered per publish"
                )
    return {"idle": idle, "publishes": publishes, "subscribed": subscribed}


# -- the section ---------------------------------------------------------------------------------


def _us(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _latency_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### 1. Publish-to-deliver across two nodes: one Redis vs a 3-master cluster",
        "",
        "| load | Redis | p50 ms | p90 ms | p99 ms (each run) | max ms | sent/s | acked/s |"
        " lost | node A µs/msg | node B µs/msg | Redis master µs/msg | its replica µs/msg |"
        " script µs (Redis's own) | publishes per WAIT | other load | speed probe | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        " ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        each = ", ".join(
            f"{p:.2f}{'*' if other > OTHER_LOAD_FLAG else ''}"
            for p, other in zip(r["p99_ms_each_run"], r["other_cores_each_run"], strict=True)
        )
        per = r["cpu_us_per_message"]
        verdict = ", ".join(r["verdicts"] + ([] if r["valid"] else ["invalid"])) or "ok"
        lines.append(
            f"| {r['load_text']} | {r['deployment']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} |"
            f" **{r['p99_ms']:.2f}** ({each}) | {r['max_ms']:.1f} | {r['sent_per_s']:,} |"
            f" {r['acked_per_s']:,} | {sum(r['lost_each_run']):,} | {_us(per.get('node A'))} |"
            f" {_us(per.get('node B'))} | {_us(per.get('redis'))} | {_us(per.get('replica'))} |"
            f" {_us(r['redis_script_us'])} | {r['publishes_per_wait'] or ''} |"
            f" {r['other_cores']:.2f} cores | {r['speed_probe_ms']:.1f} ms | {verdict} |"
        )
    lines.append("")
    for load in dict.fromkeys(r["load"] for r in rows):
        by = {r["deployment"]: r for r in rows if r["load"] == load}
        lines += _latency_notes(*(by.get(d.name) for d in DEPLOYMENTS))
    return lines


def _latency_notes(
    one: dict[str, Any] | None, acked: dict[str, Any] | None, bare: dict[str, Any] | None
) -> list[str]:
    """The target's verdict and the cost of WAIT, for one load."""
    lines = []

    def within(row: dict[str, Any]) -> tuple[int, int]:
        """(runs with p99 under the target and nothing lost, runs)."""
        runs = list(zip(row["p99_ms_each_run"], row["lost_each_run"], strict=True))
        return sum(1 for p, lost in runs if p < TARGET_P99_MS and not lost), len(runs)

    if acked is not None:
        met, runs = within(acked)
        versus = ""
        if one is not None:
            versus = " (one Redis: p99 {:.2f} ms, under it in {} of {} runs)".format(
                one["p99_ms"], *within(one)
            )
        lines.append(
            f"- {acked['load_text']}: **target {'met' if met == runs else 'missed'}** (p99 <"
            f" {TARGET_P99_MS:g} ms with nothing lost) on the cluster with acks after a"
            f" replica: p99 {acked['p99_ms']:.2f} ms in the row's run, under"
            f" {TARGET_P99_MS:g} ms with nothing lost in {met} of {runs} runs{versus}."
        )
    if acked is not None and bare is not None:
        a_us, b_us = acked["cpu_us_per_message"], bare["cpu_us_per_message"]

        def diff(name: str) -> str:
            if name not in a_us or name not in b_us:
                return "n/a"
            return f"{a_us[name] - b_us[name]:+.0f} µs"

        lines.append(
            f"- {acked['load_text']}: **what waiting for the replica costs** (ack after 1"
            f" replica minus ack 0, same cluster): p50 {acked['p50_ms'] - bare['p50_ms']:+.2f}"
            f" ms, p99 {acked['p99_ms'] - bare['p99_ms']:+.2f} ms; CPU per publish: node A"
            f" {diff('node A')}, the Redis master {diff('redis')}, its replica"
            f" {diff('replica')}; one WAIT per {acked['publishes_per_wait']} publishes (the"
            " group commit)."
        )
    return lines


def _median_point(points: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(points, key=lambda p: float(p["publishes_per_s"]))
    return ordered[(len(ordered) - 1) // 2]


def _throughput_lines(points: list[dict[str, Any]], concurrency: int) -> list[str]:
    lines = [
        "### 2. Publishes/s through 1 and 3 shards (`fanout.Emitter`, flat out)",
        "",
        "| masters (1 replica each) | publisher processes | publishes/s (range) | p50 ms |"
        " p99 ms | publisher µs/publish | Redis masters µs/publish | replicas µs/publish |"
        " script µs (Redis's own) | publishes per WAIT | publishes per master | errors |"
        " other load | CPU: who ran out (cores) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
        " ---: | --- |",
    ]
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["masters"], p["processes"]), []).append(p)
    medians: dict[tuple[int, int], float] = {}
    for key in sorted(groups):
        runs = groups[key]
        m = _median_point(runs)
        rates = sorted(float(p["publishes_per_s"]) for p in runs)
        medians[key] = float(m["publishes_per_s"])
        spread = f" ({rates[0]:,.0f}-{rates[-1]:,.0f})" if len(runs) > 1 else ""
        p50 = statistics.mean(float(x) for x in m["p50_ms"] if x is not None)
        p99 = max(float(x) for x in m["p99_ms"] if x is not None)
        lines.append(
            f"| {key[0]} | {key[1]} | **{m['publishes_per_s']:,.0f}**{spread} | {p50:.2f} |"
            f" {p99:.2f} | {_us(m['publisher_cpu_us_per_publish'])} |"
            f" {_us(m['master_cpu_us_per_publish'])} | {_us(m['replica_cpu_us_per_publish'])} |"
            f" {_us(m['script_us_per_publish'])} | {m['publishes_per_wait'] or ''} |"
            f" {', '.join(f'{c:,}' for c in m['publishes_per_master'])} |"
            f" {sum(int(p['errors']) for p in runs)} | {m['other_cores']:.2f} cores |"
            f" {m['limited_by']} |"
        )
    lines.append("")
    for processes in (1, 2):
        one, three = medians.get((1, processes)), medians.get((3, processes))
        if one and three:
            lines.append(
                f"- {processes} publisher process{'es' if processes > 1 else ''}: 3 shards"
                f" give {three / one:.2f}x the publishes/s of 1 shard ({three:,.0f} vs"
                f" {one:,.0f})."
            )
    lines.append(
        f"- Each publisher process: one `fanout.Emitter`, {concurrency} coroutines publishing"
        f" back to back (each waits for its ack), {ROOMS} rooms, 200-byte JSON with an `id`,"
        f" `history_max_messages={HISTORY}` so every room's history is full (trimmed on each"
        " publish) after the warm-up. *publishes per master*: script calls each master ran in"
        " the window, masters by lowest slot."
    )
    return lines


def _bus_lines(bus: dict[str, Any]) -> list[str]:
    idle = bus["idle"]
    lines = [
        "### 3. Cluster bus cost per message (3 masters, 1 replica each)",
        "",
        "| publish | messages | bus bytes per message | bus messages per message | bytes per"
        " bus message | replication stream bytes per message |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for what, f in bus["publishes"].items():
        per_bus = f["bytes_per_bus_publish_message"]
        lines.append(
            f"| {what} | {f['messages']:,} | **{f['bus_bytes_per_message']:,.0f}** |"
            f" {f['bus_publish_messages_per_message']:g} |"
            f" {'' if per_bus is None else f'{per_bus:,.0f}'} |"
            f" {f['repl_bytes_per_message']:,.0f} |"
        )
    lines += [
        "",
        f"- Idle (gossip only, {idle['seconds']:g} s): {idle['bus_bytes_per_s']:,} bus bytes/s,"
        f" {idle['bus_messages_per_s']:g} bus messages/s over the 6 nodes (cluster-node-timeout"
        f" {NODE_TIMEOUT_MS:,} ms); subtracted from the rows above (the gossip of their"
        " seconds).",
        "- Bus bytes: the kernel's `bytes_sent` of every TCP connection to or from a bus port"
        " (`ss -ti`), both ends on this machine, so each byte counted once; bus messages:"
        " `cluster_stats_messages_publish_sent` + `..._publishshard_sent` of `CLUSTER INFO`,"
        " all nodes. Replication stream: the masters' `total_net_repl_output_bytes`.",
    ]
    if bus["subscribed"]:
        lines += [
            "",
            "Redis CPU per publish by the number of fanout nodes subscribed to the room (same"
            " cluster; `fanout.Emitter` publishes; each node stood for by one connection per"
            " master that SSUBSCRIBEs to the channels of the rooms it owns, read by a thread):",
            "",
            "| node links subscribed | publishes | masters µs/publish (each round) | replicas"
            " µs/publish | bytes delivered per publish |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        groups: dict[int, list[dict[str, Any]]] = {}
        for point in bus["subscribed"]:
            groups.setdefault(point["links"], []).append(point)
        for links, points in sorted(groups.items()):
            masters = [float(p["master_cpu_us_per_publish"]) for p in points]
            replicas = statistics.median(float(p["replica_cpu_us_per_publish"]) for p in points)
            delivered = statistics.median(float(p["delivered_bytes_per_publish"]) for p in points)
            lines.append(
                f"| {links} | {sum(int(p['messages']) for p in points):,} |"
                f" **{statistics.median(masters):.1f}** ({', '.join(f'{m:.1f}' for m in masters)})"
                f" | {replicas:.1f} | {delivered:,.0f} |"
            )
    return lines


def _rounds(settings: dict[str, Any]) -> str:
    count = int(settings["rounds"])
    return f"{count} round{'' if count == 1 else 's'}"


def other_load(measured: dict[str, Any]) -> dict[str, Any]:
    """Other processes' cores over every measured window (latency runs, throughput points):
    mean, max, how many windows were disturbed. (Not over the whole run: the servers this
    script stops are gone from its process tree by the end, so their CPU would look like
    other processes'.)"""
    windows = [float(o) for r in measured.get("latency", []) for o in r["other_cores_each_run"]]
    windows += [float(p["other_cores"]) for p in measured.get("throughput", [])]
    return {
        "count": len(windows),
        "mean": round(statistics.mean(windows), 2) if windows else 0.0,
        "max": max(windows, default=0.0),
        "disturbed": sum(1 for w in windows if w > OTHER_LOAD_FLAG),
    }


def section(report: dict[str, Any]) -> str:
    cpus = report["machine"]["cpus"]
    windows = report["other_cores_windows"]
    shares = (
        f"fanout nodes, the lab's generator, publishers and every Redis share the {cpus}"
        f" cores, nothing pinned; other processes used {windows['mean']:.2f} cores on"
        f" average over the measured windows (at most {windows['max']:.2f}; more than"
        f" {OTHER_LOAD_FLAG} in {windows['disturbed']} of {windows['count']}: rows marked);"
        f" {report['seconds']:.0f} s in all"
    )
    lines = [
        "## fanout on a Redis Cluster: latency across nodes, publishes per shard, bus cost",
        "",
        "Generated by `bench/redis_cluster.py` (`--help` says how): real clusters formed by"
        " `tests/support/redis_cluster.py` on free loopback ports (cluster-node-timeout"
        f" {NODE_TIMEOUT_MS:,} ms), a standalone `redis-server` for comparison, `fanout serve`"
        " nodes and `fanout.Emitter` publishers, all started and stopped by the script."
        " Capacity model built on these figures: `docs/capacity.md`.",
        "",
        *results_md.report_lines(report, shares),
    ]
    if report.get("quick"):
        lines.append("- **--quick run**: one short round of everything, a smoke test.")
    settings = report["settings"]
    if report.get("latency"):
        lines += ["", *_latency_lines(report["latency"])]
        lines.append(
            f"- Each row: the run with the median p99 (`redis_crossnode.chosen`: among runs"
            f" not disturbed by other processes, more than {OTHER_LOAD_FLAG} cores, marked *"
            f" when they were) of {_rounds(settings)} (interleaved; a disturbed run is run"
            f" again up to {settings.get('retries', 0)} time(s)), {settings['duration_s']:g} s"
            " of sending each, fresh Redis (or cluster) and nodes per run. A latency includes"
            " the lab generator's own scheduling delay on the same 2 cores. *speed probe*:"
            " `redis_crossnode.speed_probe_ms`, a fixed pure-Python loop timed before the run"
            " (lower is faster; the `redis_crossnode` section's runs had 5.0-5.5 ms). CPU per"
            " message from `/proc` over the sending window: node A and Redis per message acked,"
            " node B per message delivered to one receiver; *Redis master* is the master owning"
            " the room's slot (one room: one shard works), *its replica* that master's replica."
            " *script µs*: `INFO commandstats` usec per `EVALSHA` on that master; *publishes per"
            " WAIT*: script calls over WAIT calls there. The standalone Redis has no replica,"
            " so nothing waits there."
        )
    if report.get("throughput"):
        lines += ["", *_throughput_lines(report["throughput"], report["settings"]["concurrency"])]
        lines.append(
            f"- {_rounds(settings)}; in each, a fresh cluster per shape, a"
            f" {report['settings']['warmup_s']:g} s warm-up then a"
            f" {report['settings']['window_s']:g} s window; the row is the round with the median"
            " publishes/s. CPU from `/proc` over the window; *who ran out*: the machine when"
            f" {SATURATED:.0%} of its cores were busy, else a process at {SATURATED:.0%} of a"
            " core. On 2 cores three masters cannot each get a core: this shows the CPU each"
            " publish costs and who runs out first, not how far shards scale on real machines."
        )
    if report.get("bus"):
        lines += ["", *_bus_lines(report["bus"])]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------

PARTS = ("latency", "throughput", "bus")
# name: (full run, --quick)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    # 10k: the target; 2.5k and 1k: below what 2 slow cores carry, where the hop
    # itself shows (the group commit batches a few publishes per WAIT at 2.5k, ~1 at 1k)
    "loads": ("10k,2.5k,1k", "10k"),
    "rounds": (2, 1),
    "retries": (1, 0),
    "duration": (10.0, 2.0),
    "drain": (10.0, 3.0),
    "warmup": (3.0, 1.0),
    "window": (8.0, 2.0),
    "idle": (5.0, 1.0),
    "bus_messages": (10_000, 2_000),
    "quiet_wait": (30.0, 2.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="redis_cluster.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def default(name: str) -> str:
        full, quick = DEFAULTS[name]
        return f"(default {full}; with --quick {quick})"

    parser.add_argument("--quick", action="store_true", help="a ~1.5 minute smoke run")
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma-separated, of: latency,throughput,bus"
    )
    parser.add_argument(
        "--loads",
        help="part 1: comma-separated loads of bench/redis_crossnode.py, of: "
        + ", ".join(LOADS)
        + f" {default('loads')}",
    )
    parser.add_argument("--rounds", type=int, help=f"rounds of parts 1 and 2 {default('rounds')}")
    parser.add_argument(
        "--duration", type=float, help=f"part 1: seconds of sending per run {default('duration')}"
    )
    parser.add_argument(
        "--drain", type=float, help=f"part 1: seconds to wait for late messages {default('drain')}"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help=f"part 2: seconds of publishing before the window {default('warmup')}",
    )
    parser.add_argument(
        "--window", type=float, help=f"part 2: seconds measured per point {default('window')}"
    )
    parser.add_argument(
        "--retries",
        type=int,
        help=f"part 1: runs added when other processes disturbed one (all kept)"
        f" {default('retries')}",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="parts 2 and 3: publishing coroutines per publisher process (default 64)",
    )
    parser.add_argument(
        "--bus-messages", type=int, help=f"part 3: messages of each kind {default('bus_messages')}"
    )
    parser.add_argument(
        "--idle", type=float, help=f"part 3: seconds of idle gossip measured {default('idle')}"
    )
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: write the section of a JSON report"
    )
    results_md.add_run_arguments(parser, DEFAULTS["quiet_wait"][0], "before each measurement")
    parser.set_defaults(quiet_wait=None, results=None)
    parser.add_argument("--publisher", help=argparse.SUPPRESS)  # a publisher process's spec
    args = parser.parse_args(argv)
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[1] if args.quick else values[0])
    if args.results is None:
        args.results = "-" if args.quick else str(results_md.BENCH_DIR / "RESULTS.md")
    unknown = set(args.loads.split(",")) - set(LOADS)
    if unknown:
        parser.error(f"--loads: unknown {', '.join(sorted(unknown))}; of: {', '.join(LOADS)}")
    args.loads = [LOADS[name] for name in args.loads.split(",")]
    args.only = [p for p in PARTS if p in args.only.split(",")]
    if not args.only:
        parser.error(f"--only: choose from {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Stopped by SIGTERM: unwind, so every server and process started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.publisher:
        spec = PublisherSpec(**json.loads(args.publisher))
        print(json.dumps(uvloop.run(publish_flat_out(spec))))
        return 0
    if args.from_json:
        results_md.publish_section(
            args.results, NAME, section(json.loads(args.from_json.read_text()))
        )
        return 0
    stamp = dt.datetime.now(dt.UTC)
    runs_dir = (args.out / f"{NAME}-{stamp:%Y%m%d-%H%M%S}").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    say(f"waiting (at most {args.quiet_wait:g} s) for a quiet machine")
    began = time.monotonic()
    measured: dict[str, Any] = {
        "other_cores_before": round(results_md.wait_for_quiet(args.quiet_wait), 2)
    }
    with tempfile.TemporaryDirectory(prefix="fanout-redis-cluster-") as tmp:
        if "latency" in args.only:
            measured["latency"] = measure_latency(args, runs_dir)
        if "throughput" in args.only:
            measured["throughput"] = measure_throughput(args, Path(tmp))
        if "bus" in args.only:
            measured["bus"] = measure_bus(args, Path(tmp))
    measured["seconds"] = round(time.monotonic() - began, 1)
    measured["other_cores_windows"] = other_load(measured)
    head = {
        "redis": nodes.redis_version(),
        "code": results_md.measured_code(),
        "quick": args.quick,
        "settings": {
            "loads": [load.name for load in args.loads],
            "retries": args.retries,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "drain_s": args.drain,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "concurrency": args.concurrency,
            "rooms": ROOMS,
            "history_max_messages": HISTORY,
            "payload_bytes": PAYLOAD_BYTES,
            "cluster_node_timeout_ms": NODE_TIMEOUT_MS,
        },
        "lab_runs": results_md.shown_path(runs_dir),
    }
    report = results_md.write_report(NAME, stamp, args.out, head, measured)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    say(f"report: {report['json']}")
    results_md.publish_section(args.results, NAME, section(report))
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
