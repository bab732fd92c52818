"""The ``/admin`` dashboard in real headless Chromium against real fanout servers: it is
off without an admin key, refuses a missing, wrong or malformed key, renders its tiles and
tables, follows the hub's numbers as they change, shows each worker process and the
broker's health, and stays cheap with 10,000 connections. Every wait is an ``expect`` or
a bounded poll, never a bare sleep."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from fanout.asgi import metrics
from fanout.asgi.admin import stats_body
from fanout.core.connection import Mode
from fanout.settings import Settings
from tests.core.fakes import FakeTransport
from tests.support.browser import TIMEOUT_MS
from tests.support.redis import RedisServer
from tests.support.redis_fixtures import redis_server
from tests.support.servers import hub_process, running_hub
from tests.support.wsclient import connect_v1, recv_json, send_json, subscribe

__all__ = ["redis_server"]

pytestmark = pytest.mark.browser

KEY = "admin-key-for-the-tests-0123"
WRONG_SAME_LENGTH = "x" * len(KEY)
LOCALE = "en-US"  # numbers on the page as 10,000


class AdminPages:
    """Opens ``/admin`` pages, each in its own context, and collects JavaScript errors:
    uncaught exceptions and console errors (a refused stats request is expected only
    where a test says so)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self.refusals_expected = False

    async def open(self, url: str, key: str | None = KEY) -> Page:
        context = await self.browser.new_context(locale=LOCALE)
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        await page.goto(f"{url}/admin")
        if key is not None:
            await sign_in(page, key)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.refusals_expected and "status of 401" in message.text:
            return
        self.errors.append(f"console: {message.text}")


@pytest.fixture
async def admin_pages(browser: Browser) -> AsyncIterator[AdminPages]:
    pages = AdminPages(browser)
    yield pages
    assert pages.errors == [], f"JavaScript errors on the page: {pages.errors}"


async def sign_in(page: Page, key: str) -> None:
    await expect(page.get_by_test_id("key-form")).to_be_visible()
    await page.get_by_label("Key").fill(key)
    await page.get_by_role("button", name="Open dashboard").click()


def tile(page: Page, name: str) -> Any:
    return page.get_by_test_id(f"tile-{name}").get_by_test_id("value")


def row(page: Page, table: str, key: str) -> Any:
    return page.get_by_test_id(table).locator(f'tbody tr[data-key="{key}"]')


async def polls(page: Page) -> int:
    return int(await page.evaluate("() => window.fanoutAdmin.polls"))


async def wait_for_polls(page: Page, more: int) -> None:
    """Until the page has drawn ``more`` further answers."""
    target = await polls(page) + more
    await page.wait_for_function(f"() => window.fanoutAdmin.polls >= {target}")


