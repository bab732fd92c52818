"""A real ``redis-server`` child process for tests: own port, own dir, no persistence.

Never touches port 6379 or the system Redis: every server binds 127.0.0.1 on a free
port, in a directory the caller owns (pytest's ``tmp_path``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from tests.support.servers import free_port

SYSTEM_REDIS_PORT = 6379


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise RuntimeError("redis-server not found (make test installs it)")
    return found


def encode_command(*args: str | bytes | int) -> bytes:
    """One RESP command: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_line(stream: BinaryIO) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection closed mid-reply: {line!r}")
    return line


def read_reply(stream: BinaryIO) -> bytes:
    """The raw bytes of one full RESP2 reply: +simple, -error, :integer, $bulk, *array."""
    line = _read_line(stream)
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-", b":"):
        return line
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return line
        body = stream.read(size + 2)
        if len(body) != size + 2:
            raise ConnectionError("connection closed mid-bulk")
        return line + body
    if kind == b"*":
        count = int(rest)
        return line + b"".join(read_reply(stream) for _ in range(max(count, 0)))
    raise ValueError(f"unsupported RESP reply: {line!r}")


class RedisServer:
    """``with RedisServer(tmp_path) as redis: ... redis.url``; see ``start``/``kill``/``pause``."""

    def __init__(
        self, directory: Path, *, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.extra_args = tuple(extra_args)
        self._port = port if port is not None else self._pick_port()
        if self._port == SYSTEM_REDIS_PORT:
            raise ValueError("refusing to use port 6379 (the system Redis)")
        self.log_path = directory / f"redis-{self._port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @staticmethod
    def _pick_port() -> int:
        while (port := free_port()) == SYSTEM_REDIS_PORT:
            pass
        return port

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _command_line(self) -> list[str]:
        return [
            redis_binary(),
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--dbfilename", f"dump-{self._port}.rdb",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until PING answers +PONG; retries briefly if the port is busy."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    self._command_line(), stdout=log, stderr=subprocess.STDOUT
                )
            self._paused = False
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                if self.ping(timeout=0.5):
                    return
                time.sleep(0.02)
            if self._proc.poll() is None:  # up but not answering in time
                self._reap()
                raise RuntimeError(f"redis-server did not answer PING:\n{self.log()}")
            # exited: retry while the port may still be held (e.g. just after a kill)
            busy = b"Address already in use" in self.log_path.read_bytes()[log_start:]
            if time.monotonic() >= deadline or not busy:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"redis-server exited with {code}:\n{self.log()}")
            time.sleep(0.1)

    def restart(self, timeout: float = 10.0) -> None:
        """Start again on the same port (after ``kill`` or ``stop``)."""
        if self.running:
            raise RuntimeError("kill() or stop() the server before restart()")
        self.start(timeout)

    def ping(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str | bytes | int, timeout: float = 5.0) -> bytes:
        """Send one command on a fresh connection; return the raw RESP reply."""
        with (
            socket.create_connection(("127.0.0.1", self._port), timeout=timeout) as s,
            s.makefile("rb") as stream,
        ):
            s.sendall(encode_command(*args))
            return read_reply(stream)

    def _signal(self, sig: int) -> None:
        if not self.running:
            raise RuntimeError("redis-server is not running")
        assert self._proc is not None
        self._proc.send_signal(sig)

    def pause(self) -> None:
        """SIGSTOP: connections still open (the kernel accepts), nothing answers."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._paused = False

    def kill(self) -> None:
        """SIGKILL (works on a paused server too) and wait: data is gone."""
        self._reap()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (resuming a paused server first), SIGKILL after ``timeout``. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._reap()
            return
        if self._paused:
            proc.send_signal(signal.SIGCONT)
            self._paused = False
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._reap()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
