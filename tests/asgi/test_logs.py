"""fanout serve's log: standard lines with time, level and logger (text or JSON), a line
with the reason for every refused handshake, closes at debug level, and no token or
password ever written."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets

from tests.support.servers import free_port, hub_process, stop_process
from tests.support.wsclient import connect_v1

SECRET = "s" * 40
TOKEN = "not.a-valid.token-but-secret-looking-9f8e7d"
PASSWORD = "hunter2-redis-password"


async def _refused(url: str, **kwargs: object) -> None:
    with pytest.raises(websockets.InvalidStatus):
        await connect_v1(url, **kwargs)


async def _exercise(ws_url: str) -> None:
    await _refused(f"{ws_url}?token={TOKEN}")
    await _refused(ws_url, origin="https://evil.example")


def _log_of_a_node_for(args: list[str], path: Path, seconds: float) -> str:
    """What ``fanout serve`` logs in its first ``seconds``, whether it gets healthy or not."""
    with path.open("wb") as out:
        node = subprocess.Popen(
            [sys.executable, "-m", "fanout.cli", "serve", "--port", str(free_port()), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(seconds)
        finally:
            stop_process(node)
    return path.read_text()


async def test_json_logs_have_time_level_logger_and_say_why_a_handshake_was_refused(
    tmp_path: Path,
) -> None:
    args = ["--log-format", "json", "--log-level", "debug", "--auth-secret", SECRET,
            "--allowed-origins", "https://app.example"]  # fmt: skip
    with hub_process(args, tmp_path / "hub.log") as hub:
        await _exercise(hub.ws)
        await asyncio.sleep(0.3)
        text = hub.log()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, text
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    refusals = [line["message"] for line in lines if "refused a handshake" in line["message"]]
    assert any("(token, HTTP 403)" in m for m in refusals), refusals
    assert any("(origin, HTTP 403)" in m and "evil.example" in m for m in refusals), refusals
    assert TOKEN not in text


async def test_text_logs_show_closes_at_debug_level_and_never_a_redis_password(
    tmp_path: Path,
) -> None:
    args = ["--log-level", "debug", "--broker", f"redis://:{PASSWORD}@127.0.0.1:1/0",
            "--redis-health-interval-s", "0.2"]  # fmt: skip
    log = tmp_path / "hub.log"
    with hub_process(["--log-level", "debug"], log) as hub:
        async with await connect_v1(hub.ws) as ws:
            await ws.send('{"type":"subscribe","room":"r"}')
            await ws.recv()
        await asyncio.sleep(0.3)
        text = hub.log()
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) [\w.]+: "
    assert all(re.match(pattern, line) for line in text.splitlines() if line), text
    assert re.search(r"DEBUG fanout\.hub: closed <Connection .*>: code 1000", text), text
    # A broker that is not there: warnings, with the URL but not its password.
    written = await asyncio.to_thread(_log_of_a_node_for, args, tmp_path / "down.log", 3.0)
    assert "WARNING fanout.redis: " in written
    assert "redis://127.0.0.1:1/0" in written
    assert PASSWORD not in written
