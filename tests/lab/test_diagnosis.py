"""The diagnosis rules: each failure a run document can show gets its named cause.

The documents are built per ``docs/lab-results.md`` (``fanout.lab.run/1``) to look like
the runs that produce them: timelines every 0.5 s, server samples every 0.25 s,
per-connection figures adding up to the totals.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.lab.diagnosis import diagnose, is_generator_saturated
from fanout.lab.document import Cause

MIB = 1024 * 1024
Doc = dict[str, Any]


# -- building documents -----------------------------------------------------------


def latency(p50: float = 0.8, p99: float = 2.4, count: int = 0) -> dict[str, Any]:
    return {
        "count": count,
        "p50": p50,
        "p90": p50 * 1.4,
        "p99": p99,
        "p999": p99 * 2,
        "max": p99 * 4,
    }


def receiver(
    i: int,
    kind: str = "stable",
    expected: int = 10_000,
    delivered: int | None = None,
    *,
    lost_stuck: int = 0,
    lost_holes: int = 0,
    close_code: int | None = None,
    connect_error: str | None = None,
) -> dict[str, Any]:
    got = expected - lost_stuck - lost_holes if delivered is None else delivered
    return {
        "id": i,
        "process": i % 2,
        "kind": kind,
        "room": "lobby",
        "expected": expected,
        "delivered": got,
        "lost_holes": lost_holes,
        "lost_stuck": lost_stuck,
        "gap_announced": 0,
        "duplicated": 0,
        "out_of_order": 0,
        "close_code": close_code,
        "connects": 0 if connect_error else 1,
        "connect_error": connect_error,
        "latency_ms": latency(count=got),
    }


def ticks(
    rate: Callable[[float], float],
    *,
    until: float = 15.0,
    p50: Callable[[float], float] = lambda t: 0.8,
) -> list[dict[str, Any]]:
    """A timeline every 0.5 s (taken a little late): ``rate(t)`` deliveries/s, every
    receiver counted (slow ones too, while they read)."""
    out, delivered = [], 0.0
    for n in range(1, int(until / 0.5) + 1):
        t = n * 0.5 + 0.0004
        delivered += rate(t) * 0.5
        out.append(
            {
                "t": t,
                "sent": int(min(t, 10.0) * 1000),
                "delivered": int(delivered),
                "lost_holes": 0,
                "deliveries_per_s": rate(t),
                "p50_ms": p50(t),
                "p99_ms": p50(t) * 3,
                "max_ms": p50(t) * 5,
                "generator_cpu": [35.0, 33.0],
            }
        )
    return out


def samples(
    *,
    cpu: Callable[[float], float] = lambda t: 35.0,
    rss: Callable[[float], float] = lambda t: 52 * MIB,
    slow_q: Callable[[float], float] = lambda t: 0,
    stable_q: Callable[[float], float] = lambda t: 0,
    machine: Callable[[float], float] = lambda t: 50.0,
    until: float = 15.0,
) -> list[dict[str, Any]]:
    """Server samples every 0.25 s."""
    out = []
    for n in range(1, int(until / 0.25) + 1):
        t = round(n * 0.25 + 0.001, 3)
        by_kind = {"stable": stable_q(t), "slow": slow_q(t), "sender": 0, "churn": 0}
        out.append(
            {
                "t": t,
                "cpu_percent": cpu(t),
                "machine_cpu_percent": machine(t),
                "rss_bytes": int(rss(t)),
                "connections": 51,
                "send_q_total": sum(by_kind.values()),
                "send_q_max": max(by_kind.values()),
                "recv_q_total": 0,
                "recv_q_max": 0,
                "send_q_by_kind": by_kind,
            }
        )
    return out


def server(**kwargs: Any) -> dict[str, Any]:
    return {
        "pid": 1234,
        "command": "uvicorn fanout.lab.baseline:app --port 8001",
        "port": 8001,
        "samples": samples(**kwargs),
        "exceptions": [],
        "log_tail": [],
        "metrics": None,
        "exit_code": None,
    }


def run_doc(*, receivers: int = 50, slow: int = 0, rate: float = 1000.0) -> Doc:
    """A healthy run: one sender at ``rate``/s for 10 s, every stable receiver gets all."""
    sent = int(rate * 10)
    stable = receivers - slow
    rx = [receiver(i, expected=sent) for i in range(stable)]
    rx += [receiver(stable + i, "slow", expected=sent) for i in range(slow)]
    expected = sent * stable
    return {
        "schema": "fanout.lab.run/1",
        "created": "2026-11-20T10:00:00+00:00",
        "argv": ["fanout", "bench", "ws://127.0.0.1:8001/ws", "--receivers", str(receivers)],
        "git_commit": None,
        "machine": {"hostname": "lab", "cpus": 2, "cpu_model": "x", "memory_bytes": 0},
        "versions": {"fanout": "0.1.0"},
        "config": {
            "url": "ws://127.0.0.1:8001/ws",
            "mode": "plain",
            "receivers": receivers,
            "senders": 1,
            "rooms": 1,
            "size": 200,
            "kind": "text",
            "rate": rate,
            "window": 64,
            "ramp_s": 0.0,
            "duration_s": 10.0,
            "drain_s": 5.0,
            "slow": slow,
            "slow_after_s": 1.0,
            "churn": 0,
            "churn_every_s": 1.0,
            "churn_abort": False,
            "processes": 2,
            "slo_p99_ms": 100.0,
            "server_pid": 1234,
            "server_cmd": None,
            "metrics_url": None,
        },
        "valid": True,
        "invalid_reasons": [],
        "totals": {
            "sent": sent,
            "acked": 0,
            "send_errors": 0,
            "expected": expected,
            "delivered": expected,
            "lost": 0,
            "lost_holes": 0,
            "lost_stuck": 0,
            "gap_announced": 0,
            "duplicated": 0,
            "out_of_order": 0,
            "connect_failures": 0,
            "close_codes": {},
            "connect_errors": {},
            "churn_connects": 0,
            "deliveries_per_s": expected / 10,
        },
        "latency_ms": latency(count=expected),
        "receivers": rx,
        "senders": [
            {
                "id": 0,
                "process": 0,
                "room": "lobby",
                "sent": sent,
                "acked": 0,
                "send_errors": 0,
                "errors": {"rate_limited": 0},
                "close_code": None,
                "connect_error": None,
                "size": 200,
            }
        ],
        "timeline": ticks(lambda t: rate * (receivers if t <= 1 else stable) if t <= 10 else 0.0),
        "server": server(),
        "generator": {"processes": 2, "cpu_percent": [40.0, 38.0], "max_cpu_percent": 41.0},
    }


def lose(doc: Doc, *, stuck: int = 0, holes: int = 0) -> None:
    """Take ``stuck`` and ``holes`` messages away from the stable receivers, evenly."""
    stable = [r for r in doc["receivers"] if r["kind"] == "stable"]
    for i, r in enumerate(stable):
        s = stuck // len(stable) + (1 if i < stuck % len(stable) else 0)
        h = holes // len(stable) + (1 if i < holes % len(stable) else 0)
        r["lost_stuck"], r["lost_holes"] = s, h
        r["delivered"] = r["expected"] - s - h
    totals = doc["totals"]
    totals["lost_stuck"], totals["lost_holes"] = stuck, holes
    totals["lost"] = stuck + holes
    totals["delivered"] = totals["expected"] - stuck - holes
    totals["deliveries_per_s"] = totals["delivered"] / 10


def causes(verdicts: list[dict[str, Any]]) -> list[str]:
    return [v["cause"] for v in verdicts]


def the(verdicts: list[dict[str, Any]], cause: str) -> dict[str, Any]:
    found = [v for v in verdicts if v["cause"] == cause]
    assert len(found) == 1, causes(verdicts)
    return found[0]


def stalled_by_a_naive_loop(*, observed: bool = True) -> Doc:
    """The article's loop with one reader that stops at t=1 s: everyone else stalls."""
    doc = run_doc(receivers=50, slow=1)
    doc["timeline"] = ticks(lambda t: 50_000.0 if t <= 1.1 else (5_880.0 if t <= 10.1 else 0.0))
    lose(doc, stuck=388_080)  # of 490,000: 1 s at the full rate, then 12 % of it for 9 s
    doc["latency_ms"] = latency(p50=3_000.0, p99=8_500.0, count=doc["totals"]["delivered"])
    doc["server"] = (
        server(slow_q=lambda t: 2.5 * MIB if t > 1.5 else 0.0, cpu=lambda t: 4.0)
        if observed
        else None
    )
    return doc


