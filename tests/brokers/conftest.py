"""Every broker runs the same contract suite: parametrise ``broker_factory``."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fanout.asgi.wiring import memory_broker_limits, redis_broker_options
from fanout.brokers.memory import MemoryBroker, MemoryBrokerLimits
from fanout.brokers.redis import RedisBroker, RedisBrokerOptions
from fanout.core.broker import Broker
from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Message, Payload
from fanout.settings import Settings
from tests.support.redis import RedisServer


@dataclass
class Recorder:
    """A BrokerListener that keeps what it was given."""

    messages: list[Message] = field(default_factory=list)
    resets: list[tuple[str, str, int]] = field(default_factory=list)

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    gaps: list[tuple[str, str, int, int]] = field(default_factory=list)

    def on_reset(self, room: str, epoch: str, latest: int) -> None:
        self.resets.append((room, epoch, latest))

    def on_gap(self, room: str, epoch: str, first: int, last: int) -> None:
        self.gaps.append((room, epoch, first, last))

    controls: list[ControlEvent] = field(default_factory=list)

    def on_control(self, event: ControlEvent) -> None:
        self.controls.append(event)

    ephemeral: list[tuple[str, Payload]] = field(default_factory=list)

    def on_ephemeral(self, room: str, data: Payload) -> None:
        self.ephemeral.append((room, data))

    def offsets(self, room: str) -> list[int]:
        return [m.offset for m in self.messages if m.room == room]

    async def until(self, room: str, offset: int, timeout: float = 5.0) -> list[int]:
        """The room's offsets once ``offset`` arrived (brokers may deliver asynchronously)."""
        async with asyncio.timeout(timeout):
            while offset not in self.offsets(room):
                await asyncio.sleep(0.005)
        return self.offsets(room)


BrokerFactory = Callable[[int, int], Broker]


def memory_limits(**changes: Any) -> MemoryBrokerLimits:
    """The default limits (``fanout.settings``) with ``changes``."""
    return dataclasses.replace(memory_broker_limits(Settings()), **changes)


def redis_options(url: str, **changes: Any) -> RedisBrokerOptions:
    """The default options (``fanout.settings``) for ``url``, with ``changes``."""
    return dataclasses.replace(redis_broker_options(Settings(broker=url)), **changes)


def _memory(history_max_messages: int, history_max_bytes: int) -> Broker:
    return MemoryBroker(
        memory_limits(
            history_max_messages=history_max_messages, history_max_bytes=history_max_bytes
        )
    )


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the contract suite; each test uses its own key prefix."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_prefixes = itertools.count(1)


@pytest.fixture(params=["memory", "redis"])
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    if request.param == "memory":
        return _memory
    redis: RedisServer = request.getfixturevalue("shared_redis")
    prefix = f"t{next(_prefixes)}"

    def _redis(history_max_messages: int, history_max_bytes: int) -> Broker:
        return RedisBroker(
            redis_options(
                redis.url,
                key_prefix=prefix,
                history_max_messages=history_max_messages,
                history_max_bytes=history_max_bytes,
            )
        )

    return _redis


@pytest.fixture
async def started(broker_factory: BrokerFactory) -> AsyncIterator[tuple[Broker, Recorder]]:
    broker = broker_factory(5, 1024 * 1024)
    recorder = Recorder()
    await broker.start(recorder)
    try:
        yield broker, recorder
    finally:
        await broker.close()
