"""fanout against the article's server and others: server CPU per delivery, loss, latency.

One publisher sends messages at a fixed rate to S subscribers, against each server in
turn, in the same run, the servers taking turns run by run (issue #15, item 6). The
loads (``--loads``, all by default):

- ``200B-100x400``: 200-byte messages to 100 subscribers at 400 msg/s;
- ``200B-500x100``: 200-byte messages to 500 subscribers at 100 msg/s;
- ``1MiB-10x20``: 1 MiB messages to 10 subscribers at 20 msg/s;
- ``16MiB-20x1``: 16 MiB messages to 20 subscribers at 1 msg/s;

or any ``SIZE:SUBSCRIBERS:RATE`` (``64k:50:10``); ``--rates S:R,...`` adds 200-byte loads
(the form of earlier versions, and of ``bench/auth_cost.py``). The servers (``--targets``,
all but ``fanout-v1-auth`` by default):

- ``article``: the article's FastAPI loop (``fanout.lab.baseline``) under uvicorn's
  defaults, clients in plain mode (its only mode);
- ``fanout-plain``: ``fanout serve``, clients in plain mode (``/ws``, as the article's);
- ``fanout-v1``: ``fanout serve``, clients speak ``fanout.v1`` (``subscribe`` a room,
  ``publish`` JSON frames; each delivery is a ``message`` frame with room/epoch/offset);
- ``fanout-plain-delay10``, ``fanout-v1-delay10``: the same with ``--write-delay-ms 10``
  (each connection written at most every 10 ms, so several messages leave in one write);
- ``fanout-v1-auth`` (not run by default; ``bench/auth_cost.py`` runs it next to
  ``fanout-v1``): the same with auth and limits on: a token checked at every handshake
  (``?token=`` granting the run's room), room grants checked on every subscribe and
  publish, the rate limiter on every frame, the per-address limit on every connection;
- ``websockets-broadcast``: ``bench/websockets_server.py``, the ``websockets`` library's
  asyncio server calling ``websockets.asyncio.server.broadcast`` for every message;
- ``node-ws``: ``bench/node_ws/server.js``, Node.js with npm ``ws``, the broadcast of its
  README (``npm ci`` in ``bench/node_ws`` on first use; needs ``node`` and ``npm``);
- ``floor``: ``bench/floor_server.py``, the least a Python broadcast server can do.

All but the ``fanout-v1*`` targets are plain: the publisher's message goes to every
client, itself included. The ``fanout-*`` targets other than ``fanout-v1-auth`` run with
the limits off, anonymous: as ``fanout serve`` was before it had limits, and because
the default of 1,000 frames per second per connection would refuse a fast publisher.
Message size limits are raised where a load needs it (``size_args``): fanout's
``--max-message-bytes`` and ``--outbox-max-bytes``, uvicorn's ``--ws-max-size`` for the
article's; the ``websockets`` and ``ws`` servers have none (``max_size=None``,
``maxPayload: 0``), nor has the floor.

Every run is a lab run (``fanout.lab``): its generator processes drive the clients and
account for every message, its histogram gives the latency, its observer samples the
server. This script starts each server on a free 127.0.0.1 port (pinned, every thread of
it, to CPU 0, the generators to the others), and reads the server's CPU time at the
lab's progress ticks: from the moment every client is connected (after waiting for a
quiet machine) to the first tick at which the subscribers had everything; divided by
the deliveries counted at that tick, that is the server's CPU per delivery, receive and
parse of the publish included. The section of ``RESULTS.md`` has the medians per load
and server, and a table of ratios of each ``fanout-*`` target to the others, made from
the same run.

Run: ``make bench`` or ``.venv/bin/python bench/fanout_vs_article.py --help``; ``--quick``
for a smoke run (one short round per load and server, ``RESULTS.md`` left alone).
Writes ``bench/out/fanout_vs_article-<time>.json`` (one row per run, the machine), each
run's lab results in ``bench/out/fanout_vs_article-<time>/`` (``fanout report`` reads
them) and ``bench/RESULTS.md`` (the tables).
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
import shutil
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
from fanout.lab.config import BenchConfig, ConfigError, Mode, format_size, parse_size
from fanout.lab.interrupt import run_interruptible
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
    finished_at,
    provenance,
    provenance_lines,
    replace_section,
    tree_cpu_s,
    user_system_s,
    wait_for_quiet,
)

PAYLOAD_BYTES = 200
DRAIN_S = 5.0
QUIET_WAIT_S = 10.0
BUSY_FLAG = 0.90
# The lab's rooms are lab-0, lab-1, ...: one room here.
ROOM = "lab-0"

# A server's log larger than this after a run (the article's prints every message it
# gets: 16 MiB a line) keeps only its first and last LOG_KEEP bytes.
LOG_MAX = 4 * 1024 * 1024
LOG_KEEP = 64 * 1024
NODE_DIR = BENCH_DIR / "node_ws"
NODE_MIN_MAJOR = 18
NPM_TIMEOUT_S = 300.0

ServerKind = Literal["article", "fanout", "floor", "websockets", "node"]


@dataclass(frozen=True)
class Target:
    name: str
    server: ServerKind
    mode: Mode
    # fanout only: tokens and limits on (see ``security_setup``); off otherwise.
    auth: bool = False
    # More arguments for the server (``--write-delay-ms 10``).
    args: tuple[str, ...] = ()


DELAY10 = ("--write-delay-ms", "10")
TARGETS = {
    "article": Target("article", "article", "plain"),
    "fanout-plain": Target("fanout-plain", "fanout", "plain"),
    "fanout-v1": Target("fanout-v1", "fanout", "v1"),
    "fanout-plain-delay10": Target("fanout-plain-delay10", "fanout", "plain", args=DELAY10),
    "fanout-v1-delay10": Target("fanout-v1-delay10", "fanout", "v1", args=DELAY10),
    "fanout-v1-auth": Target("fanout-v1-auth", "fanout", "v1", auth=True),
    "websockets-broadcast": Target("websockets-broadcast", "websockets", "plain"),
    "node-ws": Target("node-ws", "node", "plain"),
    "floor": Target("floor", "floor", "plain"),
}
DEFAULT_TARGETS = (
    "article,fanout-plain,fanout-v1,fanout-plain-delay10,fanout-v1-delay10,"
    "websockets-broadcast,node-ws,floor"
)
# What the fanout-* targets are compared with in the ratio table, in this order.
BASELINES = ("floor", "article", "websockets-broadcast", "node-ws")


@dataclass(frozen=True)
class Load:
    """One row of loads: ``size``-byte messages to ``subscribers`` at ``rate`` msg/s."""

    size: int
    subscribers: int
    rate: float

    @property
    def name(self) -> str:
        size = format_size(self.size).replace(" ", "")
        return f"{size}-{self.subscribers}x{self.rate:g}"

    @property
    def label(self) -> str:
        return f"{format_size(self.size)} to {self.subscribers} at {self.rate:g} msg/s"


MiB = 1024 * 1024
LOADS = {
    load.name: load
    for load in (
        Load(PAYLOAD_BYTES, 100, 400.0),
        Load(PAYLOAD_BYTES, 500, 100.0),
        Load(MiB, 10, 20.0),
        Load(16 * MiB, 20, 1.0),
    )
}


def parse_loads(text: str) -> list[Load]:
    """Names of ``LOADS`` or ``SIZE:SUBSCRIBERS:RATE`` items, comma-separated."""
    loads: list[Load] = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        if item in LOADS:
            loads.append(LOADS[item])
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(
                f"not a load: {item!r} (one of {', '.join(LOADS)}, or SIZE:SUBSCRIBERS:RATE)"
            )
        loads.append(Load(parse_size(parts[0]), int(parts[1]), float(parts[2])))
    return loads


# -- servers -----------------------------------------------------------------------------


def server_command(kind: ServerKind, port: int) -> list[str]:
    if kind == "fanout":
        fanout = [sys.executable, "-m", "fanout.cli", "serve", "--port", str(port)]
        return [*fanout, "--log-level", "warning"]
    if kind == "floor":
        return [sys.executable, str(BENCH_DIR / "floor_server.py"), "--port", str(port)]
    if kind == "websockets":
        return [sys.executable, str(BENCH_DIR / "websockets_server.py"), "--port", str(port)]
    if kind == "node":
        return [shutil.which("node") or "node", str(NODE_DIR / "server.js"), "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", "fanout.lab.baseline:app", "--port", str(port)]


# Room a message needs above its payload in a frame: fanout.v1's JSON around it.
FRAME_ROOM = 4096


def size_args(kind: ServerKind, size: int) -> tuple[str, ...]:
    """Limits raised for ``size``-byte messages, where the server's defaults would refuse.

    fanout: ``--max-message-bytes`` (16 MiB by default; twice the message then) and
    ``--outbox-max-bytes`` (64 MiB: 16 messages' worth then, so that a subscriber a few
    messages behind is not closed as a slow consumer). The article's uvicorn:
    ``--ws-max-size`` (16 MiB). The others have no limit.
    """
    defaults = Settings()
    if kind == "fanout":
        args: list[str] = []
        if size + FRAME_ROOM > defaults.max_message_bytes:
            args += ["--max-message-bytes", str(2 * size)]
        if 16 * size > defaults.outbox_max_bytes:
            args += ["--outbox-max-bytes", str(16 * size)]
        return tuple(args)
    if kind == "article" and size + FRAME_ROOM > 16 * MiB:
        return ("--ws-max-size", str(2 * size))
    return ()


def node_version(node: str) -> int:
    """The major version of ``node`` (0 when it does not answer)."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    major = out.stdout.strip().lstrip("v").split(".")[0]
    return int(major) if major.isdigit() else 0


