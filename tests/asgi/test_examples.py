"""The guide's example application (examples/shop.py) and worker (examples/worker.py),
run as a user would: its own users and routes, fanout under /rt, a worker process
publishing through Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support.redis import RedisServer
from tests.support.servers import free_port, serving
from tests.support.wsclient import connect_user, recv_json, send_json, subscribe

EXAMPLES = Path(__file__).parents[2] / "examples"


def _load_shop(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("shop_example", EXAMPLES / "shop.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_shop_example_serves_its_users_and_publishes_from_its_routes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = _load_shop(monkeypatch, FANOUT_PORT=str(free_port()))
    async with serving(shop.app, shop.settings) as url:
        ws = url.replace("http", "ws") + "/rt/ws"
        alice = await connect_user(ws, additional_headers={"Cookie": "session=alice-session"})
        bob = await connect_user(ws, additional_headers={"Cookie": "session=bob-session"})
        async with alice, bob:
            assert await recv_json(alice) == {"type": "welcome", "name": "Alice"}
            assert await recv_json(bob) == {"type": "welcome", "name": "Bob"}
            await subscribe(alice, "orders")
            await subscribe(alice, "staff")
            await subscribe(bob, "orders")
            await send_json(bob, {"type": "subscribe", "room": "staff"})
            assert (await recv_json(bob))["code"] == "forbidden"
            async with httpx.AsyncClient(base_url=url) as http:
                placed = await http.post("/orders", headers={"Cookie": "session=bob-session"})
                anonymous = await http.post("/orders")
            assert placed.json() == {"order": 1, "offset": 1}
            assert anonymous.status_code == 401
            assert (await recv_json(bob))["data"] == {"order": 1, "by": "Bob"}
            got = [await recv_json(alice), await recv_json(alice)]
            assert sorted(m["room"] for m in got) == ["orders", "staff"]


async def _worker(broker: str, order: str) -> str:
    """Run examples/worker.py in its own process; its output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "worker.py"),
        order,
        env={**os.environ, "FANOUT_BROKER": broker},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_worker_example_publishes_through_redis_into_the_shops_rooms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        shop = _load_shop(monkeypatch, FANOUT_PORT=str(free_port()), FANOUT_BROKER=redis.url)
        async with serving(shop.app, shop.settings) as url:
            ws = url.replace("http", "ws") + "/rt/ws"
            async with await connect_user(
                ws, additional_headers={"Cookie": "session=bob-session"}
            ) as bob:
                await recv_json(bob)  # welcome
                await subscribe(bob, "orders")
                first = await _worker(redis.url, "42")
                again = await _worker(redis.url, "42")
                assert first.split()[1] == "offset=1"
                assert again == first  # the same id: the same offset
                message = await recv_json(bob)
                assert (message["offset"], message["data"]) == (1, {"shipped": 42})
