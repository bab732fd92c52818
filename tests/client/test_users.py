"""The client against a real hub with users: the personal room on every tab of a user,
resumed after a reconnect; server-side unsubscribes; kicks; presence; history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.client import (
    Client,
    ClientState,
    ConnectFailed,
    Disconnected,
    Joined,
    Kicked,
    Left,
    Message,
    Rejected,
    Subscribed,
    Unsubscribed,
)
from fanout.core.control import ControlEvent, ControlKind
from fanout.settings import Settings
from tests.client.support import (
    WAIT_S,
    TcpProxy,
    assert_no_more_messages,
    messages,
    next_of,
    port_of,
)
from tests.support.servers import RunningHub, running_hub

SECRET = "client-users-test-secret-0123456789abcdef"


def token(sub: str, rooms: tuple[str, ...] = ("chat.*",)) -> str:
    return mint_token(SECRET.encode(), subject=sub, grants=RoomGrants.both(rooms), ttl_s=300)


def tab(url: str, sub: str = "alice") -> Client:
    """One browser tab of ``sub``: a client that reconnects within tens of milliseconds."""
    return Client(url, token=token(sub), backoff_initial_s=0.02, backoff_max_s=0.1)


@pytest.fixture
async def hub() -> AsyncIterator[RunningHub]:
    settings = Settings(
        auth_secret=SECRET,
        room_options="chat.live*:join_leave=on;chat.secret*:presence=off",
    )
    async with running_hub(settings) as server:
        yield server


async def to_user(server: RunningHub, user: str, *data: object) -> None:
    for item in data:
        await server.hub.publish_to_user(user, item)


async def test_a_message_to_a_user_reaches_each_of_their_tabs_once_in_order(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as first, tab(hub.ws) as second, tab(hub.ws, "bob") as bob:
        for client in (first, second, bob):
            announced = await next_of(client, Subscribed)
            assert announced.recovered is False
        assert (first.user_room, second.user_room, bob.user_room) == ("@alice", "@alice", "@bob")

        await to_user(hub, "alice", *range(1, 21))
        for client in (first, second):
            got = await messages(client, 20)
            assert [(m.room, m.offset, m.data) for m in got] == [
                ("@alice", i, i) for i in range(1, 21)
            ]
            await assert_no_more_messages(client)
        await assert_no_more_messages(bob)
        assert first.position("@alice") == second.position("@alice")


async def test_a_tab_that_was_away_gets_what_was_sent_to_its_user_meanwhile_once(
    hub: RunningHub,
) -> None:
    async with (
        TcpProxy(port_of(hub.url)).running() as proxy,
        tab(proxy.ws) as away,
        tab(hub.ws) as present,
    ):
        await next_of(away, Subscribed)
        await next_of(present, Subscribed)
        await to_user(hub, "alice", "one", "two")
        assert [m.data for m in await messages(away, 2)] == ["one", "two"]

        proxy.accepting = False
        proxy.cut()
        await next_of(away, Disconnected)
        await next_of(away, ConnectFailed)
        await to_user(hub, "alice", "three", {"n": 4}, b"\x00five")
        proxy.accepting = True

        resumed = await next_of(away, Subscribed)
        epoch = resumed.epoch
        assert resumed == Subscribed("@alice", epoch, 5, recovered=True)
        await to_user(hub, "alice", "six")
        after = await messages(away, 4)
        assert [(m.offset, m.data) for m in after] == [
            (3, "three"),
            (4, {"n": 4}),
            (5, b"\x00five"),
            (6, "six"),
        ]
        await assert_no_more_messages(away)
        assert [m.offset for m in await messages(present, 6)] == [1, 2, 3, 4, 5, 6]
        assert away.stats.connections == 2
        assert away.stats.duplicates_dropped == 0


async def test_no_client_may_subscribe_unsubscribe_or_publish_to_a_personal_room(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice:
        await next_of(alice, Subscribed)
        for attempt in (
            alice.subscribe("@bob"),
            alice.publish("@alice", "to myself"),
            alice.unsubscribe("@alice"),
        ):
            with pytest.raises(Rejected) as info:
                await attempt
            assert info.value.code == "forbidden"
        await to_user(hub, "alice", "still here")
        [message] = await messages(alice, 1)
        assert message.room == "@alice"


async def test_a_room_the_server_unsubscribes_is_forgotten_and_not_resumed(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice, tab(hub.ws, "bob") as bob:
        await alice.subscribe("chat.a")
        await bob.subscribe("chat.a")
        event = ControlEvent(ControlKind.UNSUBSCRIBE, user="alice", room="chat.a", reason="muted")
        await hub.hub.send_control(event)
        assert await next_of(alice, Unsubscribed) == Unsubscribed("chat.a", "muted")
        assert alice.position("chat.a") is None

        await bob.publish("chat.a", "alice no longer hears this")
        [heard] = await messages(bob, 1)
        assert heard.data == "alice no longer hears this"
        await assert_no_more_messages(alice)
        # A reconnect does not bring the room back.
        [conn] = [c for c in hub.hub.connections if c.user == "alice"]
        conn.close(1001, "test: going away")
        assert (await next_of(alice, Subscribed)).room == "@alice"
        await bob.publish("chat.a", "nor this")
        await assert_no_more_messages(alice)


async def test_a_kicked_client_stops_with_the_servers_reason_and_does_not_reconnect(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice, tab(hub.ws, "bob") as bob:
        await alice.subscribe("chat.a")
        await bob.subscribe("chat.a")
        await hub.hub.send_control(ControlEvent(ControlKind.DISCONNECT, user="alice", reason="x"))
        gone = await next_of(alice, Disconnected)
        assert (gone.code, gone.retry_in) == (4003, None)
        assert gone.reason == "x"
        with pytest.raises(Kicked) as info:
            await alice.publish("chat.a", "after the kick")
        assert info.value.reason == "x"
        assert alice.state is ClientState.FAILED
        await asyncio.sleep(0.3)  # a reconnect would come within 100 ms
        assert alice.stats.connections == 1
        assert [c.user for c in hub.hub.connections] == ["bob"]
        assert bob.state is ClientState.CONNECTED


async def test_presence_lists_each_connection_and_counts_users_once(hub: RunningHub) -> None:
    async with tab(hub.ws) as alice1, tab(hub.ws) as alice2, tab(hub.ws, "bob") as bob:
        for client in (alice1, alice2, bob):
            await client.subscribe("chat.a")
        here = await bob.presence("chat.a")
        assert here.room == "chat.a"
        assert sorted(m.user or "" for m in here.members) == ["alice", "alice", "bob"]
        assert len({m.conn for m in here.members}) == 3
        stats = await alice1.presence_stats("chat.a")
        assert (stats.room, stats.connections, stats.users) == ("chat.a", 3, 2)

        await alice2.unsubscribe("chat.a")
        async with asyncio.timeout(WAIT_S):  # the hub may record the leave after it
            while (await bob.presence_stats("chat.a")).connections != 2:
                await asyncio.sleep(0.02)

        with pytest.raises(Rejected) as info:
            await bob.presence("chat.secret")
        assert info.value.code == "forbidden"
        with pytest.raises(Rejected) as info:
            await bob.presence("news")
        assert info.value.code == "forbidden"


async def test_members_joining_and_leaving_a_room_that_opted_in_are_events(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice, tab(hub.ws, "bob") as bob:
        await alice.subscribe("chat.live")
        await bob.subscribe("chat.live")
        joined = await next_of(alice, Joined)
        while joined.member.user != "bob":  # alice may hear of herself first
            joined = await next_of(alice, Joined)
        assert joined.room == "chat.live"
        await bob.unsubscribe("chat.live")
        left = await next_of(alice, Left)
        assert (left.room, left.member.user, left.member.conn) == (
            "chat.live",
            "bob",
            joined.member.conn,
        )
        assert left.member.joined_at == joined.member.joined_at


async def test_history_reads_the_last_messages_or_pages_forward_without_subscribing(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice:
        for data in ("one", {"n": 2}, b"\x00\xffthree", None, "five"):
            await alice.publish("chat.h", data)
        last = await alice.history("chat.h", limit=3)
        assert (last.room, last.latest, last.first_kept) == ("chat.h", 5, 1)
        assert [(m.offset, m.data) for m in last.messages] == [
            (3, b"\x00\xffthree"),
            (4, None),
            (5, "five"),
        ]
        page = await alice.history("chat.h", limit=2, since=1)
        assert [(m.room, m.epoch, m.offset, m.data) for m in page.messages] == [
            ("chat.h", last.epoch, 2, {"n": 2}),
            ("chat.h", last.epoch, 3, b"\x00\xffthree"),
        ]
        assert (await alice.history("chat.h", since=5)).messages == ()
        assert alice.position("chat.h") is None, "history subscribes to nothing"
        with pytest.raises(Rejected) as info:
            await alice.history("news")
        assert info.value.code == "forbidden"
        with pytest.raises(ValueError, match="limit"):
            await alice.history("chat.h", limit=1001)
        await assert_no_more_messages(alice)


async def test_a_message_event_of_the_personal_room_is_an_ordinary_message(
    hub: RunningHub,
) -> None:
    async with tab(hub.ws) as alice:
        announced = await next_of(alice, Subscribed)
        published = await hub.hub.publish_to_user("alice", {"note": "hi"})
        got = await next_of(alice, Message)
        assert got == Message("@alice", announced.epoch, published.offset, {"note": "hi"})
