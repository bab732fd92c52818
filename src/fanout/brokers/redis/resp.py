"""RESP on a socket: connecting (TCP or TLS, AUTH), encoding commands, reading replies.

Both Redis connections a node keeps (commands, pub/sub) speak through this module;
hiredis parses the replies in C. Redis' failures enter fanout's exception tree here:
``LinkError`` (a ``BrokerUnavailable``) when a connection fails, ``CommandError`` (a
``BrokerRefused``) when Redis answers a command with an error.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import hiredis

from fanout.brokers.redis.options import RedisTarget
from fanout.protocol.errors import BrokerRefused, BrokerUnavailable

_READ_CHUNK = 256 * 1024


class LinkError(BrokerUnavailable):
    """A connection to Redis failed: refused, closed, lost or timed out."""


class CommandError(BrokerRefused):
    """Redis answered a command with an error (OOM, NOSCRIPT, WRONGPASS, ...)."""


def encode_command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


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
    if target.username:
        return ("AUTH", target.username, target.password)
    return ("AUTH", target.password)


class ReplyReader:
    """The replies (and pushes) arriving on one connection, in order."""

    __slots__ = ("_parser", "_reader", "_what")

    def __init__(self, reader: asyncio.StreamReader, what: str = "connection") -> None:
        self._reader = reader
        self._parser = hiredis.Reader()
        self._what = what  # which connection, for the errors' text

    async def next(self) -> Any:
        """The next reply; an error reply is returned as ``hiredis.ReplyError``.
        Raises LinkError when the connection ends."""
        while True:
            reply = self._parser.gets()
            if reply is not False:  # False: no complete reply buffered yet
                return reply
            try:
                chunk = await self._reader.read(_READ_CHUNK)
            except OSError as exc:
                raise LinkError(f"redis {self._what} lost: {exc}") from exc
            if not chunk:
                raise LinkError(f"redis closed the {self._what}")
            self._parser.feed(chunk)
