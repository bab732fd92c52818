"""The subscribe/replay/live/gap/epoch rules, driven with plain values: no socket, no loop."""

from __future__ import annotations

from typing import Any

import orjson

from fanout.core.subscription import EpochReset, LostRange, Subscription
from fanout.protocol.envelope import Message, OutFrame
from fanout.protocol.frames import Since
from tests.core.fakes import history, messages, nobody


def _shown(frames: list[OutFrame | None]) -> list[dict[str, Any]]:
    return [orjson.loads(f.as_text) for f in frames if f is not None]


def _kinds(frames: list[OutFrame | None]) -> list[str]:
    out = []
    for f in _shown(frames):
        out.append(f"{f['type']} {f.get('offset', '')}".strip())
    return out


def test_a_new_subscriber_of_an_empty_room_is_told_offset_0_and_nothing_else() -> None:
    sub = Subscription(nobody(), "r")
    replay = sub.replay(history("r", "e1", latest=0, first_kept=1), None)
    assert _shown(list(replay.frames)) == [
        {"type": "subscribed", "room": "r", "epoch": "e1", "offset": 0, "recovered": False}
    ]
    assert replay.replayed == 0


def test_resuming_within_history_replays_everything_after_since_and_says_recovered() -> None:
    sub = Subscription(nobody(), "r")
    replay = sub.replay(history("r", "e1", 5, first_kept=1, after=2), Since("e1", 2))
    assert _shown(list(replay.frames))[0]["recovered"] is True
    assert _kinds(list(replay.frames))[1:] == ["message 3", "message 4", "message 5"]
    assert replay.replayed == 3
    assert (sub.epoch, sub.offset) == ("e1", 5)


def test_resuming_beyond_retention_announces_the_gap_before_what_history_still_has() -> None:
    sub = Subscription(nobody(), "r")
    replay = sub.replay(history("r", "e1", 10, first_kept=8, after=2), Since("e1", 2))
    shown = _shown(list(replay.frames))
    assert shown[0]["recovered"] is False
    assert shown[1] == {"type": "gap", "room": "r", "epoch": "e1", "from": 3, "to": 7}
    assert _kinds(list(replay.frames))[2:] == ["message 8", "message 9", "message 10"]


def test_resuming_from_another_epoch_replays_nothing_and_is_not_recovered() -> None:
    sub = Subscription(nobody(), "r")
    replay = sub.replay(history("r", "e2", 3, first_kept=1), Since("e1", 2))
    assert _kinds(list(replay.frames)) == ["subscribed 3"]
    assert _shown(list(replay.frames))[0]["recovered"] is False


def test_live_events_during_the_replay_follow_it_without_repeating_replayed_offsets() -> None:
    sub = Subscription(nobody(), "r")
    assert sub.replaying
    for message in messages("r", "e1", range(3, 6)):  # 3 and 4 are also in history
        assert sub.hold(message)
    replay = sub.replay(history("r", "e1", 4, first_kept=1, after=2), Since("e1", 2))
    assert _kinds(list(replay.frames)) == ["subscribed 4", "message 3", "message 4", "message 5"]
    assert not sub.replaying
    assert not sub.hold(Message("r", "e1", 6, "x"))


def test_live_messages_are_delivered_once_in_order_and_only_within_the_epoch() -> None:
    sub = Subscription(nobody(), "r")
    sub.replay(history("r", "e1", 2, first_kept=1), None)
    assert sub.accepts("e1", 3)
    assert not sub.accepts("e1", 3)  # a duplicate
    assert not sub.accepts("e1", 2)  # older than what was delivered
    assert not sub.accepts("e0", 9)  # another epoch
    assert sub.accepts("e1", 5)  # a jump is the broker's to announce, not a reason to stop
    assert sub.offset == 5


def test_a_lost_range_is_announced_only_for_offsets_not_yet_delivered() -> None:
    sub = Subscription(nobody(), "r")
    sub.replay(history("r", "e1", 5, first_kept=1), None)
    assert sub.lost(LostRange("e1", 2, 4)) is None  # all delivered already
    assert sub.lost(LostRange("e0", 6, 9)) is None  # another epoch
    assert _shown([sub.lost(LostRange("e1", 3, 8))]) == [
        {"type": "gap", "room": "r", "epoch": "e1", "from": 6, "to": 8}
    ]
    assert sub.offset == 8
    assert not sub.accepts("e1", 7)


def test_a_new_epoch_under_a_live_subscription_is_announced_with_subscribed_again() -> None:
    sub = Subscription(nobody(), "r")
    sub.replay(history("r", "e1", 5, first_kept=1), None)
    assert sub.reset(EpochReset("e1", 9)) is None  # not new
    assert _shown([sub.judge(EpochReset("e2", 0))]) == [
        {"type": "subscribed", "room": "r", "epoch": "e2", "offset": 0, "recovered": False}
    ]
    assert sub.accepts("e2", 1)
    assert not sub.accepts("e1", 6)


def test_held_gaps_and_resets_are_applied_in_order_at_the_end_of_the_replay() -> None:
    sub = Subscription(nobody(), "r")
    sub.hold(LostRange("e1", 3, 4))
    sub.hold(EpochReset("e2", 0))
    sub.hold(Message("r", "e2", 1, "new"))
    replay = sub.replay(history("r", "e1", 2, first_kept=1), None)
    assert _kinds(list(replay.frames)) == ["subscribed 2", "gap", "subscribed 0", "message 1"]