def ensure_node_ws() -> None:
    """Node.js and ``ws`` for the ``node-ws`` target: ``npm ci`` in ``bench/node_ws``
    when its ``node_modules`` is missing or older than ``package-lock.json``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise SystemExit(
            f"node-ws: {missing} not found on PATH. The node-ws target needs Node.js"
            f" {NODE_MIN_MAJOR}+ and npm (`make system-deps` installs them), or leave it"
            " out: --targets without node-ws."
        )
    if (major := node_version(node)) < NODE_MIN_MAJOR:
        raise SystemExit(f"node-ws: {node} is Node.js {major or '?'}, {NODE_MIN_MAJOR}+ needed")
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    print(f"node-ws: npm ci in {NODE_DIR} ...", flush=True)
    try:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=NPM_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"node-ws: `npm ci` in {NODE_DIR} failed: {exc}") from exc


def pin_threads(pid: int, cpus: tuple[int, ...]) -> None:
    """Every thread of ``pid`` on ``cpus`` (Node.js starts its helper threads before it
    listens; threads made later inherit their creator's CPUs)."""
    try:
        tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(tid, cpus)


def trim_log(path: Path) -> None:
    """Cut the middle out of a log over ``LOG_MAX`` bytes (its first and last LOG_KEEP)."""
    size = path.stat().st_size if path.exists() else 0
    if size <= LOG_MAX:
        return
    with path.open("rb") as f:
        head = f.read(LOG_KEEP)
        f.seek(size - LOG_KEEP)
        tail = f.read()
    cut = f"\n[... {size - 2 * LOG_KEEP:,} bytes cut by fanout_vs_article.py ...]\n"
    path.write_bytes(head + cut.encode() + tail)


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
    server_user_s: float  # of which in user space (its own code, not the kernel's)
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
    quiet_wait_s: float = QUIET_WAIT_S

    def progress(self, snapshot: dict[str, Any]) -> None:
        phase = snapshot.get("phase")
        if phase == "connected":
            # The last subscriptions settle, and other jobs on the machine may finish.
            self.quiet_load = wait_for_quiet(self.quiet_wait_s, OTHER_LOAD_FLAG)
            self.marks = [self._mark(0)]
        elif phase in ("sending", "draining") and self.marks:
            self.marks.append(self._mark(int(snapshot["delivered"])))

    def _mark(self, delivered: int) -> Mark:
        user, system = user_system_s(self.pid)  # one read for both
        return Mark(time.monotonic(), user + system, user, tree_cpu_s(), busy_s(), delivered)

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
    # The user-space part: the floor and fanout spend the same in the kernel per write.
    user_us_per_delivery: float
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
    payload_bytes: int = PAYLOAD_BYTES


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
    size: int = PAYLOAD_BYTES,
    quiet_wait_s: float = QUIET_WAIT_S,
) -> tuple[RunResult, dict[str, Any]]:
    """One lab run against a freshly started server; its row and the lab's document."""
    port = free_port()
    security = security_setup(target, subscribers, rate)
    server_args = (*security.args, *target.args, *size_args(target.server, size))
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
        size=size,
        rate=rate,
        duration_s=duration_s,
        drain_s=DRAIN_S,
        processes=procs,
        connect_timeout_s=30.0,
    )
    name = f"{target.name}-{Load(size, subscribers, rate).name}-{repeat + 1}"
    command = shlex.join([*server_command(target.server, port), *server_args])
    log = out / "logs" / f"{name}.log"
    with ServerProcess.start(command, log, env=dict(security.env), cwd=ROOT) as server:
        server.wait_listening(HOST, port, 30.0)
        if server_cpus:
            pin_threads(server.pid, server_cpus)
        meter = CpuMeter(server.pid, quiet_wait_s=quiet_wait_s)
        argv = [*sys.argv, f"# {name}"]
        with children_on(client_cpus), attached(attach, server.pid, target, subscribers):
            doc = run_bench(
                config.replace(server_pid=server.pid), argv=argv, progress=meter.progress
            )
        probe = tokenless_status(port, target.mode) if target.auth else None
    trim_log(log)
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
        user_us_per_delivery=(
            round(1e6 * (end.server_user_s - start.server_user_s) / end.delivered, 3)
            if end.delivered
            else math.nan
        ),
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
        server_args=list(server_args),
        server_counters=counters(metrics.get("after")) if target.server == "fanout" else {},
        tokenless_status=probe,
        payload_bytes=size,
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
    spread = f" ({min(costs):,.2f}-{max(costs):,.2f})" if len(runs) > 1 else ""
    return f"**{median_run(runs).us_per_delivery:,.2f}**{spread}"


