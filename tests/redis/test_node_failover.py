"""One of two nodes behind a load balancer dies or shuts down mid-stream: its Python
clients reconnect through the balancer to the other node and resume, losing nothing that
was acked and receiving nothing twice."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from fanout.client import (
    Ack,
    Client,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    Message,
    Subscribed,
)
from tests.redis.nodes import backend, metrics, offsets_problem, redis_nodes
from tests.support.balancer import Backend, Balancer
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess

ROOM = "failover"
SUBSCRIBERS = 8
PER_PUBLISHER = 600
STOP_AFTER_ACKS = 300  # the node goes down once this many publishes are acked
PACE_S = 0.001  # between publishes: the stream goes on while clients reconnect
SHUTDOWN_FLUSH_S = 3.0
RUN_TIMEOUT_S = 20.0
# The process exits within its flush time plus this (closing, the broker, the interpreter).
EXIT_SLACK_S = 2.0


@dataclass
class Subscriber:
    client: Client
    node: Backend
    events: list[Event] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for event in self.client.events():
            self.events.append(event)

    @property
    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    def last_offset(self) -> int:
        messages = self.messages
        return messages[-1].offset if messages else 0


def _client(balancer: Balancer) -> Client:
    return Client(balancer.ws_url + "/ws", backoff_initial_s=0.05, backoff_max_s=0.5)


async def _connect(client: Client, balancer: Balancer) -> Backend:
    """Start ``client`` and return the node the balancer gave its connection to."""
    before = len(balancer.chosen)
    await client.start()
    async with asyncio.timeout(5):
        while len(balancer.chosen) == before:
            await asyncio.sleep(0.005)
    return balancer.chosen[before]


async def _publish(client: Client, name: str, acks: list[Ack], progress: asyncio.Event) -> None:
    """A numbered stream with ids, one publish at a time (re-sent by id across a failover)."""
    for n in range(PER_PUBLISHER):
        acks.append(await client.publish(ROOM, {"from": name, "n": n}, id=f"{name}-{n}"))
        await asyncio.sleep(PACE_S)
        if len(acks) >= STOP_AFTER_ACKS // 2:
            progress.set()


def _wait_for_exit(node: HubProcess) -> float:
    """Wait for the node's process to end; when it did (time.monotonic)."""
    node.proc.wait(20)
    return time.monotonic()


async def _run_failover(
    redis: RedisServer, tmp_path: Path, sig: signal.Signals
) -> tuple[list[Subscriber], dict[str, list[Ack]], HubProcess, float]:
    """Two nodes, SUBSCRIBERS subscribers and two publishers (one per node) through the
    balancer; the first publisher's node gets ``sig`` mid-stream. Returns what everyone
    saw, the acks by publisher, the stopped node, and how long it took to exit."""
    args = ["--shutdown-flush-s", str(SHUTDOWN_FLUSH_S)]
    async with redis_nodes(redis, tmp_path, args=args) as nodes, Balancer() as balancer:
        by_backend = {backend(n): n for n in nodes}
        balancer.set_backends(list(by_backend))
        publishers = {"victim": _client(balancer), "survivor": _client(balancer)}
        victim_addr = await _connect(publishers["victim"], balancer)
        survivor_addr = await _connect(publishers["survivor"], balancer)
        assert victim_addr != survivor_addr
        victim, survivor = by_backend[victim_addr], by_backend[survivor_addr]
        subscribers: list[Subscriber] = []
        try:
            for _ in range(SUBSCRIBERS):
                client = _client(balancer)
                subscribers.append(Subscriber(client, await _connect(client, balancer)))
                first = await asyncio.wait_for(client.subscribe(ROOM), 5)
                assert (first.offset, first.recovered) == (0, False)
            on_victim = [s for s in subscribers if s.node == victim_addr]
            assert len(on_victim) == SUBSCRIBERS // 2
            for sub in subscribers:
                sub.reader = asyncio.create_task(sub.read())

            acks: dict[str, list[Ack]] = {name: [] for name in publishers}
            halfway = {name: asyncio.Event() for name in publishers}
            async with asyncio.timeout(RUN_TIMEOUT_S):
                publishing = [
                    asyncio.create_task(_publish(client, name, acks[name], halfway[name]))
                    for name, client in publishers.items()
                ]
                await asyncio.gather(*(e.wait() for e in halfway.values()))
                if sig == signal.SIGTERM:
                    # The balancer drains the node first: new connections go elsewhere.
                    balancer.set_backends([survivor_addr])
                stopped_at = time.monotonic()
                victim.proc.send_signal(sig)
                exited = asyncio.create_task(asyncio.to_thread(_wait_for_exit, victim))
                await asyncio.gather(*publishing)
                last = max(a.offset for a in acks["victim"] + acks["survivor"])
                while any(s.last_offset() < last for s in subscribers):
                    await asyncio.sleep(0.02)
                exit_s = await exited - stopped_at
            # Nothing more arrives (no late duplicate).
            await asyncio.sleep(0.2)
            assert survivor.proc.poll() is None
            # The resumed clients got what they missed while away from the shared stream.
            assert (await metrics(survivor))["fanout_replayed_total"] > 0
            # The victim's publisher moved too, re-sending its unanswered publish by id.
            assert publishers["victim"].stats.connections == 2
            assert publishers["survivor"].stats.connections == 1
        finally:
            for client in [*publishers.values(), *(s.client for s in subscribers)]:
                await client.close()
            for sub in subscribers:
                if sub.reader is not None:
                    await asyncio.wait_for(sub.reader, 5)
        return subscribers, acks, victim, exit_s


