"""A broadcast WebSocket server that leaks: it keeps every message it receives, forever.

Standalone (only the ``websockets`` package). Every frame any client sends goes back,
unchanged, to every connected client (the sender included), and is appended to a
module-level list that nothing ever empties: the leak of a server that keeps "recent
messages" without a bound. Its memory grows by each message's size, for as long as
messages arrive::

    python tests/lab/servers/leaky.py --port 8765

Messages of any size are accepted. Prints ``listening on PORT`` once serving; SIGTERM or
SIGINT closes every connection and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

KEPT: list[Data] = []
"""Every message received: never freed."""

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for message in ws:
            KEPT.append(message)
            broadcast(CLIENTS, message)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


async def run(port: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", port, max_size=None, close_timeout=1) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A broadcast server that keeps every message.")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    return asyncio.run(run(parser.parse_args(argv).port))


if __name__ == "__main__":
    sys.exit(main())
