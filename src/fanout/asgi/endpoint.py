"""The ``/ws`` route: handshake, the receive loop, and closing with the right code."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from fanout.asgi.direct import EXTENSION, DirectTransport
from fanout.asgi.transports import AsgiTransport
from fanout.auth.handshake import Denied, Gate
from fanout.auth.ratelimit import RateLimiter, Verdict
from fanout.core.access import Access
from fanout.core.connection import Connection, ConnState, Mode
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.dispatch import dispatch, refuse
from fanout.core.hub import Hub
from fanout.core.pipeline import PublishPipeline
from fanout.core.transport import Transport
from fanout.core.watchdog import Watchdog
from fanout.protocol.codes import SUBPROTOCOL, CloseCode, ErrorCode
from fanout.protocol.errors import FrameError, ProtocolViolation
from fanout.settings import Settings

log = logging.getLogger("fanout.asgi")

ConsumerFactory = Callable[[Hub, Connection, ConnectionInfo], Consumer]
# Frames one connection handles before the event loop serves the others.
FRAMES_PER_TURN = 32


class Endpoint:
    def __init__(
        self,
        hub: Hub,
        consumer: ConsumerFactory,
        settings: Settings,
        gate: Gate | None = None,
    ) -> None:
        self.hub = hub
        self.consumer = consumer
        self.settings = settings
        self.gate = gate or settings.gate()

    async def __call__(self, websocket: WebSocket, room: str = "lobby") -> None:
        v1 = SUBPROTOCOL in websocket.scope.get("subprotocols", ())
        try:
            access = self._admit(websocket, room, v1)
        except Denied as exc:
            self.hub.counters[f"refused_{exc.kind}"] += 1
            await _deny(websocket, exc)
            return
        await websocket.accept(subprotocol=SUBPROTOCOL if v1 else None)
        if not v1:  # a fanout.v1 client names its rooms in its frames, not in the path
            try:
                self.hub.check_room(room)
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
            access=access,
        )
        consumer = self.consumer(self.hub, conn, info)
        watchdog = Watchdog(consumer, idle_timeout_s=self.settings.idle_timeout_s)
        code: int | None = None
        try:
            await consumer.on_connect()
            code = await self._receive_loop(websocket, consumer, watchdog)
        except ProtocolViolation as exc:
            conn.close(exc.close_code, exc.reason)
        except asyncio.CancelledError:
            code = CloseCode.GOING_AWAY
            raise
        except Exception:
            log.exception("endpoint failed on %r", conn)
            conn.close(CloseCode.INTERNAL, "internal error")
        finally:
            watchdog.cancel()
            conn.mark_closed(code)
            try:
                await consumer.on_disconnect(conn.close_code)
            except Exception:
                log.exception("on_disconnect failed on %r", conn)

    def _admit(self, websocket: WebSocket, room: str, v1: bool) -> Access:
        """The connection's access, or Denied: checked before the socket is accepted."""
        access = self.gate.admit(websocket.headers, websocket.query_params, websocket.cookies)
        if not v1 and not access.may_subscribe(room):
            raise Denied(f"your token does not grant room {room!r}", kind="room")
        return access

    async def _receive_loop(
        self, websocket: WebSocket, consumer: Consumer, watchdog: Watchdog
    ) -> int | None:
        receive = websocket.receive
        settings = self.settings
        limit = settings.max_message_bytes
        conn = consumer.connection
        pipeline = (
            PublishPipeline(conn, settings.publishes_in_flight) if conn.mode is Mode.V1 else None
        )
        limiter: RateLimiter | None = None
        if settings.rate_frames_per_s or settings.rate_bytes_per_s:
            limiter = RateLimiter(
                frames_per_s=settings.rate_frames_per_s,
                bytes_per_s=settings.rate_bytes_per_s,
                grace_s=settings.rate_limit_grace_s,
                now=time.monotonic(),
            )
        handled = 0
        while conn.state is ConnState.OPEN:
            message = await receive()
            handled += 1
            if handled % FRAMES_PER_TURN == 0:
                # receive() does not wait while frames are queued, and neither may the
                # handling (a plain publish to the memory broker never does): let the
                # others in now and then, however fast this client sends.
                await asyncio.sleep(0)
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
            watchdog.touch()
            if limiter is not None:
                verdict = limiter.check(size, time.monotonic())
                if verdict is not Verdict.ALLOW:
                    await self._over_rate(consumer, text, data, pipeline, verdict)
                    continue
            await dispatch(consumer, text, data, pipeline)
        return conn.close_code

    async def _over_rate(
        self,
        consumer: Consumer,
        text: str | None,
        data: bytes | None,
        pipeline: PublishPipeline | None,
        verdict: Verdict,
    ) -> None:
        settings = self.settings
        rates = [
            f"{settings.rate_frames_per_s:g} frames/s" if settings.rate_frames_per_s else "",
            f"{settings.rate_bytes_per_s / 1_048_576:g} MiB/s" if settings.rate_bytes_per_s else "",
        ]
        limits = " and ".join(r for r in rates if r) + " per connection"
        self.hub.counters["rate_limited"] += 1
        if verdict is Verdict.CLOSE or consumer.mode is Mode.PLAIN:
            self.hub.counters["rate_limit_closes"] += 1
            raise ProtocolViolation(CloseCode.RATE_LIMITED, f"rate limit exceeded ({limits})")
        await refuse(
            consumer,
            text,
            data,
            pipeline,
            ErrorCode.RATE_LIMITED,
            f"over {limits}: not handled; slow down and retry",
        )


async def _deny(websocket: WebSocket, denied: Denied) -> None:
    """HTTP 403 with the reason, when the server can answer a handshake with a
    response (uvicorn can); else the server's default refusal (also 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse({"error": denied.reason}, status_code=denied.status)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CloseCode.POLICY, denied.reason)


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _client(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else ""
