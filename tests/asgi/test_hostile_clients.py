"""Hostile clients against a real server: floods, per-address and room limits,
compression and protocol tricks, stalled keepalives. Each gets its documented answer
and nobody else notices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import statistics
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from fanout.settings import Settings
from tests.support.rawclient import RawClient, close_code, masked_frame
from tests.support.servers import HubProcess, RunningHub, hub_process, running_hub
from tests.support.wsclient import (
    binary_publish,
    connect_plain,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


async def _still_serves(server: RunningHub | HubProcess, room: str = "health-check") -> None:
    """A fresh client can still subscribe, publish and receive its message."""
    async with await connect_v1(server.ws) as ws:
        await subscribe(ws, room)
        await send_json(ws, {"type": "publish", "room": room, "data": "ok", "id": uuid.uuid4().hex})
        answers = [await recv_json(ws), await recv_json(ws)]
        assert sorted(a["type"] for a in answers) == ["ack", "message"], answers


def _publish(room: str, i: int, data: Any = "x") -> dict[str, Any]:
    return {"type": "publish", "room": room, "data": data, "id": f"p{i}"}


async def _answers(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await recv_json(ws) for _ in range(count)]


# -- rate limits, live ---------------------------------------------------------------


async def test_a_v1_client_over_its_frame_rate_gets_rate_limited_errors_naming_its_publishes() -> (
    None
):
    settings = Settings(rate_frames_per_s=50, rate_limit_grace_s=30)
    async with running_hub(settings) as server, await connect_v1(server.ws) as ws:
        started = time.monotonic()
        for i in range(150):
            await send_json(ws, _publish("r", i))
        answers = await _answers(ws, 150)
        elapsed = time.monotonic() - started
        # One answer per publish, in the order of the publishes, ack or error.
        assert [a["id"] for a in answers] == [f"p{i}" for i in range(150)]
        kinds = [a["type"] if a["type"] == "ack" else a["code"] for a in answers]
        assert set(kinds) == {"ack", "rate_limited"}
        # The 1 s burst (50 frames) passes; of the rest, only as many as the tokens
        # that came back while they were sent (50/s: a busy machine sends slower).
        assert kinds[:50] == ["ack"] * 50
        refusals = kinds.count("rate_limited")
        assert refusals >= 100 - 50 * elapsed - 1
        refused = next(a for a in answers if a["type"] == "error")
        assert "50 frames/s" in refused["reason"]
        # Acked publishes got consecutive offsets: the refused ones were not stored.
        acks = [a["offset"] for a in answers if a["type"] == "ack"]
        assert acks == list(range(1, len(acks) + 1))
        assert server.hub.counters["rate_limited"] == refusals
        assert server.hub.counters["rate_limit_closes"] == 0


async def test_a_subscribe_over_the_frame_rate_is_refused_without_an_id_until_a_token_is_back() -> (
    None
):
    settings = Settings(rate_frames_per_s=1, rate_limit_grace_s=30)  # a token per second
    async with running_hub(settings) as server, await connect_v1(server.ws) as ws:
        await subscribe(ws, "first")
        await send_json(ws, {"type": "subscribe", "room": "second"})
        refused = await recv_json(ws)
        assert (refused["type"], refused["code"]) == ("error", "rate_limited")
        assert "id" not in refused
        await asyncio.sleep(1.1)
        await subscribe(ws, "second")
        assert server.hub.counters["rate_limited"] == 1


@dataclass
class Flood:
    """What a client sending frames at a steady pace until it is closed saw."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    code: int | None = None
    sent: int = 0
    first_refusal: float | None = None
    closed_at: float = 0.0


async def _flood_until_closed(
    ws: ClientConnection, frame: Any, interval_s: float, timeout_s: float = 10.0
) -> Flood:
    """Send ``frame(i)`` every ``interval_s`` while reading the answers, until closed."""
    flood = Flood()

    async def read() -> None:
        try:
            while True:
                answer = await recv_json(ws, timeout_s)
                flood.answers.append(answer)
                if answer.get("code") == "rate_limited" and flood.first_refusal is None:
                    flood.first_refusal = time.monotonic()
        except websockets.ConnectionClosed as closed:
            flood.code = None if closed.rcvd is None else closed.rcvd.code
        flood.closed_at = time.monotonic()

    reader = asyncio.create_task(read())
    deadline = time.monotonic() + timeout_s
    while not reader.done() and time.monotonic() < deadline:
        try:
            await ws.send(frame(flood.sent))
        except websockets.ConnectionClosed:
            break
        flood.sent += 1
        await asyncio.sleep(interval_s)
    await asyncio.wait_for(reader, timeout_s)
    return flood


