"""The server HTTP API: other services publish and manage users without a WebSocket.

Off unless a key is configured (``api_key``); callers send ``Authorization: apikey
KEY``, compared in constant time. Every publish goes through ``Hub.publish``: the same
checks and the same atomic broker step as a client's. docs/server-api.md is the
reference; in short:

- ``POST /api/publish`` ``{"room" | "user", "data", "id"?}`` (binary: an
  ``application/octet-stream`` body, ``?room=R`` or ``?user=U``, ``&id=I``)
- ``POST /api/broadcast`` ``{"rooms": [...], "data", "id"?}``
- ``POST /api/disconnect`` ``{"user", "reason"?}``, ``POST /api/unsubscribe``
  ``{"user", "room"}``, ``POST /api/revoke`` ``{"user" | "jti", "until"}``
- ``GET /api/presence?room=R``, ``GET /api/presence_stats?room=R``,
  ``GET /api/history?room=R&limit=N&since=OFFSET``

Errors are ``{"code", "reason"}``: 401 key, 400 malformed, 413 too big (refused
before the body is read), 415 content type, 503 broker (retry by ``id`` is safe).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from fanout.asgi import api_requests as req
from fanout.asgi.api_requests import JSON_SLACK_BYTES, SMALL_BODY_BYTES, ApiError
from fanout.core.broker import Published
from fanout.core.control import ControlEvent, ControlKind
from fanout.core.errormap import http_error
from fanout.core.hub import Hub
from fanout.protocol import server_frames
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FanoutError
from fanout.protocol.frames import MAX_HISTORY_LIMIT

MAX_ROOMS_PER_BROADCAST = 1000
# A revocation lasts at most this long (it is kept in the broker, bounded).
MAX_REVOKE_S = 366 * 86_400
_NO_DATA = object()


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class ServerApi:
    def __init__(
        self, hub: Hub, key: bytes | None, ensure_started: Callable[[], Awaitable[None]]
    ) -> None:
        self._hub = hub
        self._key = key
        self._ensure_started = ensure_started

    def add_routes(self, router: APIRouter) -> None:
        for path, handler in (
            ("publish", self.publish),
            ("broadcast", self.broadcast),
            ("disconnect", self.disconnect),
            ("unsubscribe", self.unsubscribe),
            ("revoke", self.revoke),
        ):
            router.add_api_route(f"/api/{path}", handler, methods=["POST"])
        for path, handler in (
            ("presence", self.presence),
            ("presence_stats", self.presence_stats),
            ("history", self.history),
        ):
            router.add_api_route(f"/api/{path}", handler, methods=["GET"])

    async def _answer(self, request: Request, work: Callable[[], Awaitable[object]]) -> Response:
        """Check the key, start the hub if it is not, run ``work``: its answer, or the
        error it raised as ``{"code", "reason"}`` with its status."""
        try:
            req.authorize(self._key, request.headers.get("authorization"))
            await self._ensure_started()
            return _json(200, await work())
        except ApiError as exc:
            return _json(exc.status, {"code": exc.code, "reason": exc.reason})
        except _NothingStored as exc:
            return _json(exc.status, exc.body)
        except Exception as exc:
            return _json(*http_error(exc))

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        async def work() -> object:
            message = await self._message(request, frozenset({"room", "user"}))
            (name, value), data, msg_id = message.target, message.data, message.msg_id
            if message.ephemeral:
                if name != "room" or msg_id is not None:
                    reason = "an ephemeral publish takes a room and no id"
                    raise ApiError(400, ErrorCode.BAD_FRAME, reason)
                await self._hub.publish_ephemeral(value, data)
                return {"ephemeral": True}
            if name == "user":
                published = await self._hub.publish_to_user(value, data, msg_id=msg_id)
            else:
                published = await self._hub.publish(value, data, msg_id=msg_id)
            return _published(published)

        return await self._answer(request, work)

    async def broadcast(self, request: Request) -> Response:
        async def work() -> object:
            message = await self._message(request, frozenset({"rooms"}))
            if message.ephemeral:
                raise ApiError(400, ErrorCode.BAD_FRAME, "a broadcast is not ephemeral")
            results: list[dict[str, Any]] = []
            first_failure: FanoutError | None = None
            for room in _rooms(message.target[1]):
                try:
                    published = await self._hub.publish(room, message.data, msg_id=message.msg_id)
                    results.append({"room": room, **_published(published)})
                except FanoutError as exc:
                    first_failure = first_failure or exc
                    results.append({"room": room, **http_error(exc)[1]})
            if first_failure is not None and all("code" in r for r in results):
                # Nothing stored: the status says so, not only the body.
                raise _NothingStored(http_error(first_failure)[0], {"results": results})
            return {"results": results}

        return await self._answer(request, work)

    async def _message(self, request: Request, targets: frozenset[str]) -> _Message:
        """The target, data, id and ephemeral flag of a publish or broadcast."""
        limit = self._hub.limits.publish.max_message_bytes
        if req.content_type(request) == "application/octet-stream":
            query = request.query_params
            req.known_query(request, frozenset({"room", "user", "id", "ephemeral"}))
            data = await req.body(request, limit)
            msg_id = req.optional_id(query.get("id"))
            ephemeral = _flag(query.get("ephemeral", "false"))
            if "rooms" in targets:
                return _Message(("rooms", query.getlist("room")), data, msg_id, ephemeral)
            target = _one(query, [t for t in ("room", "user") if t in query])
            return _Message(target, data, msg_id, ephemeral)
        fields = targets | {"data", "id", "ephemeral"}
        body = await req.json_object(request, fields, limit + JSON_SLACK_BYTES)
        data = body.get("data", _NO_DATA)
        if data is _NO_DATA:
            raise ApiError(400, ErrorCode.BAD_FRAME, "'data' is required")
        ephemeral = body.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise ApiError(400, ErrorCode.BAD_FRAME, "'ephemeral' must be true or false")
        given = [t for t in sorted(targets) if t in body]
        return _Message(_one(body, given), data, req.optional_id(body.get("id")), ephemeral)

    # -- users on every node ------------------------------------------------------------

    async def disconnect(self, request: Request) -> Response:
        async def work() -> object:
            body = await req.json_object(request, frozenset({"user", "reason"}), SMALL_BODY_BYTES)
            reason = body.get("reason", "")
            if not isinstance(reason, str) or len(reason) > 120:
                raise ApiError(400, ErrorCode.BAD_FRAME, "'reason' must be a string of 0-120")
            user = req.text(body.get("user"), "user")
            await self._hub.send_control(
                ControlEvent(ControlKind.DISCONNECT, user=user, reason=_kicked(reason))
            )
            return {}

        return await self._answer(request, work)

    async def unsubscribe(self, request: Request) -> Response:
        async def work() -> object:
            body = await req.json_object(request, frozenset({"user", "room"}), SMALL_BODY_BYTES)
            user = req.text(body.get("user"), "user")
            room = self._hub.check_room(body.get("room"))
            await self._hub.send_control(
                ControlEvent(
                    ControlKind.UNSUBSCRIBE,
                    user=user,
                    room=room,
                    reason="unsubscribed by the server",
                )
            )
            return {}

        return await self._answer(request, work)

    async def revoke(self, request: Request) -> Response:
        async def work() -> object:
            fields = frozenset({"user", "jti", "until"})
            body = await req.json_object(request, fields, SMALL_BODY_BYTES)
            if ("user" in body) == ("jti" in body):
                raise ApiError(400, ErrorCode.BAD_FRAME, "give either 'user' or 'jti'")
            until = body.get("until")
            now = time.time()
            if (
                not isinstance(until, int | float)
                or isinstance(until, bool)
                or not now < until <= now + MAX_REVOKE_S
            ):
                raise ApiError(
                    400,
                    ErrorCode.BAD_FRAME,
                    "'until' must be unix seconds in the future, at most a year ahead",
                )
            user = req.text(body["user"], "user") if "user" in body else None
            jti = req.text(body["jti"], "jti") if "jti" in body else None
            event = ControlEvent(
                ControlKind.REVOKE, user=user, jti=jti, until=float(until), reason="revoked"
            )
            await self._hub.send_control(event)
            return {}

        return await self._answer(request, work)

    # -- reading ------------------------------------------------------------------------

    async def presence(self, request: Request) -> Response:
        async def work() -> object:
            room = self._room_query(request, frozenset({"room"}))
            members = await self._hub.presence_members(room)
            return {"room": room, "members": [m.to_json() for m in members]}

        return await self._answer(request, work)

    async def presence_stats(self, request: Request) -> Response:
        async def work() -> object:
            room = self._room_query(request, frozenset({"room"}))
            stats = await self._hub.presence_stats(room)
            return {"room": room, "connections": stats.connections, "users": stats.users}

        return await self._answer(request, work)

    async def history(self, request: Request) -> Response:
        async def work() -> object:
            room = self._room_query(request, frozenset({"room", "limit", "since"}))
            query = request.query_params
            limit = req.integer(
                query.get("limit"), "limit", low=1, high=MAX_HISTORY_LIMIT, default=100
            )
            since = req.integer(query.get("since"), "since", low=0, high=2**53, default=None)
            found = await self._hub.history(room, limit=limit or 100, since=since)
            frame = server_frames.history(
                room, found.epoch, found.latest, found.first_kept, found.messages, None
            )
            answer: dict[str, Any] = orjson.loads(frame.payload)
            del answer["type"]
            return answer

        return await self._answer(request, work)

    def _room_query(self, request: Request, names: frozenset[str]) -> str:
        req.known_query(request, names)
        return self._hub.check_room(request.query_params.get("room"))


class _NothingStored(Exception):
    """A broadcast that stored nothing: every room's error, under the first one's status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class _Message:
    target: tuple[str, Any]  # ("room" | "user" | "rooms", its value)
    data: Any
    msg_id: str | None
    ephemeral: bool


