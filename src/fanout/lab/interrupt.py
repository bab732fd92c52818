"""SIGTERM ends a lab run as Ctrl-C does.

A lab run starts processes of its own: the server ``--server-cmd`` names (in its own
session, so that a Ctrl-C at the terminal reaches it only through the run), load
generators, Redis. Python's default for SIGTERM ends the run's process at once, with no
``finally`` run, and leaves all of those behind; a CI job's time-out and ``kill`` send
SIGTERM. Under ``sigterm_as_interrupt()`` SIGTERM raises KeyboardInterrupt instead, so
the clean-up that Ctrl-C already goes through stops them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt within; the previous handler is back after.
    Outside the main thread (where signal handlers cannot be set) nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_interruptible(main: Callable[[], int | None]) -> int:
    """``main()``'s exit status; 130 after Ctrl-C or SIGTERM, once the clean-up has
    run (what ``main`` started is stopped by then), with one line instead of a
    traceback. For a script's ``sys.exit(run_interruptible(main))``."""
    with sigterm_as_interrupt():
        try:
            return main() or 0
        except KeyboardInterrupt:
            print("interrupted: the processes this run started are stopped", file=sys.stderr)
            return 130
