"""The lab's arithmetic: latency percentiles, the send schedule with a ramp, sizes."""

from __future__ import annotations

import random

import pytest

from fanout.lab.config import BenchConfig, ConfigError, format_size, parse_size
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