def _where(i: int, sub: Subscriber, victim: HubProcess) -> str:
    side = "stopped" if sub.node == backend(victim) else "surviving"
    return f"subscriber {i} (first connected to the {side} node)"


def _check_everything_acked_arrived_once_in_order(
    subscribers: list[Subscriber], acks: dict[str, list[Ack]], victim: HubProcess
) -> None:
    all_acks = acks["victim"] + acks["survivor"]
    total = 2 * PER_PUBLISHER
    (epoch,) = {a.epoch for a in all_acks}
    # Each publish acked once: the offsets are 1..total, none twice (a re-sent publish
    # was answered with its original offset, not stored again).
    assert sorted(a.offset for a in all_acks) == list(range(1, total + 1))
    data_at: dict[int, dict[str, object]] = {}
    for name, answers in acks.items():
        assert [a.id for a in answers] == [f"{name}-{n}" for n in range(PER_PUBLISHER)]
        offsets = [a.offset for a in answers]
        assert offsets == sorted(offsets), f"{name}: stored out of order"
        data_at.update({a.offset: {"from": name, "n": n} for n, a in enumerate(answers)})
    expected = [data_at[offset] for offset in range(1, total + 1)]

    for i, sub in enumerate(subscribers):
        where = _where(i, sub, victim)
        messages = sub.messages
        got = [m.offset for m in messages]
        assert got == list(range(1, total + 1)), f"{where}: {offsets_problem(got, total)}"
        assert [m.data for m in messages] == expected, where
        assert {m.epoch for m in messages} == {epoch}, where
        kinds = Message | Subscribed | Connected | Disconnected | ConnectFailed
        stray = [e for e in sub.events if not isinstance(e, kinds)]
        assert stray == [], f"{where}: {stray}"
        # The hub itself sent nothing twice and skipped nothing (the client would hide it).
        stats = sub.client.stats
        assert (stats.duplicates_dropped, stats.holes_reported) == (0, 0), f"{where}: {stats}"


def _check_who_reconnected(
    subscribers: list[Subscriber], victim: HubProcess, close_code: int
) -> None:
    for i, sub in enumerate(subscribers):
        where = _where(i, sub, victim)
        connections = [e for e in sub.events if isinstance(e, Connected)]
        closes = [e.code for e in sub.events if isinstance(e, Disconnected)]
        confirmations = [e for e in sub.events if isinstance(e, Subscribed)]
        assert (confirmations[0].offset, confirmations[0].recovered) == (0, False), where
        if sub.node == backend(victim):
            # Closed once, connected again once (to the other node), resumed its history.
            assert closes == [close_code], f"{where}: {sub.events[:4]}"
            assert len(connections) == 2, f"{where}: {connections}"
            assert len(confirmations) == 2, f"{where}: {confirmations}"
            resumed = confirmations[1]
            assert (resumed.epoch, resumed.recovered) == (confirmations[0].epoch, True), where
        else:
            assert (closes, len(connections), len(confirmations)) == ([], 1, 1), where


async def test_clients_of_a_killed_node_resume_on_the_other_without_loss_or_duplicates(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    subscribers, acks, victim, _ = await _run_failover(redis_server, tmp_path, signal.SIGKILL)
    assert victim.proc.returncode == -signal.SIGKILL
    _check_everything_acked_arrived_once_in_order(subscribers, acks, victim)
    # No close frame from a killed process: the connection just ends (1006).
    _check_who_reconnected(subscribers, victim, 1006)


async def test_clients_of_a_node_shut_down_with_sigterm_are_closed_1001_and_resume_elsewhere(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    subscribers, acks, victim, exit_s = await _run_failover(redis_server, tmp_path, signal.SIGTERM)
    assert victim.proc.returncode == -signal.SIGTERM
    assert exit_s < SHUTDOWN_FLUSH_S + EXIT_SLACK_S, f"exited after {exit_s:.2f} s"
    print(f"the node exited {exit_s:.2f} s after SIGTERM")
    _check_everything_acked_arrived_once_in_order(subscribers, acks, victim)
    _check_who_reconnected(subscribers, victim, 1001)
