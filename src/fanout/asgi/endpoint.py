"""The ``/ws`` route: the handshake, then a pump from the socket to the core's session.

Before accept: the gate (Origin, token) and, for a plain client, its path room. After
accept: the hub registers the connection, the application's consumer is built, and
every frame received goes to ``Session.receive``. Closing is decided in the core
(``Connection.close``); the pump ends when the transport reports the socket gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from fanout.asgi.direct import EXTENSION, DirectTransport
from fanout.asgi.transports import AsgiTransport
from fanout.auth.handshake import Gate
from fanout.core.access import Access
from fanout.core.connection import Connection, ConnState, Mode
from fanout.core.consumer import ConnectionInfo, Consumer
from fanout.core.errormap import close_for
from fanout.core.hub import Hub
from fanout.core.session import Session, SessionLimits
from fanout.core.transport import Transport
from fanout.protocol.codes import SUBPROTOCOL, CloseCode
from fanout.protocol.errors import (
    BrokerError,
    FrameError,
    HandshakeDenied,
    ProtocolViolation,
)
from fanout.protocol.frames import Since, parse_since, personal_room

log = logging.getLogger("fanout.asgi")

ConsumerFactory = Callable[[Hub, Connection, ConnectionInfo], Consumer]


class Endpoint:
    def __init__(
        self, hub: Hub, consumer: ConsumerFactory, gate: Gate, limits: SessionLimits
    ) -> None:
        self.hub = hub
        self.consumer = consumer
        self.gate = gate
        self.limits = limits

    async def __call__(
        self, websocket: WebSocket, room: str = "lobby", identity: object = None
    ) -> None:
        """``identity``: what the application's ``authenticate=`` hook returned."""
        v1 = SUBPROTOCOL in websocket.scope.get("subprotocols", ())
        try:
            access = self._admit(websocket, room, v1, identity)
            user_since = _user_since(websocket)
        except HandshakeDenied as exc:
            self.hub.counters[f"refused_{exc.kind}"] += 1
            log.info(
                "refused a handshake from %s (%s, HTTP %d): %s",
                _client(websocket), exc.kind, exc.status, exc.reason,
            )  # fmt: skip
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
            jti = access.claims.get("jti")
            conn = self.hub.connect(
                transport,
                mode=Mode.V1 if v1 else Mode.PLAIN,
                client=_client(websocket),
                user=access.subject,
                jti=jti if isinstance(jti, str) else None,
                info=access.info,
            )
        except ProtocolViolation as exc:
            refused, why = close_for(exc)
            log.info(
                "refused a connection from %s (close %d): %s", _client(websocket), refused, why
            )
            await websocket.close(refused, why)
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
        session = Session(consumer, self.limits, self.hub.counters)
        code: int | None = None
        try:
            if v1 and access.subject is not None:
                # Reachable by user id on every node: the personal room, resumed from
                # where this client's previous connection left it.
                await self.hub.subscribe(conn, personal_room(access.subject), user_since)
            await consumer.on_connect()
            code = await _pump(websocket, conn, session)
        except asyncio.CancelledError:
            code = CloseCode.GOING_AWAY
            raise
        except Exception as exc:
            if not isinstance(exc, ProtocolViolation | BrokerError):
                log.exception("endpoint failed on %r", conn)
            conn.close(*close_for(exc))
            code = await _until_gone(websocket)
        finally:
            session.end()
            conn.mark_closed(code)
            try:
                await consumer.on_disconnect(conn.close_code)
            except Exception:
                log.exception("on_disconnect failed on %r", conn)

    def _admit(self, websocket: WebSocket, room: str, v1: bool, identity: object) -> Access:
        """The connection's access, or HandshakeDenied: checked before accept."""
        access = self.gate.admit(
            websocket.headers, websocket.query_params, websocket.cookies, identity
        )
        if not v1 and not access.may_subscribe(room):
            raise HandshakeDenied(f"your token does not grant room {room!r}", kind="room")
        jti = access.claims.get("jti")
        revoked = self.hub.users.refusal(access.subject, jti if isinstance(jti, str) else None)
        if revoked is not None:
            raise HandshakeDenied(revoked, kind="revoked")
        return access


async def _pump(websocket: WebSocket, conn: Connection, session: Session) -> int | None:
    """Received frames to the session until the socket is gone; its close code."""
    receive = websocket.receive
    while conn.state is ConnState.OPEN:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code: int | None = message.get("code")
            return code
        await session.receive(message.get("text"), message.get("bytes"))
    return await _until_gone(websocket)


async def _until_gone(websocket: WebSocket) -> int | None:
    """After the core closed the connection: wait for the transport to report the socket
    gone (the peer's close reply, or the close timeout's abort). Frames that arrive
    meanwhile are not handled."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            code: int | None = message.get("code")
            return code


def _user_since(websocket: WebSocket) -> Since | None:
    """Where to resume the personal room from (``?user_since=EPOCH:OFFSET``)."""
    raw = websocket.query_params.get("user_since")
    if raw is None:
        return None
    try:
        return parse_since(raw)
    except FrameError as exc:
        raise HandshakeDenied(exc.reason, kind="query", status=400) from None


async def _deny(websocket: WebSocket, denied: HandshakeDenied) -> None:
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
