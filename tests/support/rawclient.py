"""A WebSocket client over a raw TCP socket, for what polite clients never do:
stop reading, send half a frame, lie in a frame header, vanish mid-send."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any
from urllib.parse import urlparse

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from fanout.protocol.codes import SUBPROTOCOL


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol: ClientProtocol | None = None
        self.early: list[object] = []  # events that arrived with the handshake response

    @classmethod
    async def open(
        cls, url: str, *, v1: bool = True, rcvbuf: int | None = None, handshake: bool = True
    ) -> RawClient:
        parsed = urlparse(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connect so the advertised TCP window is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parsed.hostname, parsed.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = cls(reader, writer)
        if handshake:
            await client.handshake(url, v1=v1)
        return client

    async def handshake(self, url: str, *, v1: bool) -> Response:
        protocol = ClientProtocol(
            parse_uri(url),
            subprotocols=[SUBPROTOCOL] if v1 else None,  # type: ignore[list-item]
            max_size=None,
        )
        protocol.send_request(protocol.connect())
        self.writer.write(b"".join(protocol.data_to_send()))
        self.protocol = protocol
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                raise ConnectionError("server closed during handshake")
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Response):
                    if event.status_code != 101:
                        raise ConnectionError(f"handshake refused: HTTP {event.status_code}")
                    return event
                self.early.append(event)

    def send_text(self, text: str) -> None:
        assert self.protocol is not None
        self.protocol.send_text(text.encode())
        self.writer.write(b"".join(self.protocol.data_to_send()))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_all(self, timeout: float = 10.0) -> tuple[list[Frame], Close | None]:
        """Read until the server closes; return the data frames and its close frame."""
        assert self.protocol is not None
        frames: list[Frame] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backlog, self.early = self.early, []
        while True:
            for event in [*backlog, *self.protocol.events_received()]:
                if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    frames.append(event)
            backlog = []
            if self.protocol.close_rcvd is not None:
                return frames, self.protocol.close_rcvd
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no close after {len(frames)} frames")
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), remaining)
            except ConnectionResetError:
                return frames, None
            if not data:
                self.protocol.receive_eof()
                return frames, self.protocol.close_rcvd
            self.protocol.receive_data(data)

    def abort(self) -> None:
        self.writer.transport.abort()


def masked_frame(opcode: int, payload: bytes, *, declared_length: int | None = None) -> bytes:
    """A client frame, optionally lying about its payload length."""
    length = len(payload) if declared_length is None else declared_length
    first = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


def close_code(close: Any) -> int | None:
    return None if close is None else int(close.code)