# -- reporting ---------------------------------------------------------------------------

# (message size, subscribers, rate, target)
Key = tuple[int, int, float, str]


def summarise(results: list[RunResult]) -> dict[Key, list[RunResult]]:
    """Runs grouped by (size, subscribers, rate, target), in the order they were first run."""
    groups: dict[Key, list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.payload_bytes, r.subscribers, r.rate, r.target), []).append(r)
    return groups


def by_load(groups: dict[Key, list[RunResult]]) -> dict[Load, dict[str, list[RunResult]]]:
    """The runs of each load, by target (both in the order they were first run)."""
    loads: dict[Load, dict[str, list[RunResult]]] = {}
    for (size, subs, rate, target), runs in groups.items():
        loads.setdefault(Load(size, subs, rate), {})[target] = runs
    return loads


def completeness(runs: list[RunResult]) -> str:
    """Deliveries over expected deliveries, summed over the runs."""
    got, expected = sum(r.deliveries for r in runs), sum(r.expected_deliveries for r in runs)
    return f"{got:,} / {expected:,}"


def ratio_cell(runs: list[RunResult], base: list[RunResult] | None) -> str:
    """Median over median in bold; with several rounds, the range of the ratios of the
    runs of the same round in brackets. Empty without a base."""
    if not base:
        return ""
    of_base = median_run(base).us_per_delivery
    cell = f"**{median_run(runs).us_per_delivery / of_base:.2f}**"
    rounds = {b.repeat: b.us_per_delivery for b in base}
    paired = [r.us_per_delivery / rounds[r.repeat] for r in runs if rounds.get(r.repeat)]
    if len(paired) > 1:
        cell += f" ({min(paired):.2f}-{max(paired):.2f})"
    return cell


