"""The lab's arithmetic: latency percentiles, the send schedule with a ramp, sizes, and
how numbers are read from a results document and written in a report or a verdict."""

from __future__ import annotations

import random

import pytest

from fanout.lab import fmt
from fanout.lab.config import BenchConfig, ConfigError, format_size, parse_size
from fanout.lab.document import finite, mapping, number, objects
from fanout.lab.generator import _due
from fanout.lab.histogram import Histogram


def test_percentiles_are_within_a_tenth_of_a_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values_us = [int(rng.lognormvariate(7, 1.5)) for _ in range(50_000)]
    h = Histogram()
    h.record_ns(v * 1000 for v in values_us)
    exact = sorted(values_us)
    for q in (50, 90, 99, 99.9):
        want = exact[round(len(exact) * q / 100) - 1]
        assert abs(h.percentile_us(q) - want) <= max(1, want * 0.001), q
    assert h.max_us == exact[-1]
    assert h.total == len(values_us)


def test_histograms_from_several_processes_merge_into_the_same_figures() -> None:
    one, a, b = Histogram(), Histogram(), Histogram()
    for v in range(1, 20_001):
        one.record(v)
        (a if v % 3 else b).record(v)
    merged = Histogram.from_json(a.to_json())
    merged.merge(Histogram.from_json(b.to_json()))
    assert merged.summary_ms() == one.summary_ms()


def test_a_ramp_sends_half_as_much_during_the_ramp_then_the_full_rate() -> None:
    assert _due(100.0, 2.0, 1.0) == pytest.approx(25.0)  # 100 * 1^2 / (2 * 2)
    assert _due(100.0, 2.0, 2.0) == pytest.approx(100.0)
    assert _due(100.0, 2.0, 3.0) == pytest.approx(200.0)
    config = BenchConfig(url="ws://127.0.0.1:9/ws", rate=100.0, ramp_s=2.0, duration_s=10.0)
    assert config.messages_per_sender() == 900


def test_count_bounds_a_run_as_well_as_its_duration() -> None:
    config = BenchConfig(url="ws://127.0.0.1:9/ws", rate=1000.0, duration_s=10.0, count=50)
    assert config.messages_per_sender() == 50


@pytest.mark.parametrize(
    ("text", "size"),
    [("200", 200), ("64k", 65536), ("1MiB", 1048576), ("1.5m", 1572864), ("16 MiB", 16777216)],
)
def test_sizes_read_as_people_write_them(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_print_as_people_read_them() -> None:
    assert format_size(16 * 1024 * 1024) == "16 MiB"
    assert format_size(200) == "200 B"


@pytest.mark.parametrize("text", ["", "lots", "-5", "12q", "1e9"])
def test_garbage_sizes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="not a size"):
        parse_size(text)


def test_a_table_and_a_sentence_write_the_same_numbers_in_their_own_registers() -> None:
    # A report's cell: up to three significant digits, "–" when missing.
    assert [fmt.decimal(v) for v in (0.812, 2.43, 12.04, 1234.0, None)] == [
        "0.812",
        "2.43",
        "12.0",
        "1,234",
        fmt.MISSING,
    ]
    assert fmt.percent(0.00011) == "0.011%"
    assert fmt.size(64 * 1024) == "64 KiB"
    # A verdict's sentence: two significant digits, no ".0".
    assert [fmt.short(v) for v in (0.812, 2.43, 12.04, 1234.0)] == ["0.81", "2.4", "12", "1,234"]
    assert fmt.short_pct(0.011) == "0.011 %"
    assert fmt.short_bytes(2.5 * fmt.MIB) == "2.5 MiB"
    # Whole counts read the same in both.
    assert fmt.count(1_234_567) == "1,234,567"


def test_the_document_reads_any_json_value_without_raising() -> None:
    doc = {"n": 10**400, "inf": float("inf"), "flag": True, "s": "3", "list": [1, {"a": 1}]}
    assert [finite(doc[k]) for k in ("n", "inf", "flag", "s")] == [None, None, None, None]
    assert number({"x": 2}, "x") == 2.0
    assert objects(doc, "list") == [{"a": 1}]
    assert mapping(doc, "list") == {}


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("slow_send_q_bytes", 4_000_000, "3.8 MiB"),
        ("growth_bytes", -5_242_880, "-5 MiB"),
        ("rss_end_mib", 1536.0, "1.5 GiB"),
        ("slope_bytes_per_s", 25 * 1024 * 1024, "25 MiB/s"),
        ("slope_mib_per_s", 24.0, "24 MiB/s"),
        ("p99_ms", 2.4, "2.4 ms"),
        ("p99_ms", 0.35, "0.35 ms"),
        ("max_ms", 8_500.0, "8.5 s"),
        ("stall_from_s", 1.5, "1.5 s"),
        ("last_sample_s", 300.0, "5 min"),
        ("busy_share", 0.62, "62 %"),
        ("mean_cpu_percent", 78.9, "79 %"),
        ("deliveries_per_s", 12_345.6, "12,346/s"),
        ("refused", 11, "11"),
        ("lost", 412_345, "412,345"),
        ("cpu_percent", [104.7, 3.0], "105 %, 3 %"),
        ("close_codes", {"1011": 3}, '{"1011": 3}'),
        ("saturated", True, "true"),
        ("type", "KeyError", "KeyError"),
        ("history_bound_bytes", None, "null"),
    ],
)
def test_evidence_shows_each_number_in_the_unit_its_name_says(
    key: str, value: object, shown: str
) -> None:
    assert fmt.evidence(key, value) == shown


def test_a_last_tick_of_a_few_ms_does_not_count_as_the_generators_load() -> None:
    from fanout.lab.results import generator_cpu

    config = BenchConfig(url="ws://127.0.0.1:1/ws", duration_s=1.0)
    # A run where nothing connected: one tick 3 ms after the start, at 105 % of a core.
    assert generator_cpu(config, [{"t": 0.003, "generator_cpu": [104.7]}])["cpu_percent"] == [0.0]
    ticks = [{"t": 0.5, "generator_cpu": [40.0]}, {"t": 1.0, "generator_cpu": [60.0]}]
    ticks.append({"t": 1.004, "generator_cpu": [180.0]})
    found = generator_cpu(config.replace(duration_s=2.0), ticks)
    assert found["cpu_percent"] == [50.0]
    assert found["peak_cpu_percent"] == [60.0]
