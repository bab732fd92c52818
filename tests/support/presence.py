"""Helpers for the presence tests: members, waiting on a condition, Redis' own counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fanout.core.presence import Member
from tests.support.redis import RedisServer


def member(conn: str, user: str | None = None, node: str = "n1", **info: object) -> Member:
    return Member(conn, user, node, joined_at_ms=int(time.time() * 1000), info=info)


async def until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout} s") from None


def reply_text(raw: bytes) -> str:
    """The text of a raw RESP bulk-string reply (INFO)."""
    head, _, body = raw.partition(b"\r\n")
    assert head.startswith(b"$"), raw[:80]
    return body[: int(head[1:])].decode()


def reply_int(raw: bytes) -> int:
    assert raw.startswith(b":"), raw[:80]
    return int(raw[1:].strip())


def command_calls(redis: RedisServer) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT`` (commands run by scripts too);
    the calls of this query itself and of the reset are left out."""
    calls: dict[str, int] = {}
    for line in reply_text(redis.command("INFO", "commandstats")).splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.partition(":")
            values = dict(kv.split("=", 1) for kv in fields.split(","))
            calls[name.removeprefix("cmdstat_")] = int(values["calls"])
    for own in ("info", "config|resetstat"):
        calls.pop(own, None)
    return calls
