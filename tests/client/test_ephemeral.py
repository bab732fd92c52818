"""Ephemeral publishes between real clients on a real hub: delivered to the room's
subscribers of the moment as their own event, taking no offset, never replayed, and
never sent again by a client that could not send them."""

from __future__ import annotations

import asyncio

import pytest

from fanout.client import (
    Client,
    ClientState,
    Dropped,
    Ephemeral,
    EphemeralAck,
    Message,
    Rejected,
)
from fanout.settings import Settings
from tests.client.support import (
    WAIT_S,
    TcpProxy,
    assert_no_more_messages,
    next_of,
    port_of,
)
from tests.support.servers import running_hub


def fast(url: str) -> Client:
    return Client(url, backoff_initial_s=0.02, backoff_max_s=0.1)


async def test_an_ephemeral_publish_reaches_the_subscribers_without_taking_an_offset() -> None:
    async with running_hub() as hub, fast(hub.ws) as writer, fast(hub.ws) as reader:
        subscribed = await reader.subscribe("doc")
        first = await writer.publish("doc", "stored one")
        ack = await writer.publish("doc", {"typing": "alice"}, ephemeral=True, id="t-1")
        assert ack == EphemeralAck("t-1", "doc")
        assert await writer.publish("doc", b"\x00\xff", ephemeral=True) is not None
        second = await writer.publish("doc", "stored two")
        assert (first.offset, second.offset) == (1, 2)  # the ephemeral ones took none

        assert await delivered(reader, 4) == [
            Message("doc", subscribed.epoch, 1, "stored one"),
            Ephemeral("doc", {"typing": "alice"}),
            Ephemeral("doc", b"\x00\xff"),
            Message("doc", subscribed.epoch, 2, "stored two"),
        ]
        assert reader.position("doc") == (subscribed.epoch, 2)
        assert (reader.stats.duplicates_dropped, reader.stats.holes_reported) == (0, 0)
        history = await reader.history("doc")
        assert [m.data for m in history.messages] == ["stored one", "stored two"]


async def test_a_client_that_was_away_resumes_the_stored_messages_but_no_ephemeral_one() -> None:
    async with (
        running_hub() as hub,
        TcpProxy(port_of(hub.url)).running() as proxy,
        fast(proxy.ws) as away,
        fast(hub.ws) as writer,
    ):
        await away.subscribe("doc")
        proxy.accepting = False
        proxy.cut()
        await writer.publish("doc", "typing...", ephemeral=True)
        await writer.publish("doc", "while away")
        proxy.accepting = True
        assert (await next_of(away, Message)).data == "while away"
        await writer.publish("doc", "typing again", ephemeral=True)
        assert await next_of(away, Ephemeral) == Ephemeral("doc", "typing again")
        assert away.stats.connections == 2


async def test_an_ephemeral_publish_without_a_connection_is_dropped_and_never_sent_later() -> None:
    async with (
        running_hub() as hub,
        TcpProxy(port_of(hub.url)).running() as proxy,
        fast(hub.ws) as reader,
    ):
        subscribed = await reader.subscribe("doc")
        proxy.accepting = False
        async with fast(proxy.ws) as writer:
            assert writer.state is not ClientState.CONNECTED
            with pytest.raises(Dropped, match="no open connection") as dropped:
                await writer.publish("doc", "typing", ephemeral=True, id="lost")
            assert (dropped.value.room, dropped.value.id) == ("doc", "lost")
            proxy.accepting = True
            await writer.subscribe("elsewhere")  # connected now
            await writer.publish("doc", "stored")
        # The stored message comes next: the dropped one was not sent on reconnecting.
        assert await delivered(reader, 1) == [Message("doc", subscribed.epoch, 1, "stored")]
        await assert_no_more_messages(reader)


async def test_an_ephemeral_publish_the_hub_refuses_is_rejected_and_the_client_goes_on() -> None:
    settings = Settings(room_options="news*:client_publish=off")
    async with running_hub(settings) as hub, fast(hub.ws) as client:
        await client.subscribe("news")
        with pytest.raises(Rejected) as refused:
            await client.publish("news", "typing", ephemeral=True, id="t-1")
        assert (refused.value.code, refused.value.room, refused.value.id) == (
            "forbidden",
            "news",
            "t-1",
        )
        await client.publish("chat", "typing", ephemeral=True)
        assert (await client.publish("chat", "still fine")).offset == 1
        assert client.stats.pending_publishes == 0


async def test_an_ephemeral_publish_to_a_server_room_is_refused_locally() -> None:
    async with running_hub() as hub, fast(hub.ws) as client:
        with pytest.raises(Rejected, match="managed by the server"):
            await client.publish("@alice", "hi", ephemeral=True)


async def delivered(client: Client, count: int) -> list[Message | Ephemeral]:
    """The next ``count`` messages, stored or ephemeral, skipping connection events."""
    got: list[Message | Ephemeral] = []
    async with asyncio.timeout(WAIT_S):
        while len(got) < count:
            event = await client.next_event()
            if isinstance(event, Message | Ephemeral):
                got.append(event)
    return got
