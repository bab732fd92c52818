"""``fanout bench --sender-url``: senders on one node of a hub, receivers on another."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fanout.lab.config import BenchConfig, ConfigError
from tests.support.redis import RedisServer
from tests.support.redis_fixtures import redis_server  # noqa: F401
from tests.support.servers import HubProcess, hub_process


def fanout(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def counters(node: HubProcess) -> dict[str, float]:
    text = httpx.get(node.url + "/metrics", timeout=5).text
    pairs = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {name.removeprefix("fanout_"): float(value) for name, value in pairs}


def test_senders_on_one_node_reach_every_receiver_on_the_other_through_redis(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    args = ["--broker", redis_server.url, "--log-level", "warning"]
    with (
        hub_process(args, tmp_path / "a.log") as node_a,
        hub_process(args, tmp_path / "b.log") as node_b,
    ):
        run = fanout(
            "bench",
            node_b.ws,
            "--sender-url",
            node_a.ws,
            "--mode",
            "v1",
            "--receivers",
            "6",
            "--senders",
            "2",
            "--rooms",
            "2",
            "--rate",
            "200",
            "--count",
            "150",
            "--duration",
            "2",
            "--drain",
            "2",
            "--server-pid",
            str(node_b.pid),
            "-q",
            "-o",
            str(tmp_path / "run.json"),
        )
        assert run.returncode == 0, run.stderr
        on_a, on_b = counters(node_a), counters(node_b)
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["config"]["sender_url"] == node_a.ws
    t = doc["totals"]
    # 2 senders, one per room, 150 each; 3 receivers per room get their room's 150.
    assert (t["sent"], t["acked"], t["send_errors"]) == (300, 300, 0)
    assert (t["expected"], t["delivered"]) == (6 * 150, 6 * 150)
    assert (t["lost"], t["duplicated"], t["out_of_order"], t["gap_announced"]) == (0, 0, 0, 0)
    assert t["connect_failures"] == 0
    # The publishes went to node A and the deliveries left node B: it crossed Redis.
    assert (on_a.get("published_total"), on_a.get("deliveries_total", 0)) == (300, 0)
    assert (on_b.get("published_total", 0), on_b.get("deliveries_total")) == (0, 6 * 150)
    assert (on_a["connections_opened_total"], on_b["connections_opened_total"]) == (2, 6)
    assert [v["cause"] for v in doc["verdicts"]] == ["ok"]


@pytest.mark.parametrize(
    "sender_url",
    [
        "ws://10.1.2.3:8000/ws",
        "ws://example.com:8000/ws",
        "ws://localhost.example.com/ws",
        "wss://127.0.0.1:8000/ws",
        "redis://127.0.0.1:6379/0",
        "ws://127.0.0.1:port/ws",
        "not a url",
    ],
)
def test_a_sender_url_that_is_not_a_websocket_on_this_machine_is_refused_before_any_run(
    sender_url: str,
) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(sender_url))):
        BenchConfig(url="ws://127.0.0.1:8000/ws", sender_url=sender_url)
    run = fanout("bench", "ws://127.0.0.1:1/ws", "--sender-url", sender_url, "-q")
    assert run.returncode == 2
    assert run.stderr.startswith("fanout bench: ")
    assert repr(sender_url) in run.stderr
    assert "results written" not in run.stderr