# -- healthy ----------------------------------------------------------------------


def test_a_healthy_run_gets_a_single_ok_with_what_was_delivered_and_the_p99() -> None:
    verdicts = diagnose(run_doc())
    assert causes(verdicts) == ["ok"]
    ok = verdicts[0]
    assert ok["severity"] == "info"
    assert ok["evidence"]["delivered"] == 500_000
    assert ok["evidence"]["p99_ms"] == 2.4
    assert "500,000" in ok["summary"]
    assert "2.4 ms" in ok["summary"]


def test_a_healthy_run_is_a_valid_measurement() -> None:
    assert is_generator_saturated(run_doc()) == []


# -- head-of-line blocking --------------------------------------------------------


def test_a_stalled_reader_under_a_naive_loop_is_named_head_of_line_blocking() -> None:
    verdicts = diagnose(stalled_by_a_naive_loop())
    hol = verdicts[0]
    assert hol["cause"] == "hol_blocking"
    assert hol["severity"] == "break"
    assert "49 healthy receivers got 12 % of the messages after t=1.0 s" in hol["summary"]
    assert "2.5 MiB" in hol["summary"]
    assert hol["evidence"]["slow_send_q_bytes"] == 2.5 * MIB
    assert hol["evidence"]["stable_send_q_bytes"] == 0
    assert hol["evidence"]["stable_rate_before"] == 49_000.0
    assert hol["evidence"]["stable_rate_after"] == 5_880.0


