"""The ASGI transport: works under any ASGI server, one ``send`` per frame."""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket

from fanout.core.transport import WriteThroughWatcher
from fanout.protocol.envelope import OutFrame

log = logging.getLogger("fanout.asgi")


class AsgiTransport:
    """Writes through the ASGI ``send`` callable. Never writes synchronously (no
    ``write_through``), so the connection's writer task does every write and waits for
    each."""

    def __init__(self, websocket: WebSocket, endpoint_task: asyncio.Task[object] | None) -> None:
        self._ws = websocket
        self._endpoint_task = endpoint_task
        self._closing: asyncio.Task[None] | None = None

    def watch(self, watcher: WriteThroughWatcher) -> None:
        watcher.write_through = None

    def write_now(self, frames: list[OutFrame]) -> None:
        raise NotImplementedError("the ASGI transport only writes through send()")

    async def send(self, frames: list[OutFrame]) -> None:
        for frame in frames:
            if frame.is_text:
                await self._ws.send_text(frame.as_text)
            else:
                await self._ws.send_bytes(frame.payload)

    def close(self, code: int, reason: str, *, timeout_s: float) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(code, reason, timeout_s)
            )

    async def _close(self, code: int, reason: str, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._ws.close(code, reason)
        except TimeoutError:
            # The peer stopped reading and the server's send() waits for it: end the
            # endpoint, which makes the server drop the socket.
            log.info("close %s timed out after %.1f s; ending the endpoint", code, timeout_s)
            if self._endpoint_task is not None:
                self._endpoint_task.cancel()
        except Exception as exc:
            log.debug("close %s failed: %r", code, exc)
