"""Slow and oversized handshakes against a real `fanout serve`: a thousand trickling
clients hold nothing for long, and legitimate clients still get in at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.servers import HubProcess, hub_process, metric
from tests.support.wsclient import connect_v1, recv_json, send_json, subscribe

HANDSHAKE_TIMEOUT_S = 2.0
TRICKLERS = 1000
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * TRICKLERS:
        # Both this process and the server (which inherits it) hold a socket per trickler.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * TRICKLERS), hard))
    log = tmp_path_factory.mktemp("handshake") / "hub.log"
    args = [
        "--log-level",
        "warning",
        "--handshake-timeout-s",
        str(HANDSHAKE_TIMEOUT_S),
        "--max-header-bytes",
        "4096",
    ]
    with hub_process(args, log) as running:
        yield running


@dataclass
class Trickle:
    opened: float = 0.0
    dropped: float | None = None
    bytes_sent: int = 0
    how: str = ""


async def _trickle(port: int, record: Trickle, started: asyncio.Semaphore) -> None:
    """Open a connection and send the upgrade request one byte every 0.5 s until the
    server drops it (EOF or reset)."""
    async with started:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    record.opened = time.monotonic()

    async def feed() -> None:
        for byte in UPGRADE:
            writer.write(bytes([byte]))
            await writer.drain()
            record.bytes_sent += 1
            await asyncio.sleep(0.5)

    feeder = asyncio.create_task(feed())
    try:
        data = await asyncio.wait_for(reader.read(1024), 60)
        record.how = "eof" if not data else f"data {data[:40]!r}"
    except (ConnectionResetError, BrokenPipeError) as exc:
        record.how = type(exc).__name__
    finally:
        record.dropped = time.monotonic()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        writer.transport.abort()


async def _legit_client(server: HubProcess, i: int) -> float:
    """Handshake time of a real client that then publishes and receives."""
    start = time.monotonic()
    async with await connect_v1(server.ws, open_timeout=5) as ws:
        handshake = time.monotonic() - start
        room = f"legit-{i}"
        await subscribe(ws, room)
        await send_json(ws, {"type": "publish", "room": room, "data": i, "id": "x"})
        types = sorted([(await recv_json(ws))["type"], (await recv_json(ws))["type"]])
        assert types == ["ack", "message"]
    return handshake


async def test_a_thousand_trickling_handshakes_are_dropped_while_real_clients_get_in_at_once(
    hub: HubProcess,
) -> None:
    port = _port(hub.url)
    records = [Trickle() for _ in range(TRICKLERS)]
    started = asyncio.Semaphore(100)
    tricklers = [asyncio.create_task(_trickle(port, r, started)) for r in records]
    try:
        while sum(r.bytes_sent > 0 for r in records) < TRICKLERS:
            await asyncio.sleep(0.02)
            assert not any(t.done() and t.exception() for t in tricklers)
        all_open = time.monotonic()
        handshakes = [await _legit_client(hub, i) for i in range(20)]
        legit_done = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tricklers), HANDSHAKE_TIMEOUT_S + 10)
    finally:
        for t in tricklers:
            t.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
    lifetimes = sorted(r.dropped - r.opened for r in records if r.dropped is not None)
    still_open_after_legit = sum(r.dropped is not None and r.dropped > legit_done for r in records)
    print(
        f"\n{TRICKLERS} tricklers open {all_open - min(r.opened for r in records):.2f} s after"
        f" the first; legit handshakes max {max(handshakes) * 1e3:.1f} ms,"
        f" mean {sum(handshakes) / len(handshakes) * 1e3:.1f} ms; trickler lifetimes"
        f" min {lifetimes[0]:.2f} s median {lifetimes[len(lifetimes) // 2]:.2f} s"
        f" max {lifetimes[-1]:.2f} s; {still_open_after_legit} still open when the 20 clients"
        f" were done; bytes sent max {max(r.bytes_sent for r in records)}"
    )
    assert max(handshakes) < 1.0, handshakes
    # The legitimate clients came while (most of) the tricklers were holding on.
    assert still_open_after_legit > TRICKLERS // 2
    # Every trickler was dropped by the server, at its handshake deadline: not earlier
    # (a 4-byte request is not an error yet), not much later.
    assert len(lifetimes) == TRICKLERS
    assert {r.how for r in records} <= {"eof", "ConnectionResetError", "BrokenPipeError"}
    assert lifetimes[0] >= HANDSHAKE_TIMEOUT_S - 0.3
    assert lifetimes[-1] <= HANDSHAKE_TIMEOUT_S + 3.0
    assert max(r.bytes_sent for r in records) < 20
    async with httpx.AsyncClient() as client:
        health = await client.get(hub.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["connections"] == 0


async def test_a_request_head_over_the_limit_gets_431_and_the_connection_is_closed(
    hub: HubProcess,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub.url))
    writer.write(UPGRADE[:-2] + b"X-Padding: " + b"p" * 5000 + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)  # read() to EOF: closed
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


async def test_a_head_that_never_ends_is_cut_off_at_the_limit(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub.url))
    answer = asyncio.create_task(reader.read(200))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while not answer.done() and sent < 100_000:
            writer.write(b"e" * 500)
            await writer.drain()
            sent += 500
            await asyncio.sleep(0.005)
    assert (await asyncio.wait_for(answer, 5)).startswith(b"HTTP/1.1 431 ")
    writer.transport.abort()
    # Cut off at the limit (4096), not at the end of the head, which never comes.
    assert sent < 4096 + 2000


async def test_an_oversized_head_on_a_kept_alive_connection_gets_431_too(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub.url))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b'"rooms":0}'), 5)
    assert first.startswith(b"HTTP/1.1 200 ")
    # The whole oversized head in one write (and most likely one read on the server).
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 6000 + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


async def test_a_client_that_connects_and_sends_nothing_is_dropped_after_the_handshake_timeout(
    hub: HubProcess,
) -> None:
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub.url))
    try:
        data = await asyncio.wait_for(reader.read(100), HANDSHAKE_TIMEOUT_S + 5)
        assert data == b""
    except ConnectionResetError:
        pass
    waited = time.monotonic() - start
    writer.close()
    assert HANDSHAKE_TIMEOUT_S - 0.3 <= waited <= HANDSHAKE_TIMEOUT_S + 2, waited


async def test_keep_alive_requests_still_work_and_each_head_gets_its_own_deadline(
    hub: HubProcess,
) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for _ in range(3):
            response = await client.get("/healthz")
            assert response.status_code == 200
    # On one connection, requests spread over longer than the handshake timeout: the
    # deadline covers each head, not the connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub.url))
    for i in range(3):
        if i:
            await asyncio.sleep(HANDSHAKE_TIMEOUT_S * 0.75)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
        assert answer.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_clients_that_gave_up_before_their_answer_cost_the_server_no_connection(
    hub: HubProcess,
) -> None:
    # A reconnect storm: the server is busy, clients' open timeouts expire with their
    # requests still queued, and they leave (half of them with a reset).
    before = await metric(hub.url, "connections_opened_total")
    gone = []
    os.kill(hub.pid, signal.SIGSTOP)  # busy: the kernel queues connections and requests
    try:
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", _port(hub.url)), timeout=5)
            sock.sendall(UPGRADE[:-2] + b"Sec-WebSocket-Protocol: fanout.v1\r\n\r\n")
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.append(sock)
        for sock in gone:
            sock.close()
    finally:
        os.kill(hub.pid, signal.SIGCONT)
    # A client that waited is answered after all of them, and gets in as usual.
    assert await _legit_client(hub, 100) < 5.0  # its own room: no earlier test's ids
    assert await metric(hub.url, "connections_opened_total") - before == 1  # the one that waited
    async with httpx.AsyncClient() as client:
        health = await client.get(hub.url + "/healthz", timeout=5)
    assert health.json()["connections"] == 0
