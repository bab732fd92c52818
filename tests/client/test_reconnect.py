"""Faults within one hub process: cut sockets, lost acks, unanswered and failed publishes."""

from __future__ import annotations

import asyncio

from fanout.client import Ack, Client, ConnectFailed, Disconnected, Message, Subscribed
from fanout.core.broker import Published
from fanout.core.connection import Connection
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.hub import Hub
from fanout.protocol.codes import CloseCode
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import BrokerUnavailable
from tests.client.support import (
    TcpProxy,
    assert_no_more_messages,
    events_until,
    messages,
    next_of,
    port_of,
)
from tests.support.servers import running_hub


def fast_client(url: str, *, publish_timeout_s: float = 10.0) -> Client:
    """A client that reconnects within tens of milliseconds."""
    return Client(
        url, backoff_initial_s=0.02, backoff_max_s=0.1, publish_timeout_s=publish_timeout_s
    )


async def test_a_cut_connection_resumes_and_replays_what_was_published_meanwhile_once() -> None:
    async with running_hub() as server, TcpProxy(port_of(server.url)).running() as proxy:
        async with fast_client(proxy.ws) as client, Client(server.ws) as publisher:
            first = await client.subscribe("r")
            for i in range(1, 6):
                await publisher.publish("r", i)
            before = await messages(client, 5)

            proxy.accepting = False
            proxy.cut()
            cut = await next_of(client, Disconnected)
            assert cut.code == 1006
            assert cut.retry_in is not None
            # The client keeps trying; the proxy refuses until the publishes are in.
            refused = await next_of(client, ConnectFailed)
            for i in range(6, 11):
                await publisher.publish("r", i)
            proxy.accepting = True

            resumed = await next_of(client, Subscribed)
            assert resumed == Subscribed("r", first.epoch, 10, recovered=True)
            await publisher.publish("r", 11)
            after = await messages(client, 6)

        got = before + after
        assert [(m.epoch, m.offset, m.data) for m in got] == [
            (first.epoch, i, i) for i in range(1, 12)
        ]
        assert refused.attempt >= 1
        assert client.stats.duplicates_dropped == 0
        assert client.stats.connections == 2


async def test_a_client_closed_by_the_hub_as_a_slow_consumer_resumes_without_holes() -> None:
    async with running_hub() as server, fast_client(server.ws) as client:
        first = await client.subscribe("r")
        for i in range(1, 4):
            await client.publish("r", i)
        before = await messages(client, 3)
        [conn] = server.hub.connections
        conn.close(CloseCode.SLOW_CONSUMER, "test: pretend the outbox overflowed")
        gone = await next_of(client, Disconnected)
        assert (gone.code, gone.reason) == (4008, "test: pretend the outbox overflowed")
        resumed = await next_of(client, Subscribed)
        assert resumed == Subscribed("r", first.epoch, 3, recovered=True)
        await client.publish("r", 4)
        got = before + await messages(client, 1)
        assert [(m.epoch, m.offset) for m in got] == [(first.epoch, i) for i in range(1, 5)]
        await assert_no_more_messages(client)


async def test_publishes_in_flight_when_the_connection_is_cut_are_each_stored_once() -> None:
    async with running_hub() as server, TcpProxy(port_of(server.url)).running() as proxy:
        async with fast_client(proxy.ws) as client:
            await client.subscribe("r")
            sends = [asyncio.create_task(client.publish("r", i, id=f"m{i}")) for i in range(200)]
            await sends[19]
            proxy.cut()
            acks = await asyncio.wait_for(asyncio.gather(*sends), 10)
            assert sorted(a.offset for a in acks) == list(range(1, 201))
            got = await messages(client, 200)
            assert [m.offset for m in got] == list(range(1, 201))
            assert sorted(m.data for m in got) == list(range(200))
            await assert_no_more_messages(client)
        assert client.stats.connections == 2
        assert server.hub.counters["published"] == 200


async def test_a_subscribe_answered_unavailable_is_retried_until_confirmed() -> None:
    faults = _Faults()
    faults.fail_unavailable = 2
    async with running_hub(consumer=faults) as server, fast_client(server.ws) as client:
        confirmed = await asyncio.wait_for(client.subscribe("r"), 5)
        assert confirmed.room == "r"
        assert faults.subscribe_attempts == 3