def test_head_of_line_blocking_explains_the_loss_it_caused() -> None:
    verdicts = diagnose(stalled_by_a_naive_loop())
    assert "loss" not in causes(verdicts)
    assert the(verdicts, "hol_blocking")["evidence"]["lost_stuck"] > 0
    assert the(verdicts, "latency_slo")["severity"] == "warn"


def test_without_server_observation_the_stall_is_named_and_the_socket_figures_are_missing() -> None:
    hol = the(diagnose(stalled_by_a_naive_loop(observed=False)), "hol_blocking")
    assert hol["severity"] == "break"
    assert "12 %" in hol["summary"]
    assert "not observed" in hol["summary"]
    assert hol["evidence"]["slow_send_q_bytes"] is None


def test_without_a_timeline_messages_stuck_on_open_connections_still_name_the_stall() -> None:
    doc = stalled_by_a_naive_loop()
    doc["timeline"] = []
    hol = the(diagnose(doc), "hol_blocking")
    assert "got 21 % of their messages, 388,080 never came" in hol["summary"]
    assert hol["evidence"]["stall_from_s"] is None


def test_a_stall_that_only_begins_when_the_readers_buffers_fill_is_found_where_it_starts() -> None:
    doc = stalled_by_a_naive_loop()
    doc["timeline"] = ticks(lambda t: 50_000.0 if t <= 1.1 else (49_000.0 if t <= 6.1 else 0.0))
    hol = the(diagnose(doc), "hol_blocking")
    assert "got 0 % of the messages after t=6.0 s" in hol["summary"]


def test_a_slow_reader_whose_server_queue_stayed_small_is_not_blamed_for_the_stall() -> None:
    doc = stalled_by_a_naive_loop()
    doc["server"] = server(slow_q=lambda t: 4096, cpu=lambda t: 4.0)
    verdicts = diagnose(doc)
    assert "hol_blocking" not in causes(verdicts)
    assert the(verdicts, "loss")["severity"] == "break"


def test_when_the_healthy_receivers_queues_are_as_full_the_stall_is_not_the_readers() -> None:
    doc = stalled_by_a_naive_loop()
    healthy = sum(1 for r in doc["receivers"] if r["kind"] == "stable")
    # Every healthy socket holds as much as the stalled one: they were not reading either.
    doc["server"] = server(slow_q=lambda t: 2 * MIB, stable_q=lambda t: 2 * MIB * healthy)
    assert "hol_blocking" not in causes(diagnose(doc))


def test_healthy_sockets_with_a_little_in_flight_each_do_not_hide_the_stalled_one() -> None:
    doc = stalled_by_a_naive_loop()
    healthy = sum(1 for r in doc["receivers"] if r["kind"] == "stable")
    # Summed over many healthy sockets, in-flight bytes can outweigh the one stalled
    # socket; per socket they are a small fraction of it.
    doc["server"] = server(slow_q=lambda t: 4 * MIB, stable_q=lambda t: 300 * 1024 * healthy)
    assert "hol_blocking" in causes(diagnose(doc))


def test_a_brief_dip_in_deliveries_is_not_a_stall() -> None:
    doc = run_doc(slow=1)
    doc["timeline"] = ticks(
        lambda t: (
            50_000.0 if t <= 1.1 else 1_000.0 if 3 <= t < 3.5 else 49_000.0 if t <= 10.1 else 0
        )
    )
    assert causes(diagnose(doc)) == ["ok"]