async def test_a_v1_client_that_keeps_flooding_past_the_grace_period_is_closed_4029() -> None:
    settings = Settings(rate_frames_per_s=50, rate_limit_grace_s=1.0)
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as bystander:
            await subscribe(bystander, "r")
            async with await connect_v1(server.ws) as ws:
                # 200 frames/s, four times the rate, until the server gives up.
                flood = await _flood_until_closed(
                    ws, lambda i: json.dumps(_publish("r", i)), interval_s=0.005
                )
            assert flood.code == 4029
            assert flood.first_refusal is not None
            # Closed about rate_limit_grace_s after its first refusal (not at once, not never).
            waited = flood.closed_at - flood.first_refusal
            assert 0.9 <= waited <= 3.0, waited
            assert {a.get("code") for a in flood.answers if a["type"] == "error"} == {
                "rate_limited"
            }
            # The bystander got every acked message, and nothing else.
            acked = [a["offset"] for a in flood.answers if a["type"] == "ack"]
            assert len(acked) >= 50
            got = [(await recv_json(bystander))["offset"] for _ in acked]
            assert got == acked
            with pytest.raises(TimeoutError):
                await recv_json(bystander, 0.3)
        assert server.hub.counters["rate_limit_closes"] == 1
        await _still_serves(server)


async def test_a_v1_client_that_backs_off_after_being_rate_limited_is_not_closed() -> None:
    settings = Settings(rate_frames_per_s=50, rate_limit_grace_s=1.0)
    async with running_hub(settings) as server, await connect_v1(server.ws) as ws:
        for i in range(60):
            await send_json(ws, _publish("r", i))
        answers = await _answers(ws, 60)
        assert any(a.get("code") == "rate_limited" for a in answers)
        # It backs off: waits for its bucket, then stays under the rate for longer than
        # the grace period.
        await asyncio.sleep(0.5)
        for i in range(60, 100):
            await send_json(ws, _publish("r", i))
            assert (await recv_json(ws))["type"] == "ack"
            await asyncio.sleep(0.04)
        await subscribe(ws, "r")
        assert server.hub.counters["rate_limit_closes"] == 0


async def test_a_plain_client_over_its_frame_rate_is_paced_and_every_frame_arrives_in_order() -> (
    None
):
    """A plain client cannot be told to slow down, except by TCP: its socket is not read
    until its tokens refill. Nothing is lost and it stays connected."""
    settings = Settings(rate_frames_per_s=50, rate_limit_grace_s=30)
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as watcher:
            await subscribe(watcher, "room-1")
            async with await connect_plain(server.ws + "/room-1") as ws:
                started = time.monotonic()
                for i in range(100):
                    await ws.send(f"frame {i}")
                got = [(await recv_json(watcher))["data"] for _ in range(100)]
                took = time.monotonic() - started
                await ws.send("still here")
                assert (await recv_json(watcher))["data"] == "still here"
                # The article's behaviour: the sender gets its own, all of them.
                echoed = [await asyncio.wait_for(ws.recv(), 5) for _ in range(101)]
            assert got == [f"frame {i}" for i in range(100)]
            assert echoed == [*got, "still here"]
            assert took >= 0.9  # 50 at once (a second's tokens), then 50 per second
        assert server.hub.counters["rate_limit_closes"] == 0
        assert server.hub.counters["paced"] >= 50


