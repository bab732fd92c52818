"""This node's users: limits, revocations and control events, on connections driven by
a fake transport (no sockets)."""

from __future__ import annotations

import time

import pytest

from fanout.asgi.wiring import wire
from fanout.core.connection import Connection, Mode, close_reason
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.revocations import Revocations
from fanout.core.users import Users
from fanout.protocol.errors import ProtocolViolation
from fanout.settings import Settings
from tests.core.fakes import FakeTransport


async def _connected(user: str, *, per_user: int = 0) -> tuple[list[Connection], FakeTransport]:
    hub = wire(Settings(max_connections_per_user=per_user)).hub
    await hub.start()
    transport = FakeTransport()
    conn = hub.connect(transport, mode=Mode.V1, client="127.0.0.1:1", user=user)
    return [conn], transport


def test_a_close_reason_is_cut_to_123_utf8_bytes_on_a_character_boundary() -> None:
    assert close_reason("short") == "short"
    cut = close_reason("é" * 100)
    assert len(cut.encode()) <= 123
    assert cut == "é" * 61


async def test_a_disconnect_with_a_long_multibyte_reason_closes_every_connection_of_the_user() -> (
    None
):
    (conn,), transport = await _connected("alice")
    users = Users(max_per_user=0, max_revocations=10)
    users.add(conn)
    event = ControlEvent(ControlKind.DISCONNECT, user="alice", reason="ü" * 200)
    assert users.apply(event, lambda c, r: None) == 1
    assert transport.closed_with is not None
    code, reason = transport.closed_with
    assert code == 4003
    assert len(reason.encode()) <= 123


async def test_a_user_over_the_per_node_limit_is_refused_with_1013() -> None:
    users = Users(max_per_user=1, max_revocations=10)
    (conn,), _ = await _connected("bob")
    users.add(conn)
    with pytest.raises(ProtocolViolation) as refused:
        users.admit("bob")
    assert refused.value.close_code == 1013
    users.admit("carol")  # others are not counted against bob


def test_revocations_refuse_until_their_time_and_a_full_table_says_so() -> None:
    table = Revocations(max_entries=2)
    now = time.time()
    assert table.add("user:a", now + 60, now)
    assert table.add("jti:t1", now + 30, now)
    assert table.refusal("a", None, now) == now + 60
    assert table.refusal("x", "t1", now) == now + 30
    assert table.refusal("a", None, now + 61) is None
    assert not table.add("user:b", now + 90, now)  # full: the soonest to end gave way
    assert table.refusal("x", "t1", now) is None
    assert len(table) == 2
