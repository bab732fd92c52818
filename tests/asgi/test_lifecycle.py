"""Health, metrics and graceful shutdown of a real `fanout serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx

from tests.support.rawclient import RawClient
from tests.support.servers import hub_process, start_hub_process
from tests.support.wsclient import (
    connect_plain,
    connect_v1,
    read_until_closed,
    recv_json,
    send_json,
    subscribe,
)

# After its graceful shutdown uvicorn re-raises the signal, so the exit status says
# "terminated by SIGTERM", as process managers expect.
TERMINATED = -signal.SIGTERM


async def test_healthz_answers_ok_with_the_broker_and_counts(tmp_path: Path) -> None:
    with hub_process(["--log-level", "warning"], tmp_path / "hub.log") as server:
        async with httpx.AsyncClient() as http, await connect_v1(server.ws) as ws:
            await subscribe(ws, "r")
            started = time.monotonic()
            response = await http.get(server.url + "/healthz")
            assert time.monotonic() - started < 1
            assert response.status_code == 200
            assert response.json() == {
                "status": "ok",
                "broker": "memory",
                "connections": 1,
                "rooms": 1,
            }


async def test_metrics_count_publishes_and_deliveries(tmp_path: Path) -> None:
    with hub_process(["--log-level", "warning"], tmp_path / "hub.log") as server:
        async with await connect_v1(server.ws) as ws:
            await subscribe(ws, "r")
            for i in range(3):
                await send_json(ws, {"type": "publish", "room": "r", "data": i})
            for _ in range(3):
                await recv_json(ws)
        async with httpx.AsyncClient() as http:
            text = (await http.get(server.url + "/metrics")).text
        assert "fanout_published_total 3.0\n" in text
        assert "fanout_deliveries_total 3.0\n" in text


async def test_sigterm_flushes_then_closes_every_client_with_1001_and_exits(tmp_path: Path) -> None:
    server = start_hub_process(["--log-level", "warning"], tmp_path / "hub.log")
    try:
        v1 = await connect_v1(server.ws)
        await subscribe(v1, "r")
        plain = await connect_plain(server.ws + "/r")
        for i in range(50):
            await send_json(v1, {"type": "publish", "room": "r", "data": i, "id": str(i)})
        acked = 0
        while acked < 50:
            if (await recv_json(v1))["type"] == "ack":
                acked += 1
        os.kill(server.pid, signal.SIGTERM)
        for ws in (v1, plain):
            assert await read_until_closed(ws) == 1001
        assert await asyncio.to_thread(server.proc.wait, 20) == TERMINATED
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


async def test_sigterm_does_not_wait_forever_for_a_client_that_stopped_reading(
    tmp_path: Path,
) -> None:
    args = ["--log-level", "warning", "--shutdown-flush-s", "1", "--close-timeout-s", "1"]
    server = start_hub_process(args, tmp_path / "hub.log")
    try:
        stalled = await RawClient.open(server.ws, rcvbuf=4096)
        stalled.send_text(json.dumps({"type": "subscribe", "room": "r"}))
        async with await connect_v1(server.ws) as pub:
            for _ in range(300):
                await send_json(pub, {"type": "publish", "room": "r", "data": "x" * 4000})
            await send_json(pub, {"type": "publish", "room": "r", "data": "last", "id": "l"})
            while (await recv_json(pub))["type"] != "ack":
                pass
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        assert await asyncio.to_thread(server.proc.wait, 20) == TERMINATED
        assert time.monotonic() - started < 8
        stalled.abort()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