def undelayed(target: str) -> str | None:
    """The target a ``*-delay10`` one is the same as, without the delay."""
    return target.removesuffix("-delay10") if target.endswith("-delay10") else None


def write_results(path: Path, report: dict[str, Any], results: list[RunResult]) -> None:
    groups = summarise(results)
    loads = by_load(groups)
    repeats = max(len(g) for g in groups.values())
    pinned = " (server pinned to CPU 0, clients to the others)" if report["pinned"] else ""
    lines = [
        "## fanout vs the article's server",
        "",
        "Generated by `bench/fanout_vs_article.py` (how to run it: `bench/README.md`).",
        "",
        *provenance_lines(report),
        "",
        f"1 publisher, messages of the load's size at a fixed rate for"
        f" {report['duration_s']:g} s per run, subscribers spread over {report['procs']}"
        f" lab generator processes{pinned}. Loads: "
        + "; ".join(load.label for load in loads)
        + f". Each row is the median of {repeats} runs by CPU per delivery (the range over"
        " the runs in brackets); the servers take turns, run by run. 'vs article' is a"
        " row's CPU per delivery over the article's under the same load (lower is better;"
        " the project's target is about 0.33).",
        "",
        "| server | clients | size | subs | msg/s | deliveries/s (offered) | CPU us/delivery"
        " | of it user space | server busy | p50 ms | p99 ms | delivered / expected | lost | dup"
        " | vs article |",
        "| --- | --- |" + " ---: |" * 13,
    ]
    for (size, subs, rate, _), runs in groups.items():
        r = median_run(runs)
        lines.append(
            f"| {r.target} | {r.mode} | {format_size(size)} | {subs} | {rate:g} "
            f"| {r.deliveries_per_s:,.0f} ({r.offered_deliveries_per_s:,.0f}) "
            f"| {cost_cell(runs)} | {r.user_us_per_delivery:.2f} "
            f"| {r.server_busy:.0%} | {r.latency_ms['p50']:,.2f} | {r.latency_ms['p99']:,.2f} "
            f"| {completeness(runs)} | {sum(x.lost for x in runs)} | {sum(x.dups for x in runs)} "
            f"| {_ratio(groups, r)} |"
        )
    lines += ["", *ratio_lines(loads)]
    lines += ["", "### Summary", "", *summary_lines(groups)]
    clean = "None: no generator over 90% busy, no loss, every run kept its rate."
    lines += ["", *flag_lines(results, flag_label, clean), "", *METHOD]
    replace_section(path, "fanout_vs_article", "\n".join(lines))


