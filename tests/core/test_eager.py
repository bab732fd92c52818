"""Coroutines run eagerly: finished at once when they never wait, else resumed where
they stopped, with results, exceptions, cancellation and timeouts as ``await`` has."""

from __future__ import annotations

import asyncio

import pytest

from fanout.core.eager import Finished, Rest, run_eagerly


async def _immediate(value: int) -> int:
    return value * 2


async def _waits(future: asyncio.Future[int]) -> int:
    got = await future
    return got + 1


async def _fails_after_waiting(future: asyncio.Future[int]) -> int:
    await future
    raise ValueError("broker said no")


async def test_a_coroutine_that_never_waits_is_finished_at_once() -> None:
    started = run_eagerly(_immediate(21))
    assert isinstance(started, Finished)
    assert started.value == 42


async def test_an_exception_before_the_first_wait_is_raised_at_once() -> None:
    async def broken() -> int:
        raise KeyError("no such room")

    with pytest.raises(KeyError):
        run_eagerly(broken())


async def test_a_coroutine_that_waits_goes_on_where_it_stopped() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    started = run_eagerly(_waits(future))
    assert isinstance(started, Rest)
    task = asyncio.create_task(_await(started))
    await asyncio.sleep(0)
    assert not task.done()
    future.set_result(1)
    assert await task == 2


async def test_an_exception_after_the_first_wait_reaches_the_awaiter() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    started = run_eagerly(_fails_after_waiting(future))
    assert isinstance(started, Rest)
    asyncio.get_running_loop().call_soon(future.set_result, 0)
    with pytest.raises(ValueError, match="broker said no"):
        await started


async def test_a_timeout_around_the_rest_cancels_the_waiting_coroutine() -> None:
    cleaned = asyncio.Event()

    async def stalls() -> int:
        try:
            await asyncio.sleep(0)  # waits once, then stalls
            await asyncio.Event().wait()
        finally:
            cleaned.set()
        return 0

    started = run_eagerly(stalls())
    assert isinstance(started, Rest)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await started
    assert cleaned.is_set()


async def _await(rest: Rest[int]) -> int:
    return await rest
