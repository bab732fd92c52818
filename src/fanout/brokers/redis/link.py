"""One pub/sub connection to Redis, spoken in RESP directly (parsed by hiredis).

The broker's reader task owns it: it subscribes, reads pushes, pings. Nothing here
reconnects or retries; the broker decides what a broken link means.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis

from fanout.brokers.redis.options import RedisTarget
from fanout.brokers.redis.resp import (
    LinkError,
    ReplyReader,
    auth_command,
    encode_command,
    open_stream,
)


class PubSubLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._replies = ReplyReader(reader, "pub/sub link")
        self._writer = writer

    @classmethod
    async def open(cls, target: RedisTarget, timeout_s: float) -> PubSubLink:
        try:
            async with asyncio.timeout(timeout_s):
                link = cls(*await open_stream(target))
                auth = auth_command(target)
                if auth is not None:
                    link.send(*auth)
                    reply = await link.read_one()
                    if isinstance(reply, hiredis.ReplyError):
                        link.close()
                        raise LinkError(f"redis refused AUTH: {reply}")
                return link
        except TimeoutError as exc:
            raise LinkError(f"no connection to {target} within {timeout_s} s") from exc

    def send(self, *args: str | bytes) -> None:
        if self._writer.is_closing():
            raise LinkError("pub/sub link closed")
        self._writer.write(encode_command(*args))

    async def read_one(self) -> Any:
        """The next reply or push; raises LinkError when the connection ends."""
        return await self._replies.next()

    def close(self) -> None:
        self._writer.close()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (a silent Redis); the reader sees it end."""
        self._writer.transport.abort()
