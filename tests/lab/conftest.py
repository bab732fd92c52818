"""Running the lab in tests: real generator processes against real servers it starts."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from fanout.lab.config import BenchConfig
from fanout.lab.session import run_bench
from tests.support.servers import free_port

FAULTY = Path(__file__).parent / "servers" / "faulty.py"


def faulty_config(*flags: str, **changes: Any) -> BenchConfig:
    """A run against ``faulty.py`` (started and observed by the lab) on a free port."""
    port = free_port()
    command = shlex.join([sys.executable, str(FAULTY), "--port", str(port), *flags])
    base: dict[str, Any] = {
        "url": f"ws://127.0.0.1:{port}/ws",
        "receivers": 4,
        "rate": 500.0,
        "count": 100,
        "duration_s": 3.0,
        "drain_s": 1.0,
        "server_cmd": command,
    }
    return BenchConfig(**{**base, **changes})


def baseline_config(*flags: str, **changes: Any) -> BenchConfig:
    """A run against the article's server (``fanout baseline``) started by the lab."""
    port = free_port()
    command = shlex.join(
        [
            sys.executable,
            "-m",
            "fanout.cli",
            "baseline",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *flags,
        ]
    )
    base: dict[str, Any] = {
        "url": f"ws://127.0.0.1:{port}/ws",
        "duration_s": 3.0,
        "drain_s": 1.0,
        "server_cmd": command,
    }
    return BenchConfig(**{**base, **changes})


def fanout_config(*flags: str, **changes: Any) -> BenchConfig:
    """A run against ``fanout serve`` (started and observed by the lab) on a free port."""
    port = free_port()
    command = shlex.join(
        [
            sys.executable,
            "-m",
            "fanout.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *flags,
        ]
    )
    base: dict[str, Any] = {
        "url": f"ws://127.0.0.1:{port}/ws",
        "duration_s": 3.0,
        "drain_s": 1.0,
        "server_cmd": command,
    }
    return BenchConfig(**{**base, **changes})


def run(config: BenchConfig) -> dict[str, Any]:
    return run_bench(config, argv=["pytest"])


def causes(doc: dict[str, Any]) -> list[str]:
    return [v["cause"] for v in doc["verdicts"]]
