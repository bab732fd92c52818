"""``fanout.Hub``: fanout inside an existing FastAPI application.

::

    hub = fanout.Hub(settings, consumer=MyConsumer, authenticate=current_user)
    app = FastAPI()
    app.include_router(hub.router, prefix="/rt")   # start and stop join the app's lifespan
    # or: app.mount("/rt", hub.app)                # starts on its first request

    @app.post("/orders")
    async def order(...):
        await hub.publish("orders", {"id": 42}, id="order-42")

The router carries the hub's routes (``/ws``, ``/ws/{room}``, ``/healthz``,
``/metrics``, ``/fanout.js``, the server API under ``/api/`` (docs/server-api.md), the
chat page at ``/`` if ``chat_page``, the dashboard at ``/admin`` if ``admin_key``) and a
lifespan that FastAPI composes with the app's own when the router is included. Starlette
does not run a mounted app's lifespan, so a hub that gets a request before it was started
starts then (once); its shutdown is the server's (uvicorn's SIGTERM still flushes and
closes every fanout connection with 1001 under fanout's protocol class), which is why
including the router is the first choice.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import gc
import typing
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fanout.asgi import admin, metrics
from fanout.asgi.api import ServerApi
from fanout.asgi.endpoint import ConsumerFactory, Endpoint
from fanout.asgi.front import DirectRoute, HubApp
from fanout.asgi.wiring import wire
from fanout.auth import redact
from fanout.core.broker import Broker, History, Published
from fanout.core.consumer import Consumer
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.presence import Member, PresenceStats
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import ConfigError, FanoutError, StateError
from fanout.settings import Settings

HEALTH_TIMEOUT_S = 0.8
# What an authenticate= hook may be: any callable FastAPI can resolve as a dependency.
Authenticate = Callable[..., Any]


class HubState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


class Hub:
    """One fanout hub, embedded in an application (or served alone by ``create_app``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        consumer: ConsumerFactory | None = None,
        authenticate: Authenticate | None = None,
        broker: Broker | None = None,
    ) -> None:
        """ConfigError, with the reason, if the settings cannot work."""
        self.settings = settings or Settings()
        if authenticate is not None:
            _check_hook(authenticate)
        wiring = wire(self.settings, broker, hooked=authenticate is not None)
        self.core = wiring.hub
        self.state = HubState.NEW
        self._started: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker_label = wiring.broker_label
        self._endpoint = Endpoint(self.core, consumer or Consumer, wiring.gate, wiring.session)
        self._api = ServerApi(self.core, wiring.api_key, self._ensure_started)
        self._metrics_registry = metrics.registry(
            self.core, self.settings.metrics_dir, metrics.limits_of(self.settings)
        )
        self._metrics_writer: asyncio.Task[None] | None = None
        redact.install(self.settings.auth_query_param)
        self.router = APIRouter(lifespan=self._lifespan)
        self._add_routes(authenticate)
        self._app: FastAPI | None = None
        # Move the start-up heap out of the collector's sight once started (create_app
        # sets this: its app is the whole process; an embedding app decides for itself).
        self.freeze_heap = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub (connect the broker). Idempotent; called by the lifespan."""
        await self._ensure_started()

    async def stop(self) -> None:
        """Flush every connection (bounded), close them with 1001, close the broker."""
        if self.state is HubState.NEW:
            self.state = HubState.STOPPED
            return
        if self.state is HubState.STOPPED:
            return
        if self._started is not None and not self._started.done():
            await asyncio.shield(self._started)
        self.state = HubState.STOPPED
        if self._metrics_writer is not None:
            self._metrics_writer.cancel()
        await self.core.close()

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """``async with hub.lifespan():`` inside your app's own lifespan, if you compose
        lifespans by hand (including ``hub.router`` does this for you)."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _lifespan(self, app: Any) -> Any:
        return self.lifespan(app)

    async def _ensure_started(self) -> None:
        if self.state is HubState.RUNNING:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                raise StateError(
                    "this hub runs in another event loop: build one Hub per application"
                    " (and per worker process)"
                )
            return
        if self.state is HubState.STOPPED:
            raise StateError("this hub was stopped; build a new Hub to serve again")
        if self._started is None:
            self.state = HubState.STARTING
            self._loop = asyncio.get_running_loop()
            self._started = self._loop.create_future()
            try:
                await self.core.start()
            except BaseException as exc:
                self.state = HubState.NEW
                started, self._started = self._started, None
                started.set_exception(exc)
                started.exception()  # retrieved: the caller gets it below
                raise
            self.state = HubState.RUNNING
            self._started.set_result(None)
            if self.settings.metrics_dir:
                self._metrics_writer = self._loop.create_task(
                    metrics.keep_writing(self._metrics_registry)
                )
            if self.freeze_heap:
                # Everything built so far lives as long as the process: full collections
                # need not walk it again and again while messages flow.
                gc.collect()
                gc.freeze()
        else:
            await asyncio.shield(self._started)

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, room: str, data: Payload, *, id: str | None = None) -> Published:
        """Publish to every member of ``room`` on every node, as a client's publish is:
        the same checks (``InvalidPublish`` with the reason), the same offsets and
        history, idempotent by ``id`` (a retry returns the first offset). ``data`` is
        any JSON value, or bytes. ``BrokerError``: not stored, or unknown; retry by id."""
        await self._ensure_started()
        return await self.core.publish(room, data, msg_id=id)

    async def broadcast(
        self, rooms: Iterable[str], data: Payload, *, id: str | None = None
    ) -> dict[str, Published | FanoutError]:
        """``publish`` to each room; each room's result or error."""
        await self._ensure_started()
        results: dict[str, Published | FanoutError] = {}
        for room in rooms:
            try:
                results[room] = await self.core.publish(room, data, msg_id=id)
            except FanoutError as exc:
                results[room] = exc
        return results

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        """Deliver to ``room``'s current subscribers on every node, not stored and with
        no offset (typing indicators, cursors)."""
        await self._ensure_started()
        await self.core.publish_ephemeral(room, data)

    async def publish_to_user(
        self, user: str, data: Payload, *, id: str | None = None
    ) -> Published:
        """Publish to every connection of ``user`` on every node (its personal room
        ``@user``), with a room's guarantees: offsets, resume after a reconnect, ``id``."""
        await self._ensure_started()
        return await self.core.publish_to_user(user, data, msg_id=id)

    # -- users and rooms on every node --------------------------------------------------

    async def disconnect(self, user: str, reason: str = "") -> None:
        """Close every connection of ``user`` on every node with 4003 (clients do not
        reconnect by themselves)."""
        await self._control(ControlEvent(ControlKind.DISCONNECT, user=user, reason=reason))

    async def unsubscribe(self, user: str, room: str) -> None:
        """End ``user``'s subscriptions to ``room`` on every node (``unsubscribed``)."""
        room = self.core.check_room(room)
        reason = "unsubscribed by the server"
        await self._control(
            ControlEvent(ControlKind.UNSUBSCRIBE, user=user, room=room, reason=reason)
        )

    async def revoke(
        self, *, until: float, user: str | None = None, jti: str | None = None
    ) -> None:
        """Refuse ``user`` (or the token ``jti``) at every node's handshake until
        ``until`` (unix seconds), and disconnect it now."""
        if (user is None) == (jti is None):
            raise ValueError("give either user= or jti=")
        event = ControlEvent(ControlKind.REVOKE, user=user, jti=jti, until=until, reason="revoked")
        await self._control(event)

    async def presence(self, room: str) -> list[Member]:
        """Who is in ``room``, on every node."""
        await self._ensure_started()
        return await self.core.presence_members(room)

    async def presence_stats(self, room: str) -> PresenceStats:
        await self._ensure_started()
        return await self.core.presence_stats(room)

    async def history(self, room: str, *, limit: int = 100, since: int | None = None) -> History:
        """The last ``limit`` messages of ``room``, or the first ``limit`` after ``since``."""
        await self._ensure_started()
        return await self.core.history(room, limit=limit, since=since)

    async def _control(self, event: ControlEvent) -> None:
        if event.user is not None and not event.user:
            raise ValueError("user must be a non-empty string")
        await self._ensure_started()
        await self.core.send_control(event)

    # -- the app ------------------------------------------------------------------------

    @property
    def app(self) -> FastAPI:
        """A FastAPI app serving only this hub: for ``app.mount(prefix, hub.app)``, or
        to run alone (what ``create_app`` returns)."""
        if self._app is None:
            app = HubApp(title="fanout", direct_ws=self._direct_ws)
            app.include_router(self.router)
            app.state.hub = self.core
            app.state.fanout = self
            app.state.settings = self.settings
            self._app = app
        return self._app

    def _add_routes(self, authenticate: Authenticate | None) -> None:
        router, endpoint, start = self.router, self._endpoint, self._ensure_started

        if authenticate is None:

            async def ws(websocket: WebSocket, room: str = "lobby") -> None:
                await start()
                await endpoint(websocket, room)

            self._direct_ws: DirectRoute | None = ws

        else:

            async def ws(  # type: ignore[misc]
                websocket: WebSocket, identity: Any, room: str = "lobby"
            ) -> None:
                await start()
                await endpoint(websocket, room, identity)

            # Objects, not the strings this module's annotations are: FastAPI resolves
            # strings in the module's globals, where the app's hook is not.
            self._direct_ws = None  # the hook is a FastAPI dependency: FastAPI's path
            ws.__annotations__ = {
                "websocket": WebSocket,
                "identity": Annotated[Any, Depends(authenticate)],
                "room": str,
                "return": None,
            }

        router.add_api_websocket_route("/ws", ws)
        router.add_api_websocket_route("/ws/{room}", ws)
        router.add_api_route("/healthz", self._healthz, methods=["GET"])
        router.add_api_route("/metrics", self._metrics, methods=["GET"])
        router.add_api_route("/fanout.js", _script, methods=["GET"])
        self._api.add_routes(router)
        if self.settings.chat_page:
            router.add_api_route("/", _chat_page, methods=["GET"], response_class=HTMLResponse)
        admin.add_routes(router, self.core, self.settings, self._broker_label, start)

    async def _healthz(self) -> Response:
        hub = self.core
        reason: str | None = None
        try:
            await self._ensure_started()
        except StateError:
            reason = "shutting down"
        except Exception as exc:
            reason = f"hub did not start: {exc}"
        if reason is None and not hub.accepting:
            reason = "shutting down"
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                reason = reason or await hub.broker.health()
        except TimeoutError:
            reason = f"broker did not answer within {HEALTH_TIMEOUT_S} s"
        body: dict[str, Any] = {
            "status": "ok" if reason is None else "unavailable",
            "broker": self._broker_label,
            "connections": len(hub.connections),
            "rooms": hub.room_count,
        }
        if reason is not None:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if reason is None else 503)

    async def _metrics(self, request: Request) -> Response:
        page, content_type = metrics.render(
            self._metrics_registry, request.headers.get("accept", "")
        )
        return Response(page, media_type=content_type)


def _check_hook(authenticate: Authenticate) -> None:
    """A hook that takes a ``Request`` cannot run at a WebSocket handshake (FastAPI has
    none to give it there): refuse it now, with what to write instead."""
    try:
        hints: dict[str, object] = typing.get_type_hints(authenticate)
    except Exception:  # unresolvable here: look at the annotations' text
        hints = dict(getattr(authenticate, "__annotations__", {}))
    for name, hint in hints.items():
        if hint is Request or (isinstance(hint, str) and hint.rsplit(".", 1)[-1] == "Request"):
            raise ConfigError(
                f"authenticate= takes '{name}: Request', which a WebSocket handshake does not"
                " have: take 'connection: HTTPConnection' (headers, cookies, query; both"
                " requests and WebSockets are one) or 'websocket: WebSocket' instead"
            )


@functools.cache
def _static(name: str) -> str:
    return resources.files("fanout.asgi").joinpath(f"static/{name}").read_text("utf-8")


async def _script() -> Response:
    return Response(_static("fanout.js"), media_type="text/javascript; charset=utf-8")


async def _chat_page() -> HTMLResponse:
    return HTMLResponse(_static("chat.html"))
