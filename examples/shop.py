"""An application of its own, with fanout added: the example of docs/guide.md.

Run it (the in-memory broker; with FANOUT_BROKER=redis://... several processes and the
worker below share rooms):

    .venv/bin/python examples/shop.py          # http://127.0.0.1:8000

It has its own users (a session cookie), its own routes and lifespan; fanout serves
WebSockets under /rt, and the app publishes from a route and from a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import uvicorn
from fastapi import BackgroundTasks, Cookie, Depends, FastAPI, HTTPException

import fanout
from fanout.asgi.server import uvicorn_config


class User:
    def __init__(self, id: str, name: str, staff: bool = False) -> None:
        self.id, self.name, self.staff = id, name, staff


SESSIONS = {"alice-session": User("u1", "Alice", staff=True), "bob-session": User("u2", "Bob")}


def current_user(session: Annotated[str | None, Cookie()] = None) -> User:
    """The app's own authentication, used by its routes and by fanout alike."""
    user = SESSIONS.get(session or "")
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    return user


def room_grants(user: Annotated[User, Depends(current_user)]) -> fanout.Identity:
    """Who may listen where: everyone to orders, staff also to staff."""
    rooms = ["orders", "staff"] if user.staff else ["orders"]
    return fanout.Identity(id=user.id, user=user, subscribe=rooms, publish=[])


class Shop(fanout.Consumer):
    async def on_connect(self) -> None:
        user: User = self.identity
        self.send({"type": "welcome", "name": user.name})


settings = fanout.Settings.from_env(chat_page=False)
hub = fanout.Hub(settings, consumer=Shop, authenticate=room_grants)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.orders = 0  # the app's own start-up; the hub's joins it through the router
    yield


app = FastAPI(lifespan=lifespan)
app.include_router(hub.router, prefix="/rt")


@app.post("/orders")
async def place_order(
    user: Annotated[User, Depends(current_user)], tasks: BackgroundTasks
) -> dict[str, int]:
    app.state.orders += 1
    number = app.state.orders
    # Published before the answer: every subscriber on every node gets it, in order.
    published = await hub.publish(
        "orders", {"order": number, "by": user.name}, id=f"order-{number}"
    )
    tasks.add_task(notify_staff, number)
    return {"order": number, "offset": published.offset}


async def notify_staff(number: int) -> None:
    await asyncio.sleep(0)  # whatever slow work a background task does
    await hub.publish("staff", {"check": number})


if __name__ == "__main__":
    uvicorn.Server(uvicorn_config(settings, app)).run()
