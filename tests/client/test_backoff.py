"""Backoff is a pure function of the attempt number and a random draw: no sleeping."""

from __future__ import annotations

import pytest

from fanout.backoff import Backoff
from fanout.client.reconnects import Reconnects


def test_backoff_doubles_from_the_initial_delay_until_the_cap() -> None:
    backoff = Backoff(initial_s=0.1, max_s=5.0, jitter=0.5)
    ceilings = [backoff.ceiling(n) for n in range(10)]
    assert ceilings[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    assert ceilings[6:] == [5.0, 5.0, 5.0, 5.0]


def test_backoff_never_exceeds_the_cap_even_after_days_of_retrying() -> None:
    backoff = Backoff(initial_s=0.1, max_s=5.0, multiplier=10.0)
    assert backoff.ceiling(100_000) == 5.0
    assert backoff.delay(100_000, rand=0.0) == 5.0


def test_jitter_spreads_each_delay_over_the_last_half_of_its_ceiling() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.5)
    assert backoff.delay(3, rand=0.0) == pytest.approx(8.0)
    assert backoff.delay(3, rand=0.5) == pytest.approx(6.0)
    assert backoff.delay(3, rand=0.999999) == pytest.approx(4.0, abs=1e-4)
    draws = {backoff.delay(3) for _ in range(50)}
    assert len(draws) > 40, "delays are randomised"
    assert all(4.0 <= d <= 8.0 for d in draws)


def test_jittered_delays_never_shrink_while_the_ceiling_still_doubles() -> None:
    backoff = Backoff(initial_s=0.1, max_s=5.0, jitter=0.5)
    for attempt in range(5):  # ceilings 0.1 ... 3.2, then the cap
        assert backoff.ceiling(attempt + 1) == 2 * backoff.ceiling(attempt)
        slowest_now = backoff.delay(attempt, rand=0.0)
        fastest_next = backoff.delay(attempt + 1, rand=0.999999)
        assert fastest_next >= slowest_now - 1e-6


def test_zero_jitter_gives_exact_delays_and_full_jitter_can_reach_zero() -> None:
    assert Backoff(initial_s=0.5, jitter=0.0).delay(1, rand=0.7) == 1.0
    assert Backoff(initial_s=0.5, jitter=1.0).delay(1, rand=0.999999) == pytest.approx(
        0.0, abs=1e-5
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_nonsensical_backoff_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)


def test_failed_attempts_grow_the_delay_until_max_attempts_then_stop() -> None:
    reconnects = Reconnects(Backoff(initial_s=0.1, max_s=1.0, jitter=0.0), max_attempts=3)
    assert [reconnects.attempt_failed(), reconnects.attempt_failed()] == [0.1, 0.2]
    assert reconnects.attempt_failed() is None


def test_a_connection_dropped_at_once_keeps_the_backoff_growing() -> None:
    reconnects = Reconnects(Backoff(initial_s=0.1, max_s=1.0, jitter=0.0))
    delays = []
    for _ in range(5):
        reconnects.connected()
        delays.append(reconnects.disconnected(lasted_s=0.01))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])


def test_a_connection_that_lasted_starts_the_backoff_over() -> None:
    reconnects = Reconnects(Backoff(initial_s=0.1, max_s=1.0, jitter=0.0), max_attempts=3)
    reconnects.attempt_failed()
    reconnects.attempt_failed()
    reconnects.connected()
    assert reconnects.disconnected(lasted_s=30.0) == 0.1
    assert reconnects.attempt_failed() == pytest.approx(0.2)
    assert reconnects.attempt_failed() == pytest.approx(0.4), "the success reset max_attempts"
