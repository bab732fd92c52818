"""One complete lab run: start or attach to the server, observe it, drive it, diagnose.

``runner`` drives the load; this module adds what makes a run evidence: the server
process (started from a command and stopped afterwards, or attached by PID and left
alone), its CPU, memory, socket queues and log sampled alongside, the verdicts, and
the run's validity (a generator that ran out of CPU measured itself, not the server;
a run where not one connection opened measured nothing).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fanout.lab import results, runner
from fanout.lab.config import BenchConfig
from fanout.lab.diagnosis import diagnose, invalid_reasons
from fanout.lab.observe import Observer, ServerProcess

ProgressFn = Callable[[dict[str, Any]], None]
ServerSampleFn = Callable[[dict[str, Any]], None]

_LISTEN_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


def metrics_url_for(config: BenchConfig) -> str:
    return config.metrics_url or f"http://{config.host}:{config.port}/metrics"


def open_server(config: BenchConfig, log_dir: Path) -> ServerProcess | None:
    if config.server_cmd:
        server = ServerProcess.start(config.server_cmd, log_dir / "server.log")
        try:
            server.wait_listening(config.host, config.port, _LISTEN_TIMEOUT_S)
        except BaseException:
            server.stop(_STOP_TIMEOUT_S)
            raise
        return server
    if config.server_pid is not None:
        return ServerProcess.attach(config.server_pid)
    return None


def run_bench(
    config: BenchConfig,
    *,
    argv: list[str] | None = None,
    progress: ProgressFn | None = None,
    server_sample: ServerSampleFn | None = None,
    log_dir: Path | None = None,
    server: ServerProcess | None = None,
) -> dict[str, Any]:
    """Run ``config`` and return the ``fanout.lab.run/1`` document, verdicts included.

    ``server`` lets a caller (a sweep) keep one started server across runs; otherwise
    the server of ``config`` is started (and stopped) or attached here.
    """
    with tempfile.TemporaryDirectory(prefix="fanout-lab-") as tmp:
        logs = log_dir or Path(tmp)
        owned = server is None
        if server is None:
            server = open_server(config, logs)
        observer = None
        if server is not None:
            observer = Observer(server, config.port, metrics_url=metrics_url_for(config))
            observer.start()

        def on_progress(snapshot: dict[str, Any]) -> None:
            if observer is not None and server_sample is not None:
                samples = observer.samples()
                if samples:
                    server_sample(samples[-1])
            if progress is not None:
                progress(snapshot)

        try:
            outcome = runner.run(
                config,
                on_progress,
                on_connected=observer.set_port_kinds if observer else None,
                on_start=observer.set_t0 if observer else None,
            )
        finally:
            server_doc = None
            if observer is not None:
                observer.stop()
                # Before the lab stops its server: an exit code here means it died.
                server_doc = observer.to_json()
            if owned and server is not None and server.owned:
                server.stop(_STOP_TIMEOUT_S)
                if server_doc is not None:
                    server_doc["stopped_by_lab"] = True
    doc = results.build_document(config, outcome, argv=argv, server=server_doc)
    reasons = invalid_reasons(doc)
    doc["valid"] = not reasons
    doc["invalid_reasons"] = reasons
    doc["verdicts"] = diagnose(doc)
    return doc
