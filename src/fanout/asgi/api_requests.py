"""Reading the server API's requests: the key, bounded bodies, JSON objects with known
fields, binary bodies with the room in the query. Every refusal is an ``ApiError``
with its HTTP status and ``{"code", "reason"}``."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import Request

from fanout.protocol.codes import ErrorCode

# A JSON body may be this much larger than the data it carries (room, id, quoting).
JSON_SLACK_BYTES = 64 * 1024
# Bodies of requests that carry no data (disconnect, revoke...).
SMALL_BODY_BYTES = 16 * 1024


class ApiError(Exception):
    """A request refused before anything happened: ``status`` and the JSON body's fields."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def authorize(key: bytes | None, header: str | None) -> None:
    if key is None:
        raise ApiError(
            401,
            ErrorCode.UNAUTHORIZED,
            "the server API is off: configure an api_key (FANOUT_API_KEY) to turn it on",
        )
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "apikey" or not given:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "send 'Authorization: apikey KEY'")
    if not hmac.compare_digest(given.strip().encode(), key):
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "wrong API key")


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def body(request: Request, limit: int) -> bytes:
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


async def json_object(request: Request, fields: frozenset[str], limit: int) -> dict[str, Any]:
    """The body as a JSON object with no fields but ``fields``."""
    if content_type(request) != "application/json":
        raise ApiError(415, ErrorCode.BAD_FRAME, "send application/json")
    raw = await body(request, limit)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, ErrorCode.BAD_FRAME, "the body must be a JSON object")
    unknown = set(obj) - fields
    if unknown:
        raise ApiError(400, ErrorCode.BAD_FRAME, f"unknown fields: {sorted(unknown)}")
    return obj


def known_query(request: Request, names: frozenset[str]) -> None:
    unknown = set(request.query_params) - names
    if unknown:
        raise ApiError(400, ErrorCode.BAD_FRAME, f"unknown query parameters: {sorted(unknown)}")


def text(value: object, name: str, code: str = ErrorCode.BAD_FRAME) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, code, f"'{name}' must be a non-empty string")
    return value


def optional_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, ErrorCode.BAD_FRAME, "'id' must be a string")
    return value


def integer(raw: str | None, name: str, *, low: int, high: int, default: int | None) -> int | None:
    """A query parameter that must be an integer from ``low`` to ``high``."""
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(
            400, ErrorCode.BAD_FRAME, f"'{name}' must be an integer from {low} to {high}"
        )
    return int(raw)


def _too_big(size: int, limit: int) -> ApiError:
    return ApiError(413, ErrorCode.TOO_BIG, f"the body is over {limit} bytes ({size} or more)")