def flag_label(r: RunResult) -> str:
    return f"{r.target}, {format_size(r.payload_bytes)}"


def ratio_lines(loads: dict[Load, dict[str, list[RunResult]]]) -> list[str]:
    """The ratio table: each fanout-* target's CPU per delivery over the others', per load."""
    present = {t for by_target in loads.values() for t in by_target}
    bases = [b for b in BASELINES if b in present]
    delays = any(undelayed(t) in present for t in present)
    head = ["load", "server", "CPU us/delivery", *(f"/ {b}" for b in bases)]
    head += ["/ without delay"] if delays else []
    head += ["delivered / expected"]
    lines = [
        "### Ratios (same run)",
        "",
        "Each `fanout-*` target's median CPU per delivery over another server's median under"
        " the same load (below 1: fanout costs less); in brackets, the range of the ratios"
        " of the runs of the same round (the servers take turns within a round). '/ without"
        " delay' compares a `*-delay10` target with the same one without"
        " `--write-delay-ms`.",
        "",
        "| " + " | ".join(head) + " |",
        "| --- | --- |" + " ---: |" * (len(head) - 2),
    ]
    for load, by_target in loads.items():
        for target, runs in by_target.items():
            if not target.startswith("fanout-"):
                continue
            cells = [load.label, target, cost_cell(runs)]
            cells += [ratio_cell(runs, by_target.get(b)) for b in bases]
            if delays:
                plain = undelayed(target)
                cells.append(ratio_cell(runs, by_target.get(plain)) if plain else "")
            cells.append(completeness(runs))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


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
    base = groups.get((r.payload_bytes, r.subscribers, r.rate, "article"))
    if not base or r.target == "article":
        return ""
    return f"{r.us_per_delivery / median_run(base).us_per_delivery:.2f}"


