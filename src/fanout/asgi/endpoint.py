"""The ``/ws`` route: handshake, the receive loop, and closing with the right code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from fanout.asgi.direct import EXTENSION, DirectTransport
from fanout.asgi.transports import AsgiTransport
from fanout.core.connection import Connection, ConnState, Mode
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.dispatch import dispatch
from fanout.core.hub import Hub
from fanout.core.pipeline import PublishPipeline
from fanout.core.transport import Transport
from fanout.protocol.codes import SUBPROTOCOL, CloseCode
from fanout.protocol.errors import FrameError, ProtocolViolation
from fanout.protocol.frames import check_room

log = logging.getLogger("fanout.asgi")

ConsumerFactory = Callable[[Hub, Connection, ConnectionInfo], Consumer]


class Endpoint:
    def __init__(
        self,
        hub: Hub,
        consumer: ConsumerFactory,
        *,
        max_message_bytes: int,
        publishes_in_flight: int = 64,
    ) -> None:
        self.hub = hub
        self.consumer = consumer
        self.max_message_bytes = max_message_bytes
        self.publishes_in_flight = publishes_in_flight

    async def __call__(self, websocket: WebSocket, room: str = "lobby") -> None:
        v1 = SUBPROTOCOL in websocket.scope.get("subprotocols", ())
        await websocket.accept(subprotocol=SUBPROTOCOL if v1 else None)
        try:
            check_room(room)
        except FrameError as exc:
            await websocket.close(CloseCode.POLICY, exc.reason)
            return
        transport: Transport
        direct = websocket.scope.get("extensions", {}).get(EXTENSION)
        if isinstance(direct, DirectTransport):
            transport = direct
        else:
            transport = AsgiTransport(websocket, asyncio.current_task())
        try:
            conn = self.hub.connect(
                transport, mode=Mode.V1 if v1 else Mode.PLAIN, client=_client(websocket)
            )
        except ProtocolViolation as exc:
            await websocket.close(exc.close_code, exc.reason)
            return
        if isinstance(direct, DirectTransport):
            direct.on_shutdown = lambda: _spawn(self.hub.shut_down(conn))
        info = ConnectionInfo(
            path=websocket.url.path,
            room=room,
            client=conn.client,
            query=dict(websocket.query_params),
            headers={k.lower(): v for k, v in websocket.headers.items()},
        )
        consumer = self.consumer(self.hub, conn, info)
        code: int | None = None
        try:
            await consumer.on_connect()
            code = await self._receive_loop(websocket, consumer)
        except ProtocolViolation as exc:
            conn.close(exc.close_code, exc.reason)
        except asyncio.CancelledError:
            code = CloseCode.GOING_AWAY
            raise
        except Exception:
            log.exception("endpoint failed on %r", conn)
            conn.close(CloseCode.INTERNAL, "internal error")
        finally:
            conn.mark_closed(code)
            try:
                await consumer.on_disconnect(conn.close_code)
            except Exception:
                log.exception("on_disconnect failed on %r", conn)

    async def _receive_loop(self, websocket: WebSocket, consumer: Consumer) -> int | None:
        receive = websocket.receive
        limit = self.max_message_bytes
        conn = consumer.connection
        pipeline = PublishPipeline(conn, self.publishes_in_flight) if conn.mode is Mode.V1 else None
        while conn.state is ConnState.OPEN:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code: int | None = message.get("code")
                return code
            text: str | None = message.get("text")
            data: bytes | None = message.get("bytes")
            # Servers other than ours may not enforce the size limit themselves. A str
            # holds at most 4 UTF-8 bytes per character: encode only when that matters.
            if text is not None:
                size = len(text) if len(text) * 4 <= limit else len(text.encode())
            else:
                size = len(data or b"")
            if size > limit:
                raise ProtocolViolation(CloseCode.TOO_BIG, f"message over {limit} bytes")
            await dispatch(consumer, text, data, pipeline)
        return conn.close_code


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _client(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else ""
