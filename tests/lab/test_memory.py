"""The memory verdict tells a leak from buffers filling toward their bound.

Documents as the lab writes them (``tests/lab/test_diagnosis.py`` builds them): one
sender for 10 s, server samples every 0.25 s until 15 s, and, when the server publishes
them, its gauges every second and the bounds it states on its metrics page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fanout.lab.diagnosis import diagnose
from fanout.lab.diagnosis.memory import HISTORY_OVERHEAD
from fanout.lab.observe.metrics import bounds_from_page, parse_gauges
from tests.lab.test_diagnosis import MIB, causes, lose, run_doc, server

Doc = dict[str, Any]

FANOUT_BOUNDS = {
    "max_message_bytes": 16 * MIB,
    "outbox_max_messages": 4096,
    "outbox_max_bytes": 64 * MIB,
    "history_max_messages": 1000,
    "history_max_bytes": 64 * MIB,
    "history_total_max_bytes": 512 * MIB,
    "history_in_process": True,
    "workers": 1,
}


def observed(rss: Callable[[float], float], **parts: Any) -> Doc:
    """A healthy run whose server's memory follows ``rss(t)``; ``parts`` go in ``server``."""
    doc = run_doc()
    doc["server"] = {**server(rss=rss), **parts}
    return doc


def gauges(outbox: Callable[[float], float], until: float = 15.0) -> list[dict[str, Any]]:
    """fanout's gauges every second, from before sending started."""
    return [
        {"t": t - 0.5, "values": {"fanout_connections": 51.0, "fanout_outbox_bytes": outbox(t)}}
        for t in range(int(until) + 1)
    ]


def memory(doc: Doc) -> dict[str, Any]:
    found = [v for v in diagnose(doc) if v["cause"] == "memory_growth"]
    assert len(found) == 1, causes(diagnose(doc))
    return found[0]


def filling(t: float) -> float:
    """Buffers filling at 100 MiB/s for 2 s, then full: 50 MiB -> 250 MiB."""
    return 50 * MIB + 100 * MIB * min(t, 2.0)


def test_memory_that_rises_then_levels_off_is_buffers_filling_not_a_leak() -> None:
    mem = memory(observed(filling))
    assert mem["severity"] == "info"
    assert "levelled off from 2 s" in mem["summary"]
    assert "not a leak" in mem["summary"]
    assert mem["evidence"]["levelled_at_s"] <= 2.1
    assert "ok" in causes(diagnose(observed(filling)))


def test_memory_growing_at_the_same_pace_to_the_end_is_still_a_leak() -> None:
    mem = memory(observed(lambda t: 50 * MIB + 20 * MIB * t))
    assert mem["severity"] == "warn"
    assert "kept growing steadily" in mem["summary"]
    assert "a leak, or buffers not yet at their bound" in mem["summary"]


def test_growth_the_servers_own_outbox_gauge_accounts_for_is_not_a_leak() -> None:
    # Memory grows for the whole run, but fanout says it is all queued in its outboxes.
    doc = observed(lambda t: 50 * MIB + 15 * MIB * t, gauges=gauges(lambda t: 15 * MIB * max(t, 0)))
    mem = memory(doc)
    assert mem["severity"] == "info"
    assert "no more than its bounded buffers may hold" in mem["summary"]
    assert "fanout_outbox_bytes" in mem["summary"]
    assert mem["evidence"]["buffers_max_bytes"] >= 150 * MIB


def test_growth_within_the_history_its_configured_bounds_allow_is_not_a_leak() -> None:
    # 64 KiB messages: 1000 of them are 62.5 MiB of history, which fanout may keep (and
    # what comes with each: its cached frame, the allocator's slack).
    doc = observed(lambda t: 50 * MIB + 7 * MIB * t, bounds=FANOUT_BOUNDS)
    doc["config"]["size"] = 64 * 1024
    mem = memory(doc)
    assert mem["severity"] == "info"
    assert mem["evidence"]["history_bound_bytes"] == HISTORY_OVERHEAD * 1000 * 64 * 1024
    assert "of room history" in mem["summary"]


def test_growth_the_servers_own_history_gauge_accounts_for_is_not_a_leak() -> None:
    # The gauge says 30 MiB of history at most; with what comes with each message, that
    # explains the 50 MiB the server grew by, whatever its configured bounds would allow.
    history = [
        {
            "t": t - 0.5,
            "values": {"fanout_outbox_bytes": 0.0, "fanout_history_bytes": 3.0 * MIB * min(t, 10)},
        }
        for t in range(16)
    ]
    doc = observed(lambda t: 50 * MIB + 5 * MIB * min(t, 10), gauges=history, bounds=FANOUT_BOUNDS)
    doc["config"]["size"] = 64 * 1024
    mem = memory(doc)
    assert mem["severity"] == "info"
    assert mem["evidence"]["history_bound_bytes"] == HISTORY_OVERHEAD * 30 * MIB
    assert "of room history" in mem["summary"]


