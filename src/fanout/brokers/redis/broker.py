"""The Redis broker: many fanout processes and machines share rooms through Redis: one
standalone server, a master watched by Sentinels, or a Redis Cluster.

Publishing is one Lua script per message on the master that owns the room's slot
(stream append with bounded retention, then PUBLISH, or SPUBLISH on a cluster, of the
envelope with its offset), acked once a replica has it when the master has replicas.
Each node subscribes to the channels of the rooms it has members for, on the owning
master's pub/sub link (``subscriber``), and hands the hub every message of those rooms
in offset order: a jump in offsets (a message missed) is filled from the stream, a
range the stream no longer holds is reported as a gap, and a new epoch (Redis lost the
room) as a reset. A lost link, a failover or a migrated slot end the same way: the
node links to the current owner, subscribes again and catches every room up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fanout.brokers.redis import control as redis_control
from fanout.brokers.redis import scripts
from fanout.brokers.redis.commands import Script
from fanout.brokers.redis.control import control_channel
from fanout.brokers.redis.feeds import Sequencer
from fanout.brokers.redis.layout import RoomKeys, ephemeral_envelope, parse_entry
from fanout.brokers.redis.options import RedisBrokerOptions
from fanout.brokers.redis.publish import PUBLISH, age_ms, new_epoch, publish, redis_errors
from fanout.brokers.redis.router import Router
from fanout.brokers.redis.subscriber import Subscriber
from fanout.core.broker import BrokerListener, History, Published, Retention
from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import (
    BrokerError,
    BrokerRefused,
    ConfigError,
    FrameError,
    StateError,
)

log = logging.getLogger("fanout.redis")

_HISTORY = Script(scripts.HISTORY)
_NEW_EPOCH = Script(scripts.NEW_EPOCH)


class RedisBroker:
    def __init__(self, options: RedisBrokerOptions) -> None:
        self.options = options
        self._target = options.target
        self._ttl_ms = str(int(options.room_ttl_s * 1000))
        self._listener: BrokerListener | None = None
        self._router: Router | None = None
        self._subscriber: Subscriber | None = None
        self._sequencer: Sequencer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        # Why Redis refuses what retrying cannot fix (a script error, a wrong type...),
        # until a later call succeeds; /healthz reports it.
        self._refused: str | None = None
        self._down: str | None = None  # the last health check's failure
        # Broker errors by kind, for /metrics.
        self.errors: Counter[str] = Counter()
        self.history_bytes = 0  # history lives in Redis streams, not in this process

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, listener: BrokerListener) -> None:
        opts = self.options
        self._listener = listener
        # Commands are never re-sent by themselves: a publish re-sent after a lost reply
        # could be stored twice. Callers get an error and may retry by id.
        router = self._router = Router(
            self._target,
            opts.timeout_s,
            scripts=[PUBLISH, _HISTORY, _NEW_EPOCH],
            ack_replicas=opts.ack_replicas,
            fail_fast=True,
        )
        sequencer = Sequencer(
            listener,
            self._fetch,
            self.new_epoch,
            backlog_max=opts.history_max_messages,
            retry_max_s=opts.reconnect_max_s,
        )
        self._subscriber = Subscriber(
            router,
            opts,
            listener,
            sequencer,
            control=control_channel(opts.key_prefix),
            on_control=self._control_received,
            on_control_linked=lambda: self._spawn(self._replay_revocations()),
        )
        self._sequencer = sequencer
        router.on_topology = self._subscriber.place
        self._tasks = [asyncio.get_running_loop().create_task(self._watch_health())]
        # Start even when Redis is not there yet (the node reports 503 and keeps trying),
        # but give a reachable Redis the chance to be linked before the first client.
        try:
            topology = await router.current()
        except ConfigError:
            await self.close()
            raise
        except BrokerError as exc:
            self._down = str(exc)
            log.warning("redis %s: %s; retrying in the background", self._target, exc)
            return
        if topology.cluster:
            log.info("redis %s: a cluster of %d masters", self._target, len(topology.masters))
        if not await self._subscriber.control_linked(opts.timeout_s):
            log.warning(
                "redis %s: %s; retrying in the background", self._target, self._subscriber.health()
            )

    async def close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._subscriber is not None:
            await self._subscriber.close()
            if self._sequencer is not None:
                await self._sequencer.close()
            self._subscriber = None
        if self._router is not None:
            await self._router.close()
            self._router = None
        self._listener = None

    async def health(self) -> str | None:
        if self._router is None:
            return "redis broker not started"
        subscriber = self._subscriber
        return (
            self._refused
            or self._down
            or next(iter(self._router.down.values()), None)
            or (subscriber.health() if subscriber is not None else None)
        )

    # -- publishing and history ---------------------------------------------------------

    async def publish(
        self,
        room: str,
        data: Payload,
        *,
        msg_id: str | None = None,
        retention: Retention | None = None,
    ) -> Published:
        async with self._calling("publish") as router:
            return await publish(router, self.options, room, data, msg_id, retention)

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        async with self._calling("publish") as router:
            await router.publish(self._keys(room).channel, ephemeral_envelope(data))

    async def history(
        self,
        room: str,
        after: int | None,
        *,
        limit: int | None = None,
        retention: Retention | None = None,
    ) -> History:
        async with self._calling("history"):
            return await self._fetch(room, after, limit, retention)

    async def _fetch(
        self,
        room: str,
        after: int | None,
        limit: int | None = None,
        retention: Retention | None = None,
    ) -> History:
        """One atomic read of a room's epoch, latest offset and stream after ``after``."""
        most = self.options.history_max_messages
        args: list[str | int] = [
            new_epoch(),
            self._ttl_ms,
            -1 if after is None else after,
            most if limit is None else min(limit, most),
            age_ms(retention),
        ]
        reply = await self._routing().run(_HISTORY, self._keys(room).all(), args)
        epoch = reply[0].decode()
        messages = [parse_entry(room, epoch, entry) for entry in reply[3:]]
        return History(epoch, int(reply[1]), int(reply[2]), messages)

    async def new_epoch(self, room: str, seen: str) -> str:
        """Replace epoch ``seen`` (Redis went back in time); returns the room's epoch."""
        args: list[str | bytes | int] = [seen, new_epoch(), self._ttl_ms]
        epoch = await self._routing().run(_NEW_EPOCH, self._keys(room).all(), args, replicated=True)
        return bytes(epoch).decode()

    def _routing(self) -> Router:
        if self._router is None:
            raise StateError("RedisBroker used before start() or after close()")
        return self._router

    @contextlib.asynccontextmanager
    async def _calling(self, what: str) -> AsyncIterator[Router]:
        """Redis' errors mapped to the hub's BrokerErrors (``publish.redis_errors``, which
        the emitter shares): never a false success. A call to a master known down fails
        at once (the router's ``down``; the health watcher's next good ping clears it):
        the hub handles a connection's frames one at a time, so without this each publish
        queued on a connection would wait out ``timeout_s`` in turn behind the others
        while Redis is paused, far beyond the hub's publish timeout."""
        router = self._routing()
        try:
            with redis_errors(what, self._target, self.options.timeout_s):
                yield router
        except BrokerRefused as exc:
            self.errors["refused"] += 1
            if self._refused is None:
                log.error("redis %s refused a %s (retrying cannot fix this): %s",
                          self._target, what, exc)  # fmt: skip
            self._refused = str(exc)
            raise
        except BrokerError as exc:
            self.errors["timeout" if exc.code == "timeout" else "unavailable"] += 1
            raise
        self._refused = None

    def _keys(self, room: str) -> RoomKeys:
        return RoomKeys.of(self.options.key_prefix, room)

    # -- attaching rooms -------------------------------------------------------------------

    async def attach(self, room: str) -> None:
        subscriber = self._subscriber
        if subscriber is None:
            raise StateError("RedisBroker.attach before start() or after close()")
        keys = self._keys(room)

        async def fetch() -> History:
            return await self._fetch(room, None)

        async with self._calling("subscribe"):
            await subscriber.attach(room, keys.channel.encode(), fetch)

    async def detach(self, room: str) -> None:
        if self._subscriber is not None:
            await self._subscriber.detach(room)

    # -- control events -------------------------------------------------------------------

    async def control(self, event: ControlEvent) -> None:
        async with self._calling("control") as router:
            await redis_control.send(router, self.options.key_prefix, event)

    def _control_received(self, raw: bytes) -> None:
        try:
            event = ControlEvent.from_json(raw)
        except FrameError as exc:
            log.warning("ignored a control message on redis: %s", exc.reason)
            return
        if self._listener is not None:
            self._listener.on_control(event)

    async def _replay_revocations(self) -> None:
        """Revocations sent while this node was not listening: hand over every kept one."""
        try:
            async with self._calling("revocations") as router:
                events = await redis_control.kept_revocations(router, self.options.key_prefix)
        except BrokerError as exc:
            log.warning("could not read the kept revocations: %s", exc)
            return
        listener = self._listener
        if listener is not None:
            for event in events:
                listener.on_control(event)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_health(self) -> None:
        """Every interval: learn the topology again, ping every master (and check that a
        cluster serves every slot), and ping every pub/sub link, cutting silent ones."""
        opts = self.options
        while True:
            await asyncio.sleep(opts.health_interval_s)
            router, subscriber = self._router, self._subscriber
            if router is None or subscriber is None:
                return
            try:
                await router.refresh()
                await router.ping()
            except (BrokerError, OSError, TimeoutError) as exc:
                reason = str(exc) or f"redis {self._target} did not answer in time"
                if self._down != reason:
                    log.warning("%s", reason)
                self._down = reason
            else:
                if self._down is not None:
                    log.warning("redis %s answers again", self._target)
                self._down = None
            subscriber.watch()

    # -- for tests and /metrics ------------------------------------------------------------

    @property
    def attached_rooms(self) -> list[str]:
        return sorted(self._subscriber.feeds) if self._subscriber is not None else []
