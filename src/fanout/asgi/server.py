"""Run the app under uvicorn with fanout's direct WebSocket transport, in one or N processes."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from fanout.asgi.direct import FanoutWebSocketProtocol, quiet_client_errors
from fanout.asgi.http import FanoutConfig, FanoutHttpProtocol
from fanout.asgi.logs import log_config
from fanout.settings import Settings


def uvicorn_config(
    settings: Settings,
    app: FastAPI | str,
    *,
    log_level: str = "info",
    workers: int = 1,
) -> uvicorn.Config:
    """uvicorn's config. ``app`` is the app, or with ``workers > 1`` the import path
    (``"module:function"``) of a function that builds it from the ``FANOUT_*``
    environment in each worker, since an app object cannot be handed to another process."""
    if workers > 1 and not isinstance(app, str):
        raise ValueError("with workers > 1 each worker builds its app: pass its import path")
    quiet_client_errors()
    return FanoutConfig(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=settings.host,
        port=settings.port,
        http=FanoutHttpProtocol,
        ws=FanoutWebSocketProtocol,
        handshake_timeout_s=settings.handshake_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.ping_interval_s or None,
        ws_ping_timeout=settings.ping_timeout_s or None,
        timeout_graceful_shutdown=int(settings.shutdown_flush_s + settings.close_timeout_s + 1),
        log_level=log_level,
        log_config=log_config(log_level, settings.log_format),
        lifespan="on",
    )


def check_workers(settings: Settings, workers: int) -> None:
    """Raise ValueError for a worker count that cannot work with these settings."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and settings.broker == "memory":
        raise ValueError(
            f"--workers {workers} needs a shared broker: with the in-memory broker each worker"
            " would be a separate hub with its own rooms, and messages would not reach"
            " subscribers connected to another worker. Use --broker redis://HOST:PORT/DB,"
            " or one worker."
        )


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


class _Supervisor(Multiprocess):
    """uvicorn's supervisor (SIGTERM/SIGINT forwarded to every worker as SIGTERM, dead
    workers replaced), remembering the stop signal so the parent can die of it too."""

    stop_signal: int | None = None

    def handle_int(self) -> None:
        self.stop_signal = self.stop_signal or signal.SIGINT
        super().handle_int()

    def handle_term(self) -> None:
        self.stop_signal = self.stop_signal or signal.SIGTERM
        super().handle_term()


def _serve_workers(settings: Settings, app_factory: str, workers: int, log_level: str) -> None:
    config = uvicorn_config(settings, app_factory, log_level=log_level, workers=workers)
    metrics_dir = None
    if not settings.metrics_dir:  # one scrape covers every worker (fanout.asgi.metrics)
        metrics_dir = tempfile.TemporaryDirectory(prefix="fanout-metrics-")
        settings = settings.replace(metrics_dir=metrics_dir.name)
    # Workers are spawned (fresh interpreters): they inherit the environment, so every
    # setting given on the command line reaches them as FANOUT_<NAME>.
    with contextlib.ExitStack() as cleanup, _environment(settings.to_env()):
        if metrics_dir is not None:
            cleanup.enter_context(metrics_dir)
        sock = config.bind_socket()
        try:
            supervisor = _Supervisor(config, sockets=[sock])
            supervisor.run()
        finally:
            sock.close()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
    if supervisor.stop_signal is not None:
        # As the single-process server does: exit "terminated by SIGTERM" after a graceful stop.
        signal.signal(supervisor.stop_signal, signal.SIG_DFL)
        signal.raise_signal(supervisor.stop_signal)


def serve(
    settings: Settings,
    app: Callable[[Settings], FastAPI],
    app_factory: str,
    *,
    log_level: str = "info",
    workers: int = 1,
) -> None:
    """Serve until SIGTERM/SIGINT: ``app(settings)`` in this process, or ``workers > 1``
    processes on one port, each building its app with ``app_factory`` (an import path,
    see ``uvicorn_config``); several workers need the Redis broker (``check_workers``)."""
    check_workers(settings, workers)
    if workers == 1:
        uvicorn.Server(uvicorn_config(settings, app(settings), log_level=log_level)).run()
    else:
        _serve_workers(settings, app_factory, workers, log_level)
