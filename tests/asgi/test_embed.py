"""fanout inside an existing FastAPI app: its own routes, lifespan and users, the hub
added by router or by mount, publishes from a route and a background task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Cookie, Depends, FastAPI, HTTPException, WebSocket

import fanout
from fanout.asgi.embed import HubState
from fanout.protocol.errors import ConfigError, InvalidPublish
from tests.support.servers import free_port, serving
from tests.support.wsclient import (
    connect_plain,
    connect_user,
    connect_v1,
    recv_json,
    send_json,
    subscribe,
)


class User:
    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name


SESSIONS = {"s-alice": User("u1", "Alice"), "s-bob": User("u2", "Bob")}


def current_user(session: Annotated[str | None, Cookie()] = None) -> User:
    """The application's own authentication, as any FastAPI app has it."""
    user = SESSIONS.get(session or "")
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    return user


def shop(hub: fanout.Hub, *, mount: bool) -> FastAPI:
    """An application of its own, with fanout added under /rt."""
    started: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("shop")
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.started = started
    if mount:
        app.mount("/rt", hub.app)
    else:
        app.include_router(hub.router, prefix="/rt")

    @app.get("/me")
    async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
        return {"name": user.name}

    @app.post("/orders/{number}")
    async def order(number: int) -> dict[str, Any]:
        published = await hub.publish("orders", {"order": number}, id=f"order-{number}")
        return {"offset": published.offset, "duplicate": published.duplicate}

    @app.post("/later/{number}")
    async def later(number: int) -> dict[str, str]:
        async def task() -> None:
            await hub.publish("orders", {"later": number})

        asyncio.get_running_loop().create_task(task())
        return {"status": "queued"}

    return app


def _settings() -> fanout.Settings:
    return fanout.Settings(port=free_port(), chat_page=False)


@pytest.mark.parametrize("mount", [False, True], ids=["router", "mount"])
async def test_an_app_with_its_own_routes_publishes_from_a_route_to_v1_and_plain_clients(
    mount: bool,
) -> None:
    settings = _settings()
    hub = fanout.Hub(settings)
    app = shop(hub, mount=mount)
    async with serving(app, settings) as url:
        ws = url.replace("http", "ws")
        async with (
            await connect_v1(f"{ws}/rt/ws") as v1,
            await connect_plain(f"{ws}/rt/ws/orders") as plain,
        ):
            await subscribe(v1, "orders")
            async with httpx.AsyncClient(base_url=url) as http:
                first = (await http.post("/orders/7")).json()
                again = (await http.post("/orders/7")).json()  # a retry: same id
                assert (await http.post("/later/8")).json() == {"status": "queued"}
                me = await http.get("/me", headers={"Cookie": "session=s-alice"})
                health = await http.get("/rt/healthz")
            assert first == {"offset": 1, "duplicate": False}
            assert again == {"offset": 1, "duplicate": True}
            assert me.json() == {"name": "Alice"}
            assert health.status_code == 200
            message = await recv_json(v1)
            assert (message["offset"], message["data"]) == (1, {"order": 7})
            assert (await recv_json(v1))["data"] == {"later": 8}
            assert await recv_json(plain) == {"order": 7}
            assert await recv_json(plain) == {"later": 8}
    if not mount:  # the router's lifespan ran inside the app's own
        assert app.state.started == ["shop"]
        assert hub.state is HubState.STOPPED


