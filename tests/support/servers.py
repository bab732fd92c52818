"""Real servers for tests: in-process uvicorn, or a `fanout serve` child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from fanout.apps.chat import ChatConsumer
from fanout.asgi.app import create_app
from fanout.asgi.endpoint import ConsumerFactory
from fanout.asgi.server import uvicorn_config
from fanout.core.hub import Hub
from fanout.lab.net import ProcessGone, wait_until
from fanout.lab.net import free_port as free_port  # tests import it from here
from fanout.settings import Settings


@dataclass
class RunningHub:
    url: str  # http://127.0.0.1:PORT
    app: FastAPI

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub


@contextlib.asynccontextmanager
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[str]:
    """Any ASGI app under a real uvicorn with fanout's protocol classes, in this event
    loop, on ``settings.port``; yields its http://127.0.0.1:PORT address."""
    server = uvicorn.Server(uvicorn_config(settings, app, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def running_hub(
    settings: Settings | None = None, *, consumer: ConsumerFactory | None = None
) -> AsyncIterator[RunningHub]:
    """A real uvicorn server with fanout's direct transport, in this event loop; by
    default with the chat page's consumer, as ``fanout serve`` runs it."""
    settings = (settings or Settings()).replace(port=free_port())
    app = create_app(settings, consumer=consumer or ChatConsumer)
    async with serving(app, settings) as url:
        yield RunningHub(url, app)


@dataclass
class HubProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_hub_process(
    args: Sequence[str], log_path: Path, *, port: int | None = None
) -> HubProcess:
    """Start ``fanout serve`` in a child process and wait until /healthz answers."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "fanout.cli", "serve", "--port", str(port), *args]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise ProcessGone(f"fanout serve exited with {proc.returncode}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 20, what="fanout serve answering /healthz")
    except (ProcessGone, TimeoutError) as exc:
        stop_process(proc)
        raise RuntimeError(f"{exc}:\n{log_path.read_text()}") from None
    return HubProcess(url, proc, log_path)


async def metric(url: str, name: str) -> float:
    """The sample ``fanout_<name>`` (labels included) from the hub's /metrics at
    ``url``; 0 when it has none."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(url + "/metrics", timeout=5)).text
    for line in text.splitlines():
        if line.startswith(f"fanout_{name} "):
            return float(line.split()[1])
    return 0.0


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def hub_process(args: Sequence[str], log_path: Path) -> Iterator[HubProcess]:
    running = start_hub_process(args, log_path)
    try:
        yield running
    finally:
        stop_process(running.proc)
