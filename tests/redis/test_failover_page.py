"""The chat page in real headless Chromium, served through a load balancer by two nodes
sharing one Redis: the node it is connected to is killed, and the page carries on from
the other node without losing or repeating a message.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright over CDP, as in
``tests/asgi/test_chat_page.py``. Every wait is an ``expect``/``wait_for`` with a timeout.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from fanout.client import Client
from tests.redis.nodes import backend, metrics, redis_nodes
from tests.support.balancer import Balancer
from tests.support.browser import MESSAGES, TIMEOUT_MS
from tests.support.redis import RedisServer
from tests.support.servers import HubProcess

ROOM = "page-failover"

pytestmark = pytest.mark.browser


def chat(i: int) -> dict[str, Any]:
    return {"kind": "chat", "name": "py", "text": f"m{i}"}


async def publish(client: Client, numbers: range) -> list[int]:
    """Publish chat messages m<i> one by one; the acked offsets."""
    return [(await client.publish(ROOM, chat(i), id=f"py-{i}")).offset for i in numbers]


async def offsets(page: Page) -> list[int]:
    values: list[str] = await page.locator(MESSAGES).evaluate_all(
        "els => els.map(e => e.dataset.offset)"
    )
    return [int(v) for v in values]


async def texts(page: Page) -> list[str]:
    result: list[str] = await page.locator(f'{MESSAGES} [data-testid="text"]').all_inner_texts()
    return result


async def page_stats(page: Page) -> dict[str, int]:
    stats: dict[str, int] = await page.evaluate("() => ({...window.fanoutChat.stats})")
    return stats


async def node_with_the_page(nodes: list[HubProcess]) -> tuple[HubProcess, HubProcess]:
    """(the node holding the page's WebSocket, the other one)."""
    counts = [(await metrics(node))["fanout_connections"] for node in nodes]
    assert sorted(counts) == [0, 1], counts
    victim = nodes[counts.index(1)]
    return victim, next(n for n in nodes if n is not victim)


async def test_the_chat_page_resumes_on_the_other_node_when_its_node_is_killed(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    errors: list[str] = []
    async with redis_nodes(redis_server, tmp_path) as nodes, Balancer() as balancer:
        balancer.set_backends([backend(n) for n in nodes])
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{balancer.url}/?room={ROOM}&name=alice")
        status = page.get_by_test_id("status")
        await expect(status).to_have_attribute("data-state", "connected")
        await page.wait_for_function("() => window.fanoutChat.room.epoch !== null")

        victim, survivor = await node_with_the_page(nodes)
        async with Client(survivor.ws) as publisher:
            assert await publish(publisher, range(1, 6)) == [1, 2, 3, 4, 5]
            await expect(page.locator(MESSAGES)).to_have_count(5)

            victim.proc.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(victim.proc.wait, 10) == -signal.SIGKILL
            # Published while the page has no connection: it must get them on resume.
            assert await publish(publisher, range(6, 11)) == list(range(6, 11))
            await page.wait_for_function("() => window.fanoutChat.stats.opened === 2")
            await expect(status).to_have_attribute("data-state", "connected")
            assert (await metrics(survivor))["fanout_connections"] == 2  # page + publisher
            # Published after the page came back, live.
            assert await publish(publisher, range(11, 16)) == list(range(11, 16))
            await expect(page.locator(MESSAGES)).to_have_count(15)

            # The page publishes through its new node, too, and sees its message once.
            box = page.get_by_label("Message", exact=True)
            await box.fill("from the page")
            await box.press("Enter")
            await expect(page.locator(MESSAGES)).to_have_count(16)
            await expect(page.get_by_test_id("pending")).to_have_count(0)

        assert await offsets(page) == list(range(1, 17))
        assert await texts(page) == [f"m{i}" for i in range(1, 16)] + ["from the page"]
        stats = await page_stats(page)
        counts = {k: stats[k] for k in ("opened", "duplicates", "gaps", "epochResets")}
        assert counts == {"opened": 2, "duplicates": 0, "gaps": 0, "epochResets": 0}, stats
        for kind in ("gap", "epoch", "error"):
            notices = page.locator(f'[data-testid="notice"][data-kind="{kind}"]')
            await expect(notices).to_have_count(0)
        # The resume came from the shared stream on the surviving node.
        assert (await metrics(survivor))["fanout_replayed_total"] >= 5
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
