"""fanout against the article's server: server CPU per delivery, throughput, latency, loss.

One publisher sends 200-byte messages at a fixed rate to S subscribers (100, then 500),
against each server in turn, in the same run, the servers taking turns run by run:

- ``article``: the article's FastAPI loop (``fanout.lab.baseline``) under uvicorn's
  defaults, clients in plain mode (its only mode);
- ``fanout-plain``: ``fanout serve``, clients in plain mode (``/ws``, as the article's);
- ``fanout-v1``: ``fanout serve``, clients speak ``fanout.v1`` (``subscribe`` a room,
  ``publish`` JSON frames; each delivery is a ``message`` frame with room/epoch/offset);
- ``fanout-v1-auth`` (not run by default; ``bench/auth_cost.py`` runs it next to
  ``fanout-v1``): the same with auth and limits on: a token checked at every handshake
  (``?token=`` granting the run's room), room grants checked on every subscribe and
  publish, the rate limiter on every frame, the per-address limit on every connection;
- ``floor``: ``bench/floor_server.py``, the least a Python broadcast server can do.

The ``fanout-*`` targets other than ``fanout-v1-auth`` run with the limits off, anonymous:
as ``fanout serve`` was before it had limits, and because the default of 1,000 frames
per second per connection would refuse the publisher at 1,500 msg/s.

Every run is a lab run (``fanout.lab``): its generator processes drive the clients and
account for every message, its histogram gives the latency, its observer samples the
server. This script starts each server on a free 127.0.0.1 port (pinned to CPU 0, the
generators to the others), and reads the server's CPU time at the lab's progress
ticks: from the moment every client is connected (after waiting for a quiet machine)
to the first tick at which the subscribers had everything; divided by the deliveries
counted at that tick, that is the server's CPU per delivery, receive and parse of the
publish included.

Run: ``make bench`` or ``.venv/bin/python bench/fanout_vs_article.py --help``.
Writes ``bench/out/fanout_vs_article-<time>.json`` (one row per run, the machine), each
run's lab results in ``bench/out/fanout_vs_article-<time>/`` (``fanout report`` reads
them) and ``bench/RESULTS.md`` (the table).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import math
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.lab.config import BenchConfig, Mode
from fanout.lab.net import free_port
from fanout.lab.observe import ServerProcess
from fanout.lab.session import run_bench
from fanout.settings import NO_CLIENT_LIMITS, Settings
from results_md import (
    BENCH_DIR,
    HOST,
    OTHER_LOAD_FLAG,
    ROOT,
    busy_s,
    cpu_s,
    finished_at,
    provenance,
    provenance_lines,
    replace_section,
    tree_cpu_s,
    wait_for_quiet,
)

PAYLOAD_BYTES = 200
DRAIN_S = 5.0
QUIET_WAIT_S = 10.0
BUSY_FLAG = 0.90
# The lab's rooms are lab-0, lab-1, ...: one room here.
ROOM = "lab-0"

ServerKind = Literal["article", "fanout", "floor"]


@dataclass(frozen=True)
class Target:
    name: str
    server: ServerKind
    mode: Mode
    # fanout only: tokens and limits on (see ``security_setup``); off otherwise.
    auth: bool = False


TARGETS = {
    "article": Target("article", "article", "plain"),
    "fanout-plain": Target("fanout-plain", "fanout", "plain"),
    "fanout-v1": Target("fanout-v1", "fanout", "v1"),
    "fanout-v1-auth": Target("fanout-v1-auth", "fanout", "v1", auth=True),
    "floor": Target("floor", "floor", "plain"),
}
DEFAULT_TARGETS = "article,fanout-plain,fanout-v1,floor"


# -- servers -----------------------------------------------------------------------------


def server_command(kind: ServerKind, port: int) -> list[str]:
    if kind == "fanout":
        fanout = [sys.executable, "-m", "fanout.cli", "serve", "--port", str(port)]
        return [*fanout, "--log-level", "warning"]
    if kind == "floor":
        return [sys.executable, str(BENCH_DIR / "floor_server.py"), "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", "fanout.lab.baseline:app", "--port", str(port)]


@dataclass(frozen=True)
class Security:
    """How a fanout server is started and what its clients send, for one run."""

    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    token: str = ""


# A rate limit this much above the publisher's rate: the limiter runs on every frame and
# its bucket (one second's worth) absorbs the publisher catching up after a late wake-up.
RATE_HEADROOM = 1.25


def security_setup(target: Target, subscribers: int, rate: float) -> Security:
    """Anonymous with the limits off, or (``target.auth``) tokens and limits on.

    On: a fresh HMAC secret for the server (in its environment, as FANOUT_AUTH_SECRET),
    a token granting subscribe and publish to the run's room for every client, and
    the default limits, except where the bench itself would exceed them: the frame
    rate limit is raised to ``RATE_HEADROOM`` times the publisher's rate, and the
    per-address connection limit to the number of clients (all come from 127.0.0.1).
    """
    if target.server != "fanout":
        return Security()
    if not target.auth:
        return Security(args=NO_CLIENT_LIMITS)  # what fanout-* measured before it had limits
    defaults = Settings()
    args: list[str] = []
    if rate * RATE_HEADROOM > defaults.rate_frames_per_s:
        args += ["--rate-frames-per-s", str(math.ceil(rate * RATE_HEADROOM))]
    if subscribers + 1 > defaults.max_connections_per_ip:
        args += ["--max-connections-per-ip", str(subscribers + 1)]
    secret = secrets.token_urlsafe(32)
    token = mint_token(secret.encode(), subject="bench", grants=RoomGrants.both([ROOM]), ttl_s=3600)
    return Security(args=tuple(args), env=(("FANOUT_AUTH_SECRET", secret),), token=token)


def counters(metrics: str | None) -> dict[str, int]:
    """fanout's counters from a ``/metrics`` text (refusals, rate limiting); {} without one."""
    found: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for line in (metrics or "").splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            kinds[name] = kind
        elif line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            if kinds.get(name) == "counter":
                found[name.removeprefix("fanout_")] = int(float(value))
    return found


