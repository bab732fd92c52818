"""The client on a hub with token auth: the token at the handshake, refusals that end
the client at once with the hub's reason, and ``refresh_token`` on a live connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import jwt
import pytest

from fanout.asgi.endpoint import ConsumerFactory
from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.client import (
    Client,
    ClientState,
    Connected,
    ConnectFailed,
    Disconnected,
    Refused,
    Rejected,
    wire,
)
from fanout.client.wire import Authorized, MalformedFrame
from fanout.core.connection import Connection
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.hub import Hub
from fanout.protocol.codes import CloseCode
from fanout.settings import Settings
from tests.client.support import TcpProxy, messages, next_of
from tests.support.servers import RunningHub, running_hub

SECRET = "client-auth-test-secret-0123456789abcdef"
OTHER_SECRET = "some-other-secret-0123456789abcdefghijk"


def client(url: str, tok: str | None = None, headers: dict[str, str] | None = None) -> Client:
    """A client that retries fast (20 ms to 100 ms), so that a retry loop would show."""
    return Client(url, token=tok, headers=headers, backoff_initial_s=0.02, backoff_max_s=0.1)


def token(
    ttl_s: float = 60,
    *,
    sub: str = "alice",
    rooms: tuple[str, ...] = ("chat.*",),
    secret: str = SECRET,
    now: float | None = None,
) -> str:
    return mint_token(
        secret.encode(), subject=sub, grants=RoomGrants.both(rooms), ttl_s=ttl_s, now=now
    )


def expiry(tok: str) -> float:
    exp: float = jwt.decode(tok, options={"verify_signature": False})["exp"]
    return exp


@pytest.fixture
async def hub() -> AsyncIterator[tuple[RunningHub, list[dict[str, str]]]]:
    """A hub with auth; the list gets each accepted handshake's headers."""
    seen: list[dict[str, str]] = []

    def recording(hub: Hub, conn: Connection, info: ConnectionInfo) -> Consumer:
        seen.append(dict(info.headers))
        return Consumer(hub, conn, info)

    factory: ConsumerFactory = recording
    async with running_hub(Settings(auth_secret=SECRET), consumer=factory) as server:
        yield server, seen


def bearers(seen: list[dict[str, str]]) -> list[str | None]:
    return [headers.get("authorization") for headers in seen]


async def refresh(c: Client, tok: str) -> None:
    """``refresh_token``, bounded: a refresh never answered fails the test in seconds."""
    await asyncio.wait_for(c.refresh_token(tok), 5)


async def connected(c: Client, count: int) -> None:
    """Wait for the client's ``count``-th connection."""
    while (await next_of(c, Connected)).count < count:
        pass


async def until_past(deadline: float) -> None:
    """Sleep until the wall clock (which token expiry uses) is past ``deadline``."""
    while time.time() <= deadline:
        await asyncio.sleep(max(0.01, deadline - time.time() + 0.05))


async def test_a_client_with_a_token_connects_publishes_and_receives_with_its_headers(
    hub: tuple[RunningHub, list[dict[str, str]]],
) -> None:
    server, seen = hub
    tok = token()
    async with Client(server.ws, token=tok, headers={"X-App": "demo"}) as alice:
        await alice.subscribe("chat.a")
        ack = await alice.publish("chat.a", {"text": "hi"})
        [message] = await messages(alice, 1)
        assert (message.offset, message.data) == (ack.offset, {"text": "hi"})
    assert bearers(seen) == [f"Bearer {tok}"]
    assert seen[0]["x-app"] == "demo"


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: token(secret=OTHER_SECRET), "token signature does not verify"),
        (lambda: token(ttl_s=60, now=time.time() - 600), "token expired"),
        (lambda: "not.a.jwt", "malformed token: Invalid header padding"),
    ],
    ids=["wrong-key", "expired", "garbage"],
)
async def test_a_bad_token_fails_at_once_with_refused_naming_the_reason_and_no_retry(
    hub: tuple[RunningHub, list[dict[str, str]]],
    make_token: Callable[[], str],
    reason: str,
) -> None:
    server, seen = hub
    async with client(server.ws, make_token()) as refused:
        failed = await next_of(refused, ConnectFailed)
        assert failed.retry_in is None
        assert reason in failed.error
        with pytest.raises(Refused) as info:
            await refused.subscribe("chat.a")
        assert info.value.status == 403
        assert info.value.reason == reason
        assert str(info.value) == f"the hub answered the handshake with HTTP 403: {reason}"
        assert refused.state is ClientState.FAILED
        # With 20 ms backoff a retrying client would have come back many times by now.
        await asyncio.sleep(0.3)
    assert server.hub.counters["refused_token"] == 1
    assert seen == []


async def test_a_foreign_origin_is_refused_with_the_hubs_reason() -> None:
    async with (
        running_hub() as server,
        client(server.ws, headers={"Origin": "http://evil.example"}) as refused,
    ):
        with pytest.raises(Refused) as info:
            await refused.publish("lobby", 1)
    assert info.value.reason == "Origin http://evil.example is not allowed"
    assert server.hub.counters["refused_origin"] == 1