def test_growth_past_what_the_history_gauge_measured_is_still_a_leak() -> None:
    # The configured bounds would allow 125 MiB of history, but the server says it holds 1 MiB.
    history = [
        {"t": t - 0.5, "values": {"fanout_outbox_bytes": 0.0, "fanout_history_bytes": 1.0 * MIB}}
        for t in range(16)
    ]
    doc = observed(lambda t: 50 * MIB + 12 * MIB * t, gauges=history, bounds=FANOUT_BOUNDS)
    doc["config"]["size"] = 64 * 1024
    mem = memory(doc)
    assert mem["severity"] == "warn"
    assert mem["evidence"]["history_bound_bytes"] == HISTORY_OVERHEAD * 1 * MIB


def test_a_leak_beyond_what_the_buffers_may_hold_is_named_with_them() -> None:
    doc = observed(
        lambda t: 50 * MIB + 40 * MIB * t,
        gauges=gauges(lambda t: 2 * MIB),
        bounds=FANOUT_BOUNDS,
    )
    mem = memory(doc)
    assert mem["severity"] == "warn"
    assert "its buffers may hold" in mem["summary"]
    assert mem["evidence"]["unexplained_growth_bytes"] > 300 * MIB


def test_with_a_redis_broker_the_history_is_not_held_by_the_hub() -> None:
    bounds = {**FANOUT_BOUNDS, "history_in_process": False}
    doc = observed(lambda t: 50 * MIB + 7 * MIB * t, bounds=bounds)
    doc["config"]["size"] = 64 * 1024
    assert memory(doc)["severity"] == "warn"


def test_a_leak_is_still_a_break_when_messages_were_lost() -> None:
    doc = observed(lambda t: 50 * MIB + 20 * MIB * t)
    lose(doc, holes=100)
    assert memory(doc)["severity"] == "break"


def test_memory_that_only_grows_after_sending_is_not_judged() -> None:
    doc = observed(lambda t: 50 * MIB + (60 * MIB * (t - 10) if t > 10.5 else 0))
    assert causes(diagnose(doc)) == ["ok"]


def test_gauges_and_bounds_that_make_no_sense_do_not_raise() -> None:
    junks: list[Any] = [None, [], "x", [1, {"t": "x"}, {"t": 1, "values": [1]}], [{"values": {}}]]
    for junk in junks:
        doc = observed(filling, gauges=junk, bounds=junk)
        assert memory(doc)["severity"] == "info"


def test_a_prometheus_page_gives_its_unlabelled_gauges() -> None:
    page = "\n".join(
        [
            "# HELP fanout_outbox_bytes bytes queued",
            "# TYPE fanout_outbox_bytes gauge",
            "fanout_outbox_bytes 1.5e+06",
            "# TYPE fanout_published_total counter",
            "fanout_published_total 12.0",
            "# TYPE fanout_closes gauge",
            'fanout_closes{code="1000"} 3.0',
            "# TYPE weird gauge",
            "weird NaN",
            "untyped_thing 4",
        ]
    )
    assert parse_gauges(page) == {"fanout_outbox_bytes": 1_500_000.0}


def test_the_bounds_of_a_fanout_hub_come_from_the_gauges_on_its_metrics_page() -> None:
    page = "\n".join(
        [
            "# TYPE fanout_outbox_limit_bytes gauge",
            "fanout_outbox_limit_bytes 1e+09",
            "# TYPE fanout_history_room_limit_bytes gauge",
            "fanout_history_room_limit_bytes 1234.0",
            "# TYPE fanout_history_limit_bytes gauge",
            "fanout_history_limit_bytes 5.36870912e+08",
            "# TYPE fanout_processes gauge",
            "fanout_processes 2.0",
        ]
    )
    found = bounds_from_page(page)
    assert found is not None
    assert found["outbox_max_bytes"] == 1_000_000_000
    assert found["history_max_bytes"] == 1234
    assert found["history_in_process"] is True
    assert found["workers"] == 2
    # With a Redis broker the hub states no history of its own.
    redis = bounds_from_page(page.replace("5.36870912e+08", "0.0"))
    assert redis is not None
    assert redis["history_in_process"] is False


def test_any_other_server_or_no_page_at_all_has_no_bounds() -> None:
    assert bounds_from_page(None) is None
    assert bounds_from_page("") is None
    assert bounds_from_page("# TYPE other_gauge gauge\nother_gauge 3\n") is None
    # A bound that is not a gauge, or not a number, is no bound.
    assert bounds_from_page("fanout_outbox_limit_bytes 1\n") is None
    assert (
        bounds_from_page("# TYPE fanout_outbox_limit_bytes gauge\nfanout_outbox_limit_bytes x\n")
        is None
    )
