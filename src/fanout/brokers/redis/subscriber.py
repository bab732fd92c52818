"""The pub/sub side of the Redis broker: one link per master that carries an attached
room's channel, each room subscribed on the master that owns its slot.

On a standalone or Sentinel-watched Redis that is one link (SUBSCRIBE). On a Cluster
each room's channel is a shard channel (SSUBSCRIBE on the slot's owner, delivered by
that shard alone, no cluster bus traffic). When the topology changes (a failover, a
slot migrated: Redis ends those subscriptions with ``sunsubscribe``, or answers MOVED)
the room moves to the new owner's link, and the sequencer fills whatever it missed
meanwhile from the room's stream, as after a lost link. The control channel follows
the owner of its own slot the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import hiredis

from fanout.backoff import Backoff
from fanout.brokers.redis.feeds import Feed, Sequencer
from fanout.brokers.redis.layout import parse_envelope, parse_ephemeral
from fanout.brokers.redis.link import PubSubLink
from fanout.brokers.redis.options import Address, RedisBrokerOptions
from fanout.brokers.redis.resp import LinkError, Redirect, reply_error
from fanout.brokers.redis.router import Router
from fanout.brokers.redis.slots import key_slot
from fanout.brokers.redis.topology import Topology
from fanout.core.broker import BrokerListener, History
from fanout.protocol.errors import BrokerUnavailable

log = logging.getLogger("fanout.redis")

_MESSAGES = (b"message", b"smessage")
_CONFIRMS = (b"subscribe", b"ssubscribe")


class NodeLink:
    """The pub/sub connection to one master and the channels it carries."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.link: PubSubLink | None = None
        self.feeds: dict[bytes, Feed] = {}
        self.down: str | None = "connecting to redis"
        self.up = asyncio.Event()
        self.last_heard = 0.0
        self.task: asyncio.Task[None] | None = None

    def send(self, *args: str | bytes) -> None:
        if self.link is not None:
            with contextlib.suppress(LinkError):
                self.link.send(*args)


