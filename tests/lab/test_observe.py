"""The lab's server observation, against real child processes and real sockets."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fanout.lab.observe import (
    ObserveError,
    Observer,
    ServerProcess,
    SocketQueue,
    extract_exceptions,
    parse_proc_net_tcp,
    queues_on_port,
    scrape,
    tail,
)
from fanout.lab.observe.sampler import machine_cpu_seconds
from tests.support.servers import free_port

SAMPLE_KEYS = {
    "t",
    "cpu_percent",
    "machine_cpu_percent",
    "rss_bytes",
    "connections",
    "send_q_total",
    "send_q_max",
    "recv_q_total",
    "recv_q_max",
    "send_q_by_kind",
}

# Accepts every connection and writes 4 MB to it, then holds it open.
STALL_SERVER = """
import socket, sys, threading, time
payload = b"x" * (4 * 1024 * 1024)
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.create_server((sys.argv[1], int(sys.argv[2])), family=family)
def serve(conn):
    try:
        conn.sendall(payload)
    except OSError:
        pass
    time.sleep(60)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

IDLE_SERVER = """
import socket, sys, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(60)
"""

CRASHING_SERVER = """
import sys, traceback
print("INFO:     Started server process", file=sys.stderr)
def handle(i):
    raise RuntimeError("room lobby is full")
for i in range(3):
    try:
        handle(i)
    except Exception:
        print("ERROR:    Exception in ASGI application", file=sys.stderr)
        traceback.print_exc()
try:
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("bad frame") from exc
except ValueError:
    traceback.print_exc()
print("INFO:     Shutting down", file=sys.stderr)
"""

GROWING_SERVER = """
import time
hold = []
for _ in range(8):
    hold.append(b"\\x01" * (8 * 1024 * 1024))
    time.sleep(0.1)
time.sleep(60)
"""

# The busy work happens in a child the server starts, as uvicorn's workers would.
FORKING_BURNER = """
import subprocess, sys
burn = "import time\\nend = time.monotonic() + 30\\nwhile time.monotonic() < end: pass"
child = subprocess.Popen([sys.executable, "-c", burn])
print("burner", child.pid, flush=True)
child.wait()
"""

