"""Commands to Redis on one pipelined connection, spoken in RESP and parsed by hiredis.

Every call writes its command at once and waits for its reply; replies come back in
the order commands were written, so many publishes in flight share one connection
and one round trip (Redis runs them one at a time anyway). A call that gets no reply
within ``timeout_s`` fails, and so does the connection: a Redis that does not answer
one command will not answer the ones queued behind it. The next call reconnects.

``run(..., replicas=n)`` acks a script's write only once ``n`` replicas have it: one
``WAIT`` per event-loop turn covers every write answered on the connection before it
(a group commit), so waiting costs a replica round trip per batch, not per publish.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis

from fanout.brokers.redis.options import RedisTarget
from fanout.brokers.redis.resp import (
    CommandError,
    LinkError,
    ReplyReader,
    TransientError,
    auth_command,
    encode_command,
    open_stream,
    reply_error,
)

# Above this many unsent bytes a caller waits for the socket before adding more.
_WRITE_HIGH_WATER = 4 * 1024 * 1024


@dataclass(frozen=True)
class Script:
    """A Lua script, called by its SHA1 and loaded on first NOSCRIPT."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        # The WAIT that the next loop turn sends, shared by the writes answered before it.
        self.barrier: asyncio.Future[Any] | None = None

    async def read_replies(self) -> None:
        replies = ReplyReader(self.reader)
        waiting = self.waiting
        try:
            while True:
                reply = await replies.next()
                if not waiting:
                    raise LinkError("redis sent a reply nobody asked for")
                future = waiting.popleft()
                if not future.done():  # a caller that gave up is not answered
                    future.set_result(reply)
        except (LinkError, OSError, asyncio.CancelledError) as exc:
            self.fail(exc if isinstance(exc, LinkError) else LinkError(f"redis link lost: {exc}"))
            if isinstance(exc, asyncio.CancelledError):
                raise

    @property
    def gone(self) -> bool:
        """Failed, or its socket is closing and its reader has not said so yet (uvloop
        raises RuntimeError on a write to it, not an OSError): write nothing to it."""
        return self.closed or self.writer.transport.is_closing()

    def loop_future(self, *, ignored: bool = False) -> asyncio.Future[Any]:
        """A reply's future; ``ignored``: nobody may await its failure."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if ignored:
            future.add_done_callback(_retrieve)
        return future

    def fail(self, exc: LinkError) -> None:
        """The connection is over: whatever was sent has an unknown outcome."""
        self.closed = True
        self.writer.transport.abort()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)


class CommandLink:
    def __init__(
        self, target: RedisTarget, timeout_s: float, scripts: Sequence[Script] = ()
    ) -> None:
        self._target = target
        self._timeout_s = timeout_s
        # Loaded on every new connection before any other command, so EVALSHA finds them:
        # a NOSCRIPT answer costs a second round trip, and the publishes sent meanwhile
        # would overtake the one that is re-sent.
        self._scripts = list(scripts)
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def call(self, *args: str | bytes | int, asking: bool = False) -> Any:
        """The reply of one command; raises what ``resp.reply_error`` makes of an error
        reply (CommandError, TransientError, Redirect), LinkError or TimeoutError.
        ``asking``: preceded by ASKING (a slot being imported by this node)."""
        _, reply = await self._call(args, asking)
        return reply

    async def _call(self, args: tuple[str | bytes | int, ...], asking: bool) -> tuple[Any, Any]:
        """(the connection that answered, the reply)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                conn = await self._connection()
                if asking:
                    self._write(conn, ("ASKING",), conn.loop_future(ignored=True))
                reply = await self._send(conn, args)
        except TimeoutError:
            self._drop(f"redis did not answer within {self._timeout_s} s")
            raise
        if isinstance(reply, hiredis.ReplyError):
            raise reply_error(str(reply))
        return conn, reply

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes | int],
        *,
        asking: bool = False,
        replicas: int = 0,
    ) -> Any:
        """The script's reply; with ``replicas``, only once that many replicas have its
        writes (TransientError if they do not within half ``timeout_s``)."""
        try:
            conn, reply = await self._call(("EVALSHA", script.sha, len(keys), *keys, *args), asking)
        except CommandError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            # Not run: Redis did not know the script (first call, or Redis restarted).
            conn, reply = await self._call(("EVAL", script.text, len(keys), *keys, *args), asking)
        if replicas > 0:
            await self._replicated(conn, replicas)
        return reply

    async def _replicated(self, conn: _Connection, replicas: int) -> None:
        if conn.gone or self._conn is not conn:
            raise LinkError("redis link lost before the write was confirmed on a replica")
        barrier = conn.barrier
        if barrier is None:
            barrier = conn.barrier = conn.loop_future(ignored=True)
            asyncio.get_running_loop().call_soon(self._send_wait, conn, barrier, replicas)
        try:
            async with asyncio.timeout(self._timeout_s):
                acked = await asyncio.shield(barrier)
        except TimeoutError:
            self._drop(f"redis did not answer WAIT within {self._timeout_s} s")
            raise
        if isinstance(acked, hiredis.ReplyError):
            raise reply_error(str(acked))
        if int(acked) < replicas:
            raise TransientError(
                f"NOREPLICAS the write reached the master but {acked} of {replicas} replicas"
                " confirmed it in time; retry with the same id"
            )

    def _send_wait(self, conn: _Connection, barrier: asyncio.Future[Any], replicas: int) -> None:
        conn.barrier = None
        if conn.gone:
            barrier.set_exception(LinkError("redis link lost"))
            return
        # Answered before our own timeout, so a replica that lags fails the publish
        # without dropping the connection.
        self._write(conn, ("WAIT", replicas, int(self._timeout_s * 500)), barrier)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        self._drop("closed")

    async def _send(self, conn: _Connection, args: tuple[str | bytes | int, ...]) -> Any:
        if conn.gone:
            raise LinkError("redis link lost")
        future = conn.loop_future()
        self._write(conn, args, future)
        if conn.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await conn.writer.drain()
        return await future

    @staticmethod
    def _write(
        conn: _Connection, args: tuple[str | bytes | int, ...], future: asyncio.Future[Any]
    ) -> None:
        """Send one command whose reply will complete ``future`` (an ignored one for
        ASKING: its +OK is read and dropped)."""
        conn.waiting.append(future)
        conn.writer.write(encode_command(*(str(a) if isinstance(a, int) else a for a in args)))

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.gone:
            return conn
        if conn is not None:
            self._drop("redis link lost")  # closing before its reader noticed: a new one
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(_retrieve)
        # Shielded: a caller that times out does not abort a connect others wait for.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Connection:
        target = self._target
        conn = _Connection(*await open_stream(target))
        conn.task = asyncio.get_running_loop().create_task(conn.read_replies())
        try:
            auth = auth_command(target)
            if auth is not None:
                reply = await self._send(conn, auth)
                if isinstance(reply, hiredis.ReplyError):
                    raise CommandError(f"redis refused AUTH: {reply}")
            if target.db:
                reply = await self._send(conn, ("SELECT", target.db))
                if isinstance(reply, hiredis.ReplyError):
                    raise CommandError(f"redis refused SELECT {target.db}: {reply}")
            for script in self._scripts:
                reply = await self._send(conn, ("SCRIPT", "LOAD", script.text))
                if isinstance(reply, hiredis.ReplyError):
                    raise CommandError(f"redis refused SCRIPT LOAD: {reply}")
        except BaseException:
            conn.fail(LinkError("connection setup failed"))
            raise
        self._conn = conn
        return conn

    def _drop(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.fail(LinkError(reason))
            if conn.task is not None:
                conn.task.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed connect as seen; the caller that awaited it got the error."""
    if not future.cancelled():
        future.exception()
