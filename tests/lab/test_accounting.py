"""The lab reports the exact counts of what deliberately faulty servers did.

Each test starts ``faulty.py`` through the lab (``server_cmd``), drives it with real
generator processes, and compares the results document with what the fault must
produce: one sender, ``count`` messages, every receiver subscribed before the first.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab.conftest import causes, faulty_config, run

RECEIVERS = 4


def stable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["receivers"] if r["kind"] == "stable"]


def test_a_faithful_server_has_every_message_delivered_once_in_order() -> None:
    doc = run(faulty_config(count=150))
    t = doc["totals"]
    assert t["sent"] == 150
    assert t["expected"] == t["delivered"] == 150 * RECEIVERS
    assert t["lost"] == t["duplicated"] == t["out_of_order"] == 0
    assert doc["latency_ms"]["count"] == 150 * RECEIVERS
    assert causes(doc) == ["ok"]
    assert doc["schema"] == "fanout.lab.run/1"
    assert doc["server"]["samples"], "the lab observed the server it started"


def test_a_server_dropping_every_seventh_message_shows_exactly_those_holes() -> None:
    doc = run(faulty_config("--drop-every", "7", count=100))
    t = doc["totals"]
    dropped = 100 // 7  # 7, 14, ..., 98: each below a message that arrived
    assert t["sent"] == 100
    assert t["lost_holes"] == dropped * RECEIVERS
    assert t["lost_stuck"] == 0
    assert t["delivered"] == (100 - dropped) * RECEIVERS
    for r in stable(doc):
        assert (r["lost_holes"], r["lost_stuck"], r["duplicated"]) == (dropped, 0, 0)
    assert "loss" in causes(doc)


def test_a_dropped_last_message_counts_as_stuck_not_as_a_hole() -> None:
    doc = run(faulty_config("--drop-every", "10", count=100))
    for r in stable(doc):
        # 10..90 are holes (later ones arrived); nothing came after 99, so 100 is stuck.
        assert (r["lost_holes"], r["lost_stuck"]) == (9, 1)


def test_a_server_duplicating_every_fifth_message_is_caught() -> None:
    doc = run(faulty_config("--duplicate-every", "5", count=100))
    t = doc["totals"]
    assert t["lost"] == 0
    assert t["delivered"] == 100 * RECEIVERS
    assert t["duplicated"] == 20 * RECEIVERS
    assert all(r["duplicated"] == 20 for r in stable(doc))


def test_a_server_reordering_messages_is_caught_without_counting_loss() -> None:
    doc = run(faulty_config("--reorder-every", "10", count=105))
    t = doc["totals"]
    assert t["lost"] == 0
    assert t["delivered"] == 105 * RECEIVERS
    assert t["out_of_order"] == 10 * RECEIVERS  # 10, 20, ..., 100 each came after its successor
    assert t["duplicated"] == 0


def test_a_server_closing_everyone_is_reported_with_its_code_and_what_never_came() -> None:
    doc = run(faulty_config("--close-after", "40", "--close-code", "4000", count=100, rate=200.0))
    t = doc["totals"]
    # Every receiver and the sender were closed with 4000 after the 40th message.
    assert t["close_codes"] == {"4000": RECEIVERS + 1}
    for r in stable(doc):
        assert r["close_code"] == 4000
        assert r["delivered"] == 40
        assert r["lost_holes"] == 0
        assert r["lost_stuck"] == t["sent"] - 40


def test_a_delaying_server_shows_in_the_latency_percentiles() -> None:
    doc = run(faulty_config("--delay-ms", "30", count=30, rate=20.0))
    latency = doc["latency_ms"]
    assert latency["p50"] >= 30
    assert doc["totals"]["lost"] == 0


@pytest.mark.parametrize("kind", ["binary", "png", "jpeg"])
def test_binary_and_image_payloads_are_accounted_like_text(kind: str) -> None:
    doc = run(faulty_config("--drop-every", "4", count=42, kind=kind, size=20_000))
    t = doc["totals"]
    assert t["lost_holes"] == 10 * RECEIVERS  # 4, 8, ..., 40
    assert t["delivered"] == 32 * RECEIVERS


def test_several_senders_rooms_and_processes_are_accounted_per_stream() -> None:
    doc = run(faulty_config(count=50, senders=3, receivers=6, processes=2, rate=300.0))
    t = doc["totals"]
    # faulty.py has no rooms: every receiver gets all three senders' messages.
    assert t["sent"] == 150
    assert t["expected"] == t["delivered"] == 150 * 6
    assert {r["process"] for r in doc["receivers"]} == {0, 1}
    assert len(doc["timeline"]) >= 1
    assert len(doc["timeline"][0]["generator_cpu"]) == 2
