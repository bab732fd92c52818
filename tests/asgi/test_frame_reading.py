"""Client frames however they arrive: cut anywhere across reads, mixed with control
frames and fragments in one read, or broken after good ones. Simple frames are read
without websockets' parser; everything else still goes through it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection

from tests.support.rawclient import RawClient, close_code, masked_frame
from tests.support.servers import running_hub
from tests.support.wsclient import connect_v1, recv_json, subscribe


def _publish(room: str, data: object, msg_id: str) -> bytes:
    return json.dumps({"type": "publish", "room": room, "data": data, "id": msg_id}).encode()


@contextlib.asynccontextmanager
async def _raw_publisher(room: str) -> AsyncIterator[tuple[RawClient, ClientConnection]]:
    """A raw v1 client to send frames as bytes, and a reader subscribed to ``room``."""
    async with running_hub() as server, await connect_v1(server.ws) as reader:
        await subscribe(reader, room)
        raw = await RawClient.open(server.ws)
        try:
            yield raw, reader
        finally:
            raw.abort()


async def test_a_publish_cut_at_every_byte_across_reads_arrives_whole_and_in_order() -> None:
    async with _raw_publisher("cuts") as (raw, reader):
        size = len(masked_frame(0x1, _publish("cuts", "x", "x00")))
        for cut in range(1, size):
            frame = masked_frame(0x1, _publish("cuts", "x", f"x{cut:02}"))  # ids are unique
            raw.send_raw(masked_frame(0x1, _publish("cuts", "before", f"b{cut}")) + frame[:cut])
            await raw.writer.drain()
            await asyncio.sleep(0.003)  # a read of its own on the server
            raw.send_raw(frame[cut:] + masked_frame(0x1, _publish("cuts", cut, f"m{cut}")))
            await raw.writer.drain()
            assert [(await recv_json(reader))["data"] for _ in range(3)] == ["before", "x", cut]


async def test_publishes_with_a_ping_and_a_fragmented_message_in_one_read_keep_their_order() -> (
    None
):
    async with _raw_publisher("mixed") as (raw, reader):
        fragmented = _publish("mixed", "two", "b")
        first_part = bytearray(masked_frame(0x1, fragmented[:10]))
        first_part[0] &= 0x7F  # no FIN: a continuation follows
        raw.send_raw(
            masked_frame(0x1, _publish("mixed", "one", "a"))
            + masked_frame(0x9, b"are you there")
            + bytes(first_part)
            + masked_frame(0x0, fragmented[10:])
            + masked_frame(0x2, b"")  # an empty binary frame: an error, not a message
            + masked_frame(0x1, _publish("mixed", "three", "c"))
        )
        assert [(await recv_json(reader))["data"] for _ in range(3)] == ["one", "two", "three"]


async def test_an_unmasked_frame_after_good_ones_closes_1002_once_they_are_delivered() -> None:
    async with _raw_publisher("r") as (raw, reader):
        payload = _publish("r", "bad", "u")
        raw.send_raw(
            masked_frame(0x1, _publish("r", 1, "g1"))
            + masked_frame(0x1, _publish("r", 2, "g2"))
            + bytes([0x81, len(payload)])
            + payload
        )
        _, close = await raw.read_all()
        assert close_code(close) == 1002
        assert [(await recv_json(reader))["data"] for _ in range(2)] == [1, 2]


async def test_invalid_utf8_after_a_good_frame_in_one_read_closes_1007_after_delivering_it() -> (
    None
):
    async with _raw_publisher("r") as (raw, reader):
        raw.send_raw(
            masked_frame(0x1, _publish("r", "fine", "ok"))
            + masked_frame(0x1, b'{"type":"\xff\xfe"}')
        )
        _, close = await raw.read_all()
        assert close_code(close) == 1007
        assert (await recv_json(reader))["data"] == "fine"


async def test_a_large_publish_cut_across_reads_then_small_ones_in_its_last_read_keep_order() -> (
    None
):
    async with _raw_publisher("big") as (raw, reader):
        large = "y" * 300_000
        big = masked_frame(0x1, _publish("big", large, "big"))
        smalls = b"".join(masked_frame(0x1, _publish("big", n, f"s{n}")) for n in range(50))
        # The large frame starts in one read, goes on in a second and ends in a third,
        # which also holds fifty small frames.
        raw.send_raw(masked_frame(0x1, _publish("big", "first", "f")) + big[:100_000])
        await raw.writer.drain()
        await asyncio.sleep(0.02)
        raw.send_raw(big[100_000:250_000])
        await raw.writer.drain()
        await asyncio.sleep(0.02)
        raw.send_raw(big[250_000:] + smalls)
        await raw.writer.drain()
        got = [(await recv_json(reader))["data"] for _ in range(52)]
        assert got[:2] == ["first", large]
        assert got[2:] == list(range(50))


async def test_a_frame_over_the_limit_in_a_large_read_closes_1009_and_what_was_acked_arrives() -> (
    None
):
    async with _raw_publisher("r") as (raw, reader):
        good = b"".join(masked_frame(0x1, _publish("r", n, f"g{n}")) for n in range(100))
        assert len(good) > 4096  # more than one slice of a read
        raw.send_raw(good + masked_frame(0x2, b"abc", declared_length=1 << 40))
        frames, close = await raw.read_all()
        assert close_code(close) == 1009
        acked = [json.loads(bytes(f.data))["id"] for f in frames]
        got: list[int] = []
        with contextlib.suppress(TimeoutError):
            while len(got) < 100:
                got.append((await recv_json(reader, timeout=1))["data"])
        # Publishes not yet handled when the close came are dropped unanswered (the
        # client resends them with their ids); every one answered was delivered, in order.
        assert acked == [f"g{n}" for n in range(len(acked))]
        assert got == list(range(len(got)))
        assert len(got) >= len(acked) > 0
