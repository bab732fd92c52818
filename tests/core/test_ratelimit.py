"""The rate limiter's arithmetic, with explicit times: no sockets, no clocks.

Rates and times are binary fractions (8 per second, steps of 1/8 s), so the float
arithmetic is exact and each assertion says precisely when a token is back.
"""

from __future__ import annotations

import pytest

from fanout.core.ratelimit import RateLimiter, TokenBucket, Verdict

T0 = 1024.0
TICK = 0.125  # one frame token at 8 frames/s


def _limiter(frames: float = 8, data: float = 0, grace: float = 2.0) -> RateLimiter:
    return RateLimiter(frames_per_s=frames, bytes_per_s=data, grace_s=grace, now=T0)


def _at(ticks: float) -> float:
    return T0 + ticks * TICK


def test_a_burst_of_one_seconds_worth_of_frames_passes_and_the_next_is_refused() -> None:
    limiter = _limiter(frames=8)
    assert [limiter.check(1, T0) for _ in range(8)] == [Verdict.ALLOW] * 8
    assert limiter.check(1, T0) is Verdict.REFUSE
    assert limiter.refused == 1


def test_the_bucket_refills_continuously_at_its_rate_up_to_one_seconds_worth() -> None:
    limiter = _limiter(frames=8)
    for _ in range(8):
        limiter.check(1, T0)
    assert limiter.check(1, _at(0.5)) is Verdict.REFUSE  # half a token back
    assert limiter.check(1, _at(1)) is Verdict.ALLOW  # one token back
    assert limiter.check(1, _at(1)) is Verdict.REFUSE
    assert [limiter.check(1, _at(4)) for _ in range(4)] == [Verdict.ALLOW] * 3 + [Verdict.REFUSE]
    # A long pause refills one second's worth, not more.
    later = T0 + 3600
    assert [limiter.check(1, later) for _ in range(9)] == [Verdict.ALLOW] * 8 + [Verdict.REFUSE]


def test_a_refused_frame_costs_nothing() -> None:
    limiter = _limiter(frames=8)
    for _ in range(8):
        limiter.check(1, T0)
    for i in range(50):
        assert limiter.check(1, _at(i / 64)) is Verdict.REFUSE
    # One tick later exactly one token is back, however many frames were refused meanwhile.
    assert limiter.check(1, _at(1)) is Verdict.ALLOW
    assert limiter.check(1, _at(1)) is Verdict.REFUSE


def test_the_bytes_bucket_refuses_like_the_frames_bucket() -> None:
    limiter = _limiter(frames=0, data=1024)
    assert limiter.check(600, T0) is Verdict.ALLOW
    assert limiter.check(600, T0) is Verdict.REFUSE  # 424 left
    assert limiter.check(424, T0) is Verdict.ALLOW
    assert limiter.check(1, T0) is Verdict.REFUSE
    assert limiter.check(512, T0 + 0.5) is Verdict.ALLOW
    assert limiter.check(1, T0 + 0.5) is Verdict.REFUSE


def test_a_frame_bigger_than_one_seconds_bytes_passes_on_a_full_bucket_and_leaves_debt() -> None:
    limiter = _limiter(frames=0, data=1024)
    assert limiter.check(5 * 1024, T0) is Verdict.ALLOW
    # 4 KiB in debt: nothing passes until it is paid back, and a frame of a second's
    # bytes (or more) waits until the bucket is full again.
    assert limiter.check(1, T0 + 3.75) is Verdict.REFUSE
    assert limiter.check(1, T0 + 4.25) is Verdict.ALLOW
    assert limiter.check(1024, T0 + 4.875) is Verdict.REFUSE
    assert limiter.check(2048, T0 + 5.5) is Verdict.ALLOW


def test_a_big_frame_waits_for_a_full_bucket() -> None:
    limiter = _limiter(frames=0, data=1024)
    assert limiter.check(8, T0) is Verdict.ALLOW
    assert limiter.check(5000, T0) is Verdict.REFUSE
    assert limiter.check(5000, T0 + 1 / 128) is Verdict.ALLOW


def test_a_frame_refused_by_the_bytes_bucket_takes_no_frame_token() -> None:
    limiter = _limiter(frames=2, data=128)
    assert limiter.check(128, T0) is Verdict.ALLOW
    assert limiter.check(128, T0) is Verdict.REFUSE
    assert limiter.check(128, T0) is Verdict.REFUSE
    # A second later both buckets are full: the refused frames took no frame token.
    assert limiter.check(64, T0 + 1) is Verdict.ALLOW
    assert limiter.check(64, T0 + 1) is Verdict.ALLOW
    assert limiter.check(0, T0 + 1) is Verdict.REFUSE


