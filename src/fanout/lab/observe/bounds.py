"""The buffer bounds of an observed fanout hub, read from how its process was started.

When the server under test is ``fanout serve`` (however it was started: the ``fanout``
script, ``python -m fanout.cli``), its flags and its ``FANOUT_*`` environment say how
much it may hold on purpose: per-connection outboxes and per-room history. The
diagnosis weighs memory growth against them (buffers filling toward their bound are not
a leak). Any other server, or a process whose command line cannot be read, has none.
Only the bounds are kept: no URL, secret or other setting leaves this module.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

#: What ``bounds_of`` reports, as named in ``fanout.settings.Settings``.
BOUND_SETTINGS = (
    "max_message_bytes",
    "outbox_max_messages",
    "outbox_max_bytes",
    "history_max_messages",
    "history_max_bytes",
    "history_total_max_bytes",
)
_PROGRAMS = frozenset({"fanout", "fanout.cli", "fanout.cli.__main__"})


def _serve_at(argv: Sequence[str]) -> int | None:
    """Where ``serve`` follows the fanout program in ``argv``, if it does."""
    for i in range(1, len(argv)):
        if argv[i] == "serve" and os.path.basename(argv[i - 1]) in _PROGRAMS:
            return i
    return None


def bounds_from_command(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The bounds a ``fanout serve`` command line (with this environment) runs with;
    None for any other command, or one fanout itself would refuse."""
    at = _serve_at(argv)
    if at is None:
        return None
    from fanout.flags import add_serve_flags
    from fanout.settings import Settings

    parser = argparse.ArgumentParser(prog="fanout serve")
    add_serve_flags(parser)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            args = parser.parse_args(list(argv[at + 1 :]))
        overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(Settings)}
        settings = Settings.from_env(dict(environ), **overrides)
    except (SystemExit, ValueError):
        return None
    found: dict[str, Any] = {name: getattr(settings, name) for name in BOUND_SETTINGS}
    # Rooms' history lives in this process only with the in-memory broker.
    found["history_in_process"] = settings.broker == "memory"
    found["workers"] = int(getattr(args, "workers", 1))
    return found


def bounds_of(pid: int) -> dict[str, Any] | None:
    """The bounds of the fanout hub running as ``pid``; None for any other process."""
    try:
        proc = psutil.Process(pid)
        argv = proc.cmdline()
        environ = proc.environ()
    except psutil.Error:
        return None
    return bounds_from_command(argv, environ)
