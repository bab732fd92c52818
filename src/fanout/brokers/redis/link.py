"""One pub/sub connection to Redis, spoken in RESP directly (parsed by hiredis).

The broker's reader task owns it: it subscribes, reads pushes, pings. Nothing here
reconnects or retries; the broker decides what a broken link means.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import hiredis

from fanout.brokers.redis.options import RedisTarget

_READ_CHUNK = 256 * 1024


def encode_command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class LinkError(ConnectionError):
    """A connection to Redis failed: closed, timed out, or Redis answered with an error."""


async def open_stream(target: RedisTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (or TLS, for rediss://) connection to ``target``; LinkError if refused."""
    context = ssl.create_default_context() if target.tls else None
    try:
        return await asyncio.open_connection(
            target.host, target.port, ssl=context, limit=_READ_CHUNK
        )
    except OSError as exc:
        raise LinkError(f"cannot connect to {target}: {exc}") from exc


def auth_command(target: RedisTarget) -> tuple[str, ...] | None:
    """The AUTH command the URL asks for, if it has a password."""
    if target.password is None:
        return None
    return (
        ("AUTH", target.username, target.password)
        if target.username
        else (
            "AUTH",
            target.password,
        )
    )


class PubSubLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

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
        while True:
            reply = self._parser.gets()
            if reply is not False:  # False: no complete reply buffered yet
                return reply
            try:
                chunk = await self._reader.read(_READ_CHUNK)
            except OSError as exc:
                raise LinkError(f"pub/sub link lost: {exc}") from exc
            if not chunk:
                raise LinkError("redis closed the pub/sub link")
            self._parser.feed(chunk)

    def close(self) -> None:
        self._writer.close()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (a silent Redis); the reader sees it end."""
        self._writer.transport.abort()
