"""The server the lab measures: started from a command line, or an attached pid.

A started server runs in its own session (process group), with stdout and stderr in a
log file, so that ``stop`` reaches the processes it started too (uvicorn's workers, a
shell's children). Being in its own session, it does not get the terminal's Ctrl-C:
stop it in a ``finally`` (or use it as a context manager). An attached server belongs
to someone else: it is observed, never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from fanout.lab.net import ProcessGone, wait_for_port
from fanout.lab.observe.logs import tail_file

ERROR_TAIL_LINES = 20


class ObserveError(RuntimeError):
    """The observed server could not be started, exited, or never listened."""


class ServerProcess:
    """A server process: ``start`` one (owned) or ``attach`` to a running one."""

    def __init__(
        self,
        *,
        pid: int,
        command: str | None,
        log_path: Path | None,
        popen: subprocess.Popen[bytes] | None,
        attached: Any = None,
    ) -> None:
        self._pid = pid
        self._command = command
        self._log_path = log_path
        self._popen = popen
        self._attached = attached  # psutil.Process, which tells a reused pid apart

    @classmethod
    def start(
        cls,
        command: str,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Self:
        """Run ``command`` (split like a shell would, no shell involved).

        The environment is this process's plus ``env``; stdout and stderr go to
        ``log_path``, which is truncated first.
        """
        argv = shlex.split(command)
        if not argv:
            raise ValueError("the server command is empty")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ObserveError(f"cannot start the server {command!r}: {exc}") from exc
        return cls(pid=popen.pid, command=command, log_path=log_path, popen=popen)

    @classmethod
    def attach(cls, pid: int, *, log_path: Path | None = None) -> Self:
        """Observe an already-running server; ``stop`` will leave it running.

        ``log_path``, if given, is where that server writes its output.
        """
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess as exc:
            raise ObserveError(f"no process with pid {pid}") from exc
        return cls(pid=pid, command=None, log_path=log_path, popen=None, attached=proc)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def command(self) -> str:
        """The command line; for an attached process, as the system reports it."""
        if self._command is None:
            argv = self._cmdline()
            if not argv:
                return f"pid {self._pid}"  # not known yet (just exec'd) or not readable
            self._command = shlex.join(argv)
        return self._command

    def _cmdline(self) -> list[str]:
        try:
            return [str(arg) for arg in self._attached.cmdline()]
        except psutil.Error:
            return []

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def owned(self) -> bool:
        """True when this object started the server (and ``stop`` will end it)."""
        return self._popen is not None

    @property
    def returncode(self) -> int | None:
        """The exit code once a started server has exited (-N: killed by signal N)."""
        return None if self._popen is None else self._popen.poll()

    def is_running(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        try:
            return bool(
                self._attached.is_running() and self._attached.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def log_tail(self, n: int = ERROR_TAIL_LINES) -> list[str]:
        return [] if self._log_path is None else tail_file(self._log_path, n)

    def _describe(self, what: str) -> str:
        lines = self.log_tail()
        if self._log_path is None:
            return f"{what}: {self.command}"
        shown = "\n".join(lines) if lines else "(empty)"
        return f"{what}: {self.command}\n--- last lines of {self._log_path} ---\n{shown}"

    def wait_listening(self, host: str, port: int, timeout_s: float = 20.0) -> None:
        """Return once ``host:port`` accepts a TCP connection.

        Raises ``ObserveError`` (with the log's last lines) when the server exits first
        or ``timeout_s`` passes.
        """
        try:
            wait_for_port(host, port, timeout_s, running=self.is_running)
        except ProcessGone:
            code = self.returncode
            exited = "exited" if code is None else f"exited with code {code}"
            raise ObserveError(self._describe(f"the server {exited} before listening")) from None
        except TimeoutError:
            raise ObserveError(
                self._describe(f"the server did not listen on {host}:{port} in {timeout_s} s")
            ) from None

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for a started server to exit; its code, or None."""
        if self._popen is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._popen.wait(timeout_s)
        return None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (None if attached).

        Processes the server started and left behind in its group are killed too.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait()
        # The group id stays reserved while any member lives, so this reaches only ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:  # it left its group: signal it alone (not yet reaped)
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "owned" if self.owned else "attached"
        return f"ServerProcess(pid={self._pid}, {mode}, command={self.command!r})"
