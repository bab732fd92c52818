"""The client against a real in-process hub: subscribe, publish, errors."""

from __future__ import annotations

import asyncio

import pytest

from fanout.client import (
    Client,
    ClientClosed,
    ClientError,
    ClientState,
    Connected,
    Message,
    Rejected,
    Subscribed,
    SubscribeFailed,
)
from fanout.core.consumer import Consumer
from fanout.protocol.envelope import Payload
from tests.client.support import assert_no_more_messages, messages, next_of
from tests.support.servers import running_hub


class PrivateRooms(Consumer):
    """Rooms whose name starts with "private" are refused to everyone."""

    async def on_subscribe(self, room: str) -> None:
        if room.startswith("private"):
            self.deny("private room")

    async def on_publish(self, room: str, data: Payload) -> Payload:
        if room.startswith("private"):
            self.deny("private room")
        return data


async def test_a_client_subscribes_and_receives_every_message_in_order() -> None:
    async with (
        running_hub() as server,
        Client(server.ws) as receiver,
        Client(server.ws) as sender,
    ):
        confirmed = await receiver.subscribe("lobby")
        assert confirmed == Subscribed("lobby", confirmed.epoch, 0, recovered=False)
        assert await next_of(receiver, Connected) == Connected(server.ws, 1)
        assert await receiver.next_event(1) == confirmed
        acks = [await sender.publish("lobby", {"n": i}) for i in range(50)]
        assert [a.offset for a in acks] == list(range(1, 51))
        got = await messages(receiver, 50)
        assert [(m.epoch, m.offset, m.data) for m in got] == [
            (confirmed.epoch, i + 1, {"n": i}) for i in range(50)
        ]
        assert receiver.position("lobby") == (confirmed.epoch, 50)
        await assert_no_more_messages(receiver)


async def test_bytes_are_published_as_a_binary_frame_and_received_as_bytes() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        await client.subscribe("img")
        payload = bytes(range(256)) * 1000
        ack = await client.publish("img", payload, id="photo-1")
        assert (ack.id, ack.offset) == ("photo-1", 1)
        [message] = await messages(client, 1)
        assert message.data == payload
        assert isinstance(message.data, bytes)


async def test_subscribing_twice_returns_the_same_confirmation_without_asking_again() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        first = await client.subscribe("r")
        assert await client.subscribe("r") is first


async def test_after_unsubscribing_no_more_messages_of_that_room_arrive() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        await client.subscribe("a")
        await client.subscribe("b")
        await client.publish("a", 1)
        await messages(client, 1)
        await client.unsubscribe("a")
        assert client.position("a") is None
        await client.publish("a", 2)
        await client.publish("b", 3)
        [only] = await messages(client, 1)
        assert (only.room, only.data) == ("b", 3)


async def test_a_bad_room_name_raises_a_clear_error_before_anything_is_sent() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        with pytest.raises(Rejected, match="bad_room") as subscribing:
            await client.subscribe("no spaces allowed")
        assert subscribing.value.code == "bad_room"
        with pytest.raises(Rejected, match="1-128 characters") as publishing:
            await client.publish("x" * 129, "hi")
        assert publishing.value.room == "x" * 129
        assert client.stats.pending_publishes == 0


async def test_a_refused_subscribe_raises_and_is_reported_as_an_event() -> None:
    async with running_hub(consumer=PrivateRooms) as server, Client(server.ws) as client:
        with pytest.raises(Rejected) as info:
            await client.subscribe("private-1")
        assert (info.value.code, info.value.room) == ("forbidden", "private-1")
        failed = await next_of(client, SubscribeFailed)
        assert failed == SubscribeFailed("private-1", "forbidden", "private room")
        assert client.position("private-1") is None
        assert (await client.subscribe("public")).room == "public"


async def test_a_refused_publish_raises_at_once_and_is_not_retried() -> None:
    async with running_hub(consumer=PrivateRooms) as server, Client(server.ws) as client:
        with pytest.raises(Rejected) as info:
            await client.publish("private-1", "secret", id="p1")
        assert (info.value.code, info.value.id) == ("forbidden", "p1")
        assert client.stats.pending_publishes == 0
        assert server.hub.counters["published"] == 0


async def test_data_that_is_not_json_raises_type_error() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        with pytest.raises(TypeError):
            await client.publish("r", {"not": object()})


async def test_a_publish_larger_than_the_limit_is_refused_locally() -> None:
    async with running_hub() as server, Client(server.ws, max_message_bytes=1024) as client:
        with pytest.raises(Rejected, match="exceeds max_message_bytes"):
            await client.publish("r", b"x" * 2000)


async def test_closing_the_client_ends_its_events_and_fails_what_still_waits() -> None:
    async with running_hub() as server:
        client = Client(server.ws)
        await client.start()
        await client.subscribe("r")
        waiting = asyncio.create_task(client.next_event(5))
        await client.close()
        assert isinstance(await waiting, Connected | Subscribed)
        events = [e async for e in client.events()]
        assert all(not isinstance(e, Message) for e in events)
        assert client.state is ClientState.CLOSED
        with pytest.raises(ClientClosed):
            await client.publish("r", 1)
        with pytest.raises(ClientClosed):
            await client.next_event(1)


async def test_using_a_client_before_starting_it_is_a_clear_error() -> None:
    client = Client("ws://127.0.0.1:9/ws")
    with pytest.raises(ClientError, match="not started"):
        await client.publish("r", 1)
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        Client("http://127.0.0.1/ws")


async def test_when_two_subscribes_are_in_flight_a_refusal_is_matched_to_the_right_room() -> None:
    async with running_hub(consumer=PrivateRooms) as server, Client(server.ws) as client:
        await next_of(client, Connected)
        refused, accepted = await asyncio.gather(
            client.subscribe("private-2"), client.subscribe("open"), return_exceptions=True
        )
        assert isinstance(refused, Rejected)
        assert refused.room == "private-2"
        assert isinstance(accepted, Subscribed)
        assert accepted.room == "open"
        assert client.position("open") is not None
        assert client.position("private-2") is None


async def test_a_slow_reader_still_gets_every_message_because_the_buffer_pushes_back() -> None:
    async with (
        running_hub() as server,
        Client(server.ws, max_queued_events=2) as reader,
        Client(server.ws) as sender,
    ):
        await reader.subscribe("r")
        for i in range(1, 101):
            await sender.publish("r", i)
        got = await messages(reader, 100)
        assert [m.offset for m in got] == list(range(1, 101))
        assert reader.stats.connections == 1


async def test_an_epoch_change_under_a_live_subscription_is_reported_not_hidden() -> None:
    async with running_hub() as server, Client(server.ws) as client:
        before = await client.subscribe("r")
        await client.publish("r", 1)
        await messages(client, 1)
        server.hub.on_reset("r", "a-new-epoch", 0)
        reset = await next_of(client, Subscribed)
        assert reset == Subscribed("r", "a-new-epoch", 0, recovered=False)
        assert reset.epoch != before.epoch
        assert client.position("r") == ("a-new-epoch", 0)
