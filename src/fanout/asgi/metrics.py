"""``/metrics``: the hub's counters, gauges and histograms through prometheus-client.

A collector reads the hub at scrape time, so the hot path keeps its plain ``Counter``
additions. Every family has HELP and a unit in its name; counters end in ``_total``.
With several worker processes (``--workers N``, or ``metrics_dir`` set by hand), each
writes its numbers to ``metrics_dir`` every second and on every scrape, and the worker
that answers a scrape adds up every live worker's file: one scrape covers them all.
The page is served in Prometheus' text format, or OpenMetrics when asked (``Accept:
application/openmetrics-text``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, exposition
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics

from fanout.core.histogram import Histogram
from fanout.core.hub import Hub
from fanout.settings import Settings

# Hub counters with a label: prefix -> (family, help, label).
_LABELED = {
    "refused_": ("fanout_refusals", "handshakes and connections refused, by reason", "reason"),
    "closes_": ("fanout_closes", "connections closed, by close code", "code"),
    "dropped_": (
        "fanout_dropped_frames",
        "frames queued for a connection that closed before they were written, by why it"
        " closed (slow_consumer: its outbox overflowed)",
        "reason",
    ),
    "control_": ("fanout_control_events", "control events (kicks, revocations) handled", "kind"),
}
_HELP = {
    "connections_total": ("fanout_connections_opened", "connections accepted"),
    "published": ("fanout_published", "messages published and stored"),
    "duplicates": ("fanout_duplicate_publishes", "publishes of an id already stored (retries)"),
    "published_ephemeral": ("fanout_published_ephemeral", "ephemeral messages published"),
    "deliveries": ("fanout_deliveries", "messages queued for a recipient on this node"),
    "deliveries_ephemeral": ("fanout_deliveries_ephemeral", "ephemeral messages queued"),
    "replayed": ("fanout_replayed", "messages replayed to resuming clients"),
    "gaps": ("fanout_gaps", "offset ranges announced as lost (no longer retained)"),
    "epoch_resets": ("fanout_epoch_resets", "rooms whose history the broker lost"),
    "rate_limited": ("fanout_rate_limited_frames", "frames refused for the rate limit"),
    "rate_limit_closes": ("fanout_rate_limit_closes", "connections closed 4029 for their rate"),
    "paced": ("fanout_paced_frames", "plain clients' frames held back until their rate allows"),
    "slow_consumer_closes": ("fanout_slow_consumer_closes", "connections closed 4008"),
}
_HISTOGRAMS = {
    "publish_latency": (
        "fanout_publish_latency_seconds",
        "time from a publish reaching the hub to its ack (the broker's part included)",
    ),
    "write_wait": (
        "fanout_write_wait_seconds",
        "fan-out lag: how long queued frames waited for their write (per flush)",
    ),
}

Snapshot = dict[str, Any]

# The bounds the hub runs with, as gauges: a load tester (fanout's lab) weighs memory
# growth against them without knowing how the process was configured. Settings field
# -> (family, help). The same in every worker, so never added up.
_LIMITS = {
    "max_message_bytes": ("fanout_message_limit_bytes", "the largest message a client may send"),
    "outbox_max_messages": (
        "fanout_outbox_limit_messages", "frames one connection's outbox holds before 4008",
    ),
    "outbox_max_bytes": (
        "fanout_outbox_limit_bytes", "bytes one connection's outbox holds before 4008",
    ),
    "history_max_messages": (
        "fanout_history_room_limit_messages", "messages of history kept per room",
    ),
    "history_max_bytes": ("fanout_history_room_limit_bytes", "bytes of history kept per room"),
    "history_total_max_bytes": (
        "fanout_history_limit_bytes",
        "room history this process may hold in all (0: the broker holds it, not the process)",
    ),
}  # fmt: skip


def limits_of(settings: Settings) -> dict[str, float]:
    """The values of the ``_LIMITS`` gauges for a hub running with ``settings``."""
    limits = {name: float(getattr(settings, name)) for name in _LIMITS}
    if settings.broker != "memory":
        limits["history_total_max_bytes"] = 0.0
    return limits


def snapshot(hub: Hub) -> Snapshot:
    """This process's numbers, as plain JSON-able values."""
    return {
        "pid": os.getpid(),
        "time": time.time(),
        "gauges": {
            "processes": 1,
            "connections": len(hub.connections),
            "rooms": hub.room_count,
            "outbox_bytes": sum(c.queued_bytes for c in hub.connections),
            "history_bytes": hub.broker.history_bytes,
            "revocations": len(hub.users.revocations),
        },
        "counters": {
            **hub.counters,
            "revocations_dropped": hub.users.dropped_revocations,
            **{f"broker_errors_{k}": v for k, v in hub.broker.errors.items()},
        },
        "histograms": {
            name: {"counts": getattr(hub, name).counts, "sum": getattr(hub, name).sum}
            for name in _HISTOGRAMS
        },
    }


def merge(snapshots: list[Snapshot]) -> Snapshot:
    """Several processes' numbers added up (gauges too: connections on every worker)."""
    total: Snapshot = {"gauges": {"processes": 0}, "counters": {}, "histograms": {}}
    for snap in snapshots:
        for kind in ("gauges", "counters"):
            for name, value in snap[kind].items():
                total[kind][name] = total[kind].get(name, 0) + value
        for name, hist in snap["histograms"].items():
            into = total["histograms"].setdefault(name, {"counts": [], "sum": 0.0})
            counts = into["counts"] or [0] * len(hist["counts"])
            into["counts"] = [a + b for a, b in zip(counts, hist["counts"], strict=True)]
            into["sum"] += hist["sum"]
    return total