def test_the_isolation_cutting_slow_receivers_with_4008_is_reported_as_information() -> None:
    doc = run_doc(slow=5)
    for r in doc["receivers"]:
        if r["kind"] == "slow":
            r["close_code"] = 4008
    doc["totals"]["close_codes"] = {"4008": 5}
    doc["server"] = server(slow_q=lambda t: 900 * 1024 if 1.0 < t < 2.0 else 0)
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["ok", "slow_consumer_cut"]
    cut = verdicts[1]
    assert cut["severity"] == "info"
    assert "5 slow receivers with 4008 (slow consumer)" in cut["summary"]
    assert "45 healthy receivers got all 450,000 messages" in cut["summary"]
    assert cut["evidence"]["slow_closed"] == 5


# -- sizes, connections, limits ---------------------------------------------------


def test_a_message_over_the_size_limit_is_named_with_its_size_and_1009() -> None:
    doc = run_doc()
    doc["config"]["size"] = 20 * MIB
    doc["senders"][0].update(size=20 * MIB, close_code=1009, sent=1)
    doc["totals"].update(sent=1, expected=0, delivered=0, deliveries_per_s=0.0)
    doc["totals"]["close_codes"] = {"1009": 1}
    verdicts = diagnose(doc)
    size = verdicts[0]
    assert size["cause"] == "size_limit"
    assert size["severity"] == "break"
    assert size["summary"] == "messages of 20 MiB closed the sender with 1009 (message too big)"
    assert size["evidence"] == {
        "close_code": 1009,
        "size_bytes": 20 * MIB,
        "closed_senders": 1,
        "closed_receivers": 0,
        "count": 1,
    }


def test_a_size_limit_seen_only_in_the_servers_close_codes_is_still_named() -> None:
    doc = run_doc()
    doc["config"]["size"] = 1.5 * MIB
    doc["totals"]["close_codes"] = {"1009": 3}
    size = the(diagnose(doc), "size_limit")
    assert "1.5 MiB" in size["summary"]
    assert size["evidence"]["count"] == 3


def test_refused_connections_are_counted_against_all_that_were_tried() -> None:
    doc = run_doc()
    doc["totals"]["connect_errors"] = {"refused": 12, "timeout": 0}
    doc["totals"]["connect_failures"] = 12
    refused = the(diagnose(doc), "connect_refused")
    assert refused["severity"] == "break"
    assert refused["summary"].startswith("12 of 51 connections were refused")
    assert refused["evidence"]["refused"] == 12


def test_a_server_saying_it_is_full_is_named_connect_limited_with_each_way_it_said_so() -> None:
    doc = run_doc()
    doc["totals"]["connect_errors"] = {"http 503": 5, "http 429": 1}
    doc["totals"]["close_codes"] = {"1013": 2}
    limited = the(diagnose(doc), "connect_limited")
    assert limited["severity"] == "break"
    assert "turned away 8 of 51 connections" in limited["summary"]
    assert limited["evidence"]["http_503"] == 5
    assert limited["evidence"]["http_429"] == 1
    assert limited["evidence"]["close_1013"] == 2


def test_a_1013_at_the_handshake_is_counted_once_though_seen_twice() -> None:
    doc = run_doc()
    doc["totals"]["connect_errors"] = {"closed with 1013": 4}
    doc["totals"]["close_codes"] = {"1013": 4}
    limited = the(diagnose(doc), "connect_limited")
    assert limited["evidence"]["turned_away"] == 4
    assert "connect_failed" not in causes(diagnose(doc))


def test_other_handshake_failures_are_named_with_their_errors() -> None:
    doc = run_doc()
    doc["totals"]["connect_errors"] = {"http 403": 4}
    failed = the(diagnose(doc), "connect_failed")
    assert "4 of 51 connections failed to open (http 403 × 4)" in failed["summary"]


def test_healthy_receivers_that_never_connected_explain_their_loss() -> None:
    doc = run_doc()
    lose(doc, stuck=20_000)
    doc["receivers"][0].update(connect_error="refused", delivered=0, lost_stuck=10_000)
    doc["receivers"][1].update(connect_error="refused", delivered=0, lost_stuck=10_000)
    doc["totals"]["connect_errors"] = {"refused": 2}
    assert causes(diagnose(doc)) == ["connect_refused"]


def test_publishes_answered_rate_limited_are_information() -> None:
    doc = run_doc()
    doc["senders"][0]["errors"] = {"rate_limited": 120}
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["ok", "rate_limited"]
    assert "120 publishes answered rate_limited" in verdicts[1]["summary"]


def test_a_sender_closed_with_4029_is_a_warning() -> None:
    doc = run_doc()
    doc["senders"][0].update(close_code=4029, errors={"rate_limited": 30})
    limited = the(diagnose(doc), "rate_limited")
    assert limited["severity"] == "warn"
    assert limited["evidence"]["close_4029"] == 1


