"""Sample the observed server in a background thread: CPU, memory, socket queues.

One sample every ``interval_s`` (0.25 s by default), each one a ``server.samples``
entry of ``docs/lab-results.md``. ``send_q_by_kind`` attributes each connection's
send queue to what the client on the other end is ("stable", "slow", "sender",
"churn"): the caller registers the clients' local ports with ``set_port_kinds``; a
port it did not register counts as "other". Sampling ends when the server process
exits (a dead process has no CPU, memory or sockets to report).

With a metrics URL that answers, the server's own gauges are followed too (once a
second, :mod:`.gauges`), and the buffer bounds a fanout hub states there are kept:
the evidence that tells buffers filling from a leak.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import psutil

from fanout.lab.observe.gauges import GaugeSampler
from fanout.lab.observe.logs import exceptions_in_file, tail_file
from fanout.lab.observe.metrics import bounds_from_page, check_local_url, parse_gauges, scrape
from fanout.lab.observe.process import ServerProcess
from fanout.lab.observe.sockets import queues_on_port

OTHER = "other"
LOG_TAIL_LINES = 40

Sample = dict[str, Any]


class Observer:
    """Watches one server process and its TCP port."""

    def __init__(
        self,
        server: ServerProcess,
        port: int,
        *,
        interval_s: float = 0.25,
        metrics_url: str | None = None,
        metrics_timeout_s: float = 2.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if metrics_url is not None:
            check_local_url(metrics_url)
        self._server = server
        self._port = port
        self._interval = interval_s
        self._metrics_url = metrics_url
        self._metrics_timeout = metrics_timeout_s
        self._lock = threading.Lock()
        self._port_kinds: dict[int, str] = {}
        self._t0: float | None = None
        self._samples: list[tuple[float, Sample]] = []  # (monotonic time, sample without t)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._root: Any = None  # psutil.Process of the server
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process, keeps cpu_percent baselines
        self._machine = machine_cpu_seconds()  # (busy, total) at the previous sample
        self._exited = False
        self._error: str | None = None
        self._metrics_before: str | None = None
        self._metrics_after: str | None = None
        self._gauges: GaugeSampler | None = None
        self._bounds: dict[str, Any] | None = None

    # -- what the caller tells us -------------------------------------------------------

    def set_t0(self, t0_monotonic: float) -> None:
        """Samples' ``t`` become seconds since ``t0_monotonic`` (``time.monotonic()``)."""
        with self._lock:
            self._t0 = t0_monotonic

    def set_port_kinds(self, kinds: Mapping[int, str]) -> None:
        """Replace the client port -> kind mapping (thread-safe, any time)."""
        with self._lock:
            self._port_kinds = dict(kinds)

    def update_port_kinds(self, kinds: Mapping[int, str]) -> None:
        """Add to (or change) the client port -> kind mapping."""
        with self._lock:
            self._port_kinds = {**self._port_kinds, **kinds}

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the observer was already started")
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
        if self._metrics_url is not None:
            self._metrics_before = scrape(self._metrics_url, self._metrics_timeout)
            if self._metrics_before is not None and parse_gauges(self._metrics_before):
                self._gauges = GaugeSampler(self._metrics_url)
                self._gauges.start()
        self._bounds = bounds_from_page(self._metrics_before)
        try:
            self._root = psutil.Process(self._server.pid)
            self._procs = {self._root.pid: self._root}
            self._root.cpu_percent(None)  # the baseline the first sample is measured from
        except psutil.Error:
            self._exited = True
        self._thread = threading.Thread(
            target=self._run, name=f"observe-{self._server.pid}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (joins the thread) and scrape the metrics once more."""
        thread = self._thread
        if thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        thread.join()
        if self._gauges is not None:
            self._gauges.stop()
        if self._metrics_url is not None:
            self._metrics_after = scrape(self._metrics_url, self._metrics_timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def exited(self) -> bool:
        """True once the server process was found gone (sampling stopped then)."""
        return self._exited

    @property
    def error(self) -> str | None:
        """The first unexpected error a sample ran into (sampling went on), if any."""
        return self._error

    # -- results ------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """A copy of the samples so far, ``t`` relative to the current t0."""
        with self._lock:
            t0 = 0.0 if self._t0 is None else self._t0
            taken = list(self._samples)
        return [
            {"t": round(at - t0, 3), **sample, "send_q_by_kind": dict(sample["send_q_by_kind"])}
            for at, sample in taken
        ]

    def to_json(self) -> dict[str, Any]:
        """The results' ``server`` section (read the log after the server stopped)."""
        log_path = self._server.log_path
        exceptions = [] if log_path is None else exceptions_in_file(log_path)
        return {
            "pid": self._server.pid,
            "command": self._server.command,
            "port": self._port,
            "samples": self.samples(),
            "exceptions": [record.to_json() for record in exceptions],
            "log_tail": [] if log_path is None else tail_file(log_path, LOG_TAIL_LINES),
            "metrics": (
                None
                if self._metrics_url is None
                else {"before": self._metrics_before, "after": self._metrics_after}
            ),
            "gauges": self.gauges(),
            "bounds": self._bounds,
            "exit_code": self._server.returncode,
        }

    def gauges(self) -> list[dict[str, Any]]:
        """The server's own gauges over the run, ``t`` relative to the current t0."""
        if self._gauges is None:
            return []
        with self._lock:
            t0 = 0.0 if self._t0 is None else self._t0
        return self._gauges.samples(t0)

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._exited:
            next_at += self._interval
            now = time.monotonic()
            if next_at < now:  # fell behind (a stall): keep the pace from here
                next_at = now + self._interval
            if self._stopping.wait(next_at - now):
                return
            try:
                self._sample()
            except Exception as exc:  # one odd sample must not end the observation
                if self._error is None:
                    self._error = f"{type(exc).__name__}: {exc}"

    def _sample(self) -> None:
        at = time.monotonic()
        usage = self._usage()
        if usage is None:
            self._exited = True
            return
        cpu_percent, rss_bytes = usage
        busy, total = machine_cpu_seconds()
        last_busy, last_total = self._machine
        self._machine = (busy, total)
        machine_percent = (
            100 * (busy - last_busy) / (total - last_total) if total > last_total else 0.0
        )
        queues = queues_on_port(self._port)
        with self._lock:
            kinds = self._port_kinds  # replaced whole, never mutated in place
        by_kind: dict[str, int] = dict.fromkeys(kinds.values(), 0)
        for queue in queues:
            kind = kinds.get(queue.remote_port, OTHER)
            by_kind[kind] = by_kind.get(kind, 0) + queue.send_q
        send = [queue.send_q for queue in queues]
        recv = [queue.recv_q for queue in queues]
        sample: Sample = {
            "cpu_percent": round(cpu_percent, 1),
            "machine_cpu_percent": round(machine_percent, 1),
            "rss_bytes": rss_bytes,
            "connections": len(queues),
            "send_q_total": sum(send),
            "send_q_max": max(send, default=0),
            "recv_q_total": sum(recv),
            "recv_q_max": max(recv, default=0),
            "send_q_by_kind": by_kind,
        }
        with self._lock:
            self._samples.append((at, sample))

    def _usage(self) -> tuple[float, int] | None:
        """CPU (% of one core) and RSS of the server and its children; None once gone."""
        root = self._root
        if root is None:
            return None
        try:
            if root.status() == psutil.STATUS_ZOMBIE:
                return None
            procs = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        cpu = 0.0
        rss = 0
        alive: dict[int, Any] = {}
        for proc in procs:
            known = self._procs.get(proc.pid)
            if known is None or known != proc:  # new, or the pid was reused
                known = proc  # its first cpu_percent is 0.0: it sets the baseline
            try:
                with known.oneshot():
                    cpu += float(known.cpu_percent(None))
                    rss += int(known.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied:
                pass
            alive[proc.pid] = known
        self._procs = alive
        return cpu, rss


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores together. Busy is
    all but idle and I/O wait; a virtual machine's steal time counts as busy: the
    hypervisor ran something else on that core. Linux counts a guest's time in user
    and nice too: counted once."""
    times = psutil.cpu_times()
    guests = float(getattr(times, "guest", 0.0)) + float(getattr(times, "guest_nice", 0.0))
    total = float(sum(times)) - guests
    return total - times.idle - float(getattr(times, "iowait", 0.0)), total
