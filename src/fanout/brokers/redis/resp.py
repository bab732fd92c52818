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
from fanout.protocol.errors import BrokerError, BrokerRefused, BrokerUnavailable

_READ_CHUNK = 256 * 1024


class LinkError(BrokerUnavailable):
    """A connection to Redis failed: refused, closed, lost or timed out."""


class CommandError(BrokerRefused):
    """Redis answered a command with an error retrying cannot fix (a script error, a
    wrong type, WRONGPASS, a SELECT on a cluster, ...)."""


class TransientError(BrokerUnavailable):
    """Redis answered with an error that passes (CLUSTERDOWN, TRYAGAIN, LOADING, a
    master turned replica, out of memory, ...): the command did not run; retry."""


class Redirect(BrokerUnavailable):
    """MOVED or ASK: the slot is served by another node; the command did not run."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        kind, slot, address = text.split()[:3]
        host, _, port = address.rpartition(":")
        self.ask = kind == "ASK"
        self.slot = int(slot)
        self.address = (host, int(port))


# Error prefixes that say "not now" rather than "never".
_TRANSIENT = (
    "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN", "NOREPLICAS", "BUSY", "OOM",
)  # fmt: skip


def reply_error(text: str) -> BrokerError:
    """The exception for an error reply ``text`` (a ``hiredis.ReplyError``'s text)."""
    kind = text.split(" ", 1)[0]
    if kind in ("MOVED", "ASK"):
        return Redirect(text)
    if kind in _TRANSIENT:
        return TransientError(text)
    return CommandError(text)


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