STUBBORN_SERVER = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(60)
"""

SHORT_LIVED_SERVER = """
import socket, sys, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(0.4)
"""

METRICS_SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = b"# TYPE fanout_connections gauge\\nfanout_connections 3\\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

Start = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Start]:
    """Start a Python script as a server; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(code: str, *args: object) -> ServerProcess:
        script = tmp_path / f"server{len(started)}.py"
        script.write_text(code)
        command = shlex.join([sys.executable, str(script), *map(str, args)])
        server = ServerProcess.start(command, tmp_path / f"server{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(timeout_s=2)


@contextlib.contextmanager
def observing(server: ServerProcess, port: int, **kwargs: Any) -> Iterator[Observer]:
    observer = Observer(server, port, **kwargs)
    observer.start()
    try:
        yield observer
    finally:
        observer.stop()


def wait_for_sample(
    observer: Observer, ok: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for sample in reversed(observer.samples()):
            if ok(sample):
                return sample
        time.sleep(0.05)
    raise AssertionError(f"no such sample in {observer.samples()[-5:]}")


def read_exactly(sock: socket.socket, n: int) -> None:
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        assert chunk, "the server closed early"
        n -= len(chunk)


# -- socket queues ------------------------------------------------------------------------


def test_a_stalled_reader_shows_up_as_send_queue_on_the_servers_port(
    start_server: Start,
) -> None:
    port = free_port()
    server = start_server(STALL_SERVER, "127.0.0.1", port)
    server.wait_listening("127.0.0.1", port, timeout_s=5)
    with observing(server, port, interval_s=0.05) as observer:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # and it never reads
        stranger = socket.socket()  # not registered, never reads
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        with slow, stranger, socket.create_connection(("127.0.0.1", port)) as stable:
            slow.connect(("127.0.0.1", port))
            stranger.connect(("127.0.0.1", port))
            observer.set_port_kinds(
                {slow.getsockname()[1]: "slow", stable.getsockname()[1]: "stable"}
            )
            read_exactly(stable, 4 * 1024 * 1024)

            sample = wait_for_sample(
                observer,
                lambda s: (
                    s["send_q_by_kind"].get("slow", 0) > 1_000_000
                    and s["send_q_by_kind"].get("other", 0) > 1_000_000
                    and s["send_q_by_kind"].get("stable") == 0
                ),
            )
            assert sample["connections"] == 3
            assert sample["send_q_max"] == max(
                sample["send_q_by_kind"]["slow"], sample["send_q_by_kind"]["other"]
            )
            assert sample["send_q_total"] == sum(sample["send_q_by_kind"].values())
            # The clients' own sockets (receive queues full) are not the server's.
            assert sample["recv_q_total"] == 0
            assert set(sample) == SAMPLE_KEYS

            server_side = {q.remote_port: q for q in queues_on_port(port)}
            assert set(server_side) == {
                slow.getsockname()[1],
                stranger.getsockname()[1],
                stable.getsockname()[1],
            }
            assert server_side[stable.getsockname()[1]].send_q == 0


def test_queues_are_read_from_ipv6_sockets_too(start_server: Start) -> None:
    # The machines this runs on have ::1 (their own services listen on it).
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as probe:
        port = probe.getsockname()[1]
    server = start_server(STALL_SERVER, "::1", port)
    server.wait_listening("::1", port, timeout_s=5)
    with socket.socket(socket.AF_INET6) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.connect(("::1", port))
        deadline = time.monotonic() + 5
        while True:
            queues = queues_on_port(port)
            if queues and queues[0].send_q > 100_000:
                break
            assert time.monotonic() < deadline, queues
            time.sleep(0.05)
        assert [q.remote_port for q in queues] == [slow.getsockname()[1]]


def test_only_established_server_side_rows_of_the_kernel_table_count() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
        # listening socket on the port
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n"
        # server side of a connection from port 0xC350 = 50000: 0x1000 queued to send
        "   1: 0100007F:1F90 0100007F:C350 01 00001000:00000010 01:00000014 00000000\n"
        # the client side of that same connection (remote port is the server's)
        "   2: 0100007F:C350 0100007F:1F90 01 00000000:00300000 00:00000000 00000000\n"
        # a connection in TIME_WAIT
        "   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 03:00000F00 00000000\n"
        # IPv6 (::1) server side, from port 0xC352
        "   4: 00000000000000000000000001000000:1F90 "
        "00000000000000000000000001000000:C352 01 00000020:00000000 00:00000000 0\n"
        "   5: garbage\n"
        "   6: 0100007F:ZZZZ 0100007F:C350 01 00001000:00000010\n"
    )
    assert parse_proc_net_tcp(table, 8080) == [
        SocketQueue(remote_port=50000, send_q=0x1000, recv_q=0x10),
        SocketQueue(remote_port=50002, send_q=0x20, recv_q=0),
    ]
    assert parse_proc_net_tcp(table, 9999) == []


# -- CPU and memory -----------------------------------------------------------------------


def test_memory_the_server_allocates_shows_up_as_growing_rss(start_server: Start) -> None:
    server = start_server(GROWING_SERVER)
    with observing(server, free_port(), interval_s=0.05) as observer:
        wait_for_sample(observer, lambda s: s["rss_bytes"] > 60 * 1024 * 1024)
    rss = [s["rss_bytes"] for s in observer.samples()]
    assert rss[-1] - rss[0] > 40 * 1024 * 1024


def test_cpu_burnt_by_a_child_of_the_server_counts_as_server_cpu(
    start_server: Start,
) -> None:
    server = start_server(FORKING_BURNER)
    with observing(server, free_port(), interval_s=0.1) as observer:
        sample = wait_for_sample(observer, lambda s: s["cpu_percent"] > 50)
    assert sample["cpu_percent"] <= 100 * (psutil.cpu_count() or 1) + 10
    # The machine was at least as busy as the server (its share of all cores), give or
    # take the moments between the two readings.
    assert sample["machine_cpu_percent"] >= sample["cpu_percent"] / (psutil.cpu_count() or 1) - 15
    burner = int(server.log_tail()[0].split()[1])
    assert not gone(burner)
    server.stop(timeout_s=2)
    # Stopping the server also ends what it started.
    deadline = time.monotonic() + 2
    while not gone(burner):
        assert time.monotonic() < deadline, "the burner survived the server"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_samples_are_timed_from_t0_and_stop_when_the_server_exits(
    start_server: Start,
) -> None:
    port = free_port()
    server = start_server(SHORT_LIVED_SERVER, port)
    server.wait_listening("127.0.0.1", port, timeout_s=5)
    with observing(server, port, interval_s=0.05) as observer:
        time.sleep(0.15)
        observer.set_t0(time.monotonic())
        assert server.wait(timeout_s=5) == 0
        deadline = time.monotonic() + 2
        while not observer.exited:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        count = len(observer.samples())
        time.sleep(0.15)
        assert len(observer.samples()) == count  # no samples of a dead process
    assert observer.error is None
    times = [s["t"] for s in observer.samples()]
    assert times == sorted(times)
    assert times[0] < 0 < times[-1]  # before and after t0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.03 < sum(gaps) / len(gaps) < 0.2  # every 0.05 s, give or take a busy CI


def test_observing_a_server_that_already_exited_is_harmless(tmp_path: Path) -> None:
    server = ServerProcess.start(shlex.join([sys.executable, "-c", "pass"]), tmp_path / "log")
    assert server.wait(timeout_s=5) == 0
    with observing(server, free_port(), interval_s=0.02) as observer:
        time.sleep(0.1)
    assert observer.samples() == []
    assert observer.exited
    assert observer.to_json()["exit_code"] == 0


# -- the server's output ------------------------------------------------------------------


def test_tracebacks_in_the_servers_output_are_reported_with_type_message_and_count(
    start_server: Start,
) -> None:
    server = start_server(CRASHING_SERVER)
    assert server.wait(timeout_s=10) == 0
    observer = Observer(server, free_port())
    section = observer.to_json()

    assert section["pid"] == server.pid
    assert section["command"] == server.command
    assert section["exit_code"] == 0
    assert section["metrics"] is None
    assert section["log_tail"][-1] == "INFO:     Shutting down"
    assert [(e["type"], e["message"], e["count"]) for e in section["exceptions"]] == [
        ("RuntimeError", "room lobby is full", 3),
        ("ValueError", "bad frame", 1),
    ]
    first, chained = section["exceptions"]
    assert first["text"].startswith("ERROR:    Exception in ASGI application\nTraceback")
    assert first["text"].endswith("RuntimeError: room lobby is full")
    assert "KeyError: 'missing'" in chained["text"]
    assert "The above exception was the direct cause" in chained["text"]


def formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_the_log_parser_survives_garbage_binary_and_cut_logs() -> None:
    rng = random.Random(7)
    noise = bytes(rng.randrange(256) for _ in range(20_000)).decode("utf-8", "replace")
    real = formatted(raised(OSError("disk full")))
    cut = formatted(raised(KeyError("k"))).splitlines()
    text = "\n".join(
        [
            noise,
            "\x00\x00Traceback (most recent call last):\x00",
            "Traceback (most recent call last):",  # nothing after it
            "Received: hello",
            real,
            "\x1b[31mERROR\x1b[0m: colours",
            *cut[:2],  # the log ends mid-traceback
        ]
    )
    records = extract_exceptions(text)
    assert [(r.type, r.message, r.count) for r in records] == [("OSError", "disk full", 1)]
    assert extract_exceptions("") == []
    assert extract_exceptions("Traceback (most recent call last):") == []
    assert extract_exceptions("\n".join(cut[:-1])) == []


def test_a_chained_exception_is_one_record_named_after_the_last_exception() -> None:
    rooms: dict[str, int] = {}

    def chained() -> BaseException:
        try:
            rooms["room"]
        except KeyError:
            try:
                raise RuntimeError("send failed")
            except RuntimeError as exc:
                return exc
        raise AssertionError

    text = formatted(chained())
    assert "During handling of the above exception" in text
    [record] = extract_exceptions(text + "\n" + text)
    assert (record.type, record.message, record.count) == ("RuntimeError", "send failed", 2)
    assert "KeyError: 'room'" in record.text


def test_an_exception_group_is_recognised() -> None:
    group = raised(ExceptionGroup("tasks failed", [ValueError("a"), TypeError("b")]))
    [record] = extract_exceptions("ERROR: in task group\n" + formatted(group))
    assert record.type == "ExceptionGroup"
    assert record.message == "tasks failed (2 sub-exceptions)"
    assert "ValueError: a" in record.text


def test_records_keep_first_appearance_order_and_are_capped_in_number_and_size() -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise LookupError("x" * 10_000)

    huge = formatted(_call(deep, 60))
    parts = [formatted(raised(ValueError(f"bad {i}"))) for i in range(25)]
    records = extract_exceptions(huge + "".join(parts) + parts[3] + huge)
    assert len(records) == 20
    assert (records[0].type, records[0].count) == ("LookupError", 2)
    assert len(records[0].message) <= 1000
    assert len(records[0].text) <= 4200
    assert records[0].text.startswith("Traceback")
    assert [r.message for r in records[1:4]] == ["bad 0", "bad 1", "bad 2"]
    assert records[4].count == 2  # "bad 3"


def _call(fn: Callable[[int], None], n: int) -> BaseException:
    try:
        fn(n)
    except BaseException as exc:
        return exc
    raise AssertionError


def test_tail_returns_the_last_lines() -> None:
    assert tail("a\nb\nc\n", 2) == ["b", "c"]
    assert tail("a\nb", 10) == ["a", "b"]
    assert tail("a", 0) == []
    assert tail("", 3) == []


# -- starting and stopping ----------------------------------------------------------------


def test_a_server_that_exits_at_once_is_a_clear_error_with_its_last_lines(
    tmp_path: Path,
) -> None:
    code = "import sys; print('config error: no app named main'); sys.exit(3)"
    server = ServerProcess.start(shlex.join([sys.executable, "-c", code]), tmp_path / "log")
    with server, pytest.raises(ObserveError, match="exited with code 3") as info:
        server.wait_listening("127.0.0.1", free_port(), timeout_s=10)
    assert "config error: no app named main" in str(info.value)


def test_a_server_that_never_listens_times_out_clearly(tmp_path: Path) -> None:
    code = "import time; print('loading', flush=True); time.sleep(30)"
    port = free_port()
    with ServerProcess.start(shlex.join([sys.executable, "-c", code]), tmp_path / "log") as s:
        with pytest.raises(ObserveError, match=f"did not listen on 127.0.0.1:{port}"):
            s.wait_listening("127.0.0.1", port, timeout_s=0.5)
        assert s.is_running()
    assert s.returncode is not None


def test_a_command_that_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ObserveError, match="cannot start the server"):
        ServerProcess.start("/nonexistent/uvicorn app:app", tmp_path / "log")
    with pytest.raises(ValueError, match="empty"):
        ServerProcess.start("  ", tmp_path / "log")