class _Faults:
    """A consumer factory whose publishes misbehave in a way the test chooses."""

    def __init__(self) -> None:
        self.attempts = 0
        self.subscribe_attempts = 0
        self.cut_after_storing = 0  # drop the connection after storing, before the ack
        self.fail_unavailable = 0  # answer "unavailable" to publishes and subscribes
        self.hang_after_storing = 0  # store, then never answer
        self.release = asyncio.Event()

    def __call__(self, hub: Hub, conn: Connection, info: ConnectionInfo) -> Consumer:
        return _FaultyConsumer(hub, conn, info, self)


class _FaultyConsumer(Consumer):
    def __init__(self, hub: Hub, conn: Connection, info: ConnectionInfo, faults: _Faults) -> None:
        super().__init__(hub, conn, info)
        self.faults = faults

    async def on_subscribe(self, room: str) -> None:
        self.faults.subscribe_attempts += 1
        if self.faults.fail_unavailable:
            self.faults.fail_unavailable -= 1
            raise BrokerUnavailable("test: broker down")

    async def publish(self, room: str, data: Payload, *, id: str | None = None) -> Published:
        faults = self.faults
        faults.attempts += 1
        if faults.fail_unavailable:
            faults.fail_unavailable -= 1
            raise BrokerUnavailable("test: broker down")
        published = await super().publish(room, data, id=id)
        if faults.cut_after_storing:
            faults.cut_after_storing -= 1
            self.connection.close(CloseCode.GOING_AWAY, "test: lose the ack")
        elif faults.hang_after_storing:
            faults.hang_after_storing -= 1
            await faults.release.wait()
        return published


async def test_a_publish_whose_ack_was_lost_is_retried_by_id_and_stored_once() -> None:
    faults = _Faults()
    faults.cut_after_storing = 1
    async with (
        running_hub(consumer=faults) as server,
        fast_client(server.ws) as client,
        Client(server.ws) as watcher,
    ):
        await client.subscribe("r")
        confirmed = await watcher.subscribe("r")
        ack = await client.publish("r", "only once", id="once-1")
        assert ack == Ack("once-1", "r", confirmed.epoch, 1)
        assert faults.attempts == 2
        assert (await next_of(client, Disconnected)).code == 1001
        assert (await client.publish("r", "next")).offset == 2
        for receiver in (client, watcher):
            got = await messages(receiver, 2)
            assert [(m.offset, m.data) for m in got] == [(1, "only once"), (2, "next")]
            await assert_no_more_messages(receiver)
        assert server.hub.counters["published"] == 2
        assert server.hub.counters["duplicates"] == 1


async def test_a_publish_left_unanswered_is_sent_again_on_a_new_connection() -> None:
    faults = _Faults()
    faults.hang_after_storing = 1
    async with running_hub(consumer=faults) as server:
        try:
            async with fast_client(server.ws, publish_timeout_s=0.3) as client:
                await client.subscribe("r")
                ack = await client.publish("r", "hello", id="slow-1")
                assert (ack.id, ack.offset) == ("slow-1", 1)
                seen = await events_until(client, Disconnected)
                gone = seen[-1]
                assert isinstance(gone, Disconnected)
                assert gone.code == 1006
                assert "no answer to publish 'slow-1'" in gone.reason
                seen += await events_until(client, Subscribed)
                assert seen[-1] == Subscribed("r", ack.epoch, 1, recovered=True)
                delivered = [(e.offset, e.data) for e in seen if isinstance(e, Message)]
                assert delivered == [(1, "hello")]
                await assert_no_more_messages(client)
        finally:
            faults.release.set()
        assert server.hub.counters["published"] == 1


async def test_a_publish_answered_unavailable_is_retried_until_acked() -> None:
    faults = _Faults()
    faults.fail_unavailable = 2
    async with running_hub(consumer=faults) as server, fast_client(server.ws) as client:
        ack = await asyncio.wait_for(client.publish("r", "eventually", id="u-1"), 5)
        assert (ack.id, ack.offset) == ("u-1", 1)
        assert faults.attempts == 3
        assert client.stats.connections == 1, "a broker error is retried on the same connection"
