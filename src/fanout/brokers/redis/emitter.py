"""Publish into a hub's rooms from any process, with no fanout node running there.

``RedisEmitter`` (async) and ``SyncRedisEmitter`` (blocking, for Celery tasks, Django
views, scripts) write to the Redis the nodes share, through the same publish step as a node
(``fanout.brokers.redis.publish``): offsets, history, idempotency by ``id`` and delivery
to subscribers on every node are exactly those of a client's publish. Each publish is
checked first by the hub's ``PublishRules`` (room, id, size) and refused with
``InvalidPublish`` before anything is sent; a Redis that is down, refuses or does not
answer raises a ``BrokerError`` (never a false success), and a retry with the same
``id`` is safe.

::

    with fanout.SyncEmitter("redis://127.0.0.1:6379/0") as emitter:
        emitter.publish("news", {"title": "hello"}, id="news-1")

``fanout.Emitter`` and ``fanout.SyncEmitter`` (``fanout.asgi.emitters``) build these from
``fanout.Settings``, which must be those of the hub's nodes where they matter:
``redis_key_prefix``, the history and idempotency limits, ``redis_room_ttl_s``,
``max_message_bytes``, ``room_pattern``, ``room_options``, ``redis_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from fanout.brokers.redis.options import RedisBrokerOptions
from fanout.brokers.redis.publish import PUBLISH, publish, redis_errors
from fanout.brokers.redis.router import Router
from fanout.core.broker import Published
from fanout.core.publishing import PublishRules
from fanout.core.room_options import RoomRules
from fanout.protocol.codes import ErrorCode
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import BrokerTimeout, InvalidPublish, StateError
from fanout.protocol.frames import personal_room

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EmitterConfig:
    """What an emitter publishes with; ``fanout.asgi.wiring.emitter_config`` builds it
    from ``fanout.Settings`` as the nodes' own wiring does."""

    options: RedisBrokerOptions
    rules: PublishRules
    rooms: RoomRules  # the rooms' own history limits, as the nodes keep them


def _personal(user: str) -> str:
    if not isinstance(user, str) or not user:
        raise InvalidPublish(ErrorCode.BAD_FRAME, "'user' must be a non-empty string")
    return personal_room(user)


