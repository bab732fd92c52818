"""A connection lives as long as its token: closed 1008 at ``exp`` unless an ``auth``
frame brings a fresh one; and connections doing nothing are closed by the idle timeout.

Deadlines are whole seconds (as in real tokens) a few seconds ahead; each assertion
leaves at least a second of slack for a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fanout.settings import Settings
from tests.auth import SECRET, make_token
from tests.support.servers import running_hub
from tests.support.wsclient import connect_user, connect_v1, recv_json, send_json, subscribe

AUTH = Settings(auth_secret=SECRET)
SLACK_S = 1.5  # how late a close may come after its deadline on a busy machine


async def _closed(ws: ClientConnection, timeout: float = 15.0) -> tuple[int, str, float]:
    """Read until the server closes: its code, its reason, and when (wall clock)."""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    at = time.time()
    close = ws.protocol.close_rcvd
    assert close is not None, "closed without a close frame from the server"
    return close.code, close.reason, at


def _exp_in(seconds: int) -> int:
    """A whole-second ``exp`` at least ``seconds`` ahead."""
    return math.ceil(time.time()) + seconds


async def _round_trip(ws: ClientConnection, room: str, msg_id: str) -> None:
    """The connection still works: a publish comes back as message then ack."""
    await send_json(ws, {"type": "publish", "room": room, "data": msg_id, "id": msg_id})
    message, ack = await recv_json(ws), await recv_json(ws)
    assert (message["type"], message["data"]) == ("message", msg_id)
    assert (ack["type"], ack["id"]) == ("ack", msg_id)


async def _auth(ws: ClientConnection, token: str, frame_id: str) -> dict[str, Any]:
    await send_json(ws, {"type": "auth", "token": token, "id": frame_id})
    return await recv_json(ws)


async def test_a_connection_is_closed_1008_token_expired_when_its_token_expires() -> None:
    async with running_hub(AUTH) as server:
        exp = _exp_in(2)
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {make_token(exp=exp)}"}
        ) as ws:
            await subscribe(ws, "r")  # in a room, so the idle timeout plays no part
            code, reason, at = await _closed(ws)
        assert (code, reason) == (1008, "token expired")
        assert exp - 0.1 <= at <= exp + SLACK_S
        assert len(server.hub.connections) == 0


async def test_an_auth_frame_with_a_fresh_token_moves_the_deadline_and_is_answered_authorized() -> (
    None
):
    async with running_hub(AUTH) as server:
        old_exp, new_exp = _exp_in(2), _exp_in(4)
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {make_token(exp=old_exp)}"}
        ) as ws:
            await subscribe(ws, "r")
            assert await _auth(ws, make_token(exp=new_exp), "a1") == {
                "type": "authorized",
                "id": "a1",
                "sub": "alice",
                "exp": new_exp,
            }
            await asyncio.sleep(old_exp + 0.7 - time.time())
            await _round_trip(ws, "r", "after-old-exp")  # open past the old deadline
            code, reason, at = await _closed(ws)
        assert (code, reason) == (1008, "token expired")
        assert new_exp - 0.1 <= at <= new_exp + SLACK_S  # ... and closed at the new one


async def test_a_refresh_for_another_subject_is_forbidden_and_the_first_token_still_applies() -> (
    None
):
    async with running_hub(AUTH) as server:
        token = make_token(sub="alice", subscribe=["chat.*"], publish=["chat.*"])
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert await _auth(ws, make_token(sub="mallory"), "a1") == {
                "type": "error",
                "id": "a1",
                "code": "forbidden",
                "reason": "a refreshed token must be for the same 'sub' as the first",
            }
            # mallory's token granted '*': alice's grants are still the ones in force.
            await send_json(ws, {"type": "subscribe", "room": "news"})
            assert (await recv_json(ws))["code"] == "forbidden"
            reply = await _auth(ws, make_token(sub="alice"), "a2")
            assert (reply["type"], reply["sub"]) == ("authorized", "alice")


async def test_a_refused_refresh_is_unauthorized_and_the_old_exp_still_closes_the_connection() -> (
    None
):
    async with running_hub(AUTH) as server:
        exp = _exp_in(2)
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {make_token(exp=exp)}"}
        ) as ws:
            await subscribe(ws, "r")
            expired = make_token(exp=int(time.time()) - 1)
            assert await _auth(ws, expired, "a1") == {
                "type": "error",
                "id": "a1",
                "code": "unauthorized",
                "reason": "token expired",
            }
            reply = await _auth(ws, "garbage", "a2")
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "a2", "unauthorized")
            assert "garbage" not in reply["reason"]
            code, reason, at = await _closed(ws)
        assert (code, reason) == (1008, "token expired")
        assert exp - 0.1 <= at <= exp + SLACK_S


async def test_a_refresh_whose_token_no_longer_grants_a_joined_room_is_forbidden() -> None:
    async with running_hub(AUTH) as server:
        token = make_token(subscribe=["chat.*"], publish=["chat.*"])
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await subscribe(ws, "chat.a")
            news_only = make_token(subscribe=["news"], publish=["news"])
            reply = await _auth(ws, news_only, "a1")
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "a1", "forbidden")
            assert "'chat.a'" in reply["reason"]
            # Still the first token's grants: chat.* yes, news no.
            await _round_trip(ws, "chat.a", "p1")
            await send_json(ws, {"type": "subscribe", "room": "news"})
            assert (await recv_json(ws))["code"] == "forbidden"
            # After leaving the room, the narrower token is taken.
            await send_json(ws, {"type": "unsubscribe", "room": "chat.a"})
            assert (await _auth(ws, news_only, "a2"))["type"] == "authorized"
            await subscribe(ws, "news")
            await send_json(ws, {"type": "publish", "room": "chat.a", "data": 1, "id": "p2"})
            assert (await recv_json(ws))["code"] == "forbidden"


async def test_an_auth_frame_on_a_hub_without_auth_is_a_bad_frame() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as ws:
        assert await _auth(ws, make_token(), "a1") == {
            "type": "error",
            "id": "a1",
            "code": "bad_frame",
            "reason": "this hub has no auth configured: nothing to refresh",
        }
        await subscribe(ws, "r")
        await _round_trip(ws, "r", "still-works")


async def test_an_auth_frame_without_a_token_string_is_a_bad_frame() -> None:
    async with (
        running_hub(AUTH) as server,
        await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {make_token()}"}
        ) as ws,
    ):
        for token in [None, 42, "", "x" * 8193]:
            await send_json(ws, {"type": "auth", "token": token, "id": "a1"})
            reply = await recv_json(ws)
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "a1", "bad_frame")


async def test_a_token_let_in_by_the_clock_skew_leeway_lasts_until_the_leeway_runs_out() -> None:
    async with running_hub(AUTH.replace(auth_leeway_s=30)) as server:
        exp = _exp_in(2) - 30  # expired, but within the 30 s leeway for 2 more seconds
        async with await connect_user(
            server.ws, additional_headers={"Authorization": f"Bearer {make_token(exp=exp)}"}
        ) as ws:
            await subscribe(ws, "r")
            await _round_trip(ws, "r", "p1")
            code, reason, at = await _closed(ws)
        assert (code, reason) == (1008, "token expired")
        assert exp + 30 - 0.1 <= at <= exp + 30 + SLACK_S


async def test_the_idle_timeout_closes_1000_a_connection_in_no_room_that_sends_nothing() -> None:
    """Three connections, one second of idle timeout: the silent one without a room is
    closed; the one in a room and the one sending frames are not."""
    async with running_hub(Settings(idle_timeout_s=1)) as server:
        start = time.monotonic()
        idle = await connect_v1(server.ws)
        listener = await connect_v1(server.ws)
        talker = await connect_v1(server.ws)
        await subscribe(listener, "r")

        async def talk() -> None:
            while time.monotonic() - start < 3:
                await send_json(talker, {"type": "unsubscribe", "room": "nowhere"})
                assert (await recv_json(talker))["type"] == "error"  # not subscribed
                await asyncio.sleep(0.3)

        talking = asyncio.create_task(talk())
        code, reason, _ = await _closed(idle)
        elapsed = time.monotonic() - start
        assert (code, reason) == (1000, "idle: no room and no frame for 1 s")
        assert 0.9 <= elapsed <= 1 + SLACK_S
        await talking
        assert time.monotonic() - start >= 3  # three idle timeouts later, still open:
        await _round_trip(listener, "r", "listener-alive")
        await send_json(talker, {"type": "subscribe", "room": "t"})
        assert (await recv_json(talker))["type"] == "subscribed"
        await listener.close()
        await talker.close()
