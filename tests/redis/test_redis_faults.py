"""Redis faults under real traffic: what every client saw, compared with what was acked.

Two real ``fanout serve --broker redis://...`` processes share one real ``redis-server``.
Subscribers on both nodes record every frame the hub sends them; publishers on both
nodes record every answer (ack or error) with its time; a poller records every
``/healthz`` answer. Then Redis is killed (kill -9, restarted empty on the same port) or
paused (SIGSTOP, then SIGCONT), and the records are checked against the guarantees:

- a publish is answered within ``publish_timeout_s``, never acked while Redis is gone;
- ``/healthz`` says 503 with a reason within about health interval + Redis timeout,
  and 200 again once Redis is back, with nodes re-linking by themselves;
- every subscriber has every acked message, at its offset, once, in order, or was told
  it cannot have it (a ``gap``, or a fresh ``subscribed`` with a new epoch);
- what was acked is what Redis stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hiredis
import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fanout.brokers.redis.layout import RoomKeys, decode_data
from fanout.client import Ack, Client, Message, Subscribed
from tests.redis.nodes import metrics, redis_nodes
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess
from tests.support.wsclient import connect_v1, recv_json, send_json, subscribe

ROOM = "r"
REDIS_TIMEOUT_S = 0.5
HEALTH_INTERVAL_S = 0.25
PUBLISH_TIMEOUT_S = 2.0
# The broker's reconnect backoff cap.
RECONNECT_MAX_S = 1.0
# Scheduling and polling slack on top of a bound the hub promises.
SLACK_S = 1.0
DETECT_BOUND_S = HEALTH_INTERVAL_S + REDIS_TIMEOUT_S + SLACK_S
RECOVER_BOUND_S = RECONNECT_MAX_S + HEALTH_INTERVAL_S + REDIS_TIMEOUT_S + SLACK_S
NODE_ARGS = [
    "--redis-reconnect-max-s", str(RECONNECT_MAX_S),
    "--redis-timeout-s", str(REDIS_TIMEOUT_S),
    "--redis-health-interval-s", str(HEALTH_INTERVAL_S),
    "--publish-timeout-s", str(PUBLISH_TIMEOUT_S),
]  # fmt: skip


def nodes(
    redis: RedisServer, tmp_path: Path, count: int = 2
) -> contextlib.AbstractAsyncContextManager[list[HubProcess]]:
    """``count`` real ``fanout serve`` processes on one Redis, detecting faults fast."""
    return redis_nodes(redis, tmp_path, count, args=NODE_ARGS)


async def hub_counter(node: HubProcess, name: str) -> int:
    return int((await metrics(node)).get(f"fanout_{name}_total", 0))


async def redis_reply(redis: RedisServer, *args: str) -> Any:
    raw = await asyncio.to_thread(redis.command, *args)
    parser = hiredis.Reader()
    parser.feed(raw)
    return parser.gets()


async def stored_in_redis(redis: RedisServer, room: str) -> tuple[str, dict[int, Any]]:
    """The room's epoch and stream, read from Redis itself: what Redis really stored."""
    keys = RoomKeys.of("fanout", room)
    epoch = await redis_reply(redis, "HGET", keys.meta, "epoch")
    assert isinstance(epoch, bytes), epoch
    stream: dict[int, Any] = {}
    for entry_id, fields in await redis_reply(redis, "XRANGE", keys.log, "-", "+"):
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        stream[int(entry_id.split(b"-")[0])] = decode_data(values[b"k"], values[b"d"])
    return epoch.decode(), stream


# -- clients that record everything -----------------------------------------------------


