"""The ``websockets-broadcast`` target of ``bench/fanout_vs_article.py``.

A broadcast server on the ``websockets`` library's own asyncio server, written as its
documentation writes one: the handler keeps a set of the open connections, and for every
text message a client sends it calls ``websockets.asyncio.server.broadcast`` to all of
them (the article's behaviour, sender included). ``broadcast`` encodes the message once
and pushes a frame into every connection's transport without waiting: no backpressure,
no per-recipient ``await`` (unlike the article's loop).

The library's defaults otherwise (keepalive pings, permessage-deflate offered, which
the lab's client does not accept), except ``max_size=None``: no message size limit, as
the benchmark sends messages up to 16 MiB and more. On uvloop when it is installed.

    python bench/websockets_server.py --port 8004
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosedError

HOST = "127.0.0.1"

CONNECTIONS: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            if isinstance(message, str):  # text frames only, as the other servers
                broadcast(CONNECTIONS, message)
    except ConnectionClosedError:
        pass  # the lab's clients leave without a close frame: no traceback per client
    finally:
        CONNECTIONS.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, HOST, port, max_size=None) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        loop.add_signal_handler(signal.SIGINT, server.close)
        await server.wait_closed()


def run() -> None:
    parser = argparse.ArgumentParser(description="websockets.broadcast server (benchmark)")
    parser.add_argument("--port", type=int, default=8004)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.port))
    else:
        uvloop.run(main(args.port))


if __name__ == "__main__":
    run()
