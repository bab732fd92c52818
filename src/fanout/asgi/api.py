"""The server HTTP API: other services publish without a WebSocket.

Off unless a key is configured (``api_key``); callers send ``Authorization: apikey
KEY``, compared in constant time. Every publish goes through ``Hub.publish``: the same
checks and the same atomic broker step as a client's, so offsets, history, idempotency
by ``id`` and delivery never differ.

- ``POST /api/publish`` ``{"room", "data", "id"?}`` -> 200 ``{"epoch", "offset",
  "duplicate"}``; binary: an ``application/octet-stream`` body, ``?room=R&id=I``.
- ``POST /api/broadcast`` ``{"rooms": [...], "data", "id"?}`` -> 200 ``{"results":
  [{"room", "epoch", "offset", "duplicate"} | {"room", "code", "reason"}]}``; binary
  with ``?room=A&room=B``.

Errors are ``{"code", "reason"}``: 401 no or wrong key (or the API is off), 400
malformed JSON, unknown fields, bad room or id, no data; 413 over ``max_message_bytes``
(refused from Content-Length, or as soon as the body passes the limit, before it is all
read); 415 another content type; 503 the broker is down or slow (a retry with the same
``id`` is safe).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from fanout.core.broker import Published
from fanout.core.errormap import http_error
from fanout.core.hub import Hub
from fanout.protocol.codes import ErrorCode
from fanout.protocol.errors import FanoutError, InvalidPublish

# A JSON body may be this much larger than the data it carries (room, id, quoting).
JSON_SLACK_BYTES = 64 * 1024
MAX_ROOMS_PER_BROADCAST = 1000
_PUBLISH_FIELDS = frozenset({"room", "data", "id"})
_BROADCAST_FIELDS = frozenset({"rooms", "data", "id"})
_NO_DATA = object()


class ApiError(Exception):
    """A request refused before any publish: ``status`` and the JSON body's fields."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


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
        router.add_api_route("/api/publish", self.publish, methods=["POST"])
        router.add_api_route("/api/broadcast", self.broadcast, methods=["POST"])

    async def publish(self, request: Request) -> Response:
        try:
            room, data, msg_id = await self._read(request, _PUBLISH_FIELDS)
            await self._ensure_started()
            published = await self._hub.publish(_text(room, "room"), data, msg_id=msg_id)
        except ApiError as exc:
            return _json(exc.status, {"code": exc.code, "reason": exc.reason})
        except Exception as exc:
            return _json(*http_error(exc))
        return _json(200, _published(published))

    async def broadcast(self, request: Request) -> Response:
        try:
            rooms, data, msg_id = await self._read(request, _BROADCAST_FIELDS)
            rooms = _rooms(rooms)
            await self._ensure_started()
        except ApiError as exc:
            return _json(exc.status, {"code": exc.code, "reason": exc.reason})
        except Exception as exc:
            return _json(*http_error(exc))
        results: list[dict[str, Any]] = []
        for room in rooms:
            try:
                published = await self._hub.publish(room, data, msg_id=msg_id)
                results.append({"room": room, **_published(published)})
            except FanoutError as exc:
                _, body = http_error(exc)
                results.append({"room": room, **body})
        return _json(200, {"results": results})

    async def _read(self, request: Request, fields: frozenset[str]) -> tuple[Any, Any, str | None]:
        """The room(s), data and id of a request, after the key and the body checks."""
        self._authorize(request.headers.get("authorization"))
        limit = self._hub.limits.publish.max_message_bytes
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        many = "rooms" in fields
        if kind == "application/octet-stream":
            data = await _body(request, limit)
            query = request.query_params
            rooms: Any = query.getlist("room") if many else query.get("room")
            unknown = set(query) - {"room", "id"}
            if unknown:
                raise ApiError(
                    400, ErrorCode.BAD_FRAME, f"unknown query parameters: {sorted(unknown)}"
                )
            return rooms, data, _id(query.get("id"))
        if kind != "application/json":
            raise ApiError(
                415,
                ErrorCode.BAD_FRAME,
                "send application/json, or application/octet-stream with the room in the query",
            )
        raw = await _body(request, limit + JSON_SLACK_BYTES)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, ErrorCode.BAD_FRAME, "the body must be a JSON object")
        unknown = set(body) - fields
        if unknown:
            raise ApiError(400, ErrorCode.BAD_FRAME, f"unknown fields: {sorted(unknown)}")
        data = body.get("data", _NO_DATA)
        if data is _NO_DATA:
            raise ApiError(400, ErrorCode.BAD_FRAME, "'data' is required")
        return body.get("rooms" if many else "room"), data, _id(body.get("id"))

    def _authorize(self, header: str | None) -> None:
        if self._key is None:
            raise ApiError(
                401,
                ErrorCode.UNAUTHORIZED,
                "the server API is off: configure an api_key (FANOUT_API_KEY) to turn it on",
            )
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "apikey" or not given:
            raise ApiError(401, ErrorCode.UNAUTHORIZED, "send 'Authorization: apikey KEY'")
        if not hmac.compare_digest(given.strip().encode(), self._key):
            raise ApiError(401, ErrorCode.UNAUTHORIZED, "wrong API key")


async def _body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to pass ``limit``."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, ErrorCode.BAD_FRAME, "Content-Length is not a number")
        if int(length) > limit:
            raise _too_big(int(length), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_big(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(size: int, limit: int) -> ApiError:
    return ApiError(413, ErrorCode.TOO_BIG, f"the body is over {limit} bytes ({size} or more)")


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidPublish(ErrorCode.BAD_ROOM, f"'{name}' must be a string")
    return value


def _id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, ErrorCode.BAD_FRAME, "'id' must be a string")
    return value


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


def _published(published: Published) -> dict[str, Any]:
    return {"epoch": published.epoch, "offset": published.offset, "duplicate": published.duplicate}