class RedisEmitter:
    """Publishes through Redis from asyncio code; connects on the first publish.

    Use it on one event loop at a time (a publish on another loop opens a connection
    there). ``async with Emitter(url) as emitter:`` or ``await emitter.close()``.
    """

    def __init__(self, config: EmitterConfig) -> None:
        self.options, self.rules, self.rooms = config.options, config.rules, config.rooms
        self._target = self.options.target
        self._commands: Router | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def address(self) -> str:
        """Where it publishes, without the password."""
        return str(self._target)

    async def publish(self, room: str, data: Payload, *, id: str | None = None) -> Published:
        """Publish ``data`` (JSON-serialisable, or bytes) to every member of ``room`` on
        every node; returns its epoch and offset (``duplicate`` for a retried ``id``).

        Raises InvalidPublish (nothing sent) for a bad room, id or data or one over
        ``max_message_bytes``; BrokerError when Redis is down, refuses or does not
        answer within ``redis_timeout_s`` (not stored, or unknown: retry with the same
        ``id``)."""
        if self._closed:
            raise StateError("Emitter.publish after close()")
        room, data = self.rules.check(room, data, id)
        commands = self._link()
        with redis_errors("publish", self._target, self.options.timeout_s):
            retention = self.rooms.retention(room)
            return await publish(commands, self.options, room, data, id, retention)

    async def publish_to_user(
        self, user: str, data: Payload, *, id: str | None = None
    ) -> Published:
        """Publish to every connection of ``user`` on every node (its personal room)."""
        return await self.publish(_personal(user), data, id=id)

    def _link(self) -> Router:
        loop = asyncio.get_running_loop()
        if self._commands is None or self._loop is not loop:
            # Commands are never re-sent by the link: a caller retries by id.
            self._commands = Router(
                self._target,
                self.options.timeout_s,
                scripts=[PUBLISH],
                ack_replicas=self.options.ack_replicas,
            )
            self._loop = loop
        return self._commands

    async def close(self) -> None:
        """Close the connection; later publishes raise StateError. Idempotent."""
        self._closed = True
        commands, self._commands = self._commands, None
        if commands is not None and self._loop is asyncio.get_running_loop():
            await commands.close()

    async def __aenter__(self) -> RedisEmitter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SyncRedisEmitter:
    """Publishes through Redis from synchronous code: each call blocks until Redis
    answered (at most about twice ``redis_timeout_s``). The caller needs no event loop:
    one runs in a background thread, started on the first publish, and serves every
    thread of the process (calls from several threads share one connection).

    Before the process forks (a Celery prefork pool), the thread and its connection are
    stopped (a publish in flight then fails with BrokerUnavailable): a child must not
    share them, and parent and child each start their own on their next publish.

    ``with SyncEmitter(url) as emitter:`` or ``emitter.close()``.
    """

    def __init__(self, config: EmitterConfig) -> None:
        self._config = config
        self._emitter = RedisEmitter(config)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    @property
    def address(self) -> str:
        """Where it publishes, without the password."""
        return self._emitter.address

    def publish(self, room: str, data: Payload, *, id: str | None = None) -> Published:
        """As ``Emitter.publish``, blocking."""
        # Checked here too, so a refused publish starts no thread.
        self._emitter.rules.check(room, data, id)
        loop, emitter = self._running()
        done = asyncio.run_coroutine_threadsafe(emitter.publish(room, data, id=id), loop)
        return self._wait(done, "publish")

    def publish_to_user(self, user: str, data: Payload, *, id: str | None = None) -> Published:
        """As ``Emitter.publish_to_user``, blocking."""
        return self.publish(_personal(user), data, id=id)

    def close(self) -> None:
        """Close the connection and stop the thread; later publishes raise StateError.
        Idempotent."""
        with self._lock:
            self._closed = True
        self._stop()

    def _running(self) -> tuple[asyncio.AbstractEventLoop, RedisEmitter]:
        with self._lock:
            if self._closed:
                raise StateError("SyncEmitter.publish after close()")
            if self._pid != os.getpid():  # forked while the hook could not stop it
                self._pid, self._loop, self._thread = os.getpid(), None, None
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="fanout-emitter", daemon=True
                )
                thread.start()
                self._emitter = RedisEmitter(self._config)
                self._loop, self._thread = loop, thread
                _RUNNING.add(self)
            return self._loop, self._emitter

    def _stop(self) -> None:
        """Close the connection, stop the loop and join its thread, if running."""
        with self._lock:
            loop, thread, emitter = self._loop, self._thread, self._emitter
            self._loop = self._thread = None
            _RUNNING.discard(self)
        if loop is None or thread is None or self._pid != os.getpid():
            return
        with contextlib.suppress(Exception):
            self._wait(asyncio.run_coroutine_threadsafe(emitter.close(), loop), "close")
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _wait(self, done: Future[T], what: str) -> T:
        # The publish bounds itself (connect and each command within redis_timeout_s, and
        # a script Redis forgot is sent once more); this is the backstop.
        limit = 2 * self._emitter.options.timeout_s + 1.0
        try:
            return done.result(timeout=limit)
        except TimeoutError:
            done.cancel()
            raise BrokerTimeout(f"redis did not answer the {what} within {limit} s") from None

    def __enter__(self) -> SyncRedisEmitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# The SyncEmitters whose thread runs, stopped before this process forks: a child that
# inherited the loop would share its epoll instance with the parent, and its first
# cleanup (a socket closed, a reader removed) would silence the parent's connection.
_RUNNING: weakref.WeakSet[SyncRedisEmitter] = weakref.WeakSet()


def _before_fork() -> None:
    for emitter in list(_RUNNING):
        emitter._stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)
