"""A broadcast WebSocket server with deliberate faults, for testing the lab.

Standalone (only the ``websockets`` package): every frame any client sends goes back,
unchanged (text as text, bytes as bytes), to every connected client, the sender
included, whatever the URL path. Faults are chosen by flags and counted on ``n``, the
1-based number of the message among all the server received::

    python tests/lab/servers/faulty.py --port 8765 --drop-every 3

``--drop-every K``       never broadcast every K-th message
``--duplicate-every K``  broadcast every K-th message twice
``--reorder-every K``    hold the K-th message, broadcast it after the (K+1)-th
``--delay-ms D``         sleep D ms before each broadcast
``--close-after N``      after the N-th message, close every client with ``--close-code``
``--max-size BYTES``     larger incoming frames close their connection with 1009
``--burn-cpu-ms MS``     busy-loop MS ms per message
``--leak-bytes B``       keep B more bytes per message, forever
``--raise-every K``      the handler raises on every K-th message (traceback on stderr,
                         message not broadcast, connection kept)
``--naive``              await each client's send in turn, like the article: one client
                         that stops reading stalls the broadcast for everyone

Without ``--naive`` the broadcast is ``websockets.broadcast``: written to every
client's buffer at once, no waiting, so a stalled reader only grows its own buffer.
Prints ``listening on PORT`` once serving (``--port 0`` picks a free port); SIGTERM or
SIGINT closes every connection (1001) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import traceback
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

LEAKED: list[bytearray] = []
"""What ``--leak-bytes`` keeps: never freed."""


@dataclass(frozen=True, slots=True)
class Faults:
    drop_every: int = 0
    duplicate_every: int = 0
    reorder_every: int = 0
    delay_ms: float = 0.0
    close_after: int = 0
    close_code: int = 1000
    max_size: int | None = None
    burn_cpu_ms: float = 0.0
    leak_bytes: int = 0
    raise_every: int = 0
    naive: bool = False


def _every(k: int, n: int) -> bool:
    return k > 0 and n % k == 0


class FaultyBroadcast:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.clients: set[ServerConnection] = set()
        self.received = 0
        self.held: Data | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def handler(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        try:
            async for message in ws:
                try:
                    await self.on_message(message)
                except Exception:
                    traceback.print_exc()
        except ConnectionClosed:
            pass  # closed with an error code (1009, 1006, ...): nothing more to do
        finally:
            self.clients.discard(ws)

    async def on_message(self, message: Data) -> None:
        f = self.faults
        self.received += 1
        n = self.received
        if _every(f.raise_every, n):
            raise RuntimeError(f"handler failed on message {n}")
        if f.burn_cpu_ms > 0:
            # CPU time, not wall time: the burn costs the same on a busy machine.
            deadline = time.thread_time() + f.burn_cpu_ms / 1000
            while time.thread_time() < deadline:
                pass
        if f.leak_bytes > 0:
            LEAKED.append(bytearray(f.leak_bytes))
        if not _every(f.drop_every, n):
            if f.delay_ms > 0:
                await asyncio.sleep(f.delay_ms / 1000)
            if _every(f.reorder_every, n):
                self.held = message
            else:
                await self.broadcast(message)
                if _every(f.duplicate_every, n):
                    await self.broadcast(message)
                if self.held is not None:
                    held, self.held = self.held, None
                    await self.broadcast(held)
        if f.close_after > 0 and n == f.close_after:
            for client in list(self.clients):
                self._spawn(client.close(f.close_code, f"closing after message {n}"))

    async def broadcast(self, message: Data) -> None:
        if not self.faults.naive:
            broadcast(self.clients, message)
            return
        for client in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await client.send(message)  # waits until its write buffer drains

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def run(port: int, faults: Faults, *, close_timeout: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = FaultyBroadcast(faults)
    ws_server = await serve(
        server.handler,
        "127.0.0.1",
        port,
        max_size=faults.max_size,
        # Small, so that with --naive a client that stops reading blocks send() soon.
        write_limit=2**16,
        close_timeout=close_timeout,
    )
    bound = next(iter(ws_server.sockets)).getsockname()[1]
    print(f"listening on {bound}", flush=True)
    await stop.wait()
    for task in list(server.tasks):
        task.cancel()
    # close() sends 1001 to everyone; a client that stopped reading never lets the close
    # frame drain (websockets waits for it without a timeout): abort those.
    ws_server.close()
    try:
        async with asyncio.timeout(close_timeout + 1):
            await ws_server.wait_closed()
    except TimeoutError:
        for connection in list(ws_server.all_connections):
            connection.transport.abort()
        async with asyncio.timeout(close_timeout + 1):
            await ws_server.wait_closed()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> tuple[int, Faults, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--drop-every", type=int, default=0, metavar="K")
    p.add_argument("--duplicate-every", type=int, default=0, metavar="K")
    p.add_argument("--reorder-every", type=int, default=0, metavar="K")
    p.add_argument("--delay-ms", type=float, default=0.0, metavar="D")
    p.add_argument("--close-after", type=int, default=0, metavar="N")
    p.add_argument("--close-code", type=int, default=1000, metavar="C")
    p.add_argument("--max-size", type=int, default=None, metavar="BYTES")
    p.add_argument("--burn-cpu-ms", type=float, default=0.0, metavar="MS")
    p.add_argument("--leak-bytes", type=int, default=0, metavar="B")
    p.add_argument("--raise-every", type=int, default=0, metavar="K")
    p.add_argument("--naive", action="store_true")
    p.add_argument("--close-timeout", type=float, default=2.0, metavar="S")
    a = p.parse_args(argv)
    faults = Faults(
        drop_every=a.drop_every,
        duplicate_every=a.duplicate_every,
        reorder_every=a.reorder_every,
        delay_ms=a.delay_ms,
        close_after=a.close_after,
        close_code=a.close_code,
        max_size=a.max_size,
        burn_cpu_ms=a.burn_cpu_ms,
        leak_bytes=a.leak_bytes,
        raise_every=a.raise_every,
        naive=a.naive,
    )
    return a.port, faults, a.close_timeout


def main(argv: Sequence[str] | None = None) -> int:
    port, faults, close_timeout = parse_args(argv)
    return asyncio.run(run(port, faults, close_timeout=close_timeout))


if __name__ == "__main__":
    sys.exit(main())