async def test_a_plain_burst_of_5000_frames_under_the_default_limits_reaches_every_member() -> None:
    """A paste or a replayed queue: 5,000 frames of 512 B at once."""
    async with running_hub() as server:
        async with (
            await connect_plain(server.ws + "/burst") as member,
            await connect_v1(server.ws) as watcher,
        ):
            await subscribe(watcher, "burst")
            async with await connect_plain(server.ws + "/burst") as sender:
                frames = [f"{i:05d}".ljust(512, ".") for i in range(5000)]
                for frame in frames:
                    await sender.send(frame)
                got_member = [await asyncio.wait_for(member.recv(), 15) for _ in frames]
                got_watcher = [(await recv_json(watcher, 15))["data"] for _ in frames]
                got_sender = [await asyncio.wait_for(sender.recv(), 15) for _ in frames]
                await sender.send("after the burst")
                assert await asyncio.wait_for(member.recv(), 5) == "after the burst"
        assert got_member == frames
        assert got_watcher == frames
        assert got_sender == frames  # the article's behaviour: the sender gets its own
        assert server.hub.counters["rate_limit_closes"] == 0


async def test_the_bytes_rate_refuses_a_v1_client_then_closes_it_and_paces_a_plain_one() -> None:
    settings = Settings(rate_frames_per_s=0, rate_bytes_per_s=64 * 1024, rate_limit_grace_s=1.0)
    chunk = b"\x00" * (16 * 1024)
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as ws:
            for i in range(6):
                await ws.send(binary_publish("r", chunk, msg_id=f"b{i}"))
            answers = await _answers(ws, 6)
            assert [a["id"] for a in answers] == [f"b{i}" for i in range(6)]
            assert [a["type"] for a in answers[:3]] == ["ack"] * 3
            assert answers[-1]["code"] == "rate_limited"
            assert "0.0625 MiB/s" in answers[-1]["reason"]
            # A frame bigger than a second's bytes still passes once the bucket is full.
            await asyncio.sleep(1.2)
            await ws.send(binary_publish("r", b"\x01" * (200 * 1024), msg_id="big"))
            ack = await recv_json(ws)
            assert (ack["type"], ack["id"]) == ("ack", "big")
            # Now in debt for about two seconds: it keeps sending and is closed about
            # rate_limit_grace_s after its first refusal.
            flood = await _flood_until_closed(
                ws, lambda i: binary_publish("r", chunk, msg_id=f"c{i}"), interval_s=0.05
            )
            assert flood.code == 4029
            assert flood.first_refusal is not None
            assert 0.9 <= flood.closed_at - flood.first_refusal <= 3.0
            assert flood.answers[0]["code"] == "rate_limited"
        async with await connect_plain(server.ws + "/r") as plain:
            for i in range(6):
                await plain.send(bytes([i]) * len(chunk))
            echoed = [await asyncio.wait_for(plain.recv(), 10) for _ in range(6)]
            assert echoed == [bytes([i]) * len(chunk) for i in range(6)]
        assert server.hub.counters["rate_limit_closes"] == 1
        await _still_serves(server)


# -- a flood leaves everyone else's latency alone ---------------------------------------


@dataclass
class Flooder:
    """Floods the hub over raw sockets as fast as the kernel takes the bytes, from two
    threads (write, read), reconnecting whenever the server closes it: pre-built masked
    frames, so the flood costs this process almost no CPU."""

    port: int
    path: str = "/ws"
    v1: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    connections: int = 0
    frames_sent: int = 0
    bytes_received: int = 0
    rate_limited: int = 0
    close_codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    V1_BATCH = b"".join(
        masked_frame(0x1, json.dumps(_publish("flood", i % 100)).encode()) for i in range(1000)
    )
    PLAIN_BATCH = b"".join(masked_frame(0x1, b"flood %d" % i) for i in range(1000))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flooder", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(15)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._one_connection()
            except OSError as exc:
                self.errors.append(repr(exc))
                time.sleep(0.05)

    def _one_connection(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n".encode()
                + (b"Sec-WebSocket-Protocol: fanout.v1\r\n" if self.v1 else b"")
                + b"\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head[:100]
            self.connections += 1
            closed = threading.Event()
            reader = threading.Thread(target=self._read, args=(sock, closed), daemon=True)
            reader.start()
            try:
                batch = self.V1_BATCH if self.v1 else self.PLAIN_BATCH
                while not (closed.is_set() or self.stop.is_set()):
                    sock.sendall(batch)
                    self.frames_sent += 1000
            except OSError:
                pass
            if not closed.is_set():  # told to stop: no close frame to wait for
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            closed.wait(10)
            with_reset = struct.pack("ii", 1, 0)  # SO_LINGER 0: RST, no TIME_WAIT pile-up
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, with_reset)
        reader.join(10)

    def _read(self, sock: socket.socket, closed: threading.Event) -> None:
        """Read the answers, counting rate_limited errors, until the close frame."""
        buf = bytearray()
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                self.bytes_received += len(chunk)
                buf += chunk
                code, used = self._frames(buf)
                del buf[:used]
                if code is not None:
                    self.close_codes.append(code)
                    # Unblock the writer (the server may have stopped reading) and go.
                    sock.shutdown(socket.SHUT_RDWR)
                    break
        except OSError:
            pass
        finally:
            closed.set()

    def _frames(self, buf: bytearray) -> tuple[int | None, int]:
        """Walk the complete (unmasked) server frames in ``buf``: the close code if a
        close frame came, and how many bytes were used."""
        pos = 0
        while len(buf) - pos >= 2:
            opcode, length, head = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                (length,), head = struct.unpack_from("!H", buf, pos + 2), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                (length,), head = struct.unpack_from("!Q", buf, pos + 2), 10
            if len(buf) - pos < head + length:
                break
            payload = buf[pos + head : pos + head + length]
            if opcode == 0x8:
                return (struct.unpack_from("!H", payload)[0] if length >= 2 else 1005), pos
            if opcode == 0x1 and b'"rate_limited"' in payload:
                self.rate_limited += 1
            pos += head + length
        return None, pos


