"""The chat page at ``/`` in real headless Chromium against real fanout servers.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright over CDP; nothing is
downloaded. Every wait is an ``expect``/``wait_for`` with a timeout, never a sleep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from fanout.protocol.codes import CloseCode
from fanout.settings import Settings
from tests.support.browser import MESSAGES, TIMEOUT_MS
from tests.support.servers import (
    RunningHub,
    free_port,
    running_hub,
    start_hub_process,
    stop_process,
)
from tests.support.wsclient import connect_v1, recv_json, send_json

IMAGE_TIMEOUT_MS = 30_000

# `make test` installs Debian's Chromium where it is missing: its absence is a failure.
pytestmark = pytest.mark.browser


OpenChat = Callable[[str, str, str], Awaitable[Page]]


@pytest.fixture
async def open_chat(browser: Browser) -> AsyncIterator[OpenChat]:
    """Open the page as ``name`` in ``room``, each page in its own browser context."""
    errors: list[str] = []

    async def open_(url: str, room: str, name: str) -> Page:
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
        await page.goto(f"{url}/?room={room}&name={name}")
        await expect(status(page)).to_have_attribute("data-state", "connected")
        return page

    yield open_
    assert errors == [], f"JavaScript errors on the page: {errors}"


def status(page: Page) -> Any:
    return page.get_by_test_id("status")


def messages(page: Page) -> Any:
    return page.locator(MESSAGES)


def notices(page: Page, kind: str) -> Any:
    return page.locator(f'[data-testid="notice"][data-kind="{kind}"]')


async def send_text(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


async def offsets(page: Page) -> list[int]:
    values: list[str] = await messages(page).evaluate_all("els => els.map(e => e.dataset.offset)")
    return [int(v) for v in values]


async def texts(page: Page) -> list[str]:
    result: list[str] = await page.locator(f'{MESSAGES} [data-testid="text"]').all_inner_texts()
    return result


async def expect_no_pending(page: Page) -> None:
    await expect(page.get_by_test_id("pending")).to_have_count(0)


async def go_offline_and_cut(page: Page, server: RunningHub, room: str) -> None:
    """A network outage: the page's socket is closed by the server while the page's
    network is down, so it cannot reconnect until :func:`back_online`."""
    context: BrowserContext = page.context
    await context.set_offline(True)
    members = [c for c in list(server.hub.connections) if room in c.subscriptions]
    assert len(members) == 1, members
    members[0].close(CloseCode.SLOW_CONSUMER, "cut by the test")
    await expect(status(page)).not_to_have_attribute("data-state", "connected")


async def publish_from_python(url: str, room: str, items: list[Any]) -> list[int]:
    """Publish each item with an id and wait for every ack; returns the offsets."""
    async with await connect_v1(url) as ws:
        for i, data in enumerate(items):
            msg_id = f"py-{uuid.uuid4().hex}-{i}"
            await send_json(ws, {"type": "publish", "room": room, "data": data, "id": msg_id})
        acks = [await recv_json(ws) for _ in items]
    assert all(a["type"] == "ack" for a in acks), acks
    return [int(a["offset"]) for a in acks]


def big_png(path: Path, width: int, height: int) -> bytes:
    """A valid RGB PNG of random pixels: incompressible, so about width*height*3 bytes."""
    stride = width * 3
    pixels = os.urandom(stride * height)
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack("!I", len(body)) + kind + body + struct.pack("!I", crc)

    ihdr = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 1))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return data


# -- the tests ------------------------------------------------------------------------


async def test_two_pages_exchange_text_with_sender_and_time(open_chat: OpenChat) -> None:
    async with running_hub() as server:
        alice = await open_chat(server.url, "t1", "alice")
        bob = await open_chat(server.url, "t1", "bob")
        await send_text(alice, "hello bob")
        await expect(messages(bob)).to_have_count(1)
        await send_text(bob, "hi alice <b>not bold</b>")
        started = time.time()
        for page in (alice, bob):
            await expect(messages(page)).to_have_count(2)
            assert await offsets(page) == [1, 2]
            assert await texts(page) == ["hello bob", "hi alice <b>not bold</b>"]
            senders = await page.locator(f'{MESSAGES} [data-testid="sender"]').all_inner_texts()
            assert senders == ["alice", "bob"]
            times = page.locator(f'{MESSAGES} [data-testid="time"]')
            for i in range(2):
                assert (await times.nth(i).inner_text()).strip()
                stamp = await times.nth(i).get_attribute("datetime")
                assert stamp is not None
                assert abs(datetime.fromisoformat(stamp).timestamp() - started) < 60
            # The text is text, never markup.
            assert await page.locator(f"{MESSAGES} b").count() == 0
            await expect_no_pending(page)
        assert await alice.get_by_label("Your name").input_value() == "alice"
        assert await alice.get_by_label("Room").input_value() == "t1"


async def test_a_10_mb_image_is_delivered_and_shown_inline(
    open_chat: OpenChat, tmp_path: Path
) -> None:
    width, height = 2048, 1700
    png = big_png(tmp_path / "photo.png", width, height)
    assert len(png) > 10_000_000
    async with running_hub() as server:
        alice = await open_chat(server.url, "t2", "alice")
        bob = await open_chat(server.url, "t2", "bob")
        await alice.get_by_test_id("file").set_input_files(tmp_path / "photo.png")
        for page in (bob, alice):
            image = page.locator(f'{MESSAGES}[data-kind="image"] img[data-testid="image"]')
            await expect(image).to_have_count(1, timeout=IMAGE_TIMEOUT_MS)
            await page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0",
                arg=await image.element_handle(),
                timeout=IMAGE_TIMEOUT_MS,
            )
            assert await image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [
                width,
                height,
            ]
            # The bytes shown are exactly the file's bytes.
            digest = await image.evaluate(
                """async img => {
                    const buf = await (await fetch(img.src)).arrayBuffer();
                    const hash = await crypto.subtle.digest("SHA-256", buf);
                    return Array.from(new Uint8Array(hash),
                        b => b.toString(16).padStart(2, "0")).join("");
                }"""
            )
            assert digest == hashlib.sha256(png).hexdigest()
            message = page.locator(MESSAGES).first
            await expect(message.get_by_test_id("sender")).to_have_text("alice")
            await expect(message.get_by_test_id("time")).not_to_be_empty()
            await expect(message).to_contain_text("photo.png")
        await expect_no_pending(alice)


async def test_reconnects_after_a_server_restart_and_says_history_restarted(
    open_chat: OpenChat, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    first = await asyncio.to_thread(start_hub_process, ["--log-level", "warning"], log, port=port)
    second = None
    try:
        alice = await open_chat(first.url, "t3", "alice")
        await send_text(alice, "before the restart")
        await expect(messages(alice)).to_have_count(1)
        await expect_no_pending(alice)

        await asyncio.to_thread(stop_process, first.proc)
        await expect(status(alice)).not_to_have_attribute("data-state", "connected")
        # Sent while the server is down: kept in the outbox, sent after the reconnect.
        await send_text(alice, "sent while down")
        await expect(alice.get_by_test_id("pending")).to_have_count(1)

        second = await asyncio.to_thread(
            start_hub_process, ["--log-level", "warning"], log, port=port
        )
        await expect(status(alice)).to_have_attribute("data-state", "connected")
        await expect(notices(alice, "epoch")).to_have_count(1)
        await expect(notices(alice, "epoch")).to_contain_text("History restarted")
        await expect(messages(alice)).to_have_count(2)
        await expect_no_pending(alice)

        await send_text(alice, "after the restart")
        await expect(messages(alice)).to_have_count(3)
        await publish_from_python(second.ws, "t3", [{"kind": "chat", "name": "py", "text": "hi"}])
        await expect(messages(alice)).to_have_count(4)
        assert await texts(alice) == [
            "before the restart",
            "sent while down",
            "after the restart",
            "hi",
        ]
        # Offsets restart with the new epoch.
        assert await offsets(alice) == [1, 1, 2, 3]
        # The notice sits between the old epoch's messages and the new one's.
        order = await alice.locator("#messages > li").evaluate_all(
            "els => els.map(e => e.dataset.kind)"
        )
        assert order[-5:] == ["chat", "epoch", "chat", "chat", "chat"]
    finally:
        await asyncio.to_thread(stop_process, first.proc)
        if second is not None:
            await asyncio.to_thread(stop_process, second.proc)


async def test_resumes_after_a_cut_without_duplicates_or_holes(open_chat: OpenChat) -> None:
    async with running_hub() as server:
        alice = await open_chat(server.url, "t4", "alice")
        chat = [{"kind": "chat", "name": "py", "text": f"m{i}"} for i in range(1, 16)]
        assert await publish_from_python(server.ws, "t4", chat[:5]) == [1, 2, 3, 4, 5]
        await expect(messages(alice)).to_have_count(5)

        await go_offline_and_cut(alice, server, "t4")
        replayed_before = server.hub.counters["replayed"]
        assert await publish_from_python(server.ws, "t4", chat[5:]) == list(range(6, 16))
        await alice.context.set_offline(False)

        await expect(status(alice)).to_have_attribute("data-state", "connected")
        await expect(messages(alice)).to_have_count(15)
        assert await offsets(alice) == list(range(1, 16))
        assert await texts(alice) == [f"m{i}" for i in range(1, 16)]
        assert server.hub.counters["replayed"] - replayed_before == 10
        stats = await alice.evaluate("() => ({...window.fanoutChat.stats})")
        assert stats["opened"] == 2
        assert stats["duplicates"] == 0
        assert stats["gaps"] == 0
        await expect(notices(alice, "gap")).to_have_count(0)
        await expect(notices(alice, "epoch")).to_have_count(0)

        # Live delivery goes on after the resume; nothing arrives twice.
        await send_text(alice, "m16")
        await expect(messages(alice)).to_have_count(16)
        assert await offsets(alice) == list(range(1, 17))


async def test_a_gap_is_shown_when_history_no_longer_reaches_back(open_chat: OpenChat) -> None:
    async with running_hub(Settings(history_max_messages=3)) as server:
        alice = await open_chat(server.url, "t5", "alice")
        await go_offline_and_cut(alice, server, "t5")
        chat = [{"kind": "chat", "name": "py", "text": f"m{i}"} for i in range(1, 11)]
        await publish_from_python(server.ws, "t5", chat)
        await alice.context.set_offline(False)

        await expect(status(alice)).to_have_attribute("data-state", "connected")
        gap = notices(alice, "gap")
        await expect(gap).to_have_count(1)
        await expect(gap).to_have_text(re.compile(r"7 messages \(1–7\)"))
        await expect(messages(alice)).to_have_count(3)
        assert await offsets(alice) == [8, 9, 10]
        assert await texts(alice) == ["m8", "m9", "m10"]


async def test_other_clients_data_is_shown_as_raw_text_and_errors_are_shown(
    open_chat: OpenChat,
) -> None:
    async with running_hub() as server:
        alice = await open_chat(server.url, "t6", "alice")
        await publish_from_python(server.ws, "t6", ["plain string", {"x": [1, 2]}])
        await expect(messages(alice)).to_have_count(2)
        assert await texts(alice) == ["plain string", '{"x":[1,2]}']
        raw = alice.locator(f'{MESSAGES}[data-kind="raw"]')
        await expect(raw).to_have_count(2)
        # A chat message the server refuses (name too long) is an error on screen.
        await alice.evaluate(
            """() => window.fanoutChat.socket.send(JSON.stringify({
                type: "publish", room: "t6", id: "bad",
                data: {kind: "chat", name: "", text: "no name"}}))"""
        )
        await expect(notices(alice, "error")).to_have_count(1)
        await expect(notices(alice, "error")).to_contain_text("forbidden")


async def test_joining_shows_recent_history_then_live_and_rooms_can_be_switched(
    open_chat: OpenChat,
) -> None:
    async with running_hub() as server:
        chat = [{"kind": "chat", "name": "py", "text": f"m{i}"} for i in range(1, 61)]
        await publish_from_python(server.ws, "t7", chat)
        alice = await open_chat(server.url, "t7", "alice")
        # The last 50 messages of the room, then live ones, each exactly once.
        await expect(messages(alice)).to_have_count(50)
        await send_text(alice, "m61")
        await expect(messages(alice)).to_have_count(51)
        assert await offsets(alice) == list(range(11, 62))
        assert await texts(alice) == [f"m{i}" for i in range(11, 62)]

        room = alice.get_by_label("Room")
        await room.fill("t7-other")
        await room.press("Enter")
        await expect(messages(alice)).to_have_count(0)
        assert "room=t7-other" in alice.url
        await send_text(alice, "elsewhere")
        await expect(messages(alice)).to_have_count(1)
        assert await texts(alice) == ["elsewhere"]
        await publish_from_python(server.ws, "t7", [{"kind": "chat", "name": "py", "text": "x"}])
        await publish_from_python(server.ws, "t7-other", ["y"])
        await expect(messages(alice)).to_have_count(2)
        assert await texts(alice) == ["elsewhere", "y"]


async def test_an_image_over_the_servers_limit_fails_once_and_the_chat_goes_on(
    open_chat: OpenChat, tmp_path: Path
) -> None:
    big_png(tmp_path / "huge.png", 1024, 1024)  # about 3 MB
    async with running_hub(Settings(max_message_bytes=1024 * 1024)) as server:
        alice = await open_chat(server.url, "t8", "alice")
        await alice.get_by_test_id("file").set_input_files(tmp_path / "huge.png")
        error = notices(alice, "error")
        await expect(error).to_have_count(1)
        await expect(error).to_contain_text("too large")
        # The page reconnects by itself and does not send the image again.
        await expect(status(alice)).to_have_attribute("data-state", "connected")
        await send_text(alice, "still here")
        await expect(messages(alice)).to_have_count(1)
        assert await texts(alice) == ["still here"]
        assert await alice.evaluate("() => window.fanoutChat.pending") == 0
        await expect(error).to_have_count(1)


async def test_joining_shows_the_last_50_of_60_from_one_history_request_then_live_ones(
    browser: Browser,
) -> None:
    async with running_hub() as server:
        chat = [{"kind": "chat", "name": "py", "text": f"m{i}"} for i in range(1, 61)]
        await publish_from_python(server.ws, "t9", chat)
        replayed_before = server.hub.counters["replayed"]
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sent: list[dict[str, Any]] = []

        def record_sent(payload: str | bytes) -> None:
            if isinstance(payload, str):
                sent.append(json.loads(payload))

        page.on("websocket", lambda ws: ws.on("framesent", record_sent))
        await page.goto(f"{server.url}/?room=t9&name=alice")
        await expect(status(page)).to_have_attribute("data-state", "connected")

        await expect(messages(page)).to_have_count(50)
        assert await offsets(page) == list(range(11, 61))
        assert await texts(page) == [f"m{i}" for i in range(11, 61)]
        await publish_from_python(server.ws, "t9", [{"kind": "chat", "name": "py", "text": "m61"}])
        await expect(messages(page)).to_have_count(51)
        await send_text(page, "m62")
        await expect(messages(page)).to_have_count(52)
        await expect_no_pending(page)
        assert await offsets(page) == list(range(11, 63))
        assert await texts(page) == [f"m{i}" for i in range(11, 63)]

        # One history request, then one subscribe from its latest: nothing replayed.
        epoch = await page.evaluate("() => window.fanoutChat.room.epoch")
        asked = [(f["type"], f["room"], f.get("limit"), f.get("since")) for f in sent]
        assert [a for a in asked if a[0] in ("history", "subscribe")] == [
            ("history", "t9", 50, None),
            ("subscribe", "t9", None, {"epoch": epoch, "offset": 60}),
        ]
        assert server.hub.counters["replayed"] == replayed_before
        stats = await page.evaluate("() => ({...window.fanoutChat.stats})")
        assert (stats["duplicates"], stats["gaps"]) == (0, 0)
        await expect(notices(page, "gap")).to_have_count(0)
        assert errors == []
        await context.close()
