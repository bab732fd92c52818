"""fanout.v1 mode (acks, resume of churning clients), plain churn, and sweeps."""

from __future__ import annotations

from typing import Any

from fanout.lab.config import BenchConfig
from fanout.lab.session import run_bench
from fanout.lab.sweep import Axes, sweep
from tests.lab.conftest import fanout_config, faulty_config, run
from tests.support.servers import free_port


def v1_config(*flags: str, **changes: Any) -> BenchConfig:
    """A fanout.v1 run against ``fanout serve``."""
    return fanout_config(*flags, **{"mode": "v1", "duration_s": 2.0, "drain_s": 2.0, **changes})


def test_v1_mode_counts_every_ack_and_delivers_across_rooms() -> None:
    doc = run(v1_config(receivers=6, senders=2, rooms=2, count=100, rate=200.0))
    t = doc["totals"]
    assert t["sent"] == t["acked"] == 200
    assert t["send_errors"] == 0
    # Each room has one sender: each of its 3 receivers expects that sender's 100.
    assert t["expected"] == t["delivered"] == 6 * 100
    assert t["lost"] == t["duplicated"] == 0
    assert [v["cause"] for v in doc["verdicts"]] == ["ok"]


def test_v1_mode_as_fast_as_the_window_allows_stays_within_it() -> None:
    doc = run(v1_config(receivers=4, rate=None, window=8, count=2000, duration_s=5.0))
    t = doc["totals"]
    assert t["sent"] == t["acked"] == 2000
    assert t["delivered"] == 4 * 2000


def test_churning_v1_clients_resume_from_their_offset_and_miss_nothing() -> None:
    doc = run(
        v1_config(
            receivers=2,
            churn=3,
            churn_every_s=0.3,
            churn_abort=True,
            rate=200.0,
            duration_s=2.0,
        )
    )
    churners = [r for r in doc["receivers"] if r["kind"] == "churn"]
    assert all(r["connects"] >= 4 for r in churners)
    for r in churners:
        assert r["expected"] == doc["totals"]["sent"]
        assert (r["lost_holes"], r["lost_stuck"], r["duplicated"]) == (0, 0, 0), r
        assert r["delivered"] == r["expected"]
    assert doc["totals"]["churn_connects"] >= 9


def test_churning_plain_clients_are_counted_but_not_held_to_what_they_missed() -> None:
    doc = run(faulty_config(churn=2, churn_every_s=0.2, count=None, rate=100.0, duration_s=1.5))
    churners = [r for r in doc["receivers"] if r["kind"] == "churn"]
    assert all(r["expected"] is None and r["connects"] >= 3 for r in churners)
    assert all(r["delivered"] > 0 and r["duplicated"] == 0 for r in churners)
    assert doc["totals"]["lost"] == 0  # the stable receivers got everything


def test_a_sweep_stops_each_axis_at_its_first_break() -> None:
    # faulty.py closes senders of frames over 1000 bytes with 1009.
    base = faulty_config("--max-size", "1000", count=20, rate=100.0, duration_s=1.0)

    def one(config: BenchConfig, label: str) -> dict[str, Any]:
        port = free_port()
        cmd = (config.server_cmd or "").replace(f"--port {base.port}", f"--port {port}")
        return run_bench(config.replace(url=f"ws://127.0.0.1:{port}/ws", server_cmd=cmd))

    axes = Axes(
        sizes=(200, 800, 2000, 4000), rates=(50.0, 100.0), receivers=(3,), slow_shares=(0.0,)
    )
    doc = sweep(base, axes, one)
    points = [(s["point"]["size"], s["point"]["rate"], s["broke"]) for s in doc["steps"]]
    # 200 and 800 pass at both rates; 2000 breaks at the first rate; 4000 never runs.
    assert points == [
        (200, 50.0, False),
        (200, 100.0, False),
        (800, 50.0, False),
        (800, 100.0, False),
        (2000, 50.0, True),
    ]
    assert doc["schema"] == "fanout.lab.sweep/1"
    size_break = [b for b in doc["breaking_points"] if b["axis"] == "size"]
    assert size_break[0]["first_break"] == 2000
    assert size_break[0]["last_ok"] == 800
    assert any("1009" in r for r in size_break[0]["reasons"])