async def _round_trips(ws: ClientConnection, room: str, count: int, tag: str) -> list[float]:
    """Publish->receive latency of ``count`` messages to a room ``ws`` is subscribed to."""
    latencies: list[float] = []
    for i in range(count):
        start = time.perf_counter()
        await send_json(ws, {"type": "publish", "room": room, "data": i, "id": f"{tag}{i}"})
        while (await recv_json(ws))["type"] != "message":
            pass
        latencies.append(time.perf_counter() - start)
        await recv_json(ws)  # its ack, after the message
        await asyncio.sleep(0.002)
    return latencies


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@pytest.fixture(scope="module")
def flood_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    log = tmp_path_factory.mktemp("flood") / "hub.log"
    args = ["--log-level", "warning", "--rate-frames-per-s", "1000", "--rate-limit-grace-s", "1"]
    with hub_process(args, log) as hub:
        yield hub


@pytest.mark.parametrize("v1", [True, False], ids=["fanout.v1", "plain"])
async def test_a_flood_from_one_client_leaves_the_latency_of_others_unchanged(
    flood_hub: HubProcess, v1: bool
) -> None:
    """The flooder sends as fast as the hub reads, and reconnects whenever it is closed
    (a v1 one after the grace time; a plain one is paced instead: never closed)."""
    port = int(flood_hub.url.rsplit(":", 1)[1])
    tag = "v1" if v1 else "plain"
    async with await connect_v1(flood_hub.ws) as ws:
        await subscribe(ws, "latency")
        await _round_trips(ws, "latency", 50, f"{tag}-warm-up")
        baseline = await _round_trips(ws, "latency", 200, f"{tag}-baseline")
        flooder = Flooder(port, path="/ws" if v1 else "/ws/flood", v1=v1)
        flooder.start()
        try:
            if v1:
                while not (flooder.rate_limited or flooder.close_codes):
                    await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(1.5)  # past the first second's tokens: paced now
            under_flood = await _round_trips(ws, "latency", 400, f"{tag}-flood")
            flooded_for = time.monotonic()
            # Keep flooding past the grace period: a v1 flooder gets closed (and reconnects).
            while v1 and not flooder.close_codes and time.monotonic() - flooded_for < 10:
                await asyncio.sleep(0.05)
        finally:
            flooder.join()
    base_p50, base_p99 = _p(baseline, 50), _p(baseline, 99)
    flood_p50, flood_p99 = _p(under_flood, 50), _p(under_flood, 99)
    print(
        f"\n{tag} flood: baseline p50 {base_p50 * 1e3:.2f} ms p99 {base_p99 * 1e3:.2f} ms;"
        f" under flood p50 {flood_p50 * 1e3:.2f} ms p99 {flood_p99 * 1e3:.2f} ms;"
        f" flooder: {flooder.frames_sent} frames sent, {flooder.rate_limited} rate_limited,"
        f" {len(flooder.close_codes)} closes {set(flooder.close_codes)},"
        f" {flooder.connections} connections"
    )
    assert not flooder.errors, flooder.errors[:3]
    if v1:
        assert flooder.rate_limited > 1000
        assert flooder.close_codes, "the flooder was never closed"
        assert set(flooder.close_codes) == {4029}
    else:
        assert flooder.close_codes == [], "a plain flooder is paced, not closed"
        assert flooder.connections == 1
    assert flood_p99 < max(5 * base_p99, base_p99 + 0.050), (base_p99, flood_p99)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(flood_hub.url + "/metrics", timeout=5)).text
    assert "fanout_rate_limit_closes" in metrics
    if not v1:
        assert re.search(r"^fanout_paced_frames_total [1-9]", metrics, re.M), metrics
    await _still_serves(flood_hub)


