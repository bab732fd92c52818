"""Running the lab in tests: real generator processes against real servers it starts."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from fanout.lab.config import BenchConfig
from fanout.lab.session import run_bench
from fanout.settings import NO_CLIENT_LIMITS
from tests.support.servers import free_port

FAULTY = Path(__file__).parent / "servers" / "faulty.py"


def started(argv: list[str], flags: tuple[str, ...], **changes: Any) -> BenchConfig:
    """A run against ``argv --port PORT flags``, started and observed by the lab."""
    port = free_port()
    base: dict[str, Any] = {
        "url": f"ws://127.0.0.1:{port}/ws",
        "duration_s": 3.0,
        "drain_s": 1.0,
        "server_cmd": shlex.join([*argv, "--port", str(port), *flags]),
    }
    return BenchConfig(**{**base, **changes})


def faulty_config(*flags: str, **changes: Any) -> BenchConfig:
    """A run against ``faulty.py``: 4 receivers, 100 messages at 500/s by default."""
    load = {"receivers": 4, "rate": 500.0, "count": 100}
    return started([sys.executable, str(FAULTY)], flags, **{**load, **changes})


def baseline_config(*flags: str, **changes: Any) -> BenchConfig:
    """A run against the article's server (``fanout baseline``)."""
    argv = [sys.executable, "-m", "fanout.cli", "baseline", "--log-level", "warning"]
    return started(argv, flags, **changes)


# The lab's own tests drive fanout past its per-connection rate and per-address limits on
# purpose (one sender as fast as the window allows, 2,000 receivers from 127.0.0.1); the
# limits themselves are tested in tests/asgi and shown by the lab in test_diagnosis_live.


def fanout_config(*flags: str, limits: bool = False, **changes: Any) -> BenchConfig:
    """A run against ``fanout serve`` (without its per-client limits unless ``limits``)."""
    argv = [sys.executable, "-m", "fanout.cli", "serve", "--log-level", "warning"]
    if not limits:
        argv.extend(NO_CLIENT_LIMITS)
    return started(argv, flags, **changes)


def run(config: BenchConfig) -> dict[str, Any]:
    return run_bench(config, argv=["pytest"])


def causes(doc: dict[str, Any]) -> list[str]:
    return [v["cause"] for v in doc["verdicts"]]
