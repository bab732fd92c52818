"""The event-driven API: write handlers, not ``while True`` loops.

One ``Consumer`` instance serves one connection. Override the handlers you need::

    class Echo(Consumer):
        async def on_connect(self) -> None:
            await self.join("lobby")

        async def on_message(self, room: str, data: Payload) -> None:
            await self.publish("lobby", f"Server received: {data}")

Handlers:
- ``on_connect()``: the socket is open; join rooms, or ``refuse()``.
- ``on_message(room, data)``: a plain-mode frame (text as ``str``, binary as ``bytes``).
  ``room`` is the connection's room (``/ws`` -> ``lobby``, ``/ws/{room}``).
- ``on_subscribe(room)`` / ``on_publish(room, data)``: ``fanout.v1`` requests; call
  ``deny()`` to refuse; ``on_publish`` returns the data to publish (it may rewrite it).
  They run after the token's room grants allowed the request; ``self.user`` and
  ``self.access.claims`` say who asks.
- ``on_disconnect(code)``: the socket is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fanout.core.access import ANONYMOUS, Access
from fanout.core.broker import Published
from fanout.core.connection import Connection, Mode
from fanout.core.hub import Hub
from fanout.protocol.codes import CloseCode, ErrorCode
from fanout.protocol.envelope import OutFrame, Payload
from fanout.protocol.errors import FrameError, ProtocolViolation
from fanout.protocol.frames import Since


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the handshake said: path, query, headers (lower-case names), peer address."""

    path: str = "/ws"
    room: str = "lobby"
    client: str = ""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    access: Access = ANONYMOUS


class Consumer:
    """Base consumer: plain clients join their room and every frame is broadcast to it
    (the article's behaviour); ``fanout.v1`` requests are all allowed."""

    def __init__(self, hub: Hub, connection: Connection, info: ConnectionInfo) -> None:
        self.hub = hub
        self.connection = connection
        self.info = info
        self.access = info.access
        # Called after ``set_access`` (the endpoint re-arms the token's expiry with it).
        self.access_changed: Callable[[], None] | None = None

    @property
    def mode(self) -> Mode:
        return self.connection.mode

    @property
    def user(self) -> str | None:
        """Who this is: the token's ``sub``, or the id an ``authenticate=`` hook gave
        (None without auth)."""
        return self.access.subject

    @property
    def identity(self) -> Any:
        """Your application's user object, as an ``authenticate=`` hook returned it."""
        return self.access.identity

    def set_access(self, access: Access) -> None:
        """What this connection may do from now on (after a token refresh)."""
        self.access = access
        if self.access_changed is not None:
            self.access_changed()

    # -- handlers -----------------------------------------------------------------------

    async def on_connect(self) -> None:
        if self.mode is Mode.PLAIN:
            await self.join(self.info.room)

    async def on_message(self, room: str, data: Payload) -> None:
        await self.publish(room, data)

    async def on_subscribe(self, room: str) -> None:
        return None

    async def on_publish(self, room: str, data: Payload) -> Payload:
        return data

    async def on_disconnect(self, code: int | None) -> None:
        return None

    # -- helpers ------------------------------------------------------------------------

    async def join(self, room: str, since: Since | None = None) -> None:
        """Subscribe this connection to ``room`` (``fanout.v1`` clients get ``subscribed``)."""
        await self.hub.subscribe(self.connection, self.hub.check_room(room), since)

    async def leave(self, room: str) -> None:
        await self.hub.unsubscribe(self.connection, room)

    async def publish(self, room: str, data: Payload, *, id: str | None = None) -> Published:
        """Publish to every member of ``room``, on every node."""
        return await self.hub.publish(room, data, msg_id=id)

    def send(self, data: Payload) -> bool:
        """Send to this connection only, outside any room's history.

        Plain clients get strings and bytes as-is; ``fanout.v1`` clients get ``data``,
        which must then be a JSON object with a ``type`` of the application's own.
        """
        return self.connection.answer(OutFrame.of(data))

    def refuse(self, code: int = CloseCode.POLICY, reason: str = "refused") -> NoReturn:
        """Close this connection with ``code`` (raise from any handler)."""
        raise ProtocolViolation(CloseCode(code), reason)

    def deny(self, reason: str = "forbidden") -> NoReturn:
        """Refuse one subscribe or publish with an ``error`` frame; the connection stays."""
        raise FrameError(ErrorCode.FORBIDDEN, reason)
