"""The Redis broker keeps every attached room in sequence through Redis' own faults.

Each test drives real ``RedisBroker`` instances (one per simulated node) against a real
``redis-server`` and records, in order, every call the broker makes on its listener:
what the hub on that node would hand to its clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fanout.brokers.redis import RedisBroker, RedisBrokerOptions
from fanout.core.broker import Published
from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Message, Payload
from fanout.protocol.errors import BrokerError
from tests.brokers.conftest import redis_options
from tests.client.support import TcpProxy
from tests.support.redis import RedisServer

# Small fault-detection times, so that the tests see faults quickly.
TIMEOUT_S = 0.5
HEALTH_INTERVAL_S = 0.25
RECONNECT_MAX_S = 0.5
# Scheduling slack on top of a bound the broker promises.
SLACK_S = 0.75


@dataclass(frozen=True, slots=True)
class Got:
    """A message handed to the listener (comparable, unlike ``Message``)."""

    room: str
    epoch: str
    offset: int
    data: Payload


@dataclass(frozen=True, slots=True)
class Reset:
    room: str
    epoch: str
    latest: int


@dataclass(frozen=True, slots=True)
class Lost:
    room: str
    epoch: str
    first: int
    last: int


Event = Got | Reset | Lost


class Listener:
    """A BrokerListener that keeps every call, in the order the broker made them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_message(self, message: Message) -> None:
        self.events.append(Got(message.room, message.epoch, message.offset, message.data))

    def on_reset(self, room: str, epoch: str, latest: int) -> None:
        self.events.append(Reset(room, epoch, latest))

    def on_gap(self, room: str, epoch: str, first: int, last: int) -> None:
        self.events.append(Lost(room, epoch, first, last))

    def on_control(self, event: ControlEvent) -> None:
        """Control events are not what these tests look at."""

    def on_ephemeral(self, room: str, data: object) -> None:
        """Nor ephemeral messages."""

    def of(self, room: str) -> list[Event]:
        return [e for e in self.events if e.room == room]

    def messages(self, room: str) -> list[Got]:
        return [e for e in self.events if isinstance(e, Got) and e.room == room]

    async def until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.005)

    async def until_offset(self, room: str, offset: int, timeout: float = 10.0) -> None:
        await self.until(lambda: any(m.offset == offset for m in self.messages(room)), timeout)


def options(url: str, **overrides: Any) -> RedisBrokerOptions:
    return redis_options(
        url,
        timeout_s=TIMEOUT_S,
        health_interval_s=HEALTH_INTERVAL_S,
        reconnect_max_s=RECONNECT_MAX_S,
        **overrides,
    )


@contextlib.asynccontextmanager
async def node(url: str, **overrides: Any) -> AsyncIterator[tuple[RedisBroker, Listener]]:
    """One started broker (a fanout node) and the listener it streams to."""
    broker = RedisBroker(options(url, **overrides))
    listener = Listener()
    await broker.start(listener)
    try:
        yield broker, listener
    finally:
        await broker.close()


