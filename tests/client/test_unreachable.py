"""Nothing to connect to, or a server that will never accept this client."""

from __future__ import annotations

import asyncio

import pytest

from fanout.client import Client, ClientState, ConnectFailed, Refused, Unreachable
from tests.support.servers import free_port, running_hub


async def test_with_nothing_listening_the_client_backs_off_then_gives_up_clearly() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    async with Client(url, backoff_initial_s=0.01, backoff_max_s=0.04, max_attempts=4) as client:
        waiting = asyncio.create_task(client.publish("r", "nobody hears this"))
        failures = [await client.next_event(5) for _ in range(4)]
        assert all(isinstance(f, ConnectFailed) for f in failures)
        attempts = [f.attempt for f in failures if isinstance(f, ConnectFailed)]
        assert attempts == [1, 2, 3, 4]
        assert all(
            "ConnectionRefusedError" in f.error for f in failures if isinstance(f, ConnectFailed)
        )
        delays = [f.retry_in for f in failures if isinstance(f, ConnectFailed)]
        assert delays[3] is None, "the last failure says the client stops"
        # Each delay lies in the jittered band of its doubling ceiling, capped at 0.04 s.
        for delay, ceiling in zip(delays[:3], [0.01, 0.02, 0.04], strict=True):
            assert delay is not None
            assert ceiling / 2 <= delay <= ceiling

        with pytest.raises(Unreachable, match="unreachable after 4 attempts") as info:
            await asyncio.wait_for(waiting, 5)
        assert "ConnectionRefusedError" in info.value.last_error
        assert client.state is ClientState.FAILED
        with pytest.raises(Unreachable):
            await client.subscribe("r")
        with pytest.raises(Unreachable):
            async for _ in client.events():
                pass


async def test_by_default_the_client_keeps_retrying_until_the_hub_appears() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    async with Client(url, backoff_initial_s=0.01, backoff_max_s=0.02) as client:
        for attempt in range(1, 6):
            failed = await client.next_event(5)
            assert isinstance(failed, ConnectFailed)
            assert (failed.attempt, failed.retry_in is not None) == (attempt, True)
        assert client.state in (ClientState.CONNECTING, ClientState.WAITING)


async def test_a_path_the_hub_does_not_serve_is_refused_for_good_not_retried() -> None:
    async with running_hub() as server:
        url = server.url.replace("http://", "ws://") + "/no-such-path"
        async with Client(url, backoff_initial_s=0.01) as client:
            failed = await client.next_event(5)
            assert isinstance(failed, ConnectFailed)
            assert failed.retry_in is None
            assert "HTTP 403" in failed.error or "HTTP 404" in failed.error
            with pytest.raises(Refused):
                await client.publish("r", 1)
            assert client.state is ClientState.FAILED