def summary_lines(groups: dict[Key, list[RunResult]]) -> list[str]:
    """One sentence per load, from the medians: each server's CPU per delivery (the
    fanout-* targets' also over the article's and the floor's), what fell behind or lost."""
    out = []
    for load, by_target in by_load(groups).items():
        med = {t: median_run(g) for t, g in by_target.items()}
        parts = []
        for name, m in med.items():
            part = f"{name} {m.us_per_delivery:,.2f} us"
            over = [
                f"{m.us_per_delivery / med[b].us_per_delivery:.2f} of the {b}'s"
                for b in ("article", "floor")
                if name.startswith("fanout-") and b in med
            ]
            parts.append(part + (f" ({', '.join(over)})" if over else ""))
        behind = [
            f"{t} ({m.deliveries_per_s:,.0f} of {m.offered_deliveries_per_s:,.0f}"
            f" deliveries/s, p99 {m.latency_ms['p99']:,.0f} ms)"
            for t, m in med.items()
            if m.deliveries_per_s < 0.95 * m.offered_deliveries_per_s
        ]
        lost = [
            f"{t} {sum(r.lost for r in g):,} of {sum(r.expected_deliveries for r in g):,}"
            for t, g in by_target.items()
            if any(r.lost for r in g)
        ]
        out.append(
            f"- {load.label}: "
            + ", ".join(parts)
            + " per delivery."
            + (" Fell behind: " + "; ".join(behind) + "." if behind else "")
            + (" Lost: " + "; ".join(lost) + "." if lost else " Nothing lost.")
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
    " limit off, as before fanout had them; `bench/auth_cost.py` measures them on),"
    " `fanout-*-delay10` with `--write-delay-ms 10` (each connection written at most every"
    " 10 ms: messages queued meanwhile leave in one write, for up to 10 ms more latency);"
    " **websockets-broadcast** is `bench/websockets_server.py`: the `websockets` library's"
    " asyncio server (on uvloop) whose handler calls `websockets.asyncio.server.broadcast`"
    " to every open connection for each text message, as its documentation does;"
    " **node-ws** is `node bench/node_ws/server.js`: Node.js with npm `ws` (and its"
    " optional native `bufferutil`, versions pinned in `bench/node_ws/package-lock.json`),"
    " the broadcast of ws's README; **floor** is"
    " `bench/floor_server.py`, the least a Python broadcast server can do: one"
    " `transport.write` of a pre-encoded frame per recipient, no framework, no checks."
    " It is a floor for small messages only: for messages of megabytes its receive path"
    " costs more than its writes (it joins its buffer to each chunk read, quadratic in the"
    " message's size, and unmasks through Python integers), so its 1 MiB and 16 MiB"
    " figures, and the ratios to them, are no floor.",
    "- Message size limits, where a load needs them raised (16 MiB messages): fanout gets"
    " `--max-message-bytes` twice the message and `--outbox-max-bytes` 16 times it, the"
    " article's uvicorn `--ws-max-size` twice the message; websockets-broadcast runs with"
    " `max_size=None`, node-ws with `maxPayload: 0` (no limit), the floor has none. Each"
    " run's exact server arguments are in the JSON (`server_args`).",
    "- Clients: the lab's (`fanout.lab`, see docs/lab.md), spread over its generator"
    " processes. Plain mode connects to `/ws`; the publisher's frames are broadcast to"
    " every client including itself (the article's behaviour): S + 1 frames per message,"
    " of which the S to the subscribers are counted as deliveries. `fanout.v1` subscribers"
    " send `subscribe` for one room and the publisher sends `publish` frames with an `id`"
    " without subscribing: S deliveries and one `ack` per message.",
    "- Loads: rates every server can keep up with (it does when its 'deliveries/s'"
    " matches the offered rate), so that CPU per delivery compares the same work. A cost"
    " per delivery depends on the rate: frames queued for a socket in one loop iteration"
    " (or one write delay) leave in one write, while at low rates every message is its own"
    " write per recipient; and, for large messages, mostly on copying bytes.",
    "- Server CPU: user + system time of the server process, all its threads (/proc),"
    " read at the lab's"
    " progress reports: from the moment every client is connected to the first report"
    " (every 0.5 s) at which the subscribers had everything they got, divided by the"
    " deliveries counted at that report; the receive and parse of each publish, and the"
    " publisher's echo or ack, are included. 'of it user space' is the median run's user"
    " time per delivery: the server's own code and the event loop, without the kernel's"
    " sockets (where the servers' writes cost the same). 'server busy' is the lab's server samples'"
    " mean CPU while sending. Over loopback, the kernel time of each write also carries"
    " the receiving side's TCP processing and the wake-up of the reader, which a real"
    " network would move to other machines: the floor row shows how much that is. Every"
    " thread of the server is pinned to CPU 0 (Node.js has helper threads: garbage"
    " collection, I/O), the lab's generators to the other CPUs.",
    "- Latency: the lab's publish-to-deliver histogram (CLOCK_MONOTONIC in the payload, to"
    " the moment the receiving generator reads the frame), over every delivery. It"
    " includes the generators' own scheduling delay.",
    "- Loss: the lab's accounting: every payload carries a sender id and a sequence"
    " number; each subscriber counts what never arrived (lost), what arrived twice (dup)"
    " and what arrived after a later one.",
    "- The machine may be shared: once every client is connected the script waits (at"
    " most 10 s, `--quiet-wait`) for other processes to leave the CPUs, and flags a run"
    f" during which they used more than {OTHER_LOAD_FLAG} cores; that is also why each"
    " row is a median of several runs.",
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
    *,
    size: int = PAYLOAD_BYTES,
) -> tuple[RunResult, dict[str, Any]]:
    """``run_one`` with a line before (what runs) and after (what it measured)."""
    print(
        f"{label}: {format_size(size)} to {subscribers} subscribers, {rate:g} msg/s,"
        f" run {repeat + 1}/{args.repeat} ...",
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
        size=size,
        quiet_wait_s=getattr(args, "quiet_wait", QUIET_WAIT_S),
    )
    print(
        f"  {r.us_per_delivery:,.2f} us/delivery, {r.deliveries_per_s:,.0f}"
        f" deliveries/s, server busy {r.server_busy:.0%}, p50 {r.latency_ms['p50']:.2f} ms,"
        f" p99 {r.latency_ms['p99']:.2f} ms, lost {r.lost}, dup {r.dups}, generators"
        f" {sum(r.generator_busy):.2f} cores, other load {r.other_cores:.2f} cores"
        + (f", server args {r.server_args}" if r.server_args else "")
        + "".join(f"\n  ! {f}" for f in r.flags),
        flush=True,
    )
    return r, doc


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    repeat: int,
    rates: str | None = "100:1000,500:150,100:1500",
    rates_help: str = "",
    duration: float = 5.0,
) -> None:
    """The options fanout_vs_article and auth_cost share."""
    parser.add_argument(
        "--rates",
        default=rates,
        help=rates_help
        or "subscribers:messages per second, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help="publishing seconds per run (default: %(default)s)",
    )
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
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the runs and how they were made to ``json_path``, then the section.

    ``doc`` is one of the runs' lab documents: the machine, versions and commit.
    ``write_section`` rewrites the script's section of ``args.results`` (unless '-').
    ``extra``: more of the script's settings, after (or instead of) the common ones.
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
        **(extra or {}),
        **provenance(doc),
        "runs": [asdict(r) for r in results],
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {json_path}")
    if str(args.results) != "-":
        write_section(args.results, report, results)
        print(f"wrote {args.results}")


