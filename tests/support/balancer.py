"""A tiny round-robin TCP load balancer in the test's event loop (several nodes behind one URL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from tests.support.servers import free_port

Backend = tuple[str, int]


class Balancer:
    """Each new client connection goes to the next backend that accepts it; bytes are piped
    both ways until either side closes, then the other side is closed too."""

    def __init__(self, backends: Sequence[Backend] = (), *, port: int | None = None) -> None:
        self.backends: list[Backend] = list(backends)
        self.port = port or free_port()
        self.chosen: list[Backend] = []  # the backend of every connection, in order
        self._next = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """Replace the pool (mark nodes down/up); open connections are left alone."""
        self.backends = list(backends)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def __aenter__(self) -> Balancer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = list(self.backends)
        for i in range(len(backends)):
            index = (self._next + i) % len(backends)
            try:
                pair = await asyncio.open_connection(*backends[index])
            except OSError:
                continue  # refused (down): try the next one, each at most once
            self._next = index + 1
            self.chosen.append(backends[index])
            return pair
        return None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # Only close() cancels this task; end it normally (asyncio 3.11 logs cancelled handlers).
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(client_r, client_w)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        backend_w: asyncio.StreamWriter | None = None
        try:
            pair = await self._connect()
            if pair is None:
                return
            backend_r, backend_w = pair
            self._writers.add(backend_w)
            pipes = [
                asyncio.create_task(_pipe(client_r, backend_w)),
                asyncio.create_task(_pipe(backend_r, client_w)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for writer in (client_w, backend_w):
                if writer is not None:
                    self._writers.discard(writer)
                    await _close(writer)
            self._tasks.discard(task)

    async def close(self) -> None:
        """Stop listening and close every piped connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
