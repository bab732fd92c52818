"""Origin and token checks as a browser meets them, in real headless Chromium.

A page from a second origin (another port on 127.0.0.1, served by a tiny HTTP server
here) opens a socket to the hub: refused before accept unless the hub's
``allowed_origins`` names that origin. The hub's own chat page works, and on a hub
with auth it passes ``?token=`` on, says plainly when it is refused, and never shows
the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from fanout.auth.grants import RoomGrants
from fanout.auth.tokens import mint_token
from fanout.settings import Settings
from tests.support.browser import MESSAGES, TIMEOUT_MS
from tests.support.servers import metric, running_hub

pytestmark = pytest.mark.browser

SECRET = "origin-page-test-secret-0123456789abcdef"
REFUSAL = "The hub refused the connection: check the token/origin"

# The second origin's page: one fanout.v1 socket to the hub, everything it sees kept in
# window.seen. On open it joins "xo" and publishes one chat message with id "p1".
FOREIGN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>elsewhere</title><link rel="icon" href="data:,">
</head><body><p>a page on another origin</p><script>
window.seen = {events: [], frames: []};
const ws = new WebSocket(%(url)s, "fanout.v1");
ws.onopen = () => {
  seen.events.push("open");
  ws.send(JSON.stringify({type: "subscribe", room: "xo"}));
  ws.send(JSON.stringify({type: "publish", room: "xo", id: "p1",
                          data: {kind: "chat", name: "far", text: "from afar"}}));
};
ws.onerror = () => seen.events.push("error");
ws.onclose = (ev) => seen.events.push("close " + ev.code);
ws.onmessage = (ev) => seen.frames.push(JSON.parse(ev.data));
</script></body></html>
"""


@dataclass
class SecondOrigin:
    """An HTTP server on its own port, answering every GET with ``FOREIGN_PAGE``."""

    port: int = 0
    hub_ws: str = ""
    requests: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            body = (FOREIGN_PAGE % {"url": json.dumps(self.hub_ws)}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Cache-Control: no-store\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SecondOrigin]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


async def new_page(browser: Browser, errors: list[str], logs: list[str] | None = None) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if logs is not None:
        page.on("console", lambda msg: logs.append(msg.text))
    return page


async def open_foreign_page(browser: Browser, site: SecondOrigin) -> Page:
    errors: list[str] = []
    page = await new_page(browser, errors)
    await page.goto(site.origin + "/")
    assert errors == []
    return page


