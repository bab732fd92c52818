from __future__ import annotations

import pytest

from fanout.core.outbox import Outbox, OutboxLimits
from fanout.protocol.envelope import OutFrame


def test_an_outbox_refuses_the_frame_past_its_message_limit() -> None:
    box = Outbox(OutboxLimits(max_messages=2, max_bytes=1000))
    assert box.put(OutFrame.text("a"))
    assert box.put(OutFrame.text("b"))
    assert not box.put(OutFrame.text("c"))
    assert [f.as_text for f in box.take_all()] == ["a", "b"]
    assert len(box) == 0
    assert box.bytes == 0


def test_an_outbox_refuses_the_frame_past_its_byte_limit() -> None:
    box = Outbox(OutboxLimits(max_messages=100, max_bytes=10))
    assert box.put(OutFrame.binary(b"x" * 6))
    assert not box.put(OutFrame.binary(b"y" * 6))
    assert box.bytes == 6


@pytest.mark.parametrize("kwargs", [{"max_messages": 0}, {"max_bytes": 0}])
def test_outbox_limits_must_be_positive(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        OutboxLimits(**{"max_messages": 1, "max_bytes": 1, **kwargs})
