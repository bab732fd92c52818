"""Every broker runs the same contract suite: parametrise ``broker_factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from fanout.brokers.base import Broker
from fanout.brokers.memory import MemoryBroker, MemoryBrokerLimits
from fanout.protocol.envelope import Message


@dataclass
class Recorder:
    """A BrokerListener that keeps what it was given."""

    messages: list[Message] = field(default_factory=list)
    resets: list[tuple[str, str, int]] = field(default_factory=list)

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_reset(self, room: str, epoch: str, latest: int) -> None:
        self.resets.append((room, epoch, latest))

    def offsets(self, room: str) -> list[int]:
        return [m.offset for m in self.messages if m.room == room]


BrokerFactory = Callable[[int, int], Broker]


def _memory(history_max_messages: int, history_max_bytes: int) -> Broker:
    return MemoryBroker(
        MemoryBrokerLimits(
            history_max_messages=history_max_messages, history_max_bytes=history_max_bytes
        )
    )


@pytest.fixture(params=["memory"])
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    factories: dict[str, BrokerFactory] = {"memory": _memory}
    return factories[request.param]


@pytest.fixture
async def started(broker_factory: BrokerFactory) -> AsyncIterator[tuple[Broker, Recorder]]:
    broker = broker_factory(5, 1024 * 1024)
    recorder = Recorder()
    await broker.start(recorder)
    try:
        yield broker, recorder
    finally:
        await broker.close()
