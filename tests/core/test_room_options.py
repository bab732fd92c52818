"""Room options by pattern, parsed and matched with plain values."""

from __future__ import annotations

import pytest

from fanout.core.broker import Retention
from fanout.core.room_options import DEFAULT, RoomOptions, RoomRules


def test_the_first_matching_pattern_gives_a_rooms_options() -> None:
    rules = RoomRules(
        "chat.*:join_leave=on,history_age=3600;typing.*:presence=off,history=1;*:client_publish=off"
    )
    assert rules.of("chat.lobby") == RoomOptions(join_leave=True, history_age_s=3600.0)
    assert rules.retention("chat.lobby") == Retention(None, 3600.0)
    assert rules.retention("news") is None
    assert rules.of("typing.a") == RoomOptions(history=1, presence=False)
    assert rules.of("news") == RoomOptions(client_publish=False)


def test_without_options_every_room_has_the_defaults() -> None:
    assert RoomRules("").of("anything") == DEFAULT
    assert (
        RoomOptions(history=None, presence=True, join_leave=False, client_publish=True) == DEFAULT
    )


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("chat.*", "PATTERN:key=value"),
        ("bad room:presence=on", "PATTERN:key=value"),
        ("chat:colour=red", "unknown room option 'colour'"),
        ("chat:presence=maybe", "on or off"),
        ("chat:history=0", ">= 1"),
        ("chat:history=x", ">= 1"),
        ("chat:history_age=0", "seconds > 0"),
        ("chat:history_age=soon", "seconds > 0"),
        ("chat:presence", "key=value"),
    ],
)
def test_a_spec_that_is_not_the_documented_shape_is_refused_with_the_reason(
    spec: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        RoomRules(spec)
