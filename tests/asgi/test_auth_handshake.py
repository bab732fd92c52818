"""Tokens, room grants and Origin at the handshake, with real clients and a real server.

A refusal happens before the WebSocket is accepted: HTTP 403 with a JSON body naming
the reason, and no connection registered in the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, ClassVar

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from fanout.core.consumer import Consumer
from fanout.protocol.envelope import Payload
from fanout.settings import Settings
from tests.auth import OTHER_SECRET, SECRET, make_token
from tests.support.servers import RunningHub, metric, running_hub
from tests.support.wsclient import (
    assert_silent,
    connect_plain,
    connect_user,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)

AUTH = Settings(auth_secret=SECRET)


async def _refused(url: str, *, v1: bool = True, **kwargs: Any) -> tuple[int, str]:
    """The HTTP status and the ``error`` of a handshake the server refuses."""
    connect = connect_v1 if v1 else connect_plain
    with pytest.raises(InvalidStatus) as info:
        await connect(url, **kwargs)
    response = info.value.response
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.body)
    assert set(body) == {"error"}
    reason: str = body["error"]
    return response.status_code, reason


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _publish_ack(ws: websockets.ClientConnection, room: str, msg_id: str) -> dict[str, Any]:
    await send_json(ws, {"type": "publish", "room": room, "data": msg_id, "id": msg_id})
    return await recv_json(ws)


# -- tokens ----------------------------------------------------------------------------


async def test_a_handshake_without_a_token_is_refused_with_403_saying_where_to_send_one() -> None:
    async with running_hub(AUTH) as server:
        status, reason = await _refused(server.ws)
        assert status == 403
        assert "no token" in reason
        assert "Authorization: Bearer <token>" in reason
        assert "'fanout_token' cookie" in reason
        assert "'token' query parameter" in reason
        assert server.hub.counters["refused_token"] == 1
        assert server.hub.counters["connections_total"] == 0
        assert await metric(server.url, 'refusals_total{reason="token"}') == 1


async def test_an_expired_token_is_refused_with_403_token_expired() -> None:
    async with running_hub(AUTH) as server:
        token = make_token(exp=int(time.time()) - 2)
        assert await _refused(server.ws, additional_headers=_bearer(token)) == (
            403,
            "token expired",
        )


async def test_a_token_signed_with_another_secret_is_refused_with_403() -> None:
    async with running_hub(AUTH) as server:
        token = make_token(key=OTHER_SECRET)
        assert await _refused(server.ws, additional_headers=_bearer(token)) == (
            403,
            "token signature does not verify",
        )
        assert await _refused(server.ws + "?token=not-a-jwt") == (
            403,
            "malformed token: Not enough segments",
        )


async def test_authorization_basic_is_refused_with_403_asking_for_bearer() -> None:
    async with running_hub(AUTH) as server:
        status, reason = await _refused(
            server.ws, additional_headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}
        )
        assert status == 403
        assert reason == "the Authorization header must be 'Bearer <token>'"


class Whoami(Consumer):
    """Tells a fanout.v1 client who the hub thinks it is."""

    async def on_connect(self) -> None:
        await super().on_connect()
        self.send({"type": "whoami", "user": self.user, "role": self.access.claims.get("role")})


@pytest.mark.parametrize("where", ["header", "header-lowercase-scheme", "cookie", "query"])
async def test_a_token_is_accepted_from_the_header_the_cookie_or_the_query(where: str) -> None:
    token = make_token(sub=f"user-{where}", subscribe=["chat.*"], publish=["chat.*"], role="r")
    url, headers = None, None
    async with running_hub(AUTH, consumer=Whoami) as server:
        url = server.ws
        if where == "header":
            headers = _bearer(token)
        elif where == "header-lowercase-scheme":
            headers = {"Authorization": f"bearer {token}"}
        elif where == "cookie":
            headers = {"Cookie": f"theme=dark; fanout_token={token}"}
        else:
            url += f"?x=1&token={token}"
        async with await connect_user(url, additional_headers=headers) as ws:
            assert await recv_json(ws) == {"type": "whoami", "user": f"user-{where}", "role": "r"}
            await subscribe(ws, "chat.a")
            message, ack = await _publish_ack(ws, "chat.a", "p1"), await recv_json(ws)
            assert message["type"] == "message"
            assert ack["type"] == "ack"
        assert server.hub.counters["refused_token"] == 0


async def test_the_authorization_header_wins_over_the_cookie_and_the_query() -> None:
    good = make_token()
    async with running_hub(AUTH) as server:
        status, reason = await _refused(
            server.ws + f"?token={good}",
            additional_headers={
                **_bearer(make_token(key=OTHER_SECRET)),
                "Cookie": f"fanout_token={good}",
            },
        )
        assert (status, reason) == (403, "token signature does not verify")


# -- Origin ----------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_with_403_before_accept_even_with_a_good_token() -> None:
    async with running_hub(AUTH) as server:
        status, reason = await _refused(
            server.ws,
            origin=Origin("https://evil.example.com"),
            additional_headers=_bearer(make_token()),
        )
        assert status == 403
        assert reason == "Origin https://evil.example.com is not allowed"
        assert server.hub.counters["refused_origin"] == 1
        assert server.hub.counters["connections_total"] == 0
        assert len(server.hub.connections) == 0
        assert await metric(server.url, 'refusals_total{reason="origin"}') == 1
        assert await metric(server.url, "connections") == 0


async def test_an_anonymous_hub_refuses_a_foreign_origin_too() -> None:
    async with running_hub() as server:
        status, reason = await _refused(
            server.ws + "/lobby", v1=False, origin=Origin("http://127.0.0.1:1")
        )
        assert (status, reason) == (403, "Origin http://127.0.0.1:1 is not allowed")
        status, reason = await _refused(server.ws, origin=Origin("null"))
        assert (status, reason) == (403, "Origin 'null' is not an origin")
        assert server.hub.counters["refused_origin"] == 2


async def test_the_hubs_own_origin_is_accepted() -> None:
    async with running_hub(AUTH) as server:
        origin = Origin(server.url)  # http://127.0.0.1:PORT, as the chat page at / sends it
        async with await connect_user(
            server.ws, origin=origin, additional_headers=_bearer(make_token())
        ) as ws:
            await subscribe(ws, "lobby")
        assert server.hub.counters["refused_origin"] == 0


async def test_an_allowlisted_origin_is_accepted_and_others_still_refused() -> None:
    settings = AUTH.replace(allowed_origins="https://app.example.com")
    async with running_hub(settings) as server:
        headers = _bearer(make_token())
        async with await connect_user(
            server.ws, origin=Origin("https://app.example.com"), additional_headers=headers
        ) as ws:
            await subscribe(ws, "lobby")
        status, _ = await _refused(
            server.ws, origin=Origin("https://app.example.com:8443"), additional_headers=headers
        )
        assert status == 403
        assert server.hub.counters["refused_origin"] == 1


# -- room grants -----------------------------------------------------------------------


async def test_a_plain_client_is_refused_with_403_on_a_room_its_token_does_not_grant() -> None:
    token = make_token(subscribe=["chat.*"], publish=["chat.*"])
    async with running_hub(AUTH) as server:
        status, reason = await _refused(
            server.ws + "/news", v1=False, additional_headers=_bearer(token)
        )
        assert (status, reason) == (403, "your token does not grant room 'news'")
        # /ws is the room 'lobby', which this token does not grant either.
        status, _ = await _refused(server.ws, v1=False, additional_headers=_bearer(token))
        assert status == 403
        assert server.hub.counters["refused_room"] == 2
        assert server.hub.counters["connections_total"] == 0
        async with await connect_plain(
            server.ws + "/chat.x", additional_headers=_bearer(token)
        ) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"


async def test_a_v1_subscribe_to_a_room_not_granted_is_forbidden_and_the_connection_goes_on() -> (
    None
):
    token = make_token(subscribe=["chat.*"], publish=["chat.*"])
    async with (
        running_hub(AUTH) as server,
        await connect_user(server.ws, additional_headers=_bearer(token)) as ws,
    ):
        await send_json(ws, {"type": "subscribe", "room": "news"})
        assert await recv_json(ws) == {
            "type": "error",
            "code": "forbidden",
            "reason": "your token does not grant subscribe to 'news'",
        }
        await subscribe(ws, "chat.x")
        assert (await _publish_ack(ws, "chat.x", "p1"))["type"] == "message"
        assert (await recv_json(ws))["type"] == "ack"
        # The refused subscribe left no membership behind.
        async with await connect_user(
            server.ws, additional_headers=_bearer(make_token(subscribe=["*"], publish=["*"]))
        ) as other:
            assert (await _publish_ack(other, "news", "n1"))["type"] == "ack"
        await assert_silent(ws)


async def test_a_publish_to_a_subscribe_only_room_is_forbidden_with_the_publish_id() -> None:
    token = make_token(subscribe=["news", "chat"], publish=["chat"])
    async with (
        running_hub(AUTH) as server,
        await connect_user(server.ws, additional_headers=_bearer(token)) as ws,
    ):
        sub = await subscribe(ws, "news")
        assert await _publish_ack(ws, "news", "p1") == {
            "type": "error",
            "id": "p1",
            "code": "forbidden",
            "reason": "your token does not grant publish to 'news'",
        }
        # Nothing was stored: the room is still at its first offset.
        await assert_silent(ws)
        assert (await _publish_ack(ws, "chat", "p2"))["type"] == "ack"
        await send_json(ws, {"type": "unsubscribe", "room": "news"})
        again = await subscribe(ws, "news")
        assert again["offset"] == sub["offset"] == 0


async def test_a_plain_client_with_a_subscribe_only_grant_is_closed_1008_when_it_sends() -> None:
    reader_token = make_token(sub="reader", subscribe=["news"], publish=[])
    async with (
        running_hub(AUTH) as server,
        await connect_user(server.ws, additional_headers=_bearer(make_token())) as watcher,
    ):
        await subscribe(watcher, "news")
        async with await connect_plain(
            server.ws + "/news", additional_headers=_bearer(reader_token)
        ) as reader:
            await reader.send("not allowed")
            received = []
            async with asyncio.timeout(10):
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        received.append(await reader.recv())
            assert received == []  # not even its own frame: it was never published
            close = reader.protocol.close_rcvd
            assert close is not None
            assert (close.code, close.reason) == (1008, "not allowed to publish to 'news'")
        await assert_silent(watcher)


# -- application hooks on top of grants ------------------------------------------------


class Announcements(Consumer):
    """Only admins publish to 'announcements'; 'private.<user>' is for <user> alone."""

    asked: ClassVar[list[tuple[str, str | None, str]]] = []

    async def on_subscribe(self, room: str) -> None:
        self.asked.append(("subscribe", self.user, room))
        if room.startswith("private.") and room != f"private.{self.user}":
            self.deny(f"{room} is not yours")

    async def on_publish(self, room: str, data: Payload) -> Payload:
        self.asked.append(("publish", self.user, room))
        if room == "announcements" and self.access.claims.get("role") != "admin":
            self.deny("only admins publish to announcements")
        return data


async def test_consumer_hooks_deny_on_top_of_the_grants_knowing_who_asks() -> None:
    Announcements.asked = []
    publish = ["announcements", "private.*"]
    alice = make_token(sub="alice", role="member", subscribe=["*"], publish=publish)
    root = make_token(sub="root", role="admin", subscribe=["*"], publish=publish)
    async with (
        running_hub(AUTH, consumer=Announcements) as server,
        await connect_user(server.ws, additional_headers=_bearer(alice)) as a,
        await connect_user(server.ws, additional_headers=_bearer(root)) as r,
    ):
        assert await _publish_ack(a, "announcements", "a1") == {
            "type": "error",
            "id": "a1",
            "code": "forbidden",
            "reason": "only admins publish to announcements",
        }
        assert (await _publish_ack(r, "announcements", "r1"))["type"] == "ack"
        await subscribe(a, "private.alice")
        await send_json(a, {"type": "subscribe", "room": "private.root"})
        assert await recv_json(a) == {
            "type": "error",
            "code": "forbidden",
            "reason": "private.root is not yours",
        }
        # The grants are checked first: the hook is not asked about a room not granted.
        assert (await _publish_ack(r, "news", "r2"))["code"] == "forbidden"
        assert ("publish", "root", "news") not in Announcements.asked
        assert Announcements.asked == [
            ("publish", "alice", "announcements"),
            ("publish", "root", "announcements"),
            ("subscribe", "alice", "private.alice"),
            ("subscribe", "alice", "private.root"),
        ]


# -- without auth ----------------------------------------------------------------------


async def test_a_hub_without_auth_serves_anonymous_clients_as_before() -> None:
    async with running_hub() as server:
        assert server.app.state.hub is server.hub
        async with (
            await connect_v1(server.ws) as ws,
            await connect_plain(server.ws + "/any.room") as plain,
        ):
            await subscribe(ws, "any.room")
            assert (await _publish_ack(ws, "any.room", "p1"))["data"] == "p1"
            assert (await recv_json(ws))["type"] == "ack"
            assert await plain.recv() == "p1"
            await plain.send("from plain")
            assert (await recv_json(ws))["data"] == "from plain"
        # A token sent to a hub without auth is ignored, whatever it is.
        async with await connect_v1(server.ws + "?token=garbage") as ws:
            await subscribe(ws, "x")
        assert sum(v for k, v in server.hub.counters.items() if k.startswith("refused_")) == 0


async def test_a_refused_handshake_leaves_the_server_serving_others() -> None:
    async with running_hub(AUTH) as server:
        for _ in range(20):
            await _refused(server.ws)
        async with await connect_user(server.ws, additional_headers=_bearer(make_token())) as ws:
            await subscribe(ws, "lobby")
        async with await connect_plain(
            server.ws + "/lobby", additional_headers=_bearer(make_token())
        ) as plain:
            await plain.send("still here")
            assert await plain.recv() == "still here"
        assert server.hub.counters["refused_token"] == 20


def _port(server: RunningHub) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def _status_for_host(server: RunningHub, host: str) -> int:
    """The HTTP status of a handshake naming ``host`` in Host and Origin, as a page on a
    domain that re-resolved to 127.0.0.1 would (DNS rebinding)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
    try:
        writer.write(
            (
                "GET /ws HTTP/1.1\r\n"
                f"Host: {host}\r\nOrigin: http://{host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_an_anonymous_hub_on_loopback_refuses_a_rebound_domain_name_with_403() -> None:
    async with running_hub(Settings()) as server:
        assert await _status_for_host(server, f"rebind.example:{_port(server)}") == 403
        assert await _status_for_host(server, f"localhost:{_port(server)}") == 101
        assert await _status_for_host(server, f"127.0.0.1:{_port(server)}") == 101


async def test_a_hub_with_auth_or_allow_anonymous_answers_to_any_host_name() -> None:
    async with running_hub(Settings(allow_anonymous=True)) as server:
        assert await _status_for_host(server, f"rebind.example:{_port(server)}") == 101
    async with running_hub(Settings(auth_secret=SECRET)) as server:
        # Past the Host check: refused for want of a token, not for the name.
        assert await _status_for_host(server, f"rebind.example:{_port(server)}") == 403
        assert server.hub.counters["refused_token"] == 1
        assert server.hub.counters["refused_origin"] == 0