def _flag(raw: str) -> bool:
    if raw.lower() not in ("0", "1", "true", "false"):
        raise ApiError(400, ErrorCode.BAD_FRAME, "'ephemeral' must be true or false")
    return raw.lower() in ("1", "true")


def _one(source: Any, given: list[str]) -> tuple[str, Any]:
    if len(given) != 1:
        raise ApiError(400, ErrorCode.BAD_FRAME, "give exactly one of 'room' and 'user'")
    name = given[0]
    value = source.get(name)
    if name == "room" and not isinstance(value, str):
        raise ApiError(400, ErrorCode.BAD_ROOM, "'room' must be a string")
    if name == "user":
        value = req.text(value, "user")
    return name, value


def _rooms(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, ErrorCode.BAD_ROOM, "'rooms' must be a non-empty list of room names")
    if len(value) > MAX_ROOMS_PER_BROADCAST:
        raise ApiError(
            400, ErrorCode.BAD_ROOM, f"at most {MAX_ROOMS_PER_BROADCAST} rooms per broadcast"
        )
    if not all(isinstance(room, str) for room in value):
        raise ApiError(400, ErrorCode.BAD_ROOM, "'rooms' must hold strings")
    if len(set(value)) != len(value):
        raise ApiError(400, ErrorCode.BAD_ROOM, "'rooms' names a room twice")
    return value


def _kicked(reason: str) -> str:
    return f"disconnected by the server: {reason}" if reason else "disconnected by the server"


def _published(published: Published) -> dict[str, Any]:
    return {"epoch": published.epoch, "offset": published.offset, "duplicate": published.duplicate}