async def test_a_hub_embedded_with_create_app_by_mount_starts_on_its_first_request() -> None:
    settings = _settings()
    app = FastAPI()
    app.mount("/rt", fanout.create_app(settings))
    async with serving(app, settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            health = await http.get("/rt/healthz")
        assert health.status_code == 200, health.text
        async with await connect_v1(url.replace("http", "ws") + "/rt/ws") as ws:
            assert (await subscribe(ws, "lobby"))["offset"] == 0


async def test_publishes_from_the_app_are_checked_like_a_clients() -> None:
    settings = fanout.Settings(max_message_bytes=4096, room_pattern=r"shop\.[a-z]+")
    hub = fanout.Hub(settings)
    async with hub.lifespan():
        for room, reason in [
            ("", "1-128 characters"),
            ("bad room!", "1-128 characters"),
            ("x" * 300, "1-128 characters"),
            ("news", "room pattern"),
        ]:
            with pytest.raises(InvalidPublish, match=reason) as info:
                await hub.publish(room, "hi")
            assert info.value.code == "bad_room"
        with pytest.raises(InvalidPublish, match="at most 4096") as too_big:
            await hub.publish("shop.a", "x" * 5000)
        assert too_big.value.code == "too_big"
        with pytest.raises(InvalidPublish, match="not JSON"):
            await hub.publish("shop.a", {"when": object()})
        with pytest.raises(InvalidPublish, match="'id'"):
            await hub.publish("shop.a", "hi", id="")
        binary = await hub.publish("shop.a", b"\x00\xff" * 100, id="b1")
        assert (binary.offset, binary.duplicate) == (1, False)
        assert (await hub.publish("shop.a", b"other", id="b1")).offset == 1
        results = await hub.broadcast(["shop.a", "shop.b", "bad room"], {"n": 1})
        assert [getattr(r, "offset", None) for r in results.values()] == [2, 1, None]
        assert isinstance(results["bad room"], InvalidPublish)


async def test_the_apps_own_auth_dependency_decides_who_connects_and_the_consumer_sees_it() -> None:
    class Greeter(fanout.Consumer):
        async def on_connect(self) -> None:
            user: User = self.identity
            self.send({"type": "hello", "name": user.name, "user": self.user})

    settings = _settings()
    hub = fanout.Hub(settings, consumer=Greeter, authenticate=current_user)
    app = shop(hub, mount=False)
    async with serving(app, settings) as url:
        ws = url.replace("http", "ws") + "/rt/ws"
        async with await connect_user(ws, additional_headers={"Cookie": "session=s-bob"}) as bob:
            assert await recv_json(bob) == {"type": "hello", "name": "Bob", "user": "u2"}
        with pytest.raises(Exception, match="HTTP 401") as refused:
            async with await connect_v1(ws):
                pass
        assert b"log in first" in bytes(refused.value.response.body)  # type: ignore[attr-defined]


async def test_an_identity_with_room_grants_limits_what_the_user_may_subscribe_to() -> None:
    def guest(websocket: WebSocket) -> fanout.Identity | None:
        name = websocket.query_params.get("name")
        if name is None:
            return None  # refused with 403
        return fanout.Identity(id=name, subscribe=["public.*"], publish=[])

    settings = _settings()
    hub = fanout.Hub(settings, authenticate=guest)
    app = FastAPI()
    app.include_router(hub.router)
    async with serving(app, settings) as url:
        ws = url.replace("http", "ws") + "/ws"
        async with await connect_user(f"{ws}?name=carol") as carol:
            await subscribe(carol, "public.news")
            await send_json(carol, {"type": "subscribe", "room": "staff"})
            assert (await recv_json(carol))["code"] == "forbidden"
            await send_json(carol, {"type": "publish", "room": "public.news", "data": 1, "id": "p"})
            assert (await recv_json(carol))["code"] == "forbidden"
        with pytest.raises(Exception, match="HTTP 403"):
            async with await connect_v1(ws):
                pass


def test_a_hub_with_its_own_auth_hook_may_serve_beyond_loopback() -> None:
    beyond = fanout.Settings(host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without auth"):
        fanout.Hub(beyond)
    fanout.Hub(beyond, authenticate=current_user)  # the app's own users: not anonymous


def test_token_keys_and_an_auth_hook_together_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="not both"):
        fanout.Hub(fanout.Settings(auth_secret="s" * 32), authenticate=current_user)


async def test_a_stopped_hub_refuses_to_publish_with_a_reason() -> None:
    hub = fanout.Hub(fanout.Settings())
    async with hub.lifespan():
        await hub.publish("a", 1)
    with pytest.raises(fanout.FanoutError, match="stopped"):
        await hub.publish("a", 2)


async def test_the_app_publishes_ephemeral_messages_and_reads_history_and_presence() -> None:
    settings = _settings()
    hub = fanout.Hub(settings)
    app = FastAPI()
    app.include_router(hub.router)
    async with (
        serving(app, settings) as url,
        await connect_v1(url.replace("http", "ws") + "/ws") as ws,
    ):
        await subscribe(ws, "doc")
        await hub.publish_ephemeral("doc", {"cursor": 3})
        assert await recv_json(ws) == {
            "type": "message",
            "room": "doc",
            "data": {"cursor": 3},
            "ephemeral": True,
        }
        await hub.publish("doc", "kept")
        assert (await recv_json(ws))["offset"] == 1
        history = await hub.history("doc", limit=10)
        assert [m.data for m in history.messages] == ["kept"]
        stats = await hub.presence_stats("doc")
        assert (stats.connections, stats.users) == (1, 0)  # anonymous: a connection only
        await ws.close()


def test_an_auth_hook_that_takes_a_request_is_refused_with_what_to_take_instead() -> None:
    from fastapi import Request

    def by_request(request: Request) -> str:
        return "someone"

    with pytest.raises(ConfigError, match="HTTPConnection"):
        fanout.Hub(fanout.Settings(), authenticate=by_request)
