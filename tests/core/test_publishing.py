"""The checks every publish passes, wherever it comes from: plain values, no hub."""

from __future__ import annotations

import pytest

from fanout.core.publishing import PublishRules
from fanout.protocol.errors import InvalidPublish

RULES = PublishRules(max_message_bytes=16, room_pattern=r"chat\..+")


def test_a_valid_publish_passes_unchanged() -> None:
    assert RULES.check("chat.a", {"n": 1}, "id-1") == ("chat.a", {"n": 1})
    assert RULES.check("chat.a", None) == ("chat.a", None)  # JSON null, as clients may


@pytest.mark.parametrize(
    ("room", "data", "msg_id", "code", "reason"),
    [
        ("chat a", 1, None, "bad_room", "1-128 characters"),
        (7, 1, None, "bad_room", "must be a string"),
        ("news", 1, None, "bad_room", "room pattern"),
        ("chat.a", 1, "", "bad_frame", "'id'"),
        ("chat.a", 1, "x" * 129, "bad_frame", "'id'"),
        ("chat.a", 1, 5, "bad_frame", "'id'"),
        ("chat.a", {1j: 1}, None, "bad_frame", "not JSON"),
        ("chat.a", "é" * 9, None, "too_big", "18 bytes"),  # 9 characters, 18 bytes
        ("chat.a", b"x" * 17, None, "too_big", "at most 16"),
        ("chat.a", {"k": "v" * 10}, None, "too_big", "at most 16"),
    ],
)
def test_a_bad_publish_is_refused_with_its_code_and_reason(
    room: object, data: object, msg_id: object, code: str, reason: str
) -> None:
    with pytest.raises(InvalidPublish, match=reason) as info:
        RULES.check(room, data, msg_id)
    assert info.value.code == code


def test_sizes_count_utf8_bytes_for_text_and_the_json_for_values() -> None:
    assert PublishRules.size_of("é") == 2
    assert PublishRules.size_of(b"abc") == 3
    assert PublishRules.size_of({"a": 1}) == len('{"a":1}')


def test_a_room_pattern_that_is_not_a_regular_expression_is_refused() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        PublishRules(max_message_bytes=1, room_pattern="(")