async def stats(url: str, key: str = KEY) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/admin/stats", headers={"Authorization": f"adminkey {key}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def raw_status(url: str, path: bytes, header: bytes) -> int:
    """The status of a GET of ``path`` with ``header`` written on the socket as is."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


# -- the page -----------------------------------------------------------------------------


async def test_renders_tiles_and_follows_the_hubs_numbers(admin_pages: AdminPages) -> None:
    async with running_hub(Settings(admin_key=KEY)) as server:
        page = await admin_pages.open(server.url)
        await expect(page.get_by_test_id("dashboard")).to_be_visible()
        await expect(page.get_by_test_id("key-form")).to_be_hidden()
        await expect(tile(page, "connections")).to_have_text("0")
        await expect(tile(page, "rooms")).to_have_text("0")
        broker = page.get_by_test_id("broker")
        await expect(broker).to_have_attribute("data-state", "ok")
        await expect(broker).to_have_text("broker memory: healthy")
        await expect(page.get_by_test_id("node")).to_have_text(f"pid {os.getpid()}")
        await expect(row(page, "broker-errors", "unavailable")).to_have_count(1)

        # Two members of a room and a publisher publishing until the rates show it.
        # (Members that do not read: no bound on what their client buffers, so that their
        # close is not stuck behind unread frames.)
        async with (
            await connect_v1(server.ws, max_queue=None) as alice,
            await connect_v1(server.ws, max_queue=None) as bob,
            await connect_v1(server.ws) as publisher,
        ):
            await subscribe(alice, "lobby")
            await subscribe(bob, "lobby")
            await expect(tile(page, "connections")).to_have_text("3")
            await expect(tile(page, "rooms")).to_have_text("1")

            async def publish_steadily() -> None:
                for i in range(10_000):
                    await send_json(
                        publisher, {"type": "publish", "room": "lobby", "data": i, "id": f"m{i}"}
                    )
                    assert (await recv_json(publisher))["type"] == "ack"
                    await asyncio.sleep(0.02)

            publishing = asyncio.create_task(publish_steadily())
            try:
                deliveries = page.get_by_test_id("tile-deliveries")
                await page.wait_for_function(
                    """() => {
                        const d = document.querySelector('[data-testid="tile-deliveries"]');
                        const p = document.querySelector('[data-testid="tile-publishes"]');
                        return Number(d.dataset.value) > 0 && Number(p.dataset.value) > 0;
                    }"""
                )
                await expect(deliveries.get_by_test_id("sub")).to_contain_text("per publish")
            finally:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
        # Deliveries are twice the publishes (two members); both add up in the tables.
        await wait_for_polls(page, 2)
        published = server.hub.counters["published"]
        await expect(row(page, "counters", "published").locator(".total")).to_have_text(
            f"{published:,}"
        )
        await expect(row(page, "counters", "deliveries").locator(".total")).to_have_text(
            f"{2 * published:,}"
        )
        # The three clients went away: closes by code, and the tiles follow.
        await expect(tile(page, "connections")).to_have_text("0")
        closes = server.hub.counters["closes_1000"]
        assert closes >= 3
        await expect(row(page, "closes", "1000").locator(".total")).to_have_text(str(closes))
        await expect(row(page, "closes", "1000")).to_contain_text("normal")
        # The sparklines were drawn (some pixel is not transparent).
        drawn = (
            await page.get_by_test_id("tile-publishes")
            .locator("canvas")
            .evaluate(
                """c => c.getContext("2d").getImageData(0, 0, c.width, c.height).data
                    .some((v, i) => i % 4 === 3 && v > 0)"""
            )
        )
        assert drawn
        # The key stays with the tab: a reload goes straight to the dashboard.
        await page.reload()
        await expect(page.get_by_test_id("dashboard")).to_be_visible()
        await expect(page.get_by_test_id("key-form")).to_be_hidden()
        await wait_for_polls(page, 1)
        # Signing out forgets it.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_test_id("key-form")).to_be_visible()
        assert await page.evaluate("() => sessionStorage.getItem('fanout.adminKey')") is None


async def test_the_page_refuses_a_wrong_key_and_accepts_the_right_one(
    admin_pages: AdminPages,
) -> None:
    admin_pages.refusals_expected = True
    async with running_hub(Settings(admin_key=KEY)) as server:
        page = await admin_pages.open(server.url, key=None)
        await expect(page.get_by_test_id("refused")).to_be_hidden()
        # (The last one cannot even be sent in a header: refused without asking.)
        for wrong in ("wrong", WRONG_SAME_LENGTH, "été-été-été-été-été"):
            await sign_in(page, wrong)
            await expect(page.get_by_test_id("refused")).to_have_text("refused: wrong key")
            await expect(page.get_by_test_id("key-form")).to_be_visible()
            await expect(page.get_by_test_id("dashboard")).to_be_hidden()
            assert await page.evaluate("() => sessionStorage.getItem('fanout.adminKey')") is None
        assert await page.evaluate("() => window.fanoutAdmin.polls") == 0
        await sign_in(page, KEY)
        await expect(page.get_by_test_id("dashboard")).to_be_visible()
        await expect(page.get_by_test_id("refused")).to_be_hidden()
        await expect(tile(page, "connections")).to_have_text("0")


async def test_each_worker_process_has_a_row_and_the_brokers_failure_shows_red(
    admin_pages: AdminPages, redis_server: RedisServer, tmp_path: Path
) -> None:
    args = [
        "--workers", "2", "--broker", redis_server.url, "--admin-key", KEY,
        "--redis-health-interval-s", "0.2", "--redis-timeout-s", "0.5",
        "--redis-reconnect-max-s", "0.3", "--log-level", "warning",
    ]  # fmt: skip
    with hub_process(args, tmp_path / "workers.log") as server:

        async def both_reported() -> bool:
            return len((await stats(server.url))["nodes"]) == 2

        await eventually(both_reported, "both workers in /admin/stats")
        body = await stats(server.url)
        pids = sorted(node["pid"] for node in body["nodes"])
        assert body["totals"]["processes"] == 2
        assert body["broker"] == {"label": body["broker"]["label"], "healthy": True, "reason": None}
        assert body["broker"]["label"].startswith("redis")

        page = await admin_pages.open(server.url)
        nodes = page.get_by_test_id("nodes")
        await expect(nodes.locator("tbody tr")).to_have_count(2)
        for pid in pids:
            await expect(nodes.locator(f'tr[data-pid="{pid}"]')).to_have_count(1)
        await expect(nodes.locator("tr.self")).to_have_count(1)
        await expect(page.get_by_test_id("node")).to_contain_text("2 processes")
        await expect(page.get_by_test_id("broker")).to_have_attribute("data-state", "ok")

        # Connections on the workers add up in the tile (the kernel spreads them).
        clients = [await connect_v1(server.ws) for _ in range(4)]
        try:
            await expect(tile(page, "connections")).to_have_text("4")
            redis_server.pause()
            broker = page.get_by_test_id("broker")
            await expect(broker).to_have_attribute("data-state", "bad")
            await expect(broker).not_to_contain_text("healthy")
            redis_server.resume()
            await expect(broker).to_have_attribute("data-state", "ok")
        finally:
            redis_server.resume()
            for ws in clients:
                await ws.close()


async def test_light_with_10000_connections(admin_pages: AdminPages) -> None:
    """10,000 connections (fake sockets in the real hub): a stats answer stays cheap."""
    settings = Settings(admin_key=KEY, max_connections_per_ip=0, max_connections=10_000)
    async with running_hub(settings) as server:
        hub = server.hub
        conns = [hub.connect(FakeTransport(), mode=Mode.V1) for _ in range(10_000)]
        try:
            started = time.perf_counter()
            for _ in range(100):
                metrics.snapshot(hub)
            snapshot_ms = (time.perf_counter() - started) * 10
            timings: list[float] = []
            async with httpx.AsyncClient() as http:
                for _ in range(20):
                    started = time.perf_counter()
                    answer = await http.get(
                        f"{server.url}/admin/stats", headers={"Authorization": f"adminkey {KEY}"}
                    )
                    timings.append((time.perf_counter() - started) * 1000)
                    assert answer.json()["totals"]["connections"] == 10_000
            request_ms = statistics.median(timings)
            print(f"10,000 connections: snapshot {snapshot_ms:.2f} ms, request {request_ms:.2f} ms")
            assert snapshot_ms < 50, snapshot_ms
            assert request_ms < 100, timings

            page = await admin_pages.open(server.url)
            await expect(tile(page, "connections")).to_have_text("10,000")
        finally:
            for conn in conns:
                conn.close(1001, "test over")


# -- refusals -----------------------------------------------------------------------------


async def test_stats_refuse_a_missing_wrong_or_malformed_key() -> None:
    refused = [
        {},
        {"Authorization": ""},
        {"Authorization": "adminkey"},
        {"Authorization": "adminkey wrong"},
        {"Authorization": f"adminkey {WRONG_SAME_LENGTH}"},
        {"Authorization": f"adminkey {KEY}x"},
        {"Authorization": f"adminkey {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"apikey {KEY}"},
        {"Authorization": KEY},
        {"Authorization": f"adminkey{KEY}"},
        {"Authorization": f"adminkey {KEY} {KEY}"},
        {"Authorization": "adminkey été-été-été-été-été".encode()},
        {"Authorization": b"adminkey \xff\xfe" + KEY.encode()},
    ]
    # Headers no HTTP client would send, written on the socket.
    garbage = [
        b"Authorization: adminkey \r\n",
        b"Authorization: adminkey\t" + KEY.encode() + b"\r\n",
        b"Authorization: adminkey " + KEY.encode() + b"\x00\r\n",
        b"Authorization: \x7f\x80\x81\r\n",
        b"Authorization: adminkey " + b"k" * 60_000 + b"\r\n",
        b"Authorization: adminkey wrong\r\nAuthorization: adminkey " + KEY.encode() + b"\r\n",
    ]
    async with running_hub(Settings(admin_key=KEY)) as server, httpx.AsyncClient() as http:
        for headers in refused:
            answer = await http.get(f"{server.url}/admin/stats", headers=headers)  # type: ignore[arg-type]
            assert answer.status_code == 401, (headers, answer.text)
            assert answer.json()["code"] == "unauthorized"
            assert answer.headers["cache-control"] == "no-store"
            assert "nodes" not in answer.text
        for header in garbage:
            status = await raw_status(server.url, b"/admin/stats", header)
            assert status in (400, 401, 431), (header[:80], status)
        # The right key, whatever the scheme's case; the answer's shape.
        answer = await http.get(
            f"{server.url}/admin/stats", headers={"Authorization": f"AdminKey {KEY}"}
        )
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"time", "node", "broker", "nodes", "totals"}
        assert abs(body["time"] - time.time()) < 5
        assert body["broker"] == {"label": "memory", "healthy": True, "reason": None}
        (node,) = body["nodes"]
        assert node["pid"] == body["node"] == os.getpid()
        assert {"connections", "rooms", "outbox_bytes", "counters"} <= set(node)
        assert body["totals"]["processes"] == 1
        assert body["totals"]["connections"] == node["connections"] == 0
        # The page and its files need no key (they hold nothing) and load nothing else.
        page = await http.get(f"{server.url}/admin")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "http" not in page.text.replace("http-equiv", "")
        for name, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css")):
            answer = await http.get(f"{server.url}/admin/{name}")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(kind)


async def test_off_without_an_admin_key() -> None:
    async with running_hub(Settings()) as server, httpx.AsyncClient() as http:
        for path in ("/admin", "/admin/stats", "/admin/admin.js", "/admin/admin.css"):
            headers = {"Authorization": f"adminkey {KEY}"}
            answer = await http.get(server.url + path, headers=headers)
            assert answer.status_code == 404, path
        assert (await http.get(server.url + "/healthz")).status_code == 200


def test_a_short_admin_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="admin_key must be at least 16 characters"):
        Settings(admin_key="short")
    with pytest.raises(ValueError, match="admin_key must be at least 16 characters"):
        Settings.from_env({"FANOUT_ADMIN_KEY": "k" * 15})
    for unsendable in ("été-été-été-été-été", "admin key with spaces", "k" * 16 + "\n"):
        with pytest.raises(ValueError, match="printable ASCII without spaces"):
            Settings(admin_key=unsendable)
    assert Settings.from_env({"FANOUT_ADMIN_KEY": KEY}).admin_key == KEY
    # The key survives the trip to --workers processes and is never in a repr.
    settings = Settings(admin_key=KEY)
    assert Settings.from_env(settings.to_env()) == settings
    assert KEY not in repr(settings)
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--admin-key", "short", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "admin_key must be at least 16 characters" in done.stderr
    env = {**os.environ, "FANOUT_ADMIN_KEY": "tiny"}
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 2, done
    assert "admin_key" in done.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "--admin-key" in help_text


def test_the_stats_body_adds_up_several_processes() -> None:
    def snap(pid: int, connections: int, published: int) -> metrics.Snapshot:
        return {
            "pid": pid,
            "time": 1000.0 + pid,
            "gauges": {"processes": 1, "connections": connections, "rooms": 1,
                       "outbox_bytes": 10, "revocations": 0},
            "counters": {"published": published, "closes_1000": 1},
            "histograms": {},
        }  # fmt: skip

    own, other = snap(2, 3, 5), snap(1, 4, 6)
    broker = {"label": "memory", "healthy": True, "reason": None}
    body = stats_body(own, [own, other], broker)
    assert [n["pid"] for n in body["nodes"]] == [1, 2]
    assert body["node"] == 2
    assert body["totals"]["processes"] == 2
    assert body["totals"]["connections"] == 7
    assert body["totals"]["outbox_bytes"] == 20
    assert body["totals"]["counters"] == {"published": 11, "closes_1000": 2}
    json.dumps(body)  # JSON-able as is