async def test_a_refreshed_token_keeps_the_connection_past_the_first_expiry_and_reconnects_use_it(
    hub: tuple[RunningHub, list[dict[str, str]]],
) -> None:
    server, seen = hub
    short = token(ttl_s=2, now=time.time())
    fresh = token(ttl_s=120)
    async with (
        TcpProxy(int(server.url.rsplit(":", 1)[1])).running() as proxy,
        client(proxy.ws, short) as refreshed,
        client(server.ws, short) as control,
    ):
        await refreshed.subscribe("chat.r")
        await control.subscribe("chat.r")
        await refresh(refreshed, fresh)
        await until_past(expiry(short) + 0.5)

        # Without a refresh, the hub closes at the token's expiry, for good.
        closed = await next_of(control, Disconnected)
        assert (closed.code, closed.reason, closed.retry_in) == (
            CloseCode.POLICY,
            "token expired",
            None,
        )
        with pytest.raises(Refused) as info:
            await control.publish("chat.r", "late")
        assert str(info.value) == "the hub closed the connection with 1008: token expired"

        # The refreshed connection is the same one, still working.
        ack = await refreshed.publish("chat.r", "after the first expiry")
        [message] = await messages(refreshed, 1)
        assert message.offset == ack.offset
        assert refreshed.stats.connections == 1

        # A reconnect now, after the first token expired, works only with the new one.
        proxy.accepting = False
        proxy.cut()
        await next_of(refreshed, ConnectFailed)
        proxy.accepting = True
        await connected(refreshed, 2)
        await refreshed.publish("chat.r", "after the reconnect")
        [message] = await messages(refreshed, 1)
        assert message.data == "after the reconnect"
    # The two clients' first handshakes (in either order), then the reconnect.
    assert bearers(seen) == [f"Bearer {short}"] * 2 + [f"Bearer {fresh}"]


async def test_a_refresh_asked_while_disconnected_is_carried_by_the_next_handshake(
    hub: tuple[RunningHub, list[dict[str, str]]],
) -> None:
    server, seen = hub
    first, second = token(), token(ttl_s=90)
    async with (
        TcpProxy(int(server.url.rsplit(":", 1)[1])).running() as proxy,
        client(proxy.ws, first) as refreshed,
    ):
        await refreshed.subscribe("chat.d")
        proxy.accepting = False
        proxy.cut()
        await next_of(refreshed, ConnectFailed)
        asking = asyncio.create_task(refreshed.refresh_token(second))
        await asyncio.sleep(0.2)
        assert not asking.done()
        proxy.accepting = True
        await asyncio.wait_for(asking, 5)
        await refreshed.publish("chat.d", "x")
        assert refreshed.stats.connections == 2
    assert bearers(seen) == [f"Bearer {first}", f"Bearer {second}"]


async def test_a_refresh_with_a_bad_token_raises_and_the_old_token_stays(
    hub: tuple[RunningHub, list[dict[str, str]]],
) -> None:
    server, seen = hub
    tok = token()
    async with client(server.ws, tok) as refreshed:
        await refreshed.subscribe("chat.b")
        with pytest.raises(Rejected) as info:
            await refresh(refreshed, token(secret=OTHER_SECRET))
        assert (info.value.code, info.value.reason) == (
            "unauthorized",
            "token signature does not verify",
        )
        with pytest.raises(Rejected) as info:
            await refresh(refreshed, token(sub="mallory"))
        assert info.value.code == "forbidden"
        with pytest.raises(Rejected) as info:
            await refresh(refreshed, token(rooms=("news",)))
        assert info.value.code == "forbidden"
        assert "chat.b" in info.value.reason
        with pytest.raises(ValueError, match="printable"):
            await refresh(refreshed, "")

        # The connection goes on, and the next one still uses the token that worked.
        await refreshed.publish("chat.b", 1)
        [conn] = list(server.hub.connections)
        conn.close(CloseCode.GOING_AWAY, "the test")
        await connected(refreshed, 2)
        await refreshed.publish("chat.b", 2)
        assert refreshed.state is ClientState.CONNECTED
    assert bearers(seen) == [f"Bearer {tok}", f"Bearer {tok}"]


def test_a_token_and_an_authorization_header_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Client("ws://127.0.0.1:1/ws", token="a.b.c", headers={"authorization": "Bearer x"})
    with pytest.raises(ValueError, match="printable"):
        Client("ws://127.0.0.1:1/ws", token="a b\r\nX-Evil: 1")


def test_the_authorized_frame_is_decoded_and_checked() -> None:
    raw = b'{"type":"authorized","sub":"alice","exp":1767225600,"id":"auth-1"}'
    assert wire.decode(raw.decode()) == Authorized("alice", 1767225600.0, "auth-1")
    assert wire.decode('{"type":"authorized","sub":null,"exp":null}') == Authorized(
        None, None, None
    )
    for bad in (
        '{"type":"authorized","sub":5,"exp":1}',
        '{"type":"authorized","sub":"a","exp":"soon"}',
        '{"type":"authorized","sub":"a","exp":true}',
        '{"type":"authorized","sub":"a","exp":1,"id":7}',
    ):
        with pytest.raises(MalformedFrame):
            wire.decode(bad)
