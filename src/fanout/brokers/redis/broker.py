"""The Redis broker: many fanout processes and machines share rooms through one Redis.

Publishing is one Lua script per message (stream append with bounded retention, then
PUBLISH of the envelope with its offset). Each node subscribes to the channels of the
rooms it has members for, on one pub/sub link, and hands the hub every message of
those rooms in offset order: a jump in offsets (a message missed) is filled from the
stream, a range the stream no longer holds is reported as a gap, and a new epoch (Redis
lost the room) as a reset. After the link drops, the node reconnects with backoff,
subscribes again and catches every room up from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import hiredis

from fanout.backoff import Backoff
from fanout.brokers.redis import control as redis_control
from fanout.brokers.redis import scripts
from fanout.brokers.redis.commands import CommandLink, Script
from fanout.brokers.redis.control import control_channel
from fanout.brokers.redis.feeds import Feed, Sequencer
from fanout.brokers.redis.layout import (
    RoomKeys,
    ephemeral_envelope,
    parse_entry,
    parse_envelope,
    parse_ephemeral,
)
from fanout.brokers.redis.link import PubSubLink
from fanout.brokers.redis.options import RedisBrokerOptions
from fanout.brokers.redis.publish import PUBLISH, age_ms, new_epoch, publish, redis_errors
from fanout.brokers.redis.resp import LinkError
from fanout.core.broker import BrokerListener, History, Published, Retention
from fanout.core.control import ControlEvent
from fanout.protocol.envelope import Payload
from fanout.protocol.errors import (
    BrokerError,
    BrokerRefused,
    BrokerUnavailable,
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
        self._commands: CommandLink | None = None
        self._sequencer: Sequencer | None = None
        self._feeds: dict[str, Feed] = {}
        self._by_channel: dict[bytes, Feed] = {}
        self._room_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._link: PubSubLink | None = None
        self._last_heard = 0.0
        self._link_down: str | None = "connecting to redis"
        self._command_down: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        # Why this Redis cannot serve as the broker at all (a Cluster node), once known.
        self._unsupported: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, listener: BrokerListener) -> None:
        opts = self.options
        self._listener = listener
        # Commands are never re-sent by themselves: a publish re-sent after a lost reply
        # could be stored twice. Callers get an error and may retry by id.
        self._commands = CommandLink(
            self._target, opts.timeout_s, scripts=[PUBLISH, _HISTORY, _NEW_EPOCH]
        )
        self._sequencer = Sequencer(
            listener,
            self._fetch,
            self.new_epoch,
            backlog_max=opts.history_max_messages,
            retry_max_s=opts.reconnect_max_s,
        )
        loop = asyncio.get_running_loop()
        linked = loop.create_future()
        self._tasks = [
            loop.create_task(self._run_link(linked)),
            loop.create_task(self._watch_health()),
        ]
        # Start even when Redis is not there yet (the node reports 503 and keeps trying),
        # but give a reachable Redis the chance to be linked before the first client.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(opts.timeout_s):
                await asyncio.shield(linked)
        if self._link_down is not None:
            log.warning("redis %s: %s; retrying in the background", self._target, self._link_down)
        elif await self._check_topology() is not None:
            await self.close()
            raise ConfigError(self._unsupported or "")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._sequencer is not None:
            await self._sequencer.close()
        for feed in self._feeds.values():
            feed.fail_confirmation(LinkError("broker closed"))
        self._feeds.clear()
        self._by_channel.clear()
        if self._commands is not None:
            await self._commands.close()
            self._commands = None
        self._listener = None

    async def health(self) -> str | None:
        return self._unsupported or self._command_down or self._link_down

    async def _check_topology(self) -> str | None:
        """A Redis Cluster node is refused: rooms hash to slots on other masters, so
        this node would serve only some rooms (MOVED for the others). Returns why."""
        if self._commands is None:
            return None
        try:
            info = await self._commands.call("INFO", "cluster")
        except (BrokerError, OSError, TimeoutError):
            return None  # the health watcher reports an unreachable Redis
        if b"cluster_enabled:1" in bytes(info):
            self._unsupported = (
                f"redis {self._target} is a Redis Cluster node: fanout does not support Redis"
                " Cluster yet (each room's keys live on one master, so a node would serve"
                " only some rooms); point --broker at a standalone Redis"
            )
            log.error("%s", self._unsupported)
        return self._unsupported

    # -- publishing and history ---------------------------------------------------------

    async def publish(
        self,
        room: str,
        data: Payload,
        *,
        msg_id: str | None = None,
        retention: Retention | None = None,
    ) -> Published:
        async with self._calling("publish") as commands:
            return await publish(commands, self.options, room, data, msg_id, retention)

    async def publish_ephemeral(self, room: str, data: Payload) -> None:
        async with self._calling("publish") as commands:
            channel = self._keys(room).channel
            await commands.call("PUBLISH", channel, ephemeral_envelope(data))

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
        if self._commands is None:
            raise StateError("RedisBroker used before start() or after close()")
        reply = await self._commands.run(_HISTORY, self._keys(room).all(), args)
        epoch = reply[0].decode()
        messages = [parse_entry(room, epoch, entry) for entry in reply[3:]]
        return History(epoch, int(reply[1]), int(reply[2]), messages)

    async def new_epoch(self, room: str, seen: str) -> str:
        """Replace epoch ``seen`` (Redis went back in time); returns the room's epoch."""
        if self._commands is None:
            raise StateError("RedisBroker used before start() or after close()")
        args: list[str | bytes | int] = [seen, new_epoch(), self._ttl_ms]
        epoch = await self._commands.run(_NEW_EPOCH, self._keys(room).all(), args)
        return bytes(epoch).decode()

    @contextlib.asynccontextmanager
    async def _calling(self, what: str, *, trip: bool = True) -> AsyncIterator[CommandLink]:
        """Redis' errors mapped to the hub's BrokerErrors (``publish.redis_errors``, which
        the emitter shares): never a false success.

        Fails at once while Redis is known down (a command or ping timed out or found no
        connection, and no ping has succeeded since; the health watcher's next good ping
        clears it). The hub handles a connection's frames one at a time, so without this
        each publish queued on a connection would wait out ``timeout_s`` in turn behind
        the others while Redis is paused, far beyond the hub's publish timeout.
        ``trip=False``: a failure here does not mark Redis down (it may be the link's).
        """
        if self._commands is None:
            raise StateError(f"RedisBroker.{what} before start() or after close()")
        if self._unsupported is not None:
            raise BrokerRefused(self._unsupported)
        if self._command_down is not None:
            raise BrokerUnavailable(self._command_down)
        with redis_errors(
            what,
            self._target,
            self.options.timeout_s,
            down=self._commands_failed if trip else None,
        ):
            yield self._commands

    def _commands_failed(self, reason: str) -> None:
        if self._command_down is None:
            log.warning("%s", reason)
        self._command_down = reason

    def _keys(self, room: str) -> RoomKeys:
        return RoomKeys.of(self.options.key_prefix, room)

    # -- attaching rooms -------------------------------------------------------------------

    async def attach(self, room: str) -> None:
        async with self._room_lock(room):
            if room in self._feeds:
                return
            link = self._link
            if link is None or self._sequencer is None:
                raise BrokerUnavailable(self._link_down or "redis link down")
            keys = self._keys(room)
            feed = Feed(room, keys.channel.encode(), asyncio.get_running_loop())
            self._feeds[room] = feed
            self._by_channel[feed.channel] = feed
            try:
                link.send("SUBSCRIBE", keys.channel)
                async with self._calling("subscribe", trip=False):
                    async with asyncio.timeout(self.options.timeout_s):
                        await feed.confirmed
                    # Subscribed first, then read where the room is: every later message
                    # arrives on the link, the earlier ones are in the history the hub reads.
                    history = await self._fetch(room, None)
                self._sequencer.start_at(feed, history.epoch, history.latest)
            except BaseException:
                self._forget(feed)
                if self._link is link:
                    with contextlib.suppress(LinkError):
                        link.send("UNSUBSCRIBE", keys.channel)
                raise

    async def detach(self, room: str) -> None:
        async with self._room_lock(room):
            feed = self._feeds.get(room)
            if feed is None:
                return
            self._forget(feed)
            if self._link is not None:
                with contextlib.suppress(LinkError):
                    self._link.send("UNSUBSCRIBE", feed.channel)

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.room) is feed:
            del self._feeds[feed.room]
            del self._by_channel[feed.channel]
        feed.detached = True
        feed.fail_confirmation(LinkError("room detached"))

    @contextlib.asynccontextmanager
    async def _room_lock(self, room: str) -> AsyncIterator[None]:
        """Attach and detach of one room take turns; different rooms do not wait."""
        lock, users = self._room_locks.get(room, (asyncio.Lock(), 0))
        self._room_locks[room] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._room_locks[room]
            if users == 1:
                del self._room_locks[room]
            else:
                self._room_locks[room] = (lock, users - 1)

    # -- the pub/sub link ------------------------------------------------------------------

    async def _run_link(self, linked: asyncio.Future[None]) -> None:
        backoff = Backoff(initial_s=0.05, max_s=self.options.reconnect_max_s)
        attempt = 0
        while True:
            try:
                link = await PubSubLink.open(self._target, self.options.timeout_s)
            except LinkError as exc:
                self._link_lost(str(exc))
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            try:
                await self._serve(link, linked)
            except LinkError as exc:
                self._link_lost(str(exc))
            finally:
                self._link = None
                await link.aclose()
                for feed in self._feeds.values():
                    feed.fail_confirmation(LinkError("redis link lost"))
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1

    def _link_lost(self, reason: str) -> None:
        reason = f"redis {self._target} pub/sub link: {reason}"
        if self._link_down is None:
            log.warning("%s; reconnecting", reason)
        self._link_down = reason

    async def _serve(self, link: PubSubLink, linked: asyncio.Future[None]) -> None:
        """Subscribe every attached room again, catch each up, then read pushes."""
        assert self._sequencer is not None
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        resubscribed = [f for f in self._feeds.values() if f.established]
        for held in resubscribed:
            self._sequencer.hold(held)
        control = control_channel(self.options.key_prefix)
        link.send("SUBSCRIBE", control, *(f.channel for f in resubscribed))
        # A paused Redis still accepts connections: the link counts as up once Redis
        # answered something on it.
        link.send("PING")
        self._link = link
        reply = await link.read_one()
        was_down = self._link_down
        self._link_down = None
        if was_down is not None and was_down != "connecting to redis":
            log.warning("redis %s: linked again", self._target)
        if not linked.done():
            linked.set_result(None)
        self._spawn(self._relinked_topology())
        # Revocations sent while this node was not listening: hand over every kept one.
        self._spawn(self._replay_revocations())
        listener = self._listener
        sequencer = self._sequencer
        by_channel = self._by_channel
        while True:
            self._last_heard = loop.time()
            if isinstance(reply, hiredis.ReplyError):
                raise LinkError(f"redis answered the pub/sub link with an error: {reply}")
            kind = reply[0]
            if kind == b"message":
                feed = by_channel.get(reply[1])
                if feed is not None:
                    ephemeral = parse_ephemeral(reply[2])
                    if ephemeral is not None:
                        if listener is not None:
                            listener.on_ephemeral(feed.room, ephemeral)
                    else:
                        sequencer.receive(feed, parse_envelope(feed.room, reply[2]))
                elif reply[1] == control and listener is not None:
                    self._control_received(listener, reply[2])
            elif kind == b"subscribe":
                confirmed = by_channel.get(reply[1])
                if confirmed is not None:
                    if confirmed.established:
                        sequencer.resync(confirmed)
                    else:
                        confirmed.confirm()
            reply = await link.read_one()

    # -- control events -------------------------------------------------------------------

    async def control(self, event: ControlEvent) -> None:
        async with self._calling("control") as commands:
            await redis_control.send(commands, self.options.key_prefix, event)

    def _control_received(self, listener: BrokerListener, raw: bytes) -> None:
        try:
            event = ControlEvent.from_json(raw)
        except FrameError as exc:
            log.warning("ignored a control message on redis: %s", exc.reason)
            return
        listener.on_control(event)

    async def _replay_revocations(self) -> None:
        try:
            async with self._calling("revocations", trip=False) as commands:
                events = await redis_control.kept_revocations(commands, self.options.key_prefix)
        except BrokerError as exc:
            log.warning("could not read the kept revocations: %s", exc)
            return
        listener = self._listener
        if listener is not None:
            for event in events:
                listener.on_control(event)

    async def _relinked_topology(self) -> None:
        await self._check_topology()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_health(self) -> None:
        """Ping Redis (commands and the link) every interval; report and cut what is silent."""
        opts = self.options
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(opts.health_interval_s)
            assert self._commands is not None
            try:
                await self._commands.call("PING")
                if self._command_down is not None:
                    log.warning("redis %s answers again", self._target)
                self._command_down = None
            except (TimeoutError, BrokerError, OSError) as exc:
                reason = f"redis {self._target} did not answer a ping within {opts.timeout_s} s"
                if not isinstance(exc, TimeoutError):
                    reason = f"redis {self._target} unreachable: {exc}"
                if self._command_down is None:
                    log.warning("%s", reason)
                self._command_down = reason
            link = self._link
            if link is None:
                continue
            silent = loop.time() - self._last_heard
            if silent > opts.health_interval_s + opts.timeout_s:
                self._link_down = f"redis pub/sub link silent for {silent:.1f} s"
                link.abort()
            else:
                with contextlib.suppress(LinkError):
                    link.send("PING")

    # -- for tests and /metrics ------------------------------------------------------------

    @property
    def attached_rooms(self) -> list[str]:
        return sorted(self._feeds)
