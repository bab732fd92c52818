"""Per-frame policy (size, rate, fairness) and deadlines (expiry, idle), with plain numbers."""

from __future__ import annotations

import pytest

from fanout.core.deadlines import MAX_SLEEP_S, Deadlines
from fanout.core.frame_policy import (
    FRAMES_PER_TURN,
    Admission,
    FrameLimits,
    FramePolicy,
    RateLimitClose,
)
from fanout.protocol.codes import CloseCode
from fanout.protocol.errors import ProtocolViolation

T0 = 1000.0


def _limits(**changes: float) -> FrameLimits:
    values: dict[str, float] = {
        "max_message_bytes": 1024,
        "rate_frames_per_s": 0,
        "rate_bytes_per_s": 0,
        "rate_limit_grace_s": 2,
        **changes,
    }
    return FrameLimits(
        max_message_bytes=int(values["max_message_bytes"]),
        rate_frames_per_s=values["rate_frames_per_s"],
        rate_bytes_per_s=values["rate_bytes_per_s"],
        rate_limit_grace_s=values["rate_limit_grace_s"],
    )


def test_a_frame_over_the_size_limit_closes_with_1009_counting_utf8_bytes() -> None:
    policy = FramePolicy(_limits(), plain=False, now=T0)
    assert policy.admit("x" * 1024, None, T0) is Admission.HANDLE
    assert policy.admit(None, b"x" * 1024, T0) is Admission.HANDLE
    with pytest.raises(ProtocolViolation) as info:
        policy.admit("é" * 513, None, T0)  # 513 characters, 1026 bytes
    assert info.value.close_code == CloseCode.TOO_BIG
    with pytest.raises(ProtocolViolation):
        policy.admit(None, b"x" * 1025, T0)


def test_without_rate_limits_every_frame_is_handled() -> None:
    policy = FramePolicy(_limits(), plain=True, now=T0)
    assert all(policy.admit("hi", None, T0) is Admission.HANDLE for _ in range(10_000))


def test_a_v1_client_over_its_rate_is_refused_then_closed_with_4029_after_the_grace() -> None:
    policy = FramePolicy(_limits(rate_frames_per_s=4), plain=False, now=T0)
    assert [policy.admit("f", None, T0) for _ in range(4)] == [Admission.HANDLE] * 4
    assert policy.admit("f", None, T0) is Admission.REFUSE
    assert policy.admit("f", None, T0 + 0.25) is Admission.HANDLE  # one token came back
    # Still over the rate 2 s after the first refusal: closed.
    verdicts = [policy.admit("f", None, T0 + 0.25 + n * 0.01) for n in range(1, 175)]
    assert set(verdicts) == {Admission.REFUSE, Admission.HANDLE}
    policy.admit("f", None, T0 + 2.0)  # handled if a token just came back
    with pytest.raises(RateLimitClose) as info:
        policy.admit("f", None, T0 + 2.0)
    assert info.value.close_code == CloseCode.RATE_LIMITED
    assert "4 frames/s per connection" in info.value.reason


def test_a_plain_client_over_its_rate_is_paced_until_its_tokens_refill_never_closed() -> None:
    policy = FramePolicy(_limits(rate_bytes_per_s=2048, rate_frames_per_s=4), plain=True, now=T0)
    assert policy.admit(None, b"x" * 1024, T0) is Admission.HANDLE
    assert policy.admit(None, b"x" * 1024, T0) is Admission.HANDLE
    assert policy.admit(None, b"x" * 1024, T0) is Admission.PACE
    assert policy.pace_s == pytest.approx(0.5)  # 1024 bytes at 2048/s
    assert policy.readmit(T0 + 0.25) is Admission.PACE
    assert policy.pace_s == pytest.approx(0.25)
    assert policy.readmit(T0 + 0.5) is Admission.HANDLE
    # Paced for as long as it keeps sending: 10 s later it is still never closed.
    t = T0 + 0.5
    for _ in range(20):
        if policy.admit(None, b"x" * 1024, t) is Admission.PACE:
            t += policy.pace_s
            assert policy.readmit(t) is Admission.HANDLE
    assert t == pytest.approx(T0 + 10.5)
    # The frame bucket paces too: 4 frames/s.
    frames = FramePolicy(_limits(rate_frames_per_s=4), plain=True, now=T0)
    assert [frames.admit("f", None, T0) for _ in range(5)][-1] is Admission.PACE
    assert frames.pace_s == pytest.approx(0.25)


def test_the_refusal_names_only_the_limits_that_are_on() -> None:
    policy = FramePolicy(_limits(rate_frames_per_s=50), plain=False, now=T0)
    assert (
        policy.refusal_reason == "over 50 frames/s per connection: not handled; slow down and retry"
    )


def test_a_connection_lets_the_others_in_every_32_frames() -> None:
    policy = FramePolicy(_limits(), plain=False, now=T0)
    turns = []
    for _ in range(3 * FRAMES_PER_TURN):
        policy.admit("f", None, T0)
        turns.append(policy.turn_over())
    assert turns.count(True) == 3
    assert turns[FRAMES_PER_TURN - 1]


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        _limits(rate_frames_per_s=-1)


def test_an_expired_token_is_due_with_1008() -> None:
    deadlines = Deadlines(idle_timeout_s=0, now=0.0)
    assert deadlines.next_check(expires_at=T0 + 5, wall=T0, now=0.0) == 5
    assert deadlines.due(T0 + 5, wall=T0 + 4.9, now=4.9, in_rooms=True) is None
    assert deadlines.due(T0 + 5, wall=T0 + 5, now=5.0, in_rooms=True) == (
        CloseCode.POLICY,
        "token expired",
    )


def test_an_idle_connection_in_no_room_is_due_with_1000_and_a_listener_is_not() -> None:
    deadlines = Deadlines(idle_timeout_s=30, now=0.0)
    assert deadlines.next_check(None, wall=T0, now=10.0) == 20
    assert deadlines.due(None, wall=T0, now=31.0, in_rooms=True) is None
    assert deadlines.next_check(None, wall=T0, now=31.0) == 30  # its idle clock restarted
    due = deadlines.due(None, wall=T0, now=61.0, in_rooms=False)
    assert due == (CloseCode.NORMAL, "idle: no room and no frame for 30 s")


def test_checks_are_never_further_apart_than_a_minute_and_none_without_deadlines() -> None:
    assert Deadlines(idle_timeout_s=0, now=0).next_check(None, wall=T0, now=0) is None
    far = Deadlines(idle_timeout_s=3600, now=0).next_check(T0 + 86_400, wall=T0, now=0)
    assert far == MAX_SLEEP_S
