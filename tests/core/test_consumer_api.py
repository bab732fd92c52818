"""The event-driven API: handlers instead of ``while True`` loops."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from fanout.core.consumer import Consumer
from fanout.protocol.envelope import Payload
from tests.support.servers import running_hub
from tests.support.wsclient import connect_plain, connect_v1, recv_json, send_json, subscribe


class ArticleEcho(Consumer):
    """The article's server, rewritten as handlers."""

    async def on_connect(self) -> None:
        await self.join("lobby")

    async def on_message(self, room: str, data: Payload) -> None:
        await self.publish("lobby", f"Server received: {data}")


async def test_the_articles_example_rewritten_as_a_consumer_broadcasts_to_everyone() -> None:
    async with running_hub(consumer=ArticleEcho) as server:
        a, b = await connect_plain(server.ws), await connect_plain(server.ws)
        await a.send("hello")
        assert await asyncio.wait_for(a.recv(), 5) == "Server received: hello"
        assert await asyncio.wait_for(b.recv(), 5) == "Server received: hello"
        await a.close()
        await b.close()


class Guarded(Consumer):
    disconnects: list[int | None]

    async def on_connect(self) -> None:
        if self.info.query.get("name") == "mallory":
            self.refuse(reason="not welcome")
        self.send({"type": "welcome", "client": self.connection.id})

    async def on_subscribe(self, room: str) -> None:
        if room.startswith("staff."):
            self.deny("staff rooms are private")

    async def on_publish(self, room: str, data: Payload) -> Payload:
        return {"shouted": str(data).upper()}

    async def on_disconnect(self, code: int | None) -> None:
        Guarded.disconnects.append(code)


async def test_handlers_can_refuse_deny_rewrite_and_send_to_one_connection() -> None:
    Guarded.disconnects = []
    async with running_hub(consumer=Guarded) as server:
        async with await connect_v1(server.ws + "?name=alice") as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await send_json(ws, {"type": "subscribe", "room": "staff.room"})
            denied = await recv_json(ws)
            assert (denied["code"], denied["reason"]) == ("forbidden", "staff rooms are private")
            await subscribe(ws, "public")
            await send_json(ws, {"type": "publish", "room": "public", "data": "hi"})
            assert (await recv_json(ws))["data"] == {"shouted": "HI"}
        refused = await connect_v1(server.ws + "?name=mallory")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(refused.recv(), 5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "not welcome")
        for _ in range(100):
            if len(Guarded.disconnects) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(Guarded.disconnects) == 2


class Broken(Consumer):
    async def on_publish(self, room: str, data: Payload) -> Payload:
        raise ZeroDivisionError("application bug")


async def test_a_failing_handler_answers_that_client_with_an_error_and_keeps_serving() -> None:
    async with running_hub(consumer=Broken) as server, await connect_v1(server.ws) as ws:
        await send_json(ws, {"type": "publish", "room": "r", "data": 1, "id": "z"})
        error = await recv_json(ws)
        assert (error["code"], error["id"]) == ("internal", "z")
        await subscribe(ws, "r")