async def publish_until_stored(
    broker: RedisBroker, room: str, data: Payload, msg_id: str, timeout: float = 10.0
) -> Published:
    """Publish, retrying by id on broker errors (what the hub's clients do)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await broker.publish(room, data, msg_id=msg_id)
            except BrokerError:
                await asyncio.sleep(0.05)


async def kill_pubsub_links(redis: RedisServer) -> int:
    """``CLIENT KILL TYPE pubsub``: Redis cuts every subscribed connection; returns how many."""
    reply = await asyncio.to_thread(redis.command, "CLIENT", "KILL", "TYPE", "pubsub")
    assert reply.startswith(b":"), reply
    return int(reply[1:])


async def health_within(broker: RedisBroker, healthy: bool, bound_s: float) -> float:
    """Seconds until ``health()`` says ``healthy``; fails beyond ``bound_s``."""
    started = time.monotonic()
    while True:
        reason = await broker.health()
        if (reason is None) == healthy:
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < bound_s, f"health still {reason!r} after {elapsed:.2f} s"
        await asyncio.sleep(0.01)


async def test_a_pub_sub_link_cut_by_redis_loses_nothing_because_the_node_reads_the_stream(
    redis_server: RedisServer,
) -> None:
    count = 400
    async with (
        node(redis_server.url) as (listening, listener),
        node(redis_server.url) as (
            publishing,
            _,
        ),
    ):
        await listening.attach("r")

        async def publish_all() -> None:
            for i in range(1, count + 1):
                await publishing.publish("r", {"n": i}, msg_id=f"m{i}")
                await asyncio.sleep(0.002)

        publisher = asyncio.create_task(publish_all())
        cuts = 0
        while not publisher.done() and cuts < 5:
            await asyncio.sleep(0.1)
            # 0 while the node is still re-linking after the previous cut.
            cuts += min(await kill_pubsub_links(redis_server), 1)
        await publisher
        await listener.until_offset("r", count)
        await asyncio.sleep(0.2)  # anything late (a duplicate) would show up here

    assert cuts >= 3, "the link must have been cut while messages were flowing"
    events = listener.of("r")
    assert all(isinstance(e, Got) for e in events), [e for e in events if not isinstance(e, Got)]
    assert [(m.offset, m.data) for m in listener.messages("r")] == [
        (i, {"n": i}) for i in range(1, count + 1)
    ]
    assert len({m.epoch for m in listener.messages("r")}) == 1


async def test_messages_trimmed_from_the_stream_during_a_cut_are_reported_as_one_exact_gap(
    redis_server: RedisServer,
) -> None:
    retention = 5
    # The listening node reaches Redis through a proxy that refuses new connections
    # while the link is cut, so that it stays cut while the room moves on.
    async with TcpProxy(redis_server.port).running() as proxy:
        proxied = f"redis://127.0.0.1:{proxy.port}/0"
        async with (
            node(proxied, history_max_messages=retention) as (
                listening,
                listener,
            ),
            node(redis_server.url, history_max_messages=retention) as (publishing, _),
        ):
            await listening.attach("r")
            for i in range(1, 4):
                await publishing.publish("r", i)
            await listener.until_offset("r", 3)

            proxy.accepting = False
            # Both nodes hold a pub/sub link (every node listens for control events);
            # only the listening one cannot get back in while the proxy refuses.
            assert await kill_pubsub_links(redis_server) == 2
            await health_within(listening, healthy=False, bound_s=TIMEOUT_S + SLACK_S)
            for i in range(4, 16):  # 12 messages; the stream keeps the last 5: 11..15
                await publishing.publish("r", i)
            proxy.accepting = True
            await listener.until_offset("r", 15)
            await publishing.publish("r", 16)
            await listener.until_offset("r", 16)
            await asyncio.sleep(0.2)

    [epoch] = {m.epoch for m in listener.messages("r")}
    assert listener.of("r") == [
        *(Got("r", epoch, i, i) for i in range(1, 4)),
        Lost("r", epoch, 4, 10),
        *(Got("r", epoch, i, i) for i in range(11, 17)),
    ]


async def test_a_publish_id_is_known_to_every_node_so_a_retry_elsewhere_is_a_duplicate(
    redis_server: RedisServer,
) -> None:
    async with node(redis_server.url) as (one, listener), node(redis_server.url) as (other, _):
        await one.attach("r")
        first = await one.publish("r", "hello", msg_id="same-id")
        retry = await other.publish("r", "hello", msg_id="same-id")
        assert first.duplicate is False
        assert (retry.epoch, retry.offset, retry.duplicate) == (first.epoch, first.offset, True)

        # Both nodes racing with one id: exactly one stores it.
        raced = await asyncio.gather(
            one.publish("r", "race", msg_id="raced-id"),
            other.publish("r", "race", msg_id="raced-id"),
        )
        assert sorted(p.duplicate for p in raced) == [False, True]
        assert raced[0].offset == raced[1].offset == 2

        await other.publish("r", "last")
        await listener.until_offset("r", 3)
        await asyncio.sleep(0.1)
        assert [(m.offset, m.data) for m in listener.messages("r")] == [
            (1, "hello"),
            (2, "race"),
            (3, "last"),
        ]
        assert (await other.history("r", 0)).latest == 3


async def test_a_restarted_redis_shows_as_a_new_epoch_that_starts_again_at_offset_one(
    redis_server: RedisServer,
) -> None:
    async with (
        node(redis_server.url) as (listening, listener),
        node(redis_server.url) as (
            publishing,
            _,
        ),
    ):
        await listening.attach("r")
        for i in range(1, 4):
            await publishing.publish("r", f"old {i}")
        await listener.until_offset("r", 3)
        [old] = {m.epoch for m in listener.messages("r")}

        await asyncio.to_thread(redis_server.kill)
        await health_within(
            listening, healthy=False, bound_s=HEALTH_INTERVAL_S + TIMEOUT_S + SLACK_S
        )
        await asyncio.to_thread(redis_server.restart)
        for i in range(1, 4):
            await publish_until_stored(publishing, "r", f"new {i}", msg_id=f"new-{i}")
        await listener.until(lambda: len(listener.messages("r")) == 6)
        await asyncio.sleep(0.2)

    events = listener.of("r")
    assert len(events) == 7, events
    reset = events[3]
    assert isinstance(reset, Reset)
    assert reset.epoch != old
    assert events == [
        *(Got("r", old, i, f"old {i}") for i in range(1, 4)),
        Reset("r", reset.epoch, 0),
        *(Got("r", reset.epoch, i, f"new {i}") for i in range(1, 4)),
    ]


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_health_names_the_fault_within_interval_plus_timeout_and_clears_after_recovery(
    redis_server: RedisServer, fault: str
) -> None:
    async with node(redis_server.url) as (broker, _):
        assert await broker.health() is None
        await asyncio.sleep(2 * HEALTH_INTERVAL_S)  # a few pings in: still fine
        assert await broker.health() is None

        if fault == "kill":
            await asyncio.to_thread(redis_server.kill)
        else:
            redis_server.pause()
        detected = await health_within(
            broker, healthy=False, bound_s=HEALTH_INTERVAL_S + TIMEOUT_S + SLACK_S
        )
        reason = await broker.health()
        assert reason is not None
        assert "redis" in reason, reason

        await asyncio.sleep(1.0)  # still reported while the fault lasts
        assert await broker.health() is not None

        if fault == "kill":
            await asyncio.to_thread(redis_server.restart)
        else:
            redis_server.resume()
        recovered = await health_within(
            broker,
            healthy=True,
            bound_s=RECONNECT_MAX_S + HEALTH_INTERVAL_S + TIMEOUT_S + SLACK_S,
        )
        await publish_until_stored(broker, "r", "works again", msg_id="after")
    print(f"{fault}: detected after {detected:.2f} s, healthy again after {recovered:.2f} s")
