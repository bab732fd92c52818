"""Users and presence on every node: real `fanout serve` nodes with tokens for alice and
bob; two nodes sharing a real redis-server, and the same tests on one node with the
memory broker. Per-user delivery, kick, unsubscribe and revoke through the server API,
presence and history."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from tests.redis.nodes import eventually
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess, start_hub_process, stop_process
from tests.support.wsclient import (
    assert_silent,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)

SECRET = "s" * 40
KEY = "api-key-for-user-tests"
REFRESH_S = 0.5
ARGS = (
    "--log-level", "warning",
    "--auth-secret", SECRET,
    "--api-key", KEY,
    "--presence-refresh-s", str(REFRESH_S),
)  # fmt: skip


@dataclass
class Nodes:
    """Node A and node B: two processes through Redis, or one node twice."""

    a: HubProcess
    b: HubProcess
    two: bool


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Nodes]:
    async with contextlib.AsyncExitStack() as stack:
        args = list(ARGS)
        if request.param == "redis":
            redis = stack.enter_context(RedisServer(tmp_path / "redis"))
            args += ["--broker", redis.url]
        count = 2 if request.param == "redis" else 1
        started = await asyncio.gather(
            *(
                asyncio.to_thread(start_hub_process, args, tmp_path / f"node-{i}.log")
                for i in range(count)
            )
        )
        for node in started:
            stack.callback(stop_process, node.proc)
        yield Nodes(started[0], started[-1], count == 2)


def token(user: str, rooms: tuple[str, ...] = ("*",)) -> str:
    return mint_token(SECRET, subject=user, grants=RoomGrants.both(rooms), ttl_s=600)


async def connect(node: HubProcess, user: str, query: str = "", **kwargs: Any) -> ClientConnection:
    """``user``'s fanout.v1 connection; the personal room's ``subscribed`` comes first."""
    ws = await connect_v1(f"{node.ws}?token={token(user, **kwargs)}{query}")
    first = await recv_json(ws)
    assert (first["type"], first["room"]) == ("subscribed", f"@{user}"), first
    return ws


async def api(node: HubProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"apikey {KEY}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        return await http.request(method, path, headers=headers, **kwargs)


async def present(node: HubProcess, room: str) -> list[str]:
    reply = await api(node, "GET", f"/api/presence?room={room}")
    assert reply.status_code == 200, reply.text
    return sorted(str(m["user"]) for m in reply.json()["members"])


async def closed_with(ws: ClientConnection, timeout: float) -> tuple[int | None, str]:
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def test_presence_asked_on_either_node_lists_alice_and_bob(nodes: Nodes) -> None:
    alice, bob = await connect(nodes.a, "alice"), await connect(nodes.b, "bob")
    async with alice, bob:
        await subscribe(alice, "lobby")
        await subscribe(bob, "lobby")

        async def both_listed() -> bool:
            return (
                await present(nodes.a, "lobby")
                == await present(nodes.b, "lobby")
                == [
                    "alice",
                    "bob",
                ]
            )

        await eventually(both_listed, "alice and bob in presence on both nodes")
        stats = await api(nodes.b, "GET", "/api/presence_stats?room=lobby")
        assert stats.json() == {"room": "lobby", "connections": 2, "users": 2}
        await send_json(alice, {"type": "presence", "room": "lobby", "id": "p1"})
        answer = await recv_json(alice)
        assert answer["type"] == "presence"
        assert answer["id"] == "p1"
        assert sorted(m["user"] for m in answer["members"]) == ["alice", "bob"]
        assert all(m["conn"] and m["node"] and m["joined_at"] > 0 for m in answer["members"])


async def test_a_message_to_a_user_reaches_every_tab_on_every_node_once_and_resumes(
    nodes: Nodes,
) -> None:
    tab1, tab2 = await connect(nodes.a, "alice"), await connect(nodes.b, "alice")
    async with tab1:
        async with tab2:
            for n in range(1, 4):
                reply = await api(
                    nodes.a,
                    "POST",
                    "/api/publish",
                    json={"user": "alice", "data": n, "id": f"m{n}"},
                )
                assert reply.json()["offset"] == n
            again = await api(
                nodes.b, "POST", "/api/publish", json={"user": "alice", "data": 1, "id": "m1"}
            )
            assert again.json()["duplicate"] is True
            for tab in (tab1, tab2):
                got = [await recv_json(tab) for _ in range(3)]
                assert [(m["room"], m["offset"], m["data"]) for m in got] == [
                    ("@alice", n, n) for n in range(1, 4)
                ]
                await assert_silent(tab)
            epoch = got[0]["epoch"]
        # tab2 is away while two more arrive; it comes back from offset 3.
        for n in (4, 5):
            await api(nodes.b, "POST", "/api/publish", json={"user": "alice", "data": n})
        back = await connect_v1(f"{nodes.b.ws}?token={token('alice')}&user_since={epoch}:3")
        async with back:
            first = await recv_json(back)
            assert (first["room"], first["recovered"]) == ("@alice", True)
            assert [(await recv_json(back))["offset"] for _ in range(2)] == [4, 5]
            await assert_silent(back)


async def test_alice_kicked_through_node_b_is_closed_on_node_a_within_a_second(
    nodes: Nodes,
) -> None:
    alice, bob = await connect(nodes.a, "alice"), await connect(nodes.a, "bob")
    async with alice, bob:
        started = time.monotonic()
        reply = await api(
            nodes.b, "POST", "/api/disconnect", json={"user": "alice", "reason": "bye"}
        )
        assert reply.status_code == 200, reply.text
        code, reason = await closed_with(alice, timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert (code, reason) == (4003, "disconnected by the server: bye")
        await send_json(bob, {"type": "subscribe", "room": "still-here"})
        assert (await recv_json(bob))["type"] == "subscribed"


async def test_a_revoked_user_is_disconnected_and_refused_at_every_node_until_then(
    nodes: Nodes,
) -> None:
    alice = await connect(nodes.a, "alice")
    async with alice:
        until = time.time() + 60
        reply = await api(nodes.b, "POST", "/api/revoke", json={"user": "alice", "until": until})
        assert reply.status_code == 200, reply.text
        assert (await closed_with(alice, timeout=2.0))[0] == 4003
    for node in (nodes.a, nodes.b):
        with pytest.raises(InvalidStatus) as refused:
            await connect_v1(f"{node.ws}?token={token('alice')}")
        assert refused.value.response.status_code == 403
        assert b"revoked until" in bytes(refused.value.response.body or b"")
    async with await connect(nodes.b, "bob"):
        pass  # others still get in


async def test_a_user_unsubscribed_through_the_api_is_told_and_gets_no_more(nodes: Nodes) -> None:
    alice = await connect(nodes.a, "alice")
    async with alice:
        await subscribe(alice, "news")
        reply = await api(
            nodes.b, "POST", "/api/unsubscribe", json={"user": "alice", "room": "news"}
        )
        assert reply.status_code == 200, reply.text
        assert await recv_json(alice) == {
            "type": "unsubscribed",
            "room": "news",
            "reason": "unsubscribed by the server",
        }
        await api(nodes.a, "POST", "/api/publish", json={"room": "news", "data": "late"})
        await assert_silent(alice)


async def test_history_is_read_without_subscribing(nodes: Nodes) -> None:
    for n in range(1, 6):
        await api(nodes.a, "POST", "/api/publish", json={"room": "log", "data": n})
    last = await api(nodes.b, "GET", "/api/history?room=log&limit=2")
    assert [m["offset"] for m in last.json()["messages"]] == [4, 5]
    assert last.json()["latest"] == 5
    after = await api(nodes.b, "GET", "/api/history?room=log&since=1&limit=2")
    assert [m["data"] for m in after.json()["messages"]] == [2, 3]
    alice = await connect(nodes.b, "alice")
    async with alice:
        await send_json(alice, {"type": "history", "room": "log", "limit": 3, "id": "h"})
        answer = await recv_json(alice)
        assert (answer["type"], answer["id"]) == ("history", "h")
        assert [m["offset"] for m in answer["messages"]] == [3, 4, 5]
        await assert_silent(alice)  # nothing live: it did not subscribe


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/api/history?room=log&limit=0", None, 400, "'limit'"),
        ("GET", "/api/history?room=log&limit=5000", None, 400, "'limit'"),
        ("GET", "/api/history?room=log&since=-1", None, 400, "'since'"),
        ("GET", "/api/history?room=bad%20room", None, 400, "1-128 characters"),
        ("GET", "/api/presence?room=a&extra=1", None, 400, "unknown query"),
        ("POST", "/api/revoke", {"user": "x"}, 400, "'until'"),
        ("POST", "/api/revoke", {"user": "x", "until": 1}, 400, "'until'"),
        ("POST", "/api/revoke", {"user": "x", "jti": "y", "until": 2e9}, 400, "either"),
        ("POST", "/api/unsubscribe", {"user": "x", "room": "bad room"}, 400, "1-128"),
        ("POST", "/api/disconnect", {"user": ""}, 400, "'user'"),
        ("POST", "/api/disconnect", {"user": "x", "extra": 1}, 400, "unknown fields"),
        ("POST", "/api/publish", {"user": 5, "data": 1}, 400, "'user'"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    nodes: Nodes, method: str, path: str, body: Any, status: int, reason: str
) -> None:
    reply = await api(nodes.a, method, path, json=body)
    assert reply.status_code == status, reply.text
    assert reason in reply.json()["reason"]


async def test_unknown_users_and_ungranted_rooms(nodes: Nodes) -> None:
    reply = await api(nodes.a, "POST", "/api/disconnect", json={"user": "nobody"})
    assert reply.status_code == 200  # nobody to close: nothing happens, on any node
    carol = await connect(nodes.a, "carol", rooms=("lobby",))
    async with carol:
        for frame in (
            {"type": "presence", "room": "staff", "id": "1"},
            {"type": "history", "room": "staff", "id": "2"},
            {"type": "subscribe", "room": "@alice"},
            {"type": "publish", "room": "@alice", "data": 1, "id": "3"},
        ):
            await send_json(carol, frame)
            assert (await recv_json(carol))["code"] == "forbidden", frame
        await send_json(carol, {"type": "history", "room": "lobby", "limit": 0, "id": "4"})
        assert (await recv_json(carol))["code"] == "bad_frame"


@pytest.mark.parametrize("nodes", ["redis"], indirect=True)
async def test_a_node_that_dies_takes_its_members_out_of_presence_within_the_bound(
    nodes: Nodes,
) -> None:
    alice, bob = await connect(nodes.a, "alice"), await connect(nodes.b, "bob")
    async with alice:
        await subscribe(alice, "lobby")
        await subscribe(bob, "lobby")

        async def both() -> bool:
            return await present(nodes.a, "lobby") == ["alice", "bob"]

        await eventually(both, "both in presence")
        nodes.b.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()

        async def bob_gone() -> bool:
            return await present(nodes.a, "lobby") == ["alice"]

        await eventually(bob_gone, "bob out of presence", timeout=5.0)
        assert time.monotonic() - killed <= 2 * REFRESH_S + 0.5
        with contextlib.suppress(ConnectionClosed):
            await bob.close()


async def test_an_ephemeral_message_reaches_every_node_and_is_not_kept(nodes: Nodes) -> None:
    alice, bob = await connect(nodes.a, "alice"), await connect(nodes.b, "bob")
    async with alice, bob:
        await subscribe(alice, "doc")
        await subscribe(bob, "doc")
        body = {"room": "doc", "data": "typing...", "ephemeral": True}
        reply = await api(nodes.a, "POST", "/api/publish", json=body)
        assert reply.json() == {"ephemeral": True}
        expected = {"type": "message", "room": "doc", "data": "typing...", "ephemeral": True}
        assert await recv_json(alice) == expected
        assert await recv_json(bob) == expected
        kept = await api(nodes.b, "GET", "/api/history?room=doc")
        assert kept.json()["messages"] == []
        assert kept.json()["latest"] == 0


async def test_nobody_reads_another_users_personal_room(nodes: Nodes) -> None:
    await api(nodes.a, "POST", "/api/publish", json={"user": "bob", "data": {"secret": 1}})
    alice = await connect(nodes.a, "alice")  # a token granting every room
    async with alice:
        for frame in (
            {"type": "history", "room": "@bob", "id": "h"},
            {"type": "presence", "room": "@bob", "id": "p"},
            {"type": "presence_stats", "room": "@bob", "id": "s"},
        ):
            await send_json(alice, frame)
            refused = await recv_json(alice)
            assert (refused["code"], refused["id"]) == ("forbidden", frame["id"]), refused
        await send_json(alice, {"type": "history", "room": "@alice", "id": "own"})
        own = await recv_json(alice)
        assert (own["type"], own["messages"]) == ("history", [])  # her own: allowed


async def test_a_kick_with_a_long_non_ascii_reason_still_closes_with_4003(nodes: Nodes) -> None:
    alice = await connect(nodes.a, "alice")
    async with alice:
        reason = "é" * 120  # 240 bytes: more than a close frame holds
        reply = await api(
            nodes.b, "POST", "/api/disconnect", json={"user": "alice", "reason": reason}
        )
        assert reply.status_code == 200
        code, said = await closed_with(alice, timeout=2.0)
        assert code == 4003
        assert said.startswith("disconnected by the server: éé")
        assert len(said.encode()) <= 123


async def test_history_since_beyond_the_latest_offset_is_refused(nodes: Nodes) -> None:
    await api(nodes.a, "POST", "/api/publish", json={"room": "log", "data": 1})
    reply = await api(nodes.b, "GET", "/api/history?room=log&since=5")
    assert reply.status_code == 400
    assert "beyond the room's latest offset 1" in reply.json()["reason"]
