"""Each known fault, on a real server the lab starts, yields the verdict that names it."""

from __future__ import annotations

from typing import Any

from fanout.lab.config import BenchConfig
from tests.lab.conftest import baseline_config, causes, fanout_config, faulty_config, run
from tests.support.servers import free_port


def verdict(doc: dict[str, Any], cause: str) -> dict[str, Any]:
    found = [v for v in doc["verdicts"] if v["cause"] == cause]
    assert found, f"no {cause!r} verdict in {causes(doc)}: {doc['verdicts']}"
    first: dict[str, Any] = found[0]
    return first


# A load that fills a stalled reader's socket buffers within a second.
STALL: dict[str, Any] = {
    "receivers": 10,
    "slow": 1,
    "slow_after_s": 0.5,
    "size": 32 * 1024,
    "rate": 200.0,
}


def test_a_stalled_reader_under_the_articles_loop_is_named_head_of_line_blocking() -> None:
    doc = run(baseline_config(**STALL))
    hol = verdict(doc, "hol_blocking")
    assert hol["severity"] == "break"
    assert doc["totals"]["lost_stuck"] > 0
    # The evidence: the server's send queue towards the stalled socket.
    assert hol["evidence"]["slow_send_q_bytes"] > 1024 * 1024


def test_fanout_under_the_same_load_cuts_the_stalled_reader_and_delivers_everything() -> None:
    small = ("--outbox-max-bytes", "1048576", "--max-message-bytes", "65536")
    doc = run(fanout_config(*small, "--history-max-bytes", "1048576", **STALL))
    assert doc["totals"]["lost"] == 0
    assert "hol_blocking" not in causes(doc)
    cut = verdict(doc, "slow_consumer_cut")
    assert cut["severity"] == "info"
    assert doc["totals"]["slow"]["close_codes"] == {"4008": 1}


def test_a_message_over_the_articles_size_limit_is_named_with_1009() -> None:
    doc = run(baseline_config(size=17 * 1024 * 1024, count=2, rate=2.0, receivers=2))
    limit = verdict(doc, "size_limit")
    assert limit["severity"] == "break"
    assert "1009" in limit["summary"]
    assert doc["totals"]["close_codes"].get("1009") == 1  # the sender


def test_a_cpu_burning_handler_is_named_server_cpu_saturation() -> None:
    doc = run(faulty_config("--burn-cpu-ms", "5", count=None, rate=400.0, duration_s=3.0))
    cpu = verdict(doc, "server_cpu")
    # 400 messages/s at 5 ms each is two cores of work: it falls behind, whatever share
    # of a core this (virtual) machine gives it (seen from 77 % to 100 % on average).
    assert cpu["severity"] == "break"
    assert cpu["evidence"]["mean_cpu_percent"] > 50


def test_a_leaking_handler_is_named_memory_growth() -> None:
    doc = run(faulty_config("--leak-bytes", "250000", count=None, rate=200.0, duration_s=3.0))
    growth = verdict(doc, "memory_growth")
    assert growth["severity"] == "warn"
    assert growth["evidence"]["growth_bytes"] > 64 * 1024 * 1024


def test_a_raising_handler_is_named_with_its_exception_text() -> None:
    doc = run(faulty_config("--raise-every", "10", count=50))
    exc = verdict(doc, "handler_exception")
    assert "RuntimeError" in exc["summary"]
    assert "handler failed on message" in exc["summary"]
    assert doc["totals"]["lost_holes"] > 0


def test_nothing_listening_is_named_connection_refused() -> None:
    doc = run(BenchConfig(url=f"ws://127.0.0.1:{free_port()}/ws", duration_s=0.5, drain_s=0.2))
    refused = verdict(doc, "connect_refused")
    assert refused["severity"] == "break"
    assert doc["totals"]["connect_errors"]["refused"] == 11  # 10 receivers and the sender


def test_a_full_server_is_named_connection_limited() -> None:
    doc = run(fanout_config("--max-connections", "4", receivers=8, count=20))
    limited = verdict(doc, "connect_limited")
    assert limited["evidence"]
    # fanout accepts, then closes what it cannot serve with 1013 (try again later).
    assert doc["totals"]["close_codes"]["1013"] == 5


def test_a_sender_over_fanouts_default_rate_limit_is_named_rate_limited() -> None:
    # One fanout.v1 sender as fast as 64 in flight allow, against fanout's defaults
    # (1,000 frames/s per connection): refused with rate_limited, then closed 4029.
    doc = run(
        fanout_config(limits=True, mode="v1", receivers=2, rate=None, window=64, duration_s=4.0)
    )
    limited = verdict(doc, "rate_limited")
    evidence = limited["evidence"]
    assert evidence["rate_limited_errors"] > 0
    assert evidence["close_4029"] == 1
    assert "rate-limited" in limited["summary"]