# -- limits per address and on room names ---------------------------------------------


async def _closed_with(ws: ClientConnection, timeout: float = 5) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), timeout)
    return None if info.value.rcvd is None else info.value.rcvd.code


async def test_a_fourth_connection_from_one_address_is_closed_1013_until_one_leaves() -> None:
    async with running_hub(Settings(max_connections_per_ip=3)) as server:
        first = await connect_v1(server.ws)
        second = await connect_plain(server.ws + "/room-a")
        third = await connect_v1(server.ws)
        await subscribe(first, "r")
        async with await connect_v1(server.ws) as fourth:
            assert await _closed_with(fourth) == 1013
            assert fourth.close_reason == "too many connections from this address (limit 3)"
        assert server.hub.counters["refused_per_ip"] == 1
        await second.close()
        while len(server.hub.connections) > 2:
            await asyncio.sleep(0.01)
        async with await connect_v1(server.ws) as again:
            await subscribe(again, "r")  # accepted and served
        for ws in (first, third):
            await subscribe(ws, "s")
            await ws.close()
        while server.hub.connections:
            await asyncio.sleep(0.01)
        assert server.hub._per_ip == {}  # nothing left behind per address


async def test_a_room_outside_the_room_pattern_is_refused_bad_room_or_closed_1008() -> None:
    settings = Settings(room_pattern=r"chat\.[a-z]+")
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as ws:
            await send_json(ws, {"type": "subscribe", "room": "other"})
            error = await recv_json(ws)
            assert (error["type"], error["code"]) == ("error", "bad_room")
            assert error["reason"].endswith("room pattern 'chat\\.[a-z]+'")
            await send_json(ws, {"type": "publish", "room": "chat.x1", "data": 1, "id": "p"})
            error = await recv_json(ws)
            assert (error["code"], error["id"]) == ("bad_room", "p")
            await subscribe(ws, "chat.ok")
            await send_json(ws, {"type": "publish", "room": "chat.ok", "data": 1, "id": "q"})
            assert (await recv_json(ws))["type"] == "message"
            assert (await recv_json(ws))["type"] == "ack"
        async with await connect_plain(server.ws + "/elsewhere") as plain:
            assert await _closed_with(plain) == 1008
        async with await connect_plain(server.ws) as lobby:  # /ws is room "lobby"
            assert await _closed_with(lobby) == 1008
        async with await connect_plain(server.ws + "/chat.ok") as plain:
            await plain.send("hello")
            assert await asyncio.wait_for(plain.recv(), 5) == "hello"


# -- compression is off; protocol violations ---------------------------------------------


