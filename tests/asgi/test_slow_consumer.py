"""G2 and G3: one stalled reader is cut off alone; memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import psutil

from tests.support.rawclient import RawClient, close_code
from tests.support.servers import hub_process
from tests.support.wsclient import connect_v1, send_json, subscribe

SUBSCRIBERS = 20
MESSAGES = 10_000
PAYLOAD_BYTES = 8 * 1024  # a stalled client's unbounded backlog would be ~80 MB
OUTBOX_BYTES = 1024 * 1024
MAX_LAG = 60  # messages the publisher lets the slowest healthy reader fall behind
RSS_CEILING_GROWTH = 64 * 1024 * 1024


async def _reader(url: str, progress: list[int], index: int, ready: asyncio.Event) -> list[int]:
    offsets: list[int] = []
    async with await connect_v1(url, max_size=None) as ws:
        await subscribe(ws, "load")
        ready.set()
        while len(offsets) < MESSAGES:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert frame["type"] == "message", frame
            offsets.append(frame["offset"])
            progress[index] = len(offsets)
    return offsets


async def _sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        await asyncio.sleep(0.05)


async def test_a_stalled_subscriber_is_closed_with_4008_while_19_others_get_everything(
    tmp_path: Path,
) -> None:
    args = [
        "--log-level", "warning",
        "--max-message-bytes", str(OUTBOX_BYTES),
        "--outbox-max-bytes", str(OUTBOX_BYTES),
        # Long enough that the stalled client can still read its close frame later.
        "--close-timeout-s", "60",
        "--history-max-messages", "100",
        # The publisher sends as fast as the slowest healthy reader reads, which can be
        # over the default rate limit: its refused publishes would never arrive.
        "--rate-frames-per-s", "0",
        "--rate-bytes-per-s", "0",
    ]  # fmt: skip
    with hub_process(args, tmp_path / "hub.log") as server:
        stalled = await RawClient.open(server.ws, rcvbuf=4096)
        stalled.send_text(json.dumps({"type": "subscribe", "room": "load"}))
        healthy = SUBSCRIBERS - 1
        progress = [0] * healthy
        ready = [asyncio.Event() for _ in range(healthy)]
        readers = [
            asyncio.create_task(_reader(server.ws, progress, i, ready[i])) for i in range(healthy)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 20)

        peak = [0]
        baseline = psutil.Process(server.pid).memory_info().rss
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(server.pid, peak, stop))
        filler = "x" * PAYLOAD_BYTES
        async with await connect_v1(server.ws) as publisher:
            for seq in range(MESSAGES):
                await send_json(publisher, {"type": "publish", "room": "load", "data": filler})
                if seq % 20 == 19:
                    # Pace by the slowest healthy reader so that only the stalled one lags.
                    while min(progress) < seq + 1 - MAX_LAG:
                        await asyncio.sleep(0.002)
            results = await asyncio.wait_for(asyncio.gather(*readers), 120)
        stop.set()
        await sampler

        for offsets in results:
            assert offsets == list(range(1, MESSAGES + 1))
        assert peak[0] - baseline < RSS_CEILING_GROWTH, (baseline, peak[0])

        async with httpx.AsyncClient() as http:
            metrics = (await http.get(server.url + "/metrics")).text
        assert re.search(r"^fanout_slow_consumer_closes_total 1.0$", metrics, re.M), metrics

        # The stalled client reads at last: a gap-free prefix, then the 4008 close frame.
        frames, close = await stalled.read_all(timeout=30)
        stalled.abort()
        decoded = [json.loads(bytes(f.data)) for f in frames]
        assert decoded[0]["type"] == "subscribed"
        offsets = [m["offset"] for m in decoded[1:]]
        assert offsets == list(range(1, len(offsets) + 1))
        assert len(offsets) < MESSAGES
        assert close_code(close) == 4008
        assert "slow consumer" in server.log()