class WorkerFiles:
    """Each worker's snapshot in ``directory/worker-<pid>.json``; files of dead workers
    (or older than ``STALE_S``) are left out and removed."""

    STALE_S = 10.0

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, snap: Snapshot) -> None:
        path = self.directory / f"worker-{snap['pid']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snap))
        temporary.replace(path)  # atomic: a reader never sees half a file

    def read_all(self) -> list[Snapshot]:
        found = []
        for path in self.directory.glob("worker-*.json"):
            try:
                snap = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not _alive(int(snap["pid"])) or time.time() - snap["time"] > self.STALE_S:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            found.append(snap)
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HubCollector:
    """prometheus-client's collector interface over the hub (and its sibling workers)."""

    def __init__(
        self,
        hub: Hub,
        workers: WorkerFiles | None = None,
        limits: Mapping[str, float] | None = None,
    ) -> None:
        self.hub = hub
        self.workers = workers
        self.limits = limits or {}

    def collect(self) -> Iterator[Metric]:
        own = snapshot(self.hub)
        numbers = own
        if self.workers is not None:
            self.workers.write(own)
            numbers = merge(self.workers.read_all() or [own])
        yield from _families(numbers)
        for name, value in self.limits.items():
            yield GaugeMetricFamily(*_LIMITS[name], value)


def _families(numbers: Snapshot) -> Iterator[Metric]:
    gauges = numbers["gauges"]
    yield GaugeMetricFamily(
        "fanout_processes", "fanout processes whose numbers this page adds up", gauges["processes"]
    )
    yield GaugeMetricFamily("fanout_connections", "open connections", gauges["connections"])
    yield GaugeMetricFamily("fanout_rooms", "rooms with members on this node", gauges["rooms"])
    yield GaugeMetricFamily(
        "fanout_outbox_bytes", "bytes queued for connections, not yet written",
        gauges["outbox_bytes"],
    )  # fmt: skip
    yield GaugeMetricFamily(
        "fanout_history_bytes", "bytes of room history held in this process (messages as sent)",
        gauges["history_bytes"],
    )  # fmt: skip
    yield GaugeMetricFamily(
        "fanout_revocations", "revocations in force, kept in memory", gauges["revocations"]
    )
    counters: dict[str, float] = dict(numbers["counters"])
    labeled = {
        p: CounterMetricFamily(f, h, labels=[label]) for p, (f, h, label) in _LABELED.items()
    }
    errors = CounterMetricFamily(
        "fanout_broker_errors", "broker calls that failed, by kind", labels=["kind"]
    )
    for kind in ("unavailable", "timeout", "refused"):
        errors.add_metric([kind], counters.pop(f"broker_errors_{kind}", 0))
    yield errors
    for name, (family, text) in _HELP.items():
        yield CounterMetricFamily(family, text, counters.pop(name, 0))
    yield CounterMetricFamily(
        "fanout_revocations_dropped",
        "revocations forgotten because max_revocations was reached",
        counters.pop("revocations_dropped", 0),
    )
    for name, value in sorted(counters.items()):
        prefix = next((p for p in _LABELED if name.startswith(p)), None)
        if prefix is not None:
            labeled[prefix].add_metric([name[len(prefix) :]], value)
        else:
            yield CounterMetricFamily(f"fanout_{name}", f"fanout's {name} counter", value)
    yield from labeled.values()
    bounds = Histogram().bounds
    for name, (family, text) in _HISTOGRAMS.items():
        hist = numbers["histograms"][name]
        running, buckets = 0, []
        for bound, n in zip([*map(str, bounds), "+Inf"], hist["counts"], strict=True):
            running += n
            buckets.append((bound, running))
        yield HistogramMetricFamily(family, text, buckets=buckets, sum_value=hist["sum"])


def registry(
    hub: Hub, metrics_dir: str = "", limits: Mapping[str, float] | None = None
) -> CollectorRegistry:
    collectors = CollectorRegistry(auto_describe=False)
    workers = WorkerFiles(Path(metrics_dir)) if metrics_dir else None
    collectors.register(HubCollector(hub, workers, limits))
    return collectors


def render(collectors: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The page and its content type, OpenMetrics if ``accept`` asks for it."""
    if "application/openmetrics-text" in accept:
        page: bytes = openmetrics.generate_latest(collectors)  # type: ignore[no-untyped-call]
        return page, openmetrics.CONTENT_TYPE_LATEST
    return exposition.generate_latest(collectors), exposition.CONTENT_TYPE_LATEST


async def keep_writing(collectors: CollectorRegistry, interval_s: float = 1.0) -> None:
    """Write this worker's numbers every ``interval_s``, so that a scrape answered by any
    other worker has them (collecting writes them)."""
    while True:
        for _ in collectors.collect():  # a generator: collecting writes the file
            pass
        await asyncio.sleep(interval_s)


def render_metrics(hub: Hub) -> str:
    """The page in Prometheus' text format for this process alone."""
    return render(registry(hub))[0].decode()
