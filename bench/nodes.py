"""The servers the bench scripts start: a private ``redis-server`` and ``fanout serve`` nodes.

Each is a context manager: it starts the process on a free 127.0.0.1 port (never Redis's
6379), yields it once it answers (``PING``, ``/healthz``) and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fanout.lab.net import ProcessGone, free_port, wait_until
from results_md import HOST

SYSTEM_REDIS_PORT = 6379


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"


# -- Redis ---------------------------------------------------------------------------------


def _redis_binary() -> str:
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """One command, the raw reply (enough for PING and INFO: one line or one bulk string)."""
    line = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(line.encode())
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return reply
            reply += chunk
            if reply.startswith(b"$"):
                head, _, body = reply.partition(b"\r\n")
                if len(body) >= int(head[1:]) + 2:
                    return reply
            elif reply.endswith(b"\r\n"):
                return reply


def commandstats(port: int) -> dict[str, dict[str, float]]:
    """Redis's own time per command: ``INFO commandstats``."""
    text = redis_command(port, "INFO", "commandstats").decode(errors="replace")
    stats: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.partition(":")
            values = dict(kv.split("=", 1) for kv in fields.split(","))
            stats[name.removeprefix("cmdstat_")] = {
                k: float(values[k]) for k in ("calls", "usec", "usec_per_call") if k in values
            }
    return stats


def redis_version() -> str:
    """``Redis 7.0.15``: the version of the ``redis-server`` the scripts start."""
    try:
        out = subprocess.run(
            [_redis_binary(), "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "Redis (version unknown)"
    for word in out.split():
        if word.startswith("v="):
            return f"Redis {word[2:]}"
    return "Redis (version unknown)"


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[Started]:
    """A private ``redis-server`` on a free loopback port: no persistence, stopped after."""
    port = free_port(avoid={SYSTEM_REDIS_PORT})
    log = directory / f"redis-{port}.log"
    argv = [
        _redis_binary(),
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--logfile", str(log),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def pong() -> bool:
        if proc.poll() is not None:
            raise ProcessGone("redis-server exited")
        with contextlib.suppress(OSError):
            return redis_command(port, "PING", timeout=0.5).startswith(b"+PONG")
        return False

    try:
        try:
            wait_until(pong, 10, interval_s=0.02, what="redis-server answering PING")
        except (ProcessGone, TimeoutError) as exc:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"redis-server did not start ({exc}):\n{text}") from None
        yield Started("redis", proc, port)
    finally:
        stop(proc)


# -- fanout serve --------------------------------------------------------------------------


@contextlib.contextmanager
def fanout_node(
    name: str, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> Iterator[Started]:
    """``fanout serve --port P ARGS`` on a free port, its output appended to ``log``, with
    ``env`` as its environment (this process's when None); yielded once ``/healthz``
    answers 200, stopped after."""
    port = free_port(avoid={SYSTEM_REDIS_PORT})
    argv = [sys.executable, "-m", "fanout.cli", "serve", "--port", str(port), *args]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise ProcessGone("fanout serve exited")
        with contextlib.suppress(OSError):
            url = f"http://{HOST}:{port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        return False

    try:
        try:
            wait_until(healthy, 30, what="fanout serve answering /healthz")
        except (ProcessGone, TimeoutError) as exc:
            raise RuntimeError(f"fanout serve did not start ({exc}):\n{log.read_text()}") from None
        yield Started(name, proc, port)
    finally:
        stop(proc)
