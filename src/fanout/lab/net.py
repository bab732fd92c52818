"""Ports and waiting, for whatever starts servers on this machine (the lab, bench, tests).

``free_port`` finds a TCP port nothing listens on; ``wait_until`` polls a condition
with a deadline; ``wait_for_port`` waits until a server accepts connections, and stops
early when the process that should open the port is gone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Container
from typing import TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


class ProcessGone(RuntimeError):
    """The process a wait was for exited before the wait was over."""


def free_port(host: str = LOOPBACK, *, avoid: Container[int] = ()) -> int:
    """A TCP port on ``host`` that nothing listens on right now (none of ``avoid``)."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in avoid:
            return port


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    *,
    interval_s: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``condition`` until it returns something true; return that value.

    Raises ``TimeoutError`` naming ``what`` once ``timeout_s`` has passed; whatever
    ``condition`` raises goes through (a check may raise ``ProcessGone``, say).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)


def port_accepts(host: str, port: int, timeout_s: float = 0.25) -> bool:
    """True when ``host:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout_s: float = 20.0,
    *,
    running: Callable[[], bool] | None = None,
) -> None:
    """Return once ``host:port`` accepts a TCP connection.

    ``running`` (the server process is still alive) is checked before every attempt:
    ``ProcessGone`` when it turns false; ``TimeoutError`` after ``timeout_s``.
    """

    def listening() -> bool:
        if running is not None and not running():
            raise ProcessGone(f"the process exited before {host}:{port} accepted connections")
        return port_accepts(host, port)

    wait_until(listening, timeout_s, what=f"{host}:{port} accepting connections")