def tokenless_status(port: int, mode: Mode) -> int:
    """HTTP status of a WebSocket handshake without a token: 403 when auth is on."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        lines = [
            "GET /ws HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if mode == "v1":
            lines.append("Sec-WebSocket-Protocol: fanout.v1")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = sock.recv(4096).split(b"\r\n", 1)[0].split()
    return int(status[1]) if len(status) > 1 and status[1].isdigit() else 0


@contextlib.contextmanager
def attached(cmd: str, pid: int, target: Target, subscribers: int) -> Iterator[None]:
    """Run ``cmd`` (a profiler, say) for the duration of the block; nothing if empty."""
    if not cmd:
        yield
        return
    argv = [
        a.format(pid=pid, target=target.name, subscribers=subscribers) for a in shlex.split(cmd)
    ]
    proc = subprocess.Popen(argv)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def children_on(cpus: tuple[int, ...]) -> Iterator[None]:
    """Processes started in the block (the lab's generators) run on ``cpus`` only."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- one measurement ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    wall: float
    server_s: float  # the server's CPU seconds so far
    ours_s: float  # this process and all below it (server, generators)
    busy_s: float  # the whole machine
    delivered: int


@dataclass
class CpuMeter:
    """The server's CPU at the lab's progress reports (``run_bench(progress=...)``).

    When every client is connected, it waits for a quiet machine and takes the first
    mark; then one mark at every tick (each 0.5 s while sending and draining).
    """

    pid: int
    marks: list[Mark] = field(default_factory=list)
    quiet_load: float = 0.0

    def progress(self, snapshot: dict[str, Any]) -> None:
        phase = snapshot.get("phase")
        if phase == "connected":
            # The last subscriptions settle, and other jobs on the machine may finish.
            self.quiet_load = wait_for_quiet(QUIET_WAIT_S, OTHER_LOAD_FLAG)
            self.marks = [self._mark(0)]
        elif phase in ("sending", "draining") and self.marks:
            self.marks.append(self._mark(int(snapshot["delivered"])))

    def _mark(self, delivered: int) -> Mark:
        return Mark(time.monotonic(), cpu_s(self.pid), tree_cpu_s(), busy_s(), delivered)

    def window(self) -> tuple[Mark, Mark]:
        """The first mark and the first one at which the deliveries stopped growing."""
        if len(self.marks) < 2:
            raise RuntimeError("the lab reported no progress: no CPU window")
        most = max(m.delivered for m in self.marks)
        return self.marks[0], next(m for m in self.marks if m.delivered == most)


@dataclass
class RunResult:
    target: str
    server: str
    mode: str
    subscribers: int
    rate: float
    repeat: int
    messages: int
    sending_s: float
    deliveries: int
    expected_deliveries: int
    deliveries_per_s: float
    offered_deliveries_per_s: float
    window_s: float
    window_deliveries: int
    server_cpu_s: float
    us_per_delivery: float
    server_busy: float
    # The lab's: p50, p90, p99, p999, max, count.
    latency_ms: dict[str, float]
    lost: int
    dups: int
    out_of_order: int
    not_sent: int
    generator_busy: list[float]
    client_cores: int
    other_cores: float
    valid: bool
    verdicts: list[str]
    closes: dict[str, int]
    connect_errors: dict[str, int]
    lab_json: str
    flags: list[str] = field(default_factory=list)
    # fanout only: the flags it was started with (limits) and its counters after the run.
    auth: bool = False
    server_args: list[str] = field(default_factory=list)
    server_counters: dict[str, int] = field(default_factory=dict)
    # With auth on: the HTTP status a handshake without a token got after the run (403).
    tokenless_status: int | None = None


def run_one(
    target: Target,
    subscribers: int,
    rate: float,
    *,
    repeat: int,
    duration_s: float,
    procs: int,
    out: Path,
    attach: str = "",
    pin: bool = False,
) -> tuple[RunResult, dict[str, Any]]:
    """One lab run against a freshly started server; its row and the lab's document."""
    port = free_port()
    security = security_setup(target, subscribers, rate)
    # Pinned: the server alone on CPU 0, the clients on the others. Otherwise a client
    # woken by the server's write can preempt it on its own CPU, and the server pays
    # for the context switches.
    cores = os.cpu_count() or 1
    server_cpus, client_cpus = ((0,), tuple(range(1, cores))) if pin and cores > 1 else ((), ())
    token = f"?token={security.token}" if security.token else ""
    config = BenchConfig(
        url=f"ws://{HOST}:{port}/ws{token}",
        mode=target.mode,
        receivers=subscribers,
        size=PAYLOAD_BYTES,
        rate=rate,
        duration_s=duration_s,
        drain_s=DRAIN_S,
        processes=procs,
        connect_timeout_s=30.0,
    )
    name = f"{target.name}-{subscribers}x{rate:g}-{repeat + 1}"
    command = shlex.join([*server_command(target.server, port), *security.args])
    log = out / "logs" / f"{name}.log"
    with ServerProcess.start(command, log, env=dict(security.env), cwd=ROOT) as server:
        server.wait_listening(HOST, port, 30.0)
        if server_cpus:
            os.sched_setaffinity(server.pid, server_cpus)
        meter = CpuMeter(server.pid)
        argv = [*sys.argv, f"# {name}"]
        with children_on(client_cpus), attached(attach, server.pid, target, subscribers):
            doc = run_bench(
                config.replace(server_pid=server.pid), argv=argv, progress=meter.progress
            )
        probe = tokenless_status(port, target.mode) if target.auth else None
    lab_json = out / f"{name}.json"
    lab_json.write_text(json.dumps(doc, indent=1) + "\n")
    start, end = meter.window()
    totals, latency = doc["totals"], doc["latency_ms"]
    window = max(1e-9, end.wall - start.wall)
    server_s = end.server_s - start.server_s
    sending = [s for s in (doc["server"] or {}).get("samples", []) if 0 < s["t"] <= duration_s]
    metrics = (doc["server"] or {}).get("metrics") or {}
    run = RunResult(
        target=target.name,
        server=target.server,
        mode=target.mode,
        subscribers=subscribers,
        rate=rate,
        repeat=repeat,
        messages=totals["sent"],
        sending_s=totals["sending_s"],
        deliveries=totals["delivered_all"],
        expected_deliveries=totals["expected"],
        deliveries_per_s=round(totals["delivered_all"] / finished_at(doc, "delivered"), 1),
        offered_deliveries_per_s=round(rate * subscribers, 1),
        window_s=round(window, 3),
        window_deliveries=end.delivered,
        server_cpu_s=round(server_s, 4),
        us_per_delivery=round(1e6 * server_s / end.delivered, 3) if end.delivered else math.nan,
        server_busy=round(sum(s["cpu_percent"] for s in sending) / 100 / max(1, len(sending)), 3),
        latency_ms=latency,
        lost=totals["lost"],
        dups=totals["duplicated"],
        out_of_order=totals["out_of_order"],
        not_sent=totals["skipped"] + totals["send_errors"],
        closes=totals["close_codes"],
        connect_errors=totals["connect_errors"],
        generator_busy=[p / 100 for p in doc["generator"]["cpu_percent"]],
        client_cores=len(client_cpus) or cores,
        other_cores=round(
            max(0.0, (end.busy_s - start.busy_s) - (end.ours_s - start.ours_s)) / window, 2
        ),
        valid=doc["valid"],
        verdicts=[v["cause"] for v in doc["verdicts"]],
        lab_json=str(lab_json.relative_to(ROOT) if lab_json.is_relative_to(ROOT) else lab_json),
        auth=target.auth,
        server_args=list(security.args),
        server_counters=counters(metrics.get("after")) if target.server == "fanout" else {},
        tokenless_status=probe,
    )
    run.flags = flags_for(run)
    return run, doc


def flags_for(r: RunResult) -> list[str]:
    flags = []
    busiest = max(r.generator_busy, default=0.0)
    if busiest > BUSY_FLAG or not r.valid:
        flags.append(f"a load generator was {busiest:.0%} busy: the client may be the limit")
    if sum(r.generator_busy) > BUSY_FLAG * r.client_cores:
        flags.append(
            f"the load generators used {sum(r.generator_busy):.2f} of the"
            f" {r.client_cores} cores they had: the client may be the limit"
        )
    if r.server_busy > BUSY_FLAG:
        flags.append(f"server {r.server_busy:.0%} busy while publishing: saturated")
    if r.deliveries_per_s < 0.95 * r.offered_deliveries_per_s:
        flags.append(
            f"{r.deliveries_per_s:,.0f} deliveries/s, below 95% of the offered"
            f" {r.offered_deliveries_per_s:,.0f}: the server fell behind"
        )
    if r.lost or r.dups or r.out_of_order:
        flags.append(f"lost {r.lost}, duplicated {r.dups}, out of order {r.out_of_order}")
    if r.closes or r.connect_errors:
        flags.append(f"close codes {r.closes}, connect errors {r.connect_errors}")
    if r.not_sent:
        flags.append(f"{r.not_sent} messages not sent (the server stopped reading the publisher)")
    if r.other_cores > OTHER_LOAD_FLAG:
        flags.append(f"other processes used {r.other_cores:.2f} cores meanwhile")
    refused = {
        name: n
        for name, n in r.server_counters.items()
        if n and (name.startswith("refused_") or name.startswith("rate_limit"))
    }
    if refused:
        flags.append(f"the server refused: {refused}")
    if r.auth and r.tokenless_status != 403:
        flags.append(
            f"auth was not on: a handshake without a token got {r.tokenless_status}, not 403"
        )
    return flags


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median CPU per delivery (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.us_per_delivery)
    return ordered[(len(ordered) - 1) // 2]


def cost_cell(runs: list[RunResult]) -> str:
    """The median CPU per delivery in bold, the range over the runs in brackets."""
    costs = [r.us_per_delivery for r in runs]
    spread = f" ({min(costs):.2f}-{max(costs):.2f})" if len(runs) > 1 else ""
    return f"**{median_run(runs).us_per_delivery:.2f}**{spread}"


# -- reporting ---------------------------------------------------------------------------

Key = tuple[int, float, str]


def summarise(results: list[RunResult]) -> dict[Key, list[RunResult]]:
    """Runs grouped by (subscribers, rate, target), in the order they were first run."""
    groups: dict[Key, list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.subscribers, r.rate, r.target), []).append(r)
    return groups


def write_results(path: Path, report: dict[str, Any], results: list[RunResult]) -> None:
    groups = summarise(results)
    repeats = max(len(g) for g in groups.values())
    pinned = " (server pinned to CPU 0, clients to the others)" if report["pinned"] else ""
    lines = [
        "## fanout vs the article's server",
        "",
        "Generated by `bench/fanout_vs_article.py` (how to run it: `bench/README.md`).",
        "",
        *provenance_lines(report),
        "",
        f"1 publisher, {PAYLOAD_BYTES}-byte messages at a fixed rate for"
        f" {report['duration_s']:g} s per run, subscribers spread over {report['procs']}"
        f" lab generator processes{pinned}. Each row is the median of {repeats} runs by CPU"
        " per delivery (the range over the runs in brackets); the servers take turns, run by"
        " run. The ratio is a row's CPU per delivery over the article's at the same"
        " subscriber count and rate (lower is better; the project's target is about 0.33).",
        "",
        "| server | clients | subs | msg/s | deliveries/s (offered) | CPU us/delivery"
        " | server busy | p50 ms | p99 ms | lost | dup | vs article |",
        "| --- | --- |" + " ---: |" * 10,
    ]
    for (subs, rate, _), runs in groups.items():
        r = median_run(runs)
        lines.append(
            f"| {r.server} | {r.mode} | {subs} | {rate:g} "
            f"| {r.deliveries_per_s:,.0f} ({r.offered_deliveries_per_s:,.0f}) "
            f"| {cost_cell(runs)} "
            f"| {r.server_busy:.0%} | {r.latency_ms['p50']:.2f} | {r.latency_ms['p99']:.2f} "
            f"| {sum(x.lost for x in runs)} | {sum(x.dups for x in runs)} "
            f"| {_ratio(groups, r)} |"
        )
    lines += ["", "### Summary", "", *summary_lines(groups)]
    clean = "None: no generator over 90% busy, no loss, every run kept its rate."
    lines += ["", *flag_lines(results, lambda r: r.target, clean), "", *METHOD]
    replace_section(path, "fanout_vs_article", "\n".join(lines))


def flag_lines(
    results: list[RunResult], label: Callable[[RunResult], str], clean: str
) -> list[str]:
    """The section's flags: a line per flagged run (``label`` names its set-up), or ``clean``."""
    flagged = [r for r in results if r.flags]
    return ["### Flags (every run)", "", *([] if flagged else [clean])] + [
        f"- {label(r)}, {r.subscribers} subscribers at {r.rate:g} msg/s, run {r.repeat + 1}: "
        + "; ".join(r.flags)
        for r in flagged
    ]


def _ratio(groups: dict[Key, list[RunResult]], r: RunResult) -> str:
    base = groups.get((r.subscribers, r.rate, "article"))
    if not base or r.target == "article":
        return ""
    return f"{r.us_per_delivery / median_run(base).us_per_delivery:.2f}"


def summary_lines(groups: dict[Key, list[RunResult]]) -> list[str]:
    """One sentence per subscriber count and rate, from the medians."""
    out = []
    for subs, rate in dict.fromkeys((s, r) for s, r, _ in groups):
        med = {t: median_run(g) for (s, r, t), g in groups.items() if (s, r) == (subs, rate)}
        if "article" not in med:
            continue
        art = med["article"]
        parts = [f"article {art.us_per_delivery:.2f} us"]
        for name in ("fanout-plain", "fanout-v1"):
            if name in med:
                parts.append(
                    f"{name} {med[name].us_per_delivery:.2f} us"
                    f" ({med[name].us_per_delivery / art.us_per_delivery:.2f} of the article's)"
                )
        if "floor" in med:
            parts.append(f"floor {med['floor'].us_per_delivery:.2f} us")
        behind = [
            f"{t} ({m.deliveries_per_s:,.0f} of {m.offered_deliveries_per_s:,.0f}"
            f" deliveries/s, p99 {m.latency_ms['p99']:,.0f} ms)"
            for t, m in med.items()
            if m.deliveries_per_s < 0.95 * m.offered_deliveries_per_s
        ]
        out.append(
            f"- {subs} subscribers at {rate:g} msg/s: "
            + ", ".join(parts)
            + " per delivery."
            + (" Fell behind: " + "; ".join(behind) + "." if behind else "")
        )
    return out


METHOD = [
    "### How it is measured",
    "",
    "- Servers, each a fresh child process per run on 127.0.0.1:"
    " **article** is the article's code, verbatim, as `fanout.lab.baseline:app` under"
    " `python -m uvicorn fanout.lab.baseline:app --port N` (uvicorn defaults: uvloop,"
    " httptools, websockets-sansio; its prints go to its log file); **fanout** is"
    " `python -m fanout.cli serve --port N --log-level warning --rate-frames-per-s 0"
    " --rate-bytes-per-s 0 --max-connections-per-ip 0` (in-memory broker, direct"
    " transport, anonymous, per-connection rate limits and the per-address connection"
    " limit off, as before fanout had them; `bench/auth_cost.py` measures them on);"
    " **floor** is"
    " `bench/floor_server.py`, the least a Python broadcast server can do: one"
    " `transport.write` of a pre-encoded frame per recipient, no framework, no checks.",
    "- Clients: the lab's (`fanout.lab`, see docs/lab.md), spread over its generator"
    " processes. Plain mode connects to `/ws`; the publisher's frames are broadcast to"
    " every client including itself (the article's behaviour): S + 1 frames per message,"
    " of which the S to the subscribers are counted as deliveries. `fanout.v1` subscribers"
    " send `subscribe` for one room and the publisher sends `publish` frames with an `id`"
    " without subscribing: S deliveries and one `ack` per message.",
    "- Rates: the article's server must keep up at the first two rates (it does when its"
    " 'deliveries/s' matches the offered rate); the last row offers more than it can"
    " handle, to show what happens past that point. fanout's cost per delivery falls as"
    " the rate rises because frames queued for a socket in one loop iteration leave in one"
    " write; at low rates every message is its own write per recipient.",
    "- Server CPU: user + system time of the server process (/proc), read at the lab's"
    " progress reports: from the moment every client is connected to the first report"
    " (every 0.5 s) at which the subscribers had everything they got, divided by the"
    " deliveries counted at that report; the receive and parse of each publish, and the"
    " publisher's echo or ack, are included. 'server busy' is the lab's server samples'"
    " mean CPU while sending. Over loopback, the kernel time of each write also carries"
    " the receiving side's TCP processing and the wake-up of the reader, which a real"
    " network would move to other machines: the floor row shows how much that is.",
    "- Latency: the lab's publish-to-deliver histogram (CLOCK_MONOTONIC in the payload, to"
    " the moment the receiving generator reads the frame), over every delivery. It"
    " includes the generators' own scheduling delay.",
    "- Loss: the lab's accounting: every payload carries a sender id and a sequence"
    " number; each subscriber counts what never arrived (lost), what arrived twice (dup)"
    " and what arrived after a later one.",
    "- The machine may be shared: once every client is connected the script waits (at"
    " most 10 s) for other processes to leave the CPUs, and flags a run during which"
    f" they used more than {OTHER_LOAD_FLAG} cores; that is also why each row is a median"
    " of several runs.",
]


# -- main --------------------------------------------------------------------------------


def parse_rates(text: str) -> list[tuple[int, float]]:
    rates: list[tuple[int, float]] = []
    for item in text.split(","):
        subs, _, rate = item.partition(":")
        rates.append((int(subs), float(rate)))
    return rates


def run_announced(
    label: str,
    target: Target,
    subscribers: int,
    rate: float,
    repeat: int,
    args: argparse.Namespace,
) -> tuple[RunResult, dict[str, Any]]:
    """``run_one`` with a line before (what runs) and after (what it measured)."""
    print(
        f"{label}: {subscribers} subscribers, {rate:g} msg/s, run {repeat + 1}/{args.repeat} ...",
        flush=True,
    )
    r, doc = run_one(
        target,
        subscribers,
        rate,
        repeat=repeat,
        duration_s=args.duration,
        procs=args.procs,
        out=args.run_dir,
        attach=getattr(args, "attach", ""),
        pin=args.pin,
    )
    print(
        f"  {r.us_per_delivery:.2f} us/delivery, {r.deliveries_per_s:,.0f}"
        f" deliveries/s, server busy {r.server_busy:.0%}, p50 {r.latency_ms['p50']:.2f} ms,"
        f" p99 {r.latency_ms['p99']:.2f} ms, lost {r.lost}, dup {r.dups}, generators"
        f" {sum(r.generator_busy):.2f} cores, other load {r.other_cores:.2f} cores"
        + (f", server args {r.server_args}" if r.server_args else "")
        + "".join(f"\n  ! {f}" for f in r.flags),
        flush=True,
    )
    return r, doc


def add_arguments(parser: argparse.ArgumentParser, *, repeat: int) -> None:
    """The options fanout_vs_article and auth_cost share."""
    parser.add_argument(
        "--rates",
        default="100:1000,500:150,100:1500",
        help="subscribers:messages per second, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="publishing seconds per run")
    parser.add_argument("--repeat", type=int, default=repeat, help="runs per row (median reported)")
    parser.add_argument("--procs", type=int, default=4, help="lab generator processes (default: 4)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH_DIR / "RESULTS.md",
        help="Markdown file whose section is rewritten ('-' for none)",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="server alone on CPU 0, clients on the other CPUs (default: on)",
    )


def prepare(args: argparse.Namespace, name: str) -> tuple[dt.datetime, Path]:
    """The run's time and JSON path; its lab results go to a folder of the same name."""
    stamp = dt.datetime.now(dt.UTC)
    json_path = args.out / f"{name}-{stamp:%Y%m%d-%H%M%S}.json"
    args.run_dir = json_path.with_suffix("")
    args.run_dir.mkdir(parents=True, exist_ok=True)
    # Only what a target's set-up says decides auth: not a FANOUT_AUTH_* of the shell.
    for key in [k for k in os.environ if k.startswith("FANOUT_AUTH_")]:
        del os.environ[key]
    return stamp, json_path


SectionWriter = Callable[[Path, dict[str, Any], list[RunResult]], None]


def write_report(
    args: argparse.Namespace,
    stamp: dt.datetime,
    json_path: Path,
    results: list[RunResult],
    doc: dict[str, Any],
    write_section: SectionWriter,
) -> None:
    """Write the runs and how they were made to ``json_path``, then the section.

    ``doc`` is one of the runs' lab documents: the machine, versions and commit.
    ``write_section`` rewrites the script's section of ``args.results`` (unless '-').
    """
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv] if a)
    rel_json = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
    report: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": command,
        "json": str(rel_json),
        "duration_s": args.duration,
        "repeat": args.repeat,
        "procs": args.procs,
        "pinned": args.pin,
        "payload_bytes": PAYLOAD_BYTES,
        **provenance(doc),
        "runs": [asdict(r) for r in results],
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {json_path}")
    if str(args.results) != "-":
        write_section(args.results, report, results)
        print(f"wrote {args.results}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    add_arguments(parser, repeat=3)
    parser.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from {', '.join(TARGETS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--attach",
        default="",
        metavar="CMD",
        help="run CMD against each server during its lab run, e.g. a profiler:"
        " '{pid}', '{target}' and '{subscribers}' are replaced; stopped with SIGINT",
    )
    args = parser.parse_args(argv)
    targets = [TARGETS[name] for name in args.targets.split(",")]
    stamp, json_path = prepare(args, "fanout_vs_article")
    results: list[RunResult] = []
    doc: dict[str, Any] = {}
    for subscribers, rate in parse_rates(args.rates):
        for repeat in range(args.repeat):
            for target in targets:
                r, doc = run_announced(target.name, target, subscribers, rate, repeat, args)
                results.append(r)
    write_report(args, stamp, json_path, results, doc, write_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
