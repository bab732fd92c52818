"""A thin raw WebSocket client for tests: frames in, frames out, with timeouts."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fanout.protocol.codes import SUBPROTOCOL
from fanout.protocol.envelope import split_binary_envelope

RECV_TIMEOUT_S = 10.0


async def connect_v1(url: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(url, subprotocols=[SUBPROTOCOL], **kwargs)  # type: ignore[list-item]


async def connect_plain(url: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(url, **kwargs)


async def send_json(ws: ClientConnection, obj: Any) -> None:
    await ws.send(json.dumps(obj))


async def recv_json(ws: ClientConnection, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    if isinstance(raw, bytes):
        return decode_binary_frame(raw)
    obj: dict[str, Any] = json.loads(raw)
    return obj


def decode_binary_frame(raw: bytes) -> dict[str, Any]:
    header, payload = split_binary_envelope(raw)
    assert isinstance(header, dict), header
    header["data"] = payload
    return header


def binary_publish(room: str, payload: bytes, msg_id: str | None = None) -> bytes:
    header: dict[str, Any] = {"type": "publish", "room": room}
    if msg_id is not None:
        header["id"] = msg_id
    head = json.dumps(header).encode()
    return struct.pack("!I", len(head)) + head + payload


async def subscribe(
    ws: ClientConnection, room: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "room": room}
    if since is not None:
        frame["since"] = since
    await send_json(ws, frame)
    reply = await recv_json(ws)
    assert reply["type"] == "subscribed", reply
    return reply


async def assert_silent(ws: ClientConnection, seconds: float = 0.2) -> None:
    """Nothing more arrives within ``seconds`` (no duplicate, no stray frame)."""
    try:
        extra = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {extra!r:.200}")


async def read_until_closed(ws: ClientConnection, timeout: float = 15.0) -> int | None:
    """Read (and discard) frames until the server closes; return its close code."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return None if closed.rcvd is None else int(closed.rcvd.code)


async def connect_user(url: str, **kwargs: Any) -> ClientConnection:
    """A ``fanout.v1`` connection of an authenticated user: the server subscribes it to
    the user's personal room first, and that ``subscribed`` is read here."""
    ws = await connect_v1(url, **kwargs)
    first = await recv_json(ws)
    assert first["type"] == "subscribed", first
    assert first["room"].startswith("@"), first
    return ws