def test_healthy_connections_the_server_closed_with_an_error_are_named() -> None:
    doc = run_doc()
    lose(doc, stuck=3_000)
    for r in doc["receivers"][:3]:
        r["close_code"] = 1011
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["unexpected_close"]
    assert "closed 3 healthy connections with 1011 (internal error)" in verdicts[0]["summary"]


# -- the server process -----------------------------------------------------------


def cpu_bound(*, behind: bool) -> Doc:
    doc = run_doc(receivers=50, rate=1000.0)
    doc["server"] = server(cpu=lambda t: 97.0 if 0.5 <= t <= 10 else 10.0)
    if behind:
        doc["timeline"] = ticks(lambda t: 31_000.0 if t <= 10.1 else 0.0)
        lose(doc, stuck=190_000)
        doc["latency_ms"] = latency(p50=900.0, p99=2_600.0, count=310_000)
    else:
        doc["latency_ms"] = latency(p50=60.0, p99=340.0, count=500_000)
    return doc


def test_a_server_pinned_at_one_core_and_falling_behind_is_named_cpu_bound() -> None:
    verdicts = diagnose(cpu_bound(behind=True))
    cpu = verdicts[0]
    assert cpu["cause"] == "server_cpu"
    assert cpu["severity"] == "break"
    assert "31,000 of the 50,000 messages/s offered" in cpu["summary"]
    assert cpu["evidence"]["max_cpu_percent"] == 97.0
    assert cpu["evidence"]["mean_cpu_percent"] > 90
    assert cpu["evidence"]["busy_share"] >= 0.9
    assert "loss" not in causes(verdicts)


def test_a_busy_server_that_stops_reading_its_senders_says_how_many_could_not_be_sent() -> None:
    doc = run_doc(receivers=4, rate=400.0)
    doc["server"] = server(cpu=lambda t: 100.0 if t <= 10 else 5.0)
    doc["totals"].update(sent=2_200, skipped=1_800, expected=8_800, delivered=8_800)
    cpu = the(diagnose(doc), "server_cpu")
    assert cpu["severity"] == "break"
    assert "1,800 messages could not be sent" in cpu["summary"]
    assert cpu["evidence"]["skipped"] == 1_800
    assert cpu["evidence"]["offered_deliveries_per_s"] == 1_600.0
    assert "backpressure" not in causes(diagnose(doc))


def test_senders_held_back_with_no_other_cause_in_sight_are_named_backpressure() -> None:
    doc = run_doc()
    doc["totals"].update(sent=7_000, skipped=3_000)
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["backpressure"]
    assert verdicts[0]["severity"] == "break"
    assert "3,000 of 10,000 messages could not be sent (30 %)" in verdicts[0]["summary"]


def test_a_busy_server_that_keeps_up_but_misses_the_latency_objective_is_a_warning() -> None:
    verdicts = diagnose(cpu_bound(behind=False))
    assert causes(verdicts) == ["server_cpu", "latency_slo"]
    assert verdicts[0]["severity"] == "warn"
    assert "340 ms" in verdicts[0]["summary"]


def test_a_server_short_of_cpu_on_a_shared_machine_is_still_named_when_its_queue_grows() -> None:
    doc = run_doc(receivers=4, rate=400.0)
    doc["server"] = server(cpu=lambda t: 55.0 if t < 2 else 95.0 if t <= 3 else 50.0)
    doc["config"]["duration_s"] = 3.0
    doc["timeline"] = ticks(lambda t: 900.0, p50=lambda t: 150 + 500 * t, until=4.0)
    doc["totals"].update(sent=1_200, expected=4_800, delivered=2_688, lost=2_112)
    doc["totals"].update(lost_stuck=2_112, deliveries_per_s=896.0)
    cpu = the(diagnose(doc), "server_cpu")
    assert cpu["severity"] == "break"
    assert cpu["evidence"]["saturated"] is False
    assert cpu["summary"].startswith(
        "the server fell behind on its CPU, delivering 896 of the 1,600 messages/s offered;"
    )
    assert "short of CPU" in cpu["summary"]


def _starved(machine: float) -> Doc:
    """A server never past 60 % of a core, falling behind with its latency growing."""
    doc = run_doc(receivers=4, rate=400.0)
    doc["server"] = server(cpu=lambda t: 57.0, machine=lambda t: machine)
    doc["config"]["duration_s"] = 3.0
    doc["timeline"] = ticks(lambda t: 450.0, p50=lambda t: 150 + 500 * t, until=4.0)
    doc["totals"].update(sent=1_200, expected=4_800, delivered=1_815, lost=2_985)
    doc["totals"].update(lost_stuck=2_985, deliveries_per_s=450.0)
    return doc