class Subscriber:
    def __init__(
        self,
        router: Router,
        options: RedisBrokerOptions,
        listener: BrokerListener,
        sequencer: Sequencer,
        *,
        control: bytes,
        on_control: Callable[[bytes], None],
        on_control_linked: Callable[[], None],
    ) -> None:
        self._router = router
        self._options = options
        self._listener = listener
        self._sequencer = sequencer
        self._control = control
        self._on_control = on_control
        self._on_control_linked = on_control_linked
        self.feeds: dict[str, Feed] = {}
        self._by_channel: dict[bytes, Feed] = {}
        self._nodes: dict[Address, NodeLink] = {}
        self._control_at: Address | None = None
        self._sharded = False
        self._room_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # -- placement --------------------------------------------------------------------------

    def place(self, topology: Topology) -> None:
        """Put every room and the control channel on the link of their slot's owner."""
        self._sharded = topology.cluster
        control_at = self._owner(topology, self._control)
        if control_at != self._control_at:
            old = self._nodes.get(self._control_at) if self._control_at else None
            self._control_at = control_at
            if old is not None:
                old.send(self._unsubscribe, self._control)
            node = self._node(control_at)
            node.send(self._subscribe, self._control)
        for feed in list(self.feeds.values()):
            self._move(feed, self._owner(topology, feed.channel))
        for address, node in list(self._nodes.items()):
            if not node.feeds and address != self._control_at:
                self._retire(node)

    def _owner(self, topology: Topology, channel: bytes) -> Address:
        owner = topology.owner(key_slot(channel)) if topology.cluster else topology.masters[0]
        if owner is None:  # a slot nobody serves: keep it where it is until one does
            return self._control_at or topology.masters[0]
        return owner

    def _move(self, feed: Feed, address: Address) -> None:
        if feed.address == address:
            return
        old = self._nodes.get(feed.address) if feed.address is not None else None
        if old is not None and old.feeds.get(feed.channel) is feed:
            del old.feeds[feed.channel]
            old.send(self._unsubscribe, feed.channel)
        node = self._node(address)
        feed.address = address
        node.feeds[feed.channel] = feed
        if feed.established:
            self._sequencer.hold(feed)  # the new link's confirmation resyncs it
        node.send(self._subscribe, feed.channel)

    def _node(self, address: Address) -> NodeLink:
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes[address] = NodeLink(address)
            node.task = asyncio.get_running_loop().create_task(self._run(node))
        return node

    def _retire(self, node: NodeLink) -> None:
        del self._nodes[node.address]
        if node.task is not None:
            node.task.cancel()

    @property
    def _subscribe(self) -> str:
        return "SSUBSCRIBE" if self._sharded else "SUBSCRIBE"

    @property
    def _unsubscribe(self) -> str:
        return "SUNSUBSCRIBE" if self._sharded else "UNSUBSCRIBE"

    # -- attaching rooms --------------------------------------------------------------------

    async def attach(
        self, room: str, channel: bytes, fetch: Callable[[], Awaitable[History]]
    ) -> None:
        async with self._room_lock(room):
            if room in self.feeds:
                return
            topology = await self._router.current()
            node = self._node(self._owner(topology, channel))
            if not node.up.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._options.timeout_s):
                        await node.up.wait()
            if node.link is None:
                raise BrokerUnavailable(node.down or "redis link down")
            feed = Feed(room, channel, asyncio.get_running_loop())
            feed.address = node.address
            self.feeds[room] = feed
            self._by_channel[channel] = feed
            node.feeds[channel] = feed
            try:
                node.link.send(self._subscribe, channel)
                async with asyncio.timeout(self._options.timeout_s):
                    await feed.confirmed
                # Subscribed first, then read where the room is: every later message
                # arrives on the link, the earlier ones are in the history the hub reads.
                history = await fetch()
                self._sequencer.start_at(feed, history.epoch, history.latest)
            except BaseException:
                self._forget(feed)
                raise

    async def detach(self, room: str) -> None:
        async with self._room_lock(room):
            feed = self.feeds.get(room)
            if feed is not None:
                self._forget(feed)

    def _forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.room) is feed:
            del self.feeds[feed.room]
            del self._by_channel[feed.channel]
        node = self._nodes.get(feed.address) if feed.address is not None else None
        if node is not None and node.feeds.get(feed.channel) is feed:
            del node.feeds[feed.channel]
            node.send(self._unsubscribe, feed.channel)
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

    # -- the links --------------------------------------------------------------------------

    async def _run(self, node: NodeLink) -> None:
        backoff = Backoff(initial_s=0.05, max_s=self._options.reconnect_max_s)
        attempt = 0
        target = self._router.target.at(node.address)
        while self._nodes.get(node.address) is node:
            try:
                link = await PubSubLink.open(target, self._options.timeout_s)
            except LinkError as exc:
                self._lost(node, str(exc))
            else:
                attempt = 0
                try:
                    await self._serve(node, link)
                except LinkError as exc:
                    self._lost(node, str(exc))
                finally:
                    node.link = None
                    node.up.clear()
                    await link.aclose()
                    for feed in node.feeds.values():
                        feed.fail_confirmation(LinkError("redis link lost"))
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1

    def _lost(self, node: NodeLink, reason: str) -> None:
        reason = f"redis {self._router.target.at(node.address)} pub/sub link: {reason}"
        if node.down is None:
            log.warning("%s; reconnecting", reason)
        node.down = reason
        self._router.refresh_soon()  # a failover? the owner may have changed

    async def _serve(self, node: NodeLink, link: PubSubLink) -> None:
        """Subscribe every room of this node again, catch each up, then read pushes."""
        loop = asyncio.get_running_loop()
        node.last_heard = loop.time()
        again = [f for f in node.feeds.values() if f.established]
        for held in again:
            self._sequencer.hold(held)
        channels = [f.channel for f in again]
        if node.address == self._control_at:
            channels.append(self._control)
        if not self._sharded and channels:
            link.send(self._subscribe, *channels)
        elif self._sharded:  # one SSUBSCRIBE per channel: each may be in another slot
            for channel in channels:
                link.send(self._subscribe, channel)
        # A paused Redis still accepts connections: the link counts as up once Redis
        # answered something on it.
        link.send("PING")
        node.link = link
        reply = await link.read_one()
        was_down, node.down = node.down, None
        node.up.set()
        if was_down is not None and was_down != "connecting to redis":
            log.warning("redis %s: linked again", self._router.target.at(node.address))
        if node.address == self._control_at:
            self._on_control_linked()
        listener, sequencer, by_channel = self._listener, self._sequencer, self._by_channel
        while True:
            node.last_heard = loop.time()
            if isinstance(reply, hiredis.ReplyError):
                self._refused(node, str(reply))
            elif reply[0] in _MESSAGES:
                feed = by_channel.get(reply[1])
                if feed is not None:
                    ephemeral = parse_ephemeral(reply[2])
                    if ephemeral is not None:
                        listener.on_ephemeral(feed.room, ephemeral)
                    else:
                        sequencer.receive(feed, parse_envelope(feed.room, reply[2]))
                elif reply[1] == self._control:
                    self._on_control(reply[2])
            elif reply[0] in _CONFIRMS:
                confirmed = node.feeds.get(reply[1])
                if confirmed is not None:
                    if confirmed.established:
                        sequencer.resync(confirmed)
                    else:
                        confirmed.confirm()
            elif reply[0] == b"sunsubscribe":
                self._moved_away(node, reply[1])
            reply = await link.read_one()

    def _refused(self, node: NodeLink, text: str) -> None:
        """An error on the link: MOVED for an SSUBSCRIBE sent to a node that no longer
        owns the slot; anything else ends the link."""
        error = reply_error(text)
        if not isinstance(error, Redirect):
            raise LinkError(f"redis answered the pub/sub link with an error: {text}")
        topology = self._router.topology
        if topology is not None:
            topology.owners[error.slot] = error.address
        for feed in list(node.feeds.values()):
            if key_slot(feed.channel) == error.slot:
                self._move(feed, error.address)
        if self._control_at == node.address and key_slot(self._control) == error.slot:
            self._control_at = None
        self._replace_later()

    def _moved_away(self, node: NodeLink, channel: bytes) -> None:
        """Redis ended a shard channel's subscription: its slot went to another master."""
        feed = node.feeds.get(channel)
        if feed is None and channel != self._control:
            return  # our own SUNSUBSCRIBE
        if feed is not None:
            self._sequencer.hold(feed)
        self._replace_later(channel)

    def _replace_later(self, channel: bytes | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._replace(channel))
        task.add_done_callback(_retrieve)

    async def _replace(self, channel: bytes | None) -> None:
        """Learn the new owners and move there. A channel that stays where it was is
        subscribed there again: the node answers MOVED if it no longer owns the slot
        (its view may lag the cluster's), which moves it (``_refused``)."""
        feed = self._by_channel.get(channel) if channel is not None else None
        before = feed.address if feed is not None else self._control_at
        for attempt in range(5):
            try:
                self.place(await self._router.refresh())
                break
            except Exception as exc:  # a refresh during a failover may fail: again
                log.debug("topology refresh failed: %s", exc)
                await asyncio.sleep(0.1 * (attempt + 1))
        if channel is None:
            return
        if feed is not None and not feed.detached and feed.address == before:
            node = self._nodes.get(before) if before is not None else None
            if node is not None:
                node.send(self._subscribe, channel)
        elif channel == self._control and self._control_at == before and before is not None:
            self._node(before).send(self._subscribe, channel)

    # -- health -----------------------------------------------------------------------------

    def watch(self) -> None:
        """Ping every link; cut one that has been silent too long (its reader reconnects)."""
        opts = self._options
        now = asyncio.get_running_loop().time()
        for node in self._nodes.values():
            link = node.link
            if link is None:
                continue
            silent = now - node.last_heard
            if silent > opts.health_interval_s + opts.timeout_s:
                node.down = f"redis pub/sub link silent for {silent:.1f} s"
                link.abort()
            else:
                node.send("PING")

    def health(self) -> str | None:
        """Why some rooms cannot receive now, or None."""
        for node in self._nodes.values():
            if node.down is not None and (node.feeds or node.address == self._control_at):
                return node.down
        return None

    async def control_linked(self, timeout_s: float) -> bool:
        node = self._nodes.get(self._control_at) if self._control_at else None
        if node is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await node.up.wait()
        return node.up.is_set()

    async def close(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            if node.task is not None:
                node.task.cancel()
        for node in nodes:
            if node.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await node.task
        for feed in self.feeds.values():
            feed.fail_confirmation(LinkError("broker closed"))
        self.feeds.clear()
        self._by_channel.clear()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