def test_the_server_gets_extra_environment_variables(tmp_path: Path) -> None:
    code = "import os; print(os.environ['FANOUT_LAB_X'], os.environ['PATH'] != '')"
    command = shlex.join([sys.executable, "-c", code])
    with ServerProcess.start(command, tmp_path / "log", env={"FANOUT_LAB_X": "42"}) as s:
        assert s.wait(timeout_s=10) == 0
        assert s.log_tail() == ["42 True"]


def test_stop_kills_a_server_that_ignores_sigterm_within_the_timeout(
    start_server: Start,
) -> None:
    port = free_port()
    server = start_server(STUBBORN_SERVER, port)
    server.wait_listening("127.0.0.1", port, timeout_s=5)
    started = time.monotonic()
    assert server.stop(timeout_s=0.5) == -9
    assert time.monotonic() - started < 3
    assert not server.is_running()
    assert server.stop() == -9  # stopping again is harmless


def test_a_polite_server_is_stopped_with_sigterm(start_server: Start) -> None:
    port = free_port()
    server = start_server(IDLE_SERVER, port)
    server.wait_listening("127.0.0.1", port, timeout_s=5)
    assert server.stop(timeout_s=5) == -15


def test_an_attached_server_is_observed_but_never_signalled(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "idle.py"
    script.write_text(IDLE_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        server = ServerProcess.attach(proc.pid)
        assert not server.owned
        server.wait_listening("127.0.0.1", port, timeout_s=5)
        assert str(script) in server.command
        with observing(server, port, interval_s=0.05) as observer:
            sample = wait_for_sample(observer, lambda s: s["rss_bytes"] > 0)
        assert sample["connections"] == 0
        with server:
            pass
        assert server.stop() is None
        assert proc.poll() is None
        assert observer.to_json()["exit_code"] is None
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(ObserveError, match=f"no process with pid {proc.pid}"):
        ServerProcess.attach(proc.pid)


# -- metrics ------------------------------------------------------------------------------


def test_metrics_are_scraped_from_a_local_endpoint_and_none_when_absent(
    start_server: Start,
) -> None:
    port = free_port()
    server = start_server(METRICS_SERVER, port)
    server.wait_listening("127.0.0.1", port, timeout_s=5)
    url = f"http://127.0.0.1:{port}/metrics"

    assert "fanout_connections 3" in (scrape(url) or "")
    assert "fanout_connections 3" in (scrape(f"http://localhost:{port}/metrics") or "")
    assert scrape(f"http://127.0.0.1:{port}/nothing-here") is None
    assert scrape(f"http://127.0.0.1:{free_port()}/metrics", timeout_s=1) is None

    with observing(server, port, interval_s=0.05, metrics_url=url) as observer:
        time.sleep(0.1)
    metrics = observer.to_json()["metrics"]
    assert "fanout_connections 3" in metrics["before"]
    assert "fanout_connections 3" in metrics["after"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:9100/metrics",
        "http://example.com/metrics",
        "http://127.0.0.1.example.com/metrics",
        "file:///etc/passwd",
    ],
)
def test_metrics_urls_off_this_machine_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="metrics URL must"):
        scrape(url)
    with pytest.raises(ValueError, match="metrics URL must"):
        Observer(ServerProcess.attach(os.getpid()), 1, metrics_url=url)


def test_the_machines_busy_time_counts_a_guests_time_once_and_steal_as_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Linux's guest and guest_nice are already inside user and nice.
    times = type(psutil.cpu_times())
    fields = dict.fromkeys(times._fields, 0.0)
    fields.update(user=30.0, nice=5.0, system=10.0, idle=40.0, iowait=5.0, steal=10.0)
    fields.update({k: v for k, v in (("guest", 20.0), ("guest_nice", 5.0)) if k in fields})
    monkeypatch.setattr(psutil, "cpu_times", lambda: times(**fields))
    busy, total = machine_cpu_seconds()
    assert (busy, total) == (55.0, 100.0)