def test_a_server_held_below_a_core_by_a_busy_machine_is_named_short_of_cpu() -> None:
    cpu = the(diagnose(_starved(machine=97.0)), "server_cpu")
    assert cpu["severity"] == "break"
    assert (
        "while the machine's CPUs were 97 % busy: the machine was short of CPU" in (cpu["summary"])
    )
    assert cpu["evidence"]["machine_cpu_percent"] == 97.0
    assert cpu["evidence"]["max_cpu_percent"] == 57.0


def test_a_server_below_a_core_on_a_machine_with_cpu_to_spare_is_not_blamed_on_cpu() -> None:
    assert "server_cpu" not in causes(diagnose(_starved(machine=40.0)))


def test_a_sample_taken_partly_before_sending_does_not_lower_a_saturated_servers_mean() -> None:
    doc = run_doc(receivers=50, rate=1000.0)
    doc["server"] = server(cpu=lambda t: 97.0)
    doc["timeline"] = ticks(lambda t: 31_000.0 if t <= 10.1 else 0.0)
    lose(doc, stuck=190_000)
    early = {**doc["server"]["samples"][0], "t": 0.1, "cpu_percent": 0.0}
    doc["server"]["samples"].insert(0, early)  # over 0.15 s before sending and 0.1 s of it
    cpu = the(diagnose(doc), "server_cpu")
    assert cpu["evidence"]["samples"] == 40  # 0.25 s to 10 s: each one's step all sending
    assert cpu["evidence"]["mean_cpu_percent"] == 97.0


def test_a_half_busy_server_whose_latency_holds_steady_is_not_called_short_of_cpu() -> None:
    doc = run_doc()
    doc["server"] = server(cpu=lambda t: 60.0 if t < 5 else 92.0 if t < 6 else 60.0)
    lose(doc, holes=500)
    assert causes(diagnose(doc)) == ["loss"]


def test_a_busy_server_that_keeps_up_within_its_objective_is_fine() -> None:
    doc = run_doc()
    doc["server"] = server(cpu=lambda t: 99.0)
    assert causes(diagnose(doc)) == ["ok"]


def test_a_busy_server_whose_latency_keeps_growing_is_a_warning() -> None:
    doc = run_doc()
    doc["server"] = server(cpu=lambda t: 98.0)
    doc["timeline"] = ticks(lambda t: 50_000.0 if t <= 10.1 else 0.0, p50=lambda t: 1.0 + 4 * t)
    cpu = the(diagnose(doc), "server_cpu")
    assert cpu["severity"] == "warn"
    assert "median latency grew" in cpu["summary"]


def test_memory_growing_steadily_through_the_run_is_named_with_its_rate() -> None:
    doc = run_doc()
    doc["server"] = server(rss=lambda t: 50 * MIB + 24 * MIB * t)
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["memory_growth"]
    mem = verdicts[0]
    assert mem["severity"] == "warn"
    # Judged over the sending period (10 s): the drain says nothing about a leak.
    assert "from 56 MiB to 290 MiB" in mem["summary"]
    assert "24 MiB/s" in mem["summary"]
    assert "kept growing steadily" in mem["summary"]
    assert mem["evidence"]["slope_bytes_per_s"] == 24 * MIB


def test_memory_growth_with_loss_is_a_break() -> None:
    doc = run_doc()
    doc["server"] = server(rss=lambda t: 50 * MIB + 24 * MIB * t)
    lose(doc, holes=500)
    assert the(diagnose(doc), "memory_growth")["severity"] == "break"


def test_memory_that_rises_and_is_given_back_is_not_growth() -> None:
    doc = run_doc()
    doc["server"] = server(rss=lambda t: 50 * MIB + (200 * MIB if 4 <= t <= 8 else 0))
    assert causes(diagnose(doc)) == ["ok"]


def test_small_memory_growth_is_not_reported() -> None:
    doc = run_doc()
    doc["server"] = server(rss=lambda t: 200 * MIB + 2 * MIB * t)  # +30 MiB < 40 MiB
    assert causes(diagnose(doc)) == ["ok"]


def test_an_exception_in_the_broadcast_loop_is_named_with_its_type_message_and_count() -> None:
    doc = run_doc()
    doc["server"]["exceptions"] = [
        {
            "type": "RuntimeError",
            "message": "Set changed size during iteration",
            "count": 3,
            "text": "Traceback ...",
        },
        {"type": "WebSocketDisconnect", "message": "", "count": 1, "text": "..."},
    ]
    lose(doc, stuck=30_000)
    for r in doc["receivers"][:3]:
        r["close_code"] = 1006
    verdicts = diagnose(doc)
    exc = verdicts[0]
    assert exc["cause"] == "handler_exception"
    assert exc["severity"] == "break"
    assert exc["summary"].startswith(
        "the server raised RuntimeError 3 times (Set changed size during iteration)"
    )
    assert exc["evidence"]["count"] == 3
    assert exc["evidence"]["total"] == 4
    assert "loss" not in causes(verdicts)