def test_continuous_refusals_beyond_the_grace_period_close() -> None:
    limiter = _limiter(frames=1, grace=2.0)
    assert limiter.check(1, T0) is Verdict.ALLOW
    verdicts = {t: limiter.check(1, _at(t)) for t in range(1, 17)}  # 8 per second for 2 s
    assert verdicts[1] is Verdict.REFUSE
    assert verdicts[8] is Verdict.ALLOW  # its one frame per second still passes
    assert Verdict.CLOSE not in [verdicts[t] for t in range(1, 17)]
    # 2 s after the first refusal (tick 1), still over the rate: closed.
    assert limiter.check(1, _at(17)) is Verdict.CLOSE


def test_a_client_sending_at_twice_its_rate_is_closed_once_its_burst_and_grace_are_spent() -> None:
    limiter = _limiter(frames=8, grace=1.0)
    verdicts: list[tuple[float, Verdict]] = []
    t = T0
    while not verdicts or verdicts[-1][1] is not Verdict.CLOSE:
        verdicts.append((t, limiter.check(1, t)))
        t += 1 / 16
        assert t < T0 + 10, "never closed"
    first_refusal = next(t for t, v in verdicts if v is Verdict.REFUSE)
    # At twice the rate the bucket (one second's worth) empties in about a second; from
    # then on every other frame is refused, and 1 s (grace) later it is closed.
    assert first_refusal == T0 + 15 / 16
    assert verdicts[-1][0] == first_refusal + 1.0
    assert sum(v is Verdict.ALLOW for _, v in verdicts) > 16


def test_a_pause_longer_than_the_grace_period_between_refusals_starts_afresh() -> None:
    limiter = _limiter(frames=1, grace=2.0)
    limiter.check(1, T0)
    assert limiter.check(1, T0 + 0.5) is Verdict.REFUSE  # first refusal
    assert limiter.check(1, T0 + 1) is Verdict.ALLOW  # within its rate again
    assert limiter.check(1, T0 + 1.5) is Verdict.REFUSE  # 1 s since the first: counting
    assert limiter.check(1, T0 + 4) is Verdict.ALLOW  # the pause refilled the bucket
    # The previous refusal was 2.5 s ago (> grace): this one starts a new grace period.
    assert limiter.check(1, T0 + 4) is Verdict.REFUSE
    assert limiter.check(1, T0 + 5) is Verdict.ALLOW
    assert limiter.check(1, T0 + 5.75) is Verdict.REFUSE
    assert limiter.check(1, T0 + 6) is Verdict.ALLOW
    assert limiter.check(1, T0 + 6) is Verdict.CLOSE  # 2 s after T0 + 4, no long pause


def test_refusals_within_the_grace_period_of_each_other_add_up() -> None:
    limiter = _limiter(frames=1, grace=2.0)
    limiter.check(1, T0)
    assert limiter.check(1, T0 + 0.25) is Verdict.REFUSE
    assert limiter.check(1, T0 + 1.5) is Verdict.ALLOW
    assert limiter.check(1, T0 + 1.75) is Verdict.REFUSE
    assert limiter.check(1, T0 + 2.75) is Verdict.ALLOW
    # Refusals 1.5 s and 1 s apart (never a 2 s pause): closed 2 s after the first.
    assert limiter.check(1, T0 + 2.75) is Verdict.CLOSE


def test_no_grace_closes_at_the_first_refusal() -> None:
    limiter = _limiter(frames=1, grace=0.0)
    assert limiter.check(1, T0) is Verdict.ALLOW
    assert limiter.check(1, T0) is Verdict.CLOSE


def test_a_rate_of_zero_means_unlimited() -> None:
    limiter = _limiter(frames=0, data=0)
    assert all(limiter.check(1 << 30, T0) is Verdict.ALLOW for _ in range(100_000))
    assert limiter.refused == 0
    frames_only = _limiter(frames=8, data=0)
    assert frames_only.check(1 << 40, T0) is Verdict.ALLOW
    bytes_only = _limiter(frames=0, data=1024)
    assert all(bytes_only.check(0, T0) is Verdict.ALLOW for _ in range(10_000))


def test_nonsense_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, now=0.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(-1, now=0.0)
    with pytest.raises(ValueError, match="grace"):
        _limiter(grace=-1)


def test_a_clock_that_goes_backwards_neither_takes_tokens_away_nor_gives_any() -> None:
    limiter = _limiter(frames=8)
    for _ in range(4):
        limiter.check(1, T0)
    # An earlier time than the last one seen (a caller mixing clocks): 4 tokens are left.
    assert [limiter.check(1, T0 - 10) for _ in range(5)] == [Verdict.ALLOW] * 4 + [Verdict.REFUSE]
    # And the bucket refills from the latest time seen, not from the earlier one.
    assert limiter.check(1, T0 + 1 / 16) is Verdict.REFUSE
    assert limiter.check(1, T0 + 1 / 8) is Verdict.ALLOW
