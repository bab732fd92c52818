"""Two real ``fanout serve`` processes sharing one real Redis behave as one hub."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.redis.nodes import (
    backend,
    eventually,
    metrics,
    offsets_problem,
    redis_nodes,
    room_channel,
    subscribed_channels,
    subscriber_count,
)
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess
from tests.support.wsclient import assert_silent, connect_v1, recv_json, send_json, subscribe

SUBSCRIBERS = 20
PUBLISHERS_PER_NODE = 2
TOTAL = 5000
PER_PUBLISHER = TOTAL // (2 * PUBLISHERS_PER_NODE)
RUN_TIMEOUT_S = 30.0


async def _read_messages(ws: ClientConnection, count: int) -> tuple[list[Any], list[Any]]:
    """The next ``count`` message frames as (offset, epoch, data), and any other frame."""
    got: list[Any] = []
    other: list[Any] = []
    while len(got) < count:
        frame = await recv_json(ws)
        if frame["type"] == "message":
            got.append((frame["offset"], frame["epoch"], frame["data"]))
        else:
            other.append(frame)
    return got, other


async def _publish_all(ws: ClientConnection, room: str, name: str) -> list[dict[str, Any]]:
    """Publish PER_PUBLISHER messages with ids, pipelined; return the acks in order."""

    async def send() -> None:
        for i in range(PER_PUBLISHER):
            data = {"from": name, "n": i}
            await send_json(
                ws, {"type": "publish", "room": room, "data": data, "id": f"{name}-{i}"}
            )

    sender = asyncio.create_task(send())
    answers = [await recv_json(ws) for _ in range(PER_PUBLISHER)]
    await sender
    return answers


async def test_twenty_subscribers_on_two_nodes_see_5000_messages_from_both_nodes_identically(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "everyone"
    # Each publisher sends its 1,250 frames as fast as it can: over the default 1,000
    # frames/s per connection when the client is quick, and the refused publishes (error
    # rate_limited) would never arrive. The rate limit has tests of its own.
    no_rate_limit = ("--rate-frames-per-s", "0")
    async with redis_nodes(redis_server, tmp_path, args=no_rate_limit) as nodes:
        subs = [await connect_v1(nodes[i % 2].ws) for i in range(SUBSCRIBERS)]
        pubs = [
            (await connect_v1(nodes[i % 2].ws), f"p{i}-node{i % 2}")
            for i in range(2 * PUBLISHERS_PER_NODE)
        ]
        try:
            confirmations = [await subscribe(ws, room) for ws in subs]
            epochs = {c["epoch"] for c in confirmations}
            assert len(epochs) == 1, f"the nodes disagree on the room's epoch: {confirmations}"
            assert {c["offset"] for c in confirmations} == {0}
            # Both nodes have local members, so both listen to the room's channel.
            assert subscriber_count(redis_server, room) == 2

            started = time.monotonic()
            async with asyncio.timeout(RUN_TIMEOUT_S):
                readers = [asyncio.create_task(_read_messages(ws, TOTAL)) for ws in subs]
                acks = await asyncio.gather(*(_publish_all(ws, room, name) for ws, name in pubs))
                received = await asyncio.gather(*readers)
            elapsed = time.monotonic() - started
            print(f"{TOTAL} messages to {SUBSCRIBERS} subscribers on 2 nodes in {elapsed:.2f} s")
            # Nothing more: no subscriber gets a message twice, no publisher an ack twice.
            await asyncio.gather(*(assert_silent(ws, 0.2) for ws in subs + [p for p, _ in pubs]))
        finally:
            for ws in subs + [ws for ws, _ in pubs]:
                await ws.close()

    (epoch,) = epochs
    reference, _ = received[0]
    # Every subscriber, on either node, saw offsets 1..TOTAL, each once, in order, in the
    # epoch of its `subscribed`, and the same data at the same offset as everyone else.
    got = [offset for offset, _, _ in reference]
    assert got == list(range(1, TOTAL + 1)), offsets_problem(got, TOTAL)
    assert {e for _, e, _ in reference} == {epoch}
    for i, (messages, other) in enumerate(received):
        assert other == [], f"subscriber {i} got unexpected frames: {other[:3]}"
        assert messages == reference, f"subscriber {i} (node {i % 2}) differs from subscriber 0"

    # Every publish was acked once, with the offset at which everyone saw its data.
    data_at = {offset: data for offset, _, data in reference}
    acked_offsets: list[int] = []
    for (_, name), answers in zip(pubs, acks, strict=True):
        assert [a["type"] for a in answers] == ["ack"] * PER_PUBLISHER, answers[:3]
        assert [a["id"] for a in answers] == [f"{name}-{i}" for i in range(PER_PUBLISHER)]
        assert {a["epoch"] for a in answers} == {epoch}
        for i, ack in enumerate(answers):
            assert data_at[ack["offset"]] == {"from": name, "n": i}, ack
        offsets = [a["offset"] for a in answers]
        # One connection's publishes are stored in the order they were sent.
        assert offsets == sorted(offsets), f"{name}: acks out of order"
        acked_offsets += offsets
    assert sorted(acked_offsets) == list(range(1, TOTAL + 1))


async def test_a_client_resumes_on_the_other_node_from_an_offset_it_got_on_the_first(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room = "wander"
    async with (
        redis_nodes(redis_server, tmp_path) as (node_a, node_b),
        await connect_v1(node_a.ws) as publisher,
    ):
        async with await connect_v1(node_a.ws) as on_a:
            await subscribe(on_a, room)
            for i in range(1, 31):
                await send_json(publisher, {"type": "publish", "room": room, "data": f"m{i}"})
            # The client goes away after offset 12, with 18 more it never read.
            seen, _ = await _read_messages(on_a, 12)
        epoch, last = seen[-1][1], seen[-1][0]
        assert last == 12

        # Published while the client is away, on node A.
        for i in range(31, 41):
            await send_json(
                publisher, {"type": "publish", "room": room, "data": f"m{i}", "id": f"i{i}"}
            )
        for _ in range(31, 41):
            assert (await recv_json(publisher))["type"] == "ack"

        async with await connect_v1(node_b.ws) as on_b:
            resumed = await subscribe(on_b, room, {"epoch": epoch, "offset": last})
            assert resumed == {
                "type": "subscribed",
                "room": room,
                "epoch": epoch,
                "offset": 40,
                "recovered": True,
            }
            rest, other = await _read_messages(on_b, 40 - last)
            assert other == []
            assert rest == [(i, epoch, f"m{i}") for i in range(last + 1, 41)]
            await assert_silent(on_b, 0.2)
            # And live messages from node A follow on node B.
            await send_json(publisher, {"type": "publish", "room": room, "data": "live"})
            live, _ = await _read_messages(on_b, 1)
            assert live == [(41, epoch, "live")]
            await assert_silent(on_b, 0.2)


async def _node_rooms(node: HubProcess) -> float:
    return (await metrics(node))["fanout_rooms"]


async def test_a_node_listens_only_to_rooms_with_local_members_and_stops_when_the_last_leaves(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    room, channel = "only-a", room_channel("only-a")
    async with redis_nodes(redis_server, tmp_path) as (node_a, node_b):
        assert backend(node_a) != backend(node_b)
        assert channel not in subscribed_channels(redis_server)

        members = [await connect_v1(node_a.ws) for _ in range(2)]
        for ws in members:
            await subscribe(ws, room)
        # Node B publishes into the room without joining it: still not a listener.
        async with await connect_v1(node_b.ws) as publisher:
            await send_json(publisher, {"type": "publish", "room": room, "data": "x", "id": "1"})
            assert (await recv_json(publisher))["type"] == "ack"
        for ws in members:
            assert (await recv_json(ws))["data"] == "x"
        assert channel in subscribed_channels(redis_server)
        assert subscriber_count(redis_server, room) == 1
        assert await _node_rooms(node_a) == 1
        assert await _node_rooms(node_b) == 0

        # A member on node B: both nodes listen; it leaves: node B stops listening.
        async with await connect_v1(node_b.ws) as visitor:
            await subscribe(visitor, room)
            assert subscriber_count(redis_server, room) == 2
            assert await _node_rooms(node_b) == 1
            await send_json(visitor, {"type": "unsubscribe", "room": room})

            async def only_a_listens() -> bool:
                return subscriber_count(redis_server, room) == 1

            await eventually(only_a_listens, "node B unsubscribes the room's channel")
            assert await _node_rooms(node_b) == 0

        # Node A keeps listening while one member is left, and stops after the last.
        await members[0].close()
        await asyncio.sleep(0.2)
        assert subscriber_count(redis_server, room) == 1
        await members[1].close()

        async def nobody_listens() -> bool:
            return channel not in subscribed_channels(redis_server)

        await eventually(nobody_listens, "node A unsubscribes after its last member left")
        assert subscriber_count(redis_server, room) == 0
        assert await _node_rooms(node_a) == 0