def test_the_same_exception_with_different_messages_is_counted_as_one_type() -> None:
    doc = run_doc()
    doc["server"]["exceptions"] = [
        {"type": "RuntimeError", "message": f"handler failed on message {n}", "count": 1}
        for n in (10, 20, 30, 40, 50)
    ]
    lose(doc, holes=5)
    exc = the(diagnose(doc), "handler_exception")
    assert exc["summary"] == (
        "the server raised RuntimeError 5 times (handler failed on message 10 and 4 other messages)"
    )
    assert exc["evidence"]["count"] == 5


def test_an_exception_that_hurt_no_one_is_a_warning() -> None:
    doc = run_doc()
    doc["server"]["exceptions"] = [{"type": "KeyError", "message": "'x'", "count": 1}]
    exc = the(diagnose(doc), "handler_exception")
    assert exc["severity"] == "warn"
    assert "KeyError 1 time ('x')" in exc["summary"]


def test_a_server_that_exits_during_sending_is_named() -> None:
    doc = run_doc()
    doc["server"]["samples"] = samples(until=4.0)
    doc["server"]["exit_code"] = -9
    lose(doc, stuck=300_000)
    verdicts = diagnose(doc)
    assert causes(verdicts)[0] == "server_exited"
    assert "exited with code -9" in verdicts[0]["summary"]
    assert "loss" not in causes(verdicts)


def test_a_server_stopped_by_the_lab_after_the_run_did_not_exit_early() -> None:
    doc = run_doc()
    doc["server"]["exit_code"] = 0
    assert causes(diagnose(doc)) == ["ok"]


# -- the generator ----------------------------------------------------------------


def test_a_saturated_generator_makes_the_run_invalid_and_says_which_process() -> None:
    doc = run_doc()
    doc["generator"] = {"processes": 2, "cpu_percent": [97.0, 41.0], "max_cpu_percent": 97.0}
    reasons = is_generator_saturated(doc)
    assert len(reasons) == 1
    assert "generator process 0 used 97 %" in reasons[0]
    verdict = diagnose(doc)[0]
    assert verdict["cause"] == "generator_saturated"
    assert verdict["severity"] == "warn"
    assert verdict["evidence"]["cpu_percent"] == [97.0, 41.0]
    assert "97 %" in verdict["summary"]


def test_without_per_process_figures_the_generators_maximum_decides() -> None:
    doc = run_doc()
    doc["generator"] = {"processes": 2, "max_cpu_percent": 95.0}
    assert is_generator_saturated(doc) != []


def test_without_generator_figures_the_timeline_decides() -> None:
    doc = run_doc()
    del doc["generator"]
    for tick in doc["timeline"]:
        tick["generator_cpu"] = [99.0, 30.0]
    assert "generator process 0 used 99 %" in is_generator_saturated(doc)[0]


# -- loss, misdelivery, latency ---------------------------------------------------


def test_loss_no_other_cause_explains_is_reported_with_holes_and_stuck_apart() -> None:
    doc = run_doc()
    lose(doc, holes=100, stuck=20)
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["loss"]
    loss = verdicts[0]
    assert loss["severity"] == "break"
    assert loss["summary"].startswith("120 of 500,000 messages never reached the healthy receivers")
    assert "100 missing between messages that did arrive" in loss["summary"]
    assert "20 after the last message a stream got" in loss["summary"]
    assert loss["evidence"]["lost_holes"] == 100
    assert loss["evidence"]["lost_stuck"] == 20


def test_loss_the_server_announced_with_gap_frames_is_only_a_warning() -> None:
    doc = run_doc()
    lose(doc, holes=64)
    doc["totals"]["gap_announced"] = 64
    loss = the(diagnose(doc), "loss")
    assert loss["severity"] == "warn"
    assert "announced" in loss["summary"]


def test_duplicated_and_reordered_messages_are_misdelivery() -> None:
    doc = run_doc()
    doc["totals"].update(duplicated=30, out_of_order=12)
    mis = the(diagnose(doc), "misdelivery")
    assert mis["severity"] == "break"
    assert "30 duplicated and 12 out-of-order messages" in mis["summary"]