QUICK_DURATION_S = 2.0
QUICK_QUIET_WAIT_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    add_arguments(
        parser,
        repeat=2,
        duration=4.0,
        rates=None,
        rates_help="subscribers:messages per second, comma-separated: 200-byte loads,"
        " run instead of the default --loads (or after those given)",
    )
    parser.set_defaults(results=None)
    parser.add_argument(
        "--loads",
        default=None,
        help=f"comma-separated, from {', '.join(LOADS)} or SIZE:SUBSCRIBERS:RATE"
        " (e.g. 64k:50:10; sizes in bytes, k, m) (default: all of those named)",
    )
    parser.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from {', '.join(TARGETS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT_S,
        help="seconds to wait at most, once every client is connected, for other processes"
        " to leave the CPUs (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: 1 round of {QUICK_DURATION_S:g} s per load and server, a quiet wait"
        f" of {QUICK_QUIET_WAIT_S:g} s at most, RESULTS.md left alone (unless --results)",
    )
    parser.add_argument(
        "--attach",
        default="",
        metavar="CMD",
        help="run CMD against each server during its lab run, e.g. a profiler:"
        " '{pid}', '{target}' and '{subscribers}' are replaced; stopped with SIGINT",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.targets.split(",") if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}: choose from {', '.join(TARGETS)}")
    targets = [TARGETS[name] for name in args.targets.split(",")]
    try:
        default = "" if args.rates else ",".join(LOADS)
        loads = parse_loads(args.loads if args.loads is not None else default)
        if args.rates:
            loads += [Load(PAYLOAD_BYTES, s, r) for s, r in parse_rates(args.rates)]
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if not loads:
        parser.error("no loads")
    if args.quick:
        args.repeat, args.duration = 1, QUICK_DURATION_S
        args.quiet_wait = min(args.quiet_wait, QUICK_QUIET_WAIT_S)
    if args.results is None:
        args.results = Path("-") if args.quick else BENCH_DIR / "RESULTS.md"
    if any(t.server == "node" for t in targets):
        ensure_node_ws()
    stamp, json_path = prepare(args, "fanout_vs_article")
    results: list[RunResult] = []
    doc: dict[str, Any] = {}
    for load in loads:
        for repeat in range(args.repeat):
            # Each round starts with another server, so that none always follows the same.
            turn = repeat % len(targets)
            for target in targets[turn:] + targets[:turn]:
                r, doc = run_announced(
                    target.name, target, load.subscribers, load.rate, repeat, args, size=load.size
                )
                results.append(r)
    sizes = sorted({load.size for load in loads})
    extra = {
        "payload_bytes": sizes[0] if len(sizes) == 1 else None,
        "loads": [{"name": load.name, **asdict(load)} for load in loads],
        "targets": [t.name for t in targets],
        "quick": args.quick,
        "quiet_wait_s": args.quiet_wait,
    }
    write_report(args, stamp, json_path, results, doc, write_results, extra)
    return 0


if __name__ == "__main__":
    # Ctrl-C or a kill (SIGTERM) stops the servers and processes the run started.
    sys.exit(run_interruptible(main))
