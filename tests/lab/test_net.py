"""``fanout.lab.net``: free ports and bounded waits."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from fanout.lab.net import ProcessGone, free_port, port_accepts, wait_for_port, wait_until


def test_free_port_is_free_and_avoids_what_it_is_told() -> None:
    port = free_port()
    assert not port_accepts("127.0.0.1", port)
    assert free_port(avoid=range(0, port + 1)) > port


def test_wait_until_returns_the_first_true_value_or_times_out() -> None:
    calls = iter([0, None, 7])
    assert wait_until(lambda: next(calls), 5, interval_s=0.001) == 7
    with pytest.raises(TimeoutError, match=r"nothing: not within 0\.05 s"):
        wait_until(lambda: False, 0.05, interval_s=0.01, what="nothing")


def test_wait_for_port_sees_a_listener_and_a_process_that_is_gone() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port("127.0.0.1", listener.getsockname()[1], 5)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessGone):
        wait_for_port("127.0.0.1", free_port(), 5, running=lambda: proc.poll() is None)
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), 0.1)
