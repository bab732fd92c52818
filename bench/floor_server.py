"""The floor: the least a Python broadcast server can do per delivery.

No framework, no ASGI, no queues, no checks: a uvloop protocol that completes the
WebSocket handshake, and for every text frame a client sends, encodes one frame and
writes it to every connected socket (the article's behaviour, sender included). One
``transport.write`` per recipient is the cost fanout's direct transport cannot go
below without holding messages back to batch them; the benchmark runs this server
next to the others to show where that floor is on the machine at hand.

Not a server to use: it trusts its clients completely (no size limit, no
fragmentation, no close handshake beyond dropping the socket).

    python bench/floor_server.py --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
from typing import ClassVar, cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


def server_frame(opcode: int, data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        return bytes((0x80 | opcode, n)) + data
    if n < 1 << 16:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + data


def unmask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


class Broadcast(asyncio.Protocol):
    clients: ClassVar[set[asyncio.Transport]] = set()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        # Chunks of a frame not complete yet: joined once it is (joining every chunk to
        # what came before costs the square of a large message's size).
        self.chunks: list[bytes] = []
        self.pending = 0
        self.need = 2
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.clients.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.open:
            self.chunks.append(data)
            self.pending += len(data)
            if self.pending < self.need:
                return
            buf = b"".join(self.chunks)
            rest = self.frames(buf)
            self.chunks, self.pending = ([rest], len(rest)) if rest else ([], 0)
            return
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            key = b""
            for line in buf[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.open = True
            self.clients.add(self.transport)
            buf = buf[end + 4 :]
        rest = self.frames(buf)
        self.chunks, self.pending = ([rest], len(rest)) if rest else ([], 0)

    def frames(self, buf: bytes) -> bytes:
        n, pos = len(buf), 0
        while n - pos >= 2:
            length, start = buf[pos + 1] & 0x7F, pos + 2
            if length == 126:
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + 4 + length
            if start > n:  # the extended length itself is incomplete
                self.need = start + 4 - pos
                break
            if end > n:
                self.need = end - pos  # the whole frame, before joining again
                break
            opcode = buf[pos] & 0x0F
            data = unmask(buf[start : start + 4], buf[start + 4 : end])
            pos = end
            if opcode == 0x1:
                frame = server_frame(0x1, data)
                for transport in self.clients:
                    transport.write(frame)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()
        else:
            self.need = 2
        if n - pos < 2:
            self.need = 2
        return buf[pos:]


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Broadcast, "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="minimal broadcast WebSocket server")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