async def seen(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.seen")
    return result


def lobby_token(ttl_s: float = 300, now: float | None = None) -> str:
    return mint_token(
        SECRET.encode(),
        subject="alice",
        grants=RoomGrants.both(["lobby"]),
        ttl_s=ttl_s,
        now=now,
    )


async def open_chat(
    browser: Browser,
    url: str,
    name: str,
    errors: list[str],
    token: str | None = None,
    logs: list[str] | None = None,
) -> Page:
    page = await new_page(browser, errors, logs)
    query = f"?room=lobby&name={name}" + (f"&token={token}" if token else "")
    await page.goto(f"{url}/{query}")
    return page


async def send_text(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


def status(page: Page) -> Any:
    return page.get_by_test_id("status")


def error_notices(page: Page) -> Any:
    return page.locator('[data-testid="notice"][data-kind="error"]')


# -- the tests ------------------------------------------------------------------------


async def test_a_page_from_a_second_origin_is_refused_before_the_socket_opens(
    browser: Browser,
) -> None:
    async with SecondOrigin().running() as site, running_hub() as server:
        site.hub_ws = server.ws
        page = await open_foreign_page(browser, site)
        await page.wait_for_function("() => window.seen.events.includes('close 1006')")
        assert (await seen(page))["events"] == ["error", "close 1006"]
        assert server.hub.counters["refused_origin"] == 1
        assert await metric(server.url, 'refusals_total{reason="origin"}') == 1
        assert server.hub.counters["connections_total"] == 0
        assert len(server.hub.connections) == 0


async def test_the_hubs_own_chat_page_is_the_right_origin_and_two_pages_talk(
    browser: Browser,
) -> None:
    errors: list[str] = []
    async with running_hub() as server:
        alice = await open_chat(browser, server.url, "alice", errors)
        bob = await open_chat(browser, server.url, "bob", errors)
        for page in (alice, bob):
            await expect(status(page)).to_have_attribute("data-state", "connected")
        await send_text(alice, "same origin works")
        for page in (alice, bob):
            await expect(page.locator(MESSAGES)).to_have_count(1)
            await expect(page.locator(MESSAGES)).to_contain_text("same origin works")
        assert server.hub.counters["refused_origin"] == 0
    assert errors == []


async def test_a_second_origin_on_the_allowlist_connects_and_publishes(
    browser: Browser,
) -> None:
    async with SecondOrigin().running() as site:
        settings = Settings(allowed_origins=f"https://app.example.com, {site.origin}")
        async with running_hub(settings) as server:
            site.hub_ws = server.ws
            page = await open_foreign_page(browser, site)
            await page.wait_for_function(
                "() => window.seen.frames.some(f => f.type === 'ack' && f.id === 'p1')"
            )
            got = await seen(page)
            assert got["events"] == ["open"]
            types = [frame["type"] for frame in got["frames"]]
            assert types[0] == "subscribed"
            assert "error" not in types
            assert server.hub.counters["refused_origin"] == 0
            assert server.hub.counters["published"] == 1


async def test_on_an_auth_hub_the_chat_page_works_with_a_token_and_says_when_refused(
    browser: Browser,
) -> None:
    errors: list[str] = []
    token = lobby_token()
    async with running_hub(Settings(auth_secret=SECRET)) as server:
        logs: list[str] = []
        alice = await open_chat(browser, server.url, "alice", errors, token, logs)
        bob = await open_chat(browser, server.url, "bob", errors, token, logs)
        for page in (alice, bob):
            await expect(status(page)).to_have_attribute("data-state", "connected")
        await send_text(alice, "with a token")
        await expect(bob.locator(MESSAGES)).to_contain_text("with a token")
        assert len(server.hub.connections) == 2
        for page in (alice, bob):
            assert token not in await page.inner_text("body")
            assert token not in await page.content()
            assert "token=" not in page.url
        assert not any(token in line for line in logs)

        # Without a token: refused, said so on the page, and retried only with backoff.
        started = time.monotonic()
        mallory = await open_chat(browser, server.url, "mallory", errors)
        notice = error_notices(mallory)
        await expect(notice).to_have_count(1)
        await expect(notice).to_contain_text(REFUSAL)
        await expect(status(mallory)).to_contain_text("refused")
        await asyncio.sleep(1.5)
        elapsed = time.monotonic() - started
        attempts = server.hub.counters["refused_token"]
        stats = await mallory.evaluate("() => ({...window.fanoutChat.stats})")
        assert stats["opened"] == 0
        assert attempts <= stats["connects"] <= attempts + 1  # one may be under way
        # Backoff from 125-250 ms, doubling: a handful of attempts, not hundreds.
        assert 2 <= attempts <= 4 + elapsed * 2, (attempts, elapsed)
        await expect(notice).to_have_count(1)
        assert len(server.hub.connections) == 2
    assert errors == []


async def test_an_expired_token_closes_the_chat_page_for_good_with_the_reason(
    browser: Browser,
) -> None:
    errors: list[str] = []
    token = lobby_token(ttl_s=2, now=time.time())
    async with running_hub(Settings(auth_secret=SECRET)) as server:
        page = await open_chat(browser, server.url, "alice", errors, token)
        await expect(status(page)).to_have_attribute("data-state", "connected")
        notice = error_notices(page)
        await expect(notice).to_contain_text("token expired", timeout=10_000)
        await expect(status(page)).to_have_attribute("data-state", "closed")
        await expect(status(page)).to_contain_text("token expired")
        # Final: no reconnect with the same (expired) token.
        await asyncio.sleep(1.0)
        assert server.hub.counters["refused_token"] == 0
        assert await page.evaluate("() => window.fanoutChat.stats.connects") == 1
        assert token not in await page.inner_text("body")
    assert errors == []