class Subscriber:
    """A raw ``fanout.v1`` connection subscribed to one room; keeps every frame."""

    def __init__(self, name: str, ws: ClientConnection, first: dict[str, Any]) -> None:
        self.name = name
        self.ws = ws
        self.frames: list[dict[str, Any]] = [first]
        self.closed: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, name: str, node: HubProcess, room: str) -> Subscriber:
        ws = await connect_v1(node.ws)
        return cls(name, ws, await subscribe(ws, room))

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.ws.recv()
                self.frames.append(json.loads(raw))
        except ConnectionClosed as exc:
            self.closed = repr(exc)

    def has(self, epoch: str, offset: int) -> bool:
        return any(
            f["type"] == "message" and f["epoch"] == epoch and f["offset"] == offset
            for f in self.frames
        )

    async def close(self) -> None:
        assert self.closed is None, f"{self.name}: the hub closed the connection: {self.closed}"
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


@dataclass(frozen=True, slots=True)
class Answer:
    id: str
    sent_at: float
    answered_at: float
    frame: dict[str, Any]

    @property
    def acked(self) -> bool:
        return bool(self.frame["type"] == "ack")


class Publisher:
    """A raw ``fanout.v1`` connection publishing fresh ids one at a time, never retrying;
    records each answer with the time it was sent and answered."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.answers: list[Answer] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, name: str, node: HubProcess) -> Publisher:
        return cls(name, await connect_v1(node.ws))

    def start(self, room: str, pace_s: float) -> None:
        self._task = asyncio.create_task(self._run(room, pace_s))

    async def _run(self, room: str, pace_s: float) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            msg_id = f"{self.name}-{n}"
            sent_at = time.monotonic()
            await send_json(
                self.ws, {"type": "publish", "room": room, "data": msg_id, "id": msg_id}
            )
            # The hub promises an answer within publish_timeout_s: waiting longer fails.
            frame = await recv_json(self.ws, timeout=PUBLISH_TIMEOUT_S + SLACK_S)
            assert frame["type"] in ("ack", "error"), frame
            assert frame.get("id") == msg_id, frame
            self.answers.append(Answer(msg_id, sent_at, time.monotonic(), frame))
            await asyncio.sleep(pace_s)

    def acks(self, where: Callable[[Answer], bool] = lambda a: True) -> list[Answer]:
        return [a for a in self.answers if a.acked and where(a)]

    async def until(self, done: Callable[[Publisher], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                assert self._task is not None
                if self._task.done():
                    self._task.result()  # its failure, if it failed
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        await self.ws.close()


class HealthLog:
    """Polls every node's ``/healthz`` every 50 ms; keeps (time, node, status, body)."""

    def __init__(self, nodes: list[HubProcess]) -> None:
        self.nodes = nodes
        self.samples: list[tuple[float, int, int, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                for i, node in enumerate(self.nodes):
                    started = time.monotonic()
                    response = await http.get(node.url + "/healthz")
                    self.samples.append((started, i, response.status_code, response.json()))
                await asyncio.sleep(0.05)

    async def until(self, status: int, after: float, bound_s: float) -> list[float]:
        """Seconds after ``after`` at which each node first answered ``status``."""
        first: dict[int, float] = {}
        async with asyncio.timeout(bound_s + 0.5):
            while len(first) < len(self.nodes):
                if self._task.done():
                    self._task.result()
                for t, i, code, _ in self.samples:
                    if t >= after and code == status and i not in first:
                        first[i] = t - after
                await asyncio.sleep(0.02)
        took = [first[i] for i in range(len(self.nodes))]
        assert max(took) <= bound_s, f"/healthz {status} after {took} s, bound {bound_s} s"
        return took

    def between(self, start: float, end: float) -> list[tuple[int, dict[str, Any]]]:
        return [(code, body) for t, _, code, body in self.samples if start <= t <= end]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# -- what a subscriber was told ---------------------------------------------------------


@dataclass
class Timeline:
    """A subscriber's frames read as the protocol defines them (G1).

    Checks while reading that each message is the next offset of the current epoch (no
    silent hole, no duplicate), that a gap starts right after the last offset, and that
    a repeated ``subscribed`` announces a new epoch with ``recovered: false``.
    """

    name: str
    received: dict[tuple[str, int], Any] = field(default_factory=dict)
    gapped: set[tuple[str, int]] = field(default_factory=set)
    # Epochs the subscriber was moved away from, and the last offset it had of each.
    left: dict[str, int] = field(default_factory=dict)
    epochs: list[str] = field(default_factory=list)
    # Offsets received per epoch, in arrival order.
    offsets: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, sub: Subscriber) -> Timeline:
        line = cls(sub.name)
        first = sub.frames[0]
        assert first["type"] == "subscribed", first
        epoch, position = first["epoch"], first["offset"]
        line.epochs.append(epoch)
        line.offsets[epoch] = []
        for frame in sub.frames[1:]:
            kind = frame["type"]
            if kind == "message":
                where = (frame["epoch"], frame["offset"])
                assert where == (epoch, position + 1), (
                    f"{sub.name}: got offset {where} after {(epoch, position)}: "
                    "a silent hole or a duplicate"
                )
                position = frame["offset"]
                line.received[where] = frame["data"]
                line.offsets[epoch].append(position)
            elif kind == "gap":
                assert (frame["epoch"], frame["from"]) == (epoch, position + 1), (sub.name, frame)
                line.gapped.update((epoch, o) for o in range(frame["from"], frame["to"] + 1))
                position = frame["to"]
            elif kind == "subscribed":
                assert frame["epoch"] != epoch, f"{sub.name}: subscribed again, same epoch"
                assert frame["recovered"] is False, (sub.name, frame)
                line.left[epoch] = position
                epoch, position = frame["epoch"], frame["offset"]
                line.epochs.append(epoch)
                line.offsets[epoch] = []
            else:
                raise AssertionError(f"{sub.name}: unexpected frame {frame}")
        return line

    def account_for(self, ack: dict[str, Any], data: Any) -> str:
        """How this subscriber learned of an acked message; fails if it silently did not."""
        where = (ack["epoch"], ack["offset"])
        if where in self.received:
            assert self.received[where] == data, f"{self.name}: {where} holds another message"
            return "received"
        if where in self.gapped:
            return "gap"
        if ack["epoch"] in self.left and ack["offset"] > self.left[ack["epoch"]]:
            return "new epoch"
        raise AssertionError(f"{self.name}: acked {data!r} at {where} silently missing")


async def subscribers_on(nodes_: list[HubProcess], per_node: int) -> list[Subscriber]:
    return list(
        await asyncio.gather(
            *(
                Subscriber.join(f"sub{i}@node{n}", node, ROOM)
                for n, node in enumerate(nodes_)
                for i in range(per_node)
            )
        )
    )


async def until_delivered(
    subs: list[Subscriber], where: list[tuple[str, int]], timeout: float
) -> None:
    """Until every subscriber has the message at every (epoch, offset) of ``where``."""
    async with asyncio.timeout(timeout):
        while not all(s.has(epoch, offset) for s in subs for epoch, offset in where):
            await asyncio.sleep(0.05)


def positions(answers: list[Answer]) -> list[tuple[str, int]]:
    return [(a.frame["epoch"], a.frame["offset"]) for a in answers]


# -- the tests --------------------------------------------------------------------------


async def test_redis_killed_mid_stream_never_acks_a_lost_publish_and_every_client_is_told(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with nodes(redis_server, tmp_path) as hubs:
        subs = await subscribers_on(hubs, per_node=3)
        pubs = [await Publisher.open(f"p{n}", node) for n, node in enumerate(hubs)]
        old_epoch = subs[0].frames[0]["epoch"]
        health = HealthLog(hubs)
        for pub in pubs:
            pub.start(ROOM, pace_s=0.01)
        for pub in pubs:
            await pub.until(lambda p: len(p.acks()) >= 30, timeout=5)

        kill_called = time.monotonic()
        await asyncio.to_thread(redis_server.kill)
        killed = time.monotonic()
        detected = await health.until(503, after=kill_called, bound_s=DETECT_BOUND_S)
        await asyncio.sleep(max(0.0, killed + 2.0 - time.monotonic()))  # a 2 s outage
        for pub in pubs:  # every publisher was refused while Redis was gone
            assert any(a.sent_at > killed and not a.acked for a in pub.answers), pub.name
        restart_called = time.monotonic()
        await asyncio.to_thread(redis_server.restart)
        recovered = await health.until(200, after=restart_called, bound_s=RECOVER_BOUND_S)

        def acked_after_restart(p: Publisher) -> list[Answer]:
            return p.acks(lambda a: a.sent_at > restart_called)

        for pub in pubs:  # both nodes publish again, by themselves
            await pub.until(lambda p: len(acked_after_restart(p)) >= 30, timeout=10)
        for pub in pubs:
            await pub.stop()
        await health.stop()
        all_acks = [a for p in pubs for a in p.acks()]
        new_acks = [a for a in all_acks if a.frame["epoch"] != old_epoch]
        await until_delivered(subs, positions(new_acks), timeout=5)
        await asyncio.sleep(0.3)  # a late duplicate would arrive here
        for sub in subs:
            await sub.close()
        new_epoch, stream = await stored_in_redis(redis_server, ROOM)

    # Publishes: answered in time; nothing acked while Redis was gone.
    answers = [a for p in pubs for a in p.answers]
    assert max(a.answered_at - a.sent_at for a in answers) <= PUBLISH_TIMEOUT_S + SLACK_S
    during = [a for a in answers if a.sent_at > killed and a.answered_at < restart_called]
    assert during, "publishes were sent while Redis was down"
    assert all(a.frame["type"] == "error" for a in during), [a.frame for a in during if a.acked]
    assert {a.frame["code"] for a in during} <= {"unavailable", "timeout"}
    assert {a.frame["epoch"] for a in all_acks} == {old_epoch, new_epoch}
    # What was acked in the new epoch is exactly what Redis holds there.
    assert {a.frame["offset"]: a.id for a in new_acks}.items() <= stream.items()

    # /healthz: 503 with a reason while Redis was down.
    for code, body in health.between(killed + max(detected), restart_called):
        assert code == 503, body
        assert "redis" in body["reason"], body

    # Subscribers: every acked message received, or told by a new epoch; the new epoch
    # from offset 1, complete, in order, once.
    acked_before_kill = [a for a in all_acks if a.answered_at < kill_called]
    for sub in subs:
        line = Timeline.of(sub)
        assert line.epochs == [old_epoch, new_epoch], (sub.name, line.epochs)
        how = [line.account_for(a.frame, a.id) for a in all_acks]
        assert set(how) <= {"received", "new epoch"}, (sub.name, how)
        # Acked before the kill was even asked for: Redis had pushed it to the nodes.
        assert all(
            line.received.get((old_epoch, a.frame["offset"])) == a.id for a in acked_before_kill
        )
        assert line.offsets[new_epoch] == list(range(1, max(stream) + 1)), sub.name
        assert {line.received[(new_epoch, o)] for o in stream} == set(stream.values())
    print(
        f"kill: /healthz 503 after {detected} s, 200 after {recovered} s of the restart;"
        f" {len(during)} publishes refused during the outage; acked {len(all_acks)}"
        f" ({len(new_acks)} in the new epoch)"
    )


async def test_redis_paused_is_reported_in_bounded_time_and_recovers_without_loss_or_duplicates(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The 10 s pause: long against every timeout (0.5 s Redis, 2 s publish), so
    # nodes cut their links, retry many times, and must still come back in sequence.
    pause_s = 10.0
    async with nodes(redis_server, tmp_path) as hubs:
        subs = await subscribers_on(hubs, per_node=3)
        pubs = [await Publisher.open(f"p{n}", node) for n, node in enumerate(hubs)]
        epoch = subs[0].frames[0]["epoch"]
        health = HealthLog(hubs)
        for pub in pubs:
            pub.start(ROOM, pace_s=0.02)
        for pub in pubs:
            await pub.until(lambda p: len(p.acks()) >= 20, timeout=5)

        pause_called = time.monotonic()
        redis_server.pause()
        paused = time.monotonic()
        detected = await health.until(503, after=pause_called, bound_s=DETECT_BOUND_S)
        await asyncio.sleep(max(0.0, paused + pause_s - time.monotonic()))
        resume_called = time.monotonic()
        redis_server.resume()
        recovered = await health.until(200, after=resume_called, bound_s=RECOVER_BOUND_S)
        for pub in pubs:
            await pub.until(
                lambda p: len(p.acks(lambda a: a.sent_at > resume_called)) >= 20, timeout=10
            )
        for pub in pubs:
            await pub.stop()
        await health.stop()
        all_acks = [a for p in pubs for a in p.acks()]
        await until_delivered(subs, positions(all_acks), timeout=5)
        await asyncio.sleep(0.3)
        for sub in subs:
            await sub.close()
        stored_epoch, stream = await stored_in_redis(redis_server, ROOM)

    answers = [a for p in pubs for a in p.answers]
    assert max(a.answered_at - a.sent_at for a in answers) <= PUBLISH_TIMEOUT_S + SLACK_S
    during = [a for a in answers if a.sent_at > paused and a.answered_at < resume_called]
    assert len(during) >= 2 * pause_s, "publishers kept getting answers throughout the pause"
    assert all(not a.acked for a in during), [a.frame for a in during if a.acked]
    assert {a.frame["code"] for a in during} <= {"unavailable", "timeout"}
    for code, body in health.between(paused + max(detected), resume_called):
        assert code == 503, body
        assert "redis" in body["reason"], body

    # Redis kept its data: one epoch, every acked publish stored at its offset.
    assert stored_epoch == epoch
    assert {a.frame["epoch"] for a in all_acks} == {epoch}
    assert {a.frame["offset"]: a.id for a in all_acks}.items() <= stream.items()
    # Each id stored once (publishes refused during the pause may still have been stored
    # when Redis resumed: "outcome unknown" - but never twice).
    assert len(set(stream.values())) == len(stream)
    for sub in subs:
        line = Timeline.of(sub)
        assert line.epochs == [epoch], (sub.name, line.epochs)
        assert not line.gapped, sub.name
        assert line.offsets[epoch] == list(range(1, max(stream) + 1)), sub.name
        assert {o: line.received[(epoch, o)] for o in stream} == stream, sub.name
    print(
        f"pause {pause_s} s: /healthz 503 after {detected} s, 200 after {recovered} s of"
        f" SIGCONT; {len(during)} publishes refused; {len(stream) - len(all_acks)} refused"
        " ones stored when Redis resumed"
    )


async def test_publishes_queued_on_a_connection_while_redis_is_paused_are_each_answered_in_time(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A connection's frames are handled one at a time, so each publish must not wait out
    the Redis timeout on its own: once Redis is known silent, the rest fail fast."""
    burst = 20
    async with nodes(redis_server, tmp_path, count=1) as [hub]:
        ws = await connect_v1(hub.ws)
        redis_server.pause()
        sent = time.monotonic()
        for i in range(burst):
            await send_json(ws, {"type": "publish", "room": ROOM, "data": i, "id": f"b{i}"})
        answers = [
            await recv_json(ws, timeout=burst * REDIS_TIMEOUT_S + SLACK_S) for _ in range(burst)
        ]
        took = time.monotonic() - sent
        redis_server.resume()
        await ws.close()
    assert [a["id"] for a in answers] == [f"b{i}" for i in range(burst)]
    assert {a["type"] for a in answers} == {"error"}, answers
    assert took <= PUBLISH_TIMEOUT_S, (
        f"the last of {burst} publishes was answered after {took:.1f} s"
    )


@pytest.mark.parametrize("fault", ["pause", "kill"])
async def test_the_python_client_publishing_through_a_redis_outage_gets_each_publish_acked_once(
    redis_server: RedisServer, tmp_path: Path, fault: str
) -> None:
    """With ``pause`` Redis keeps its data and its idempotency window: the publish caught
    by the pause is answered ``timeout`` yet stored when Redis resumes, so its retry must
    be recognised by id. With ``kill`` the retries land in the new epoch."""
    outage_s = 3.0
    async with nodes(redis_server, tmp_path) as hubs:
        subs = await subscribers_on(hubs, per_node=1)
        async with (
            Client(
                hubs[0].ws, backoff_initial_s=0.05, backoff_max_s=0.5, publish_timeout_s=5
            ) as publisher,
            Client(hubs[1].ws, backoff_initial_s=0.05, backoff_max_s=0.5) as reader,
        ):
            await reader.subscribe(ROOM)
            old_epoch = subs[0].frames[0]["epoch"]
            publishes: list[asyncio.Task[Ack]] = []
            ids: list[str] = []
            issued_at: dict[str, float] = {}

            async def publish_steadily(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    ids.append(f"c-{len(ids) + 1}")
                    issued_at[ids[-1]] = time.monotonic()
                    publishes.append(
                        asyncio.create_task(publisher.publish(ROOM, ids[-1], id=ids[-1]))
                    )
                    await asyncio.sleep(0.02)

            stop = asyncio.Event()
            steady = asyncio.create_task(publish_steadily(stop))
            await asyncio.sleep(0.5)
            outage_began = time.monotonic()
            if fault == "pause":
                redis_server.pause()
                await asyncio.sleep(outage_s)
                outage_ended = time.monotonic()
                redis_server.resume()
            else:
                await asyncio.to_thread(redis_server.kill)
                await asyncio.sleep(outage_s)
                outage_ended = time.monotonic()
                await asyncio.to_thread(redis_server.restart)
            await asyncio.sleep(0.5)
            stop.set()
            await steady
            async with asyncio.timeout(15):
                acks = await asyncio.gather(*publishes)

            # Every publish acked exactly once, each at an offset of its own.
            assert [a.id for a in acks] == ids
            assert len({(a.epoch, a.offset) for a in acks}) == len(acks)
            final_epoch, stream = await stored_in_redis(redis_server, ROOM)
            last = [a for a in acks if a.epoch == final_epoch]
            await until_delivered(subs, [(a.epoch, a.offset) for a in last], timeout=5)

            got: dict[str, list[str]] = {}
            async with asyncio.timeout(5):
                while len(got.get(final_epoch, [])) < len(stream):
                    event = await reader.next_event()
                    if isinstance(event, Message):
                        got.setdefault(event.epoch, []).append(event.data)
                    elif isinstance(event, Subscribed):
                        got.setdefault(event.epoch, [])
            await asyncio.sleep(0.3)
            for sub in subs:
                await sub.close()
        retried_as_duplicates = await hub_counter(hubs[0], "duplicate_publishes")

    during = [a for a in acks if outage_began < issued_at[a.id] < outage_ended]
    assert len(during) >= outage_s / 0.02 / 2, "publishes were issued during the outage"
    assert {a.epoch for a in during} == {final_epoch}, "acked after Redis came back"
    assert {a.offset: a.id for a in last}.items() <= stream.items()
    assert len(set(stream.values())) == len(stream), "an id stored twice in one epoch"
    if fault == "pause":
        assert final_epoch == old_epoch
        assert len(stream) == len(acks), "every id stored, once"
        assert retried_as_duplicates > 0, "retries of publishes stored meanwhile were recognised"
    else:
        assert final_epoch != old_epoch
        assert last, "publishes retried through the outage were acked in the new epoch"
    assert got[final_epoch] == [stream[o] for o in sorted(stream)]
    for sub in subs:
        line = Timeline.of(sub)
        assert line.epochs[-1] == final_epoch
        for epoch, offsets in line.offsets.items():
            seen = [line.received[(epoch, o)] for o in offsets]
            assert len(seen) == len(set(seen)), f"{sub.name}: an id twice in epoch {epoch}"
        for a in acks:
            line.account_for({"epoch": a.epoch, "offset": a.offset}, a.id)
        assert line.offsets[final_epoch] == sorted(stream), sub.name
    print(
        f"client through {fault}: {len(acks)} publishes, all acked once;"
        f" {retried_as_duplicates} retries answered as duplicates"
    )
