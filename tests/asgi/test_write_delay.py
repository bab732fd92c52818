"""--write-delay-ms: frames wait up to the delay to leave together, and every guarantee
holds as without it: order, acks, resume, a stalled reader cut off alone (4008)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fanout.settings import Settings
from tests.support.rawclient import RawClient, close_code
from tests.support.servers import running_hub
from tests.support.wsclient import assert_silent, connect_v1, recv_json, send_json, subscribe

DELAYED = Settings(write_delay_ms=10)
MESSAGES = 2000  # 16 MB: past what the kernel buffers for the stalled reader


async def test_with_a_write_delay_acks_and_messages_keep_their_order() -> None:
    async with (
        running_hub(DELAYED) as server,
        await connect_v1(server.ws) as watcher,
        await connect_v1(server.ws) as publisher,
    ):
        for room in ("a", "b"):
            await subscribe(watcher, room)
        for i in range(300):
            frame = {"type": "publish", "room": "ab"[i % 2], "data": i, "id": f"p{i}"}
            await send_json(publisher, frame)
        acks = [await recv_json(publisher) for _ in range(300)]
        assert [a["id"] for a in acks] == [f"p{i}" for i in range(300)]
        got = [await recv_json(watcher) for _ in range(300)]
        for room, parity in (("a", 0), ("b", 1)):
            mine = [m for m in got if m["room"] == room]
            assert [m["offset"] for m in mine] == list(range(1, 151))
            assert [m["data"] for m in mine] == list(range(parity, 300, 2))
        await assert_silent(watcher)


async def test_with_a_write_delay_a_frame_waits_no_longer_than_the_delay() -> None:
    async with (
        running_hub(Settings(write_delay_ms=200)) as server,
        await connect_v1(server.ws) as ws,
    ):
        started = time.monotonic()
        await send_json(ws, {"type": "subscribe", "room": "r"})
        assert (await recv_json(ws))["type"] == "subscribed"
        waited = time.monotonic() - started
        # Held back (so the delay is real), and not held longer than the delay allows.
        assert 0.15 <= waited < 1.0, waited


async def test_with_a_write_delay_a_client_resumes_from_its_offset() -> None:
    async with running_hub(DELAYED) as server:
        async with await connect_v1(server.ws) as first:
            await subscribe(first, "r")
            async with await connect_v1(server.ws) as pub:
                for i in range(5):
                    await send_json(pub, {"type": "publish", "room": "r", "data": i, "id": str(i)})
                    assert (await recv_json(pub))["type"] == "ack"
            seen = [await recv_json(first) for _ in range(2)]
        epoch, offset = seen[-1]["epoch"], seen[-1]["offset"]
        async with await connect_v1(server.ws) as again:
            await send_json(
                again,
                {"type": "subscribe", "room": "r", "since": {"epoch": epoch, "offset": offset}},
            )
            assert (await recv_json(again))["recovered"] is True
            rest = [await recv_json(again) for _ in range(3)]
            assert [m["offset"] for m in rest] == [3, 4, 5]


@pytest.mark.timeout(60)
async def test_with_a_write_delay_a_stalled_reader_is_closed_4008_and_the_others_get_all() -> None:
    settings = DELAYED.replace(outbox_max_bytes=256 * 1024, max_message_bytes=64 * 1024)
    async with running_hub(settings) as server:
        stalled = await RawClient.open(server.ws, rcvbuf=4096)
        stalled.send_text(json.dumps({"type": "subscribe", "room": "load"}))
        async with await connect_v1(server.ws, max_size=None) as healthy:
            await subscribe(healthy, "load")
            offsets: list[int] = []

            async def read() -> None:
                while len(offsets) < MESSAGES:
                    offsets.append((await recv_json(healthy))["offset"])

            reader = asyncio.create_task(read())
            filler = "x" * 8192
            async with await connect_v1(server.ws) as pub:
                for i in range(MESSAGES):
                    await send_json(pub, {"type": "publish", "room": "load", "data": filler})
                    while len(offsets) < i - 10:  # paced by the healthy reader
                        await asyncio.sleep(0.002)
                await asyncio.wait_for(reader, 30)
        assert offsets == list(range(1, MESSAGES + 1))
        frames, close = await stalled.read_all(timeout=30)
        stalled.abort()
        assert close_code(close) == 4008
        decoded = [json.loads(bytes(f.data)) for f in frames][1:]
        assert [m["offset"] for m in decoded] == list(range(1, len(decoded) + 1))
