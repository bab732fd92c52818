"""Helpers for the client tests: waiting on client events, and a TCP proxy that can cut
connections or refuse new ones, like a flaky network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from fanout.client import (
    Client,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    Gap,
    Message,
    Subscribed,
)

E = TypeVar("E")
WAIT_S = 5.0
# Skipped while collecting messages; tests that care about a Subscribed wait for it.
_SKIPPED = (Connected, Disconnected, ConnectFailed, Subscribed)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def next_of(client: Client, kind: type[E], timeout: float = WAIT_S) -> E:
    """The next event of type ``kind``; other events are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event


async def events_until(client: Client, kind: type[E], timeout: float = WAIT_S) -> list[Event]:
    """Every event up to and including the next one of type ``kind``."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout):
        while not seen or not isinstance(seen[-1], kind):
            seen.append(await client.next_event())
    return seen


async def messages(client: Client, count: int, timeout: float = WAIT_S) -> list[Message]:
    """The next ``count`` messages; connection events and confirmations may come between,
    anything else (a gap, a refusal) fails the test."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            event = await client.next_event()
            if isinstance(event, Message):
                got.append(event)
            elif not isinstance(event, _SKIPPED):
                raise AssertionError(f"unexpected event while waiting for messages: {event}")
    return got


async def assert_no_more_messages(client: Client, seconds: float = 0.2) -> None:
    """No message or gap arrives within ``seconds`` (no duplicate, no stray frame)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                event = await client.next_event()
                if isinstance(event, Message | Gap):
                    raise AssertionError(f"unexpected event: {event}")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``. ``cut()`` aborts every forwarded
    connection at once; while ``accepting`` is false new connections are reset."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cut(self) -> None:
        for down, up in list(self._links):
            down.transport.abort()
            up.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TcpProxy]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            self.cut()
            await self._server.wait_closed()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    dst.transport.abort()
