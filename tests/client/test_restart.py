"""The hub process dies and comes back on the same port: the client finds it again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from fanout.client import Client, Disconnected, Message, Subscribed
from tests.client.support import events_until, messages, next_of
from tests.support.servers import HubProcess, free_port, start_hub_process, stop_process

ARGS = ["--log-level", "warning"]


@pytest.mark.parametrize(
    ("sig", "close_code"),
    [(signal.SIGTERM, 1001), (signal.SIGKILL, 1006)],
    ids=["sigterm", "sigkill"],
)
async def test_after_the_hub_process_restarts_the_client_resumes_and_is_told_history_is_gone(
    tmp_path: Path, sig: signal.Signals, close_code: int
) -> None:
    port = free_port()
    log = tmp_path / "hub.log"
    hub: HubProcess = await asyncio.to_thread(start_hub_process, ARGS, log, port=port)
    try:
        async with Client(hub.ws, backoff_initial_s=0.05, backoff_max_s=0.2) as client:
            before = await client.subscribe("r")
            for i in range(1, 4):
                await client.publish("r", i)
            assert [m.offset for m in await messages(client, 3)] == [1, 2, 3]

            await asyncio.to_thread(stop_process, hub.proc, sig=sig)
            gone = await next_of(client, Disconnected)
            assert gone.code == close_code
            # Published while no hub runs: sent, and acked, once the new one is up.
            during = asyncio.create_task(client.publish("r", "during the outage", id="out-1"))
            hub = await asyncio.to_thread(start_hub_process, ARGS, log, port=port)

            seen = await events_until(client, Subscribed, timeout=10)
            fresh = seen[-1]
            assert isinstance(fresh, Subscribed)
            assert not any(isinstance(e, Message) for e in seen), "nothing from the old epoch"
            assert fresh.epoch != before.epoch
            assert fresh.recovered is False, "a restarted memory broker lost the history"
            assert fresh.offset == 0
            ack = await asyncio.wait_for(during, 5)
            assert (ack.epoch, ack.offset) == (fresh.epoch, 1)
            [message] = await messages(client, 1)
            assert message == Message("r", fresh.epoch, 1, "during the outage")
            assert client.position("r") == (fresh.epoch, 1)
    finally:
        stop_process(hub.proc)