async def test_permessage_deflate_is_never_negotiated_even_when_the_client_offers_it() -> None:
    async with running_hub() as server:
        for connect in (connect_v1, connect_plain):
            async with await connect(server.ws, compression="deflate") as ws:
                request = ws.request
                assert request is not None
                assert "permessage-deflate" in request.headers["Sec-WebSocket-Extensions"]
                response = ws.response
                assert response is not None
                assert "Sec-WebSocket-Extensions" not in response.headers
                assert ws.protocol.extensions == []
        # A raw offer, as a browser sends it.
        raw = await RawClient.open(server.ws, handshake=False)
        raw.send_raw(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
        raw.abort()
        assert head.startswith(b"HTTP/1.1 101")
        assert b"sec-websocket-extensions" not in head.lower()


async def test_a_frame_with_rsv1_set_is_refused_1002_and_others_are_served() -> None:
    async with running_hub() as server, await connect_v1(server.ws) as bystander:
        await subscribe(bystander, "r")
        raw = await RawClient.open(server.ws)
        body = json.dumps({"type": "publish", "room": "r", "data": "inflated?"}).encode()
        frame = bytearray(masked_frame(0x1, body))
        frame[0] |= 0x40  # RSV1: "this frame is compressed"
        raw.send_raw(bytes(frame))
        frames, close = await raw.read_all(5)
        raw.abort()
        assert frames == []
        assert close_code(close) == 1002
        with pytest.raises(TimeoutError):
            await recv_json(bystander, 0.2)
        await _still_serves(server)
        while len(server.hub.connections) > 1:
            await asyncio.sleep(0.01)


async def test_a_frame_announcing_one_byte_over_the_limit_is_closed_1009_before_its_payload() -> (
    None
):
    limit = 64 * 1024
    async with running_hub(Settings(max_message_bytes=limit)) as server:
        raw = await RawClient.open(server.ws)
        # The header alone (plus a few bytes): the server must not wait for the rest.
        frame = masked_frame(0x2, b"\x00" * 16, declared_length=limit + 1)
        start = time.monotonic()
        raw.send_raw(frame)
        _, close = await raw.read_all(5)
        assert close_code(close) == 1009
        assert time.monotonic() - start < 1.0
        raw.abort()
        await _still_serves(server)


async def test_fragments_that_add_up_past_the_limit_close_1009() -> None:
    limit = 64 * 1024
    async with (
        running_hub(Settings(max_message_bytes=limit)) as server,
        await connect_v1(server.ws) as bystander,
    ):
        await subscribe(bystander, "r")
        raw = await RawClient.open(server.ws)
        body = json.dumps({"type": "publish", "room": "r", "data": "x" * limit}).encode()
        piece = 30 * 1024
        fragments = [body[i : i + piece] for i in range(0, len(body), piece)]
        assert len(fragments) == 3
        for n, fragment in enumerate(fragments):
            opcode = 0x1 if n == 0 else 0x0
            frame = bytearray(masked_frame(opcode, fragment))
            if n < len(fragments) - 1:
                frame[0] &= 0x7F  # not the final fragment
            raw.send_raw(bytes(frame))
        frames, close = await raw.read_all(5)
        raw.abort()
        assert frames == []
        assert close_code(close) == 1009
        with pytest.raises(TimeoutError):
            await recv_json(bystander, 0.2)
        # Fragments within the limit are put together and published.
        raw = await RawClient.open(server.ws)
        body = json.dumps({"type": "publish", "room": "r", "data": "y" * 40_000}).encode()
        first = bytearray(masked_frame(0x1, body[:20_000]))
        first[0] &= 0x7F
        raw.send_raw(bytes(first) + masked_frame(0x0, body[20_000:]))
        message = await recv_json(bystander)
        assert message["data"] == "y" * 40_000
        raw.abort()


async def test_a_client_that_never_answers_pings_is_closed_within_interval_and_timeout() -> None:
    settings = Settings(ping_interval_s=0.5, ping_timeout_s=0.5)
    async with running_hub(settings) as server:
        async with await connect_v1(server.ws) as polite:  # answers pings by itself
            await subscribe(polite, "r")
            start = time.monotonic()
            deaf = await RawClient.open(server.ws)  # never writes again: no pong
            deaf.send_text(json.dumps({"type": "subscribe", "room": "r"}))
            frames, close = await deaf.read_all(10)
            elapsed = time.monotonic() - start
            deaf.abort()
            assert close_code(close) == 1011
            assert close is not None
            assert "keepalive" in close.reason
            assert 0.9 <= elapsed <= 0.5 + 0.5 + 1.5, elapsed
            assert [json.loads(bytes(f.data))["type"] for f in frames] == ["subscribed"]
            while len(server.hub.connections) > 1:
                await asyncio.sleep(0.01)
            # The polite client, idle as long, is still there.
            await asyncio.sleep(1.0)
            await send_json(polite, {"type": "publish", "room": "r", "data": 1, "id": "a"})
            assert (await recv_json(polite))["type"] == "message"
        while server.hub.connections:
            await asyncio.sleep(0.01)
        assert server.hub.room_count == 0
