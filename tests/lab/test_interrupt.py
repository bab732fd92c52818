"""A lab script killed with SIGTERM stops what it started, as after Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from fanout.lab.interrupt import run_interruptible, sigterm_as_interrupt

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fanout.lab.interrupt import run_interruptible
    from fanout.lab.observe import ServerProcess

    def main() -> int:
        command = f"{sys.executable} -c 'import time; time.sleep(600)'"
        with ServerProcess.start(command, Path(sys.argv[1])) as server:
            print(server.pid, flush=True)
            time.sleep(600)
        return 0

    sys.exit(run_interruptible(main))
    """
)


def test_a_script_killed_with_sigterm_stops_the_server_it_started_and_exits_130(
    tmp_path: Path,
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    run = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        server = psutil.Process(int(run.stdout.readline()))
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
        _, alive = psutil.wait_procs([server], timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
        _, err = run.communicate()
    for proc in alive:  # not to outlive the test
        proc.kill()
    assert run.returncode == 130, err
    assert "interrupted: the processes this run started are stopped" in err
    assert "Traceback" not in err
    assert alive == []


def test_a_script_that_ends_by_itself_exits_with_its_own_status() -> None:
    assert run_interruptible(lambda: None) == 0
    assert run_interruptible(lambda: 3) == 3


def test_the_previous_sigterm_handler_is_back_after_the_run() -> None:
    def mine(signum: int, frame: object) -> None:
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