def test_a_p99_over_the_objective_is_a_latency_warning() -> None:
    doc = run_doc()
    doc["latency_ms"] = latency(p50=12.0, p99=340.0, count=500_000)
    verdicts = diagnose(doc)
    assert causes(verdicts) == ["latency_slo"]
    assert verdicts[0]["severity"] == "warn"
    assert verdicts[0]["summary"].startswith("p99 latency was 340 ms, over the 100 ms objective")


def test_a_run_that_sent_nothing_says_it_measured_nothing() -> None:
    doc = run_doc()
    doc["totals"].update(sent=0, expected=0, delivered=0, deliveries_per_s=0.0)
    doc["latency_ms"] = latency(count=0)
    assert causes(diagnose(doc)) == ["no_traffic"]


# -- several faults, odd documents ------------------------------------------------


def test_several_faults_are_all_reported_breaks_first() -> None:
    doc = stalled_by_a_naive_loop()
    doc["server"]["exceptions"] = [{"type": "RuntimeError", "message": "boom", "count": 2}]
    doc["server"]["samples"] = samples(
        slow_q=lambda t: 2.5 * MIB if t > 1.5 else 0.0, rss=lambda t: 50 * MIB + 10 * MIB * t
    )
    doc["generator"]["cpu_percent"] = [93.0, 40.0]
    doc["senders"][0]["errors"] = {"rate_limited": 5}
    verdicts = diagnose(doc)
    assert causes(verdicts) == [
        "hol_blocking",
        "handler_exception",
        "memory_growth",
        "generator_saturated",
        "latency_slo",
        "rate_limited",
    ]
    severities = [v["severity"] for v in verdicts]
    assert severities == ["break", "break", "break", "warn", "warn", "info"]


def test_a_document_without_server_or_timeline_does_not_raise() -> None:
    doc = run_doc()
    doc["server"] = None
    doc["timeline"] = []
    assert causes(diagnose(doc)) == ["ok"]
    assert is_generator_saturated(doc) == []


def test_an_almost_empty_document_does_not_raise() -> None:
    for doc in ({}, {"schema": "fanout.lab.run/1"}, {"totals": {"lost": 5}}):
        verdicts = diagnose(doc)
        assert verdicts
        assert is_generator_saturated(doc) == []


def every_scenario() -> list[Doc]:
    exceptions = run_doc()
    exceptions["server"]["exceptions"] = [{"type": "E", "message": "m", "count": 1}]
    return [
        run_doc(),
        stalled_by_a_naive_loop(),
        stalled_by_a_naive_loop(observed=False),
        cpu_bound(behind=True),
        cpu_bound(behind=False),
        exceptions,
    ]


def test_verdicts_are_json_with_numbers_for_evidence_and_ordered_by_severity() -> None:
    rank = {"break": 0, "warn": 1, "info": 2}
    for doc in every_scenario():
        verdicts = diagnose(doc)
        json.dumps(verdicts, allow_nan=False)
        assert [rank[v["severity"]] for v in verdicts] == sorted(
            rank[v["severity"]] for v in verdicts
        )
        for v in verdicts:
            assert set(v) == {"cause", "severity", "summary", "evidence"}
            assert v["summary"]
            assert "\n" not in v["summary"]
            prose = {k: x for k, x in v["evidence"].items() if isinstance(x, str)}
            assert set(prose) <= {"type", "message"}, (v["cause"], prose)


def test_causes_are_the_cause_enum_and_read_back_as_the_same_plain_strings() -> None:
    for doc in every_scenario():
        verdicts = diagnose(doc)
        assert all(isinstance(v["cause"], Cause) for v in verdicts)
        decoded = json.loads(json.dumps(verdicts))
        assert decoded == verdicts
        assert [type(v["cause"]) for v in decoded] == [str] * len(verdicts)


def paths(obj: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    )
    for key, value in items:
        found.append((*prefix, key))
        if len(prefix) < 3:
            found.extend(paths(value, (*prefix, key)))
    return found


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_documents_missing_optional_parts_never_make_the_diagnosis_raise(
    data: st.DataObject,
) -> None:
    base = data.draw(st.sampled_from(every_scenario()))
    doc = copy.deepcopy(base)
    for path in data.draw(st.lists(st.sampled_from(paths(base)), max_size=8)):
        parent: Any = doc
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                break
        else:
            replacement: Any = data.draw(st.sampled_from(["drop", None, [], {}, 0, -1.5, "x"]))
            if isinstance(parent, dict) and path[-1] in parent:
                if replacement == "drop":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = replacement
            elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
                parent[path[-1]] = None if replacement == "drop" else replacement
    verdicts = diagnose(doc)
    assert verdicts
    json.dumps(verdicts)
    is_generator_saturated(doc)
