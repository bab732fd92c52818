"""``fanout bench``, ``fanout report`` and ``fanout baseline`` as a user runs them."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fanout.cli import main
from tests.lab.conftest import FAULTY
from tests.support.servers import free_port


def fanout(
    *args: str, cwd: Path | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def test_bench_help_explains_the_load_the_server_and_the_sweep() -> None:
    out = fanout("bench", "--help").stdout
    for flag in [
        "--receivers",
        "--rate",
        "--size",
        "--kind",
        "--slow",
        "--churn",
        "--mode",
        "--server-cmd",
        "--server-pid",
        "--sweep",
        "--rates",
        "--processes",
        "--out",
        "--fail-on",
        "--junit",
    ]:
        assert flag in out
    assert "exit status" in out
    assert "fanout report" in out


def test_a_bench_run_writes_results_that_report_turns_into_a_page(tmp_path: Path) -> None:
    port = free_port()
    server = shlex.join([sys.executable, str(FAULTY), "--port", str(port), "--drop-every", "9"])
    run = fanout(
        "bench",
        f"ws://127.0.0.1:{port}/ws",
        "--server-cmd",
        server,
        "--receivers",
        "3",
        "--count",
        "50",
        "--rate",
        "200",
        "--drain",
        "1",
        "-o",
        str(tmp_path / "run.json"),
    )
    assert run.returncode == 1, run.stderr  # a "loss" verdict: a break fails the gate
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["schema"] == "fanout.lab.run/1"
    assert doc["totals"]["lost_holes"] == 3 * 5  # 9, 18, 27, 36, 45
    assert doc["argv"][:3] == ["fanout", "bench", f"ws://127.0.0.1:{port}/ws"]
    assert "loss" in run.stderr  # the verdict table
    report = fanout("report", str(tmp_path / "run.json"), "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page
    assert "loss" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ws://example.com/ws"], "only targets this machine"),
        (["ws://10.0.0.1:80/ws"], "only targets this machine"),
        (["wss://127.0.0.1/ws"], "ws://"),
        (["ws://127.0.0.1:1/ws", "--size", "huge"], "not a size"),
        (["ws://127.0.0.1:1/ws", "--rate", "fast-ish"], "not a rate"),
        (["ws://127.0.0.1:1/ws", "--size", "10"], "size must be between"),
        (["ws://127.0.0.1:1/ws", "--slow", "5", "--receivers", "2"], "slow <= receivers"),
        (["ws://127.0.0.1:1/ws", "--duration", "100000"], "duration"),
        (["ws://127.0.0.1:1/ws", "--rooms", "3"], "{room}"),
    ],
)
def test_bad_bench_arguments_are_refused_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench", *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_server_command_that_dies_is_reported_with_its_output(tmp_path: Path) -> None:
    port = free_port()
    bad = shlex.join([sys.executable, "-c", "import sys; print('boom: no config'); sys.exit(3)"])
    run = fanout(
        "bench",
        f"ws://127.0.0.1:{port}/ws",
        "--server-cmd",
        bad,
        "--duration",
        "1",
        "-o",
        str(tmp_path / "x.json"),
    )
    assert run.returncode == 3  # an invalid run: nothing ever listened
    assert "boom: no config" in run.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_bench_run_ended_by_sigterm_stops_the_server_and_generators_it_started_at_once(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = shlex.join([sys.executable, str(FAULTY), "--port", str(port)])
    argv = [sys.executable, "-m", "fanout.cli", "bench", f"ws://127.0.0.1:{port}/ws"]
    argv += ["--server-cmd", server, "--receivers", "2", "--rate", "20", "--duration", "60"]
    bench = subprocess.Popen(
        [*argv, "--processes", "2", "-o", str(tmp_path / "run.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(started) < 3:  # the server, 2 generators
            time.sleep(0.2)
            started = psutil.Process(bench.pid).children(recursive=True)
        assert len(started) >= 3, f"the run did not start: {started}"
        time.sleep(1.0)  # publishing by now
        bench.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        bench.wait(timeout=30)
        took_s = time.monotonic() - signalled
    finally:
        if bench.poll() is None:
            bench.kill()
        _, alive = psutil.wait_procs(started, timeout=10)
        for proc in alive:  # what the run left behind, not to outlive the test
            proc.kill()
        _, err = bench.communicate()
    assert bench.returncode == 130, err
    assert "interrupted, nothing written" in err
    assert not (tmp_path / "run.json").exists()
    assert alive == [], [p.cmdline() for p in alive]
    # Generators mid-phase are terminated, not waited for (5 s each) until they look
    # at their pipe.
    assert took_s < 3.0, f"the run took {took_s:.1f} s to stop"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "garbage.json"),
        ('{"schema": "something/9"}', "garbage.json"),
        ("[1, 2, 3]", "garbage.json"),
    ],
)
def test_report_refuses_a_file_that_is_not_lab_results(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "garbage.json").write_text(content)
    run = fanout("report", str(tmp_path / "garbage.json"), "-o", str(tmp_path / "r.html"))
    assert run.returncode == 2
    assert message in run.stderr
    assert not (tmp_path / "r.html").exists()


def test_baseline_help_says_it_is_the_articles_server() -> None:
    out = fanout("baseline", "--help").stdout
    assert "article" in out
    assert "--binary" in out
    assert "8001" in out
