"""Commands routed to the Redis master that owns them: one pipelined CommandLink per
master, for a standalone Redis, a Sentinel-watched master or every master of a Cluster.

A command goes to the owner of its key's slot (``slots.key_slot``). A MOVED answer
updates that slot at once and schedules a full refresh (``topology.discover``); an ASK
answer sends the command once more to the importing node, after ASKING; TRYAGAIN (a
slot half migrated) is retried briefly. None of these ran the command, so following
them never stores a publish twice. A lost connection, CLUSTERDOWN or a master turned
replica schedule a refresh too and fail the call as retryable: the caller retries (by
``id`` for a publish) and reaches the new owner.

Writes that ask for it (``run(..., replicated=True)``) are acked only once a replica of
their master has them, when the master has replicas (``ack_replicas``): so a failover
cannot take back an acked offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fanout.brokers.redis.commands import CommandLink, Script
from fanout.brokers.redis.options import Address, RedisTarget
from fanout.brokers.redis.resp import LinkError, Redirect, TransientError
from fanout.brokers.redis.slots import key_slot
from fanout.brokers.redis.topology import Topology, discover
from fanout.protocol.errors import BrokerError, BrokerUnavailable, StateError

log = logging.getLogger("fanout.redis")

_REDIRECTS = 5  # MOVED/ASK followed per call at most
_TRYAGAIN_S = 0.02  # pause before a TRYAGAIN is retried

Send = Callable[[CommandLink, bool], Awaitable[Any]]


class Router:
    def __init__(
        self,
        target: RedisTarget,
        timeout_s: float,
        scripts: Sequence[Script] = (),
        *,
        ack_replicas: int = 0,
        fail_fast: bool = False,
    ) -> None:
        self.target = target
        self._timeout_s = timeout_s
        self._scripts = list(scripts)
        self._ack_replicas = ack_replicas
        self._links: dict[Address, CommandLink] = {}
        self._topology: Topology | None = None
        self._discovering: asyncio.Task[Topology] | None = None
        self._closed = False
        # Told of every new topology (the broker moves its subscriptions).
        self.on_topology: Callable[[Topology], None] | None = None
        # Masters known down (a command or ping failed). With ``fail_fast`` (for an owner
        # that pings them: ``ping`` clears a recovered one) calls to them fail at once.
        self.down: dict[Address, str] = {}
        self._fail_fast = fail_fast

    # -- topology -------------------------------------------------------------------------

    @property
    def topology(self) -> Topology | None:
        return self._topology

    async def current(self) -> Topology:
        """The topology, discovered on first use."""
        if self._topology is not None:
            return self._topology
        return await self.refresh()

    async def refresh(self) -> Topology:
        """Ask the deployment again (one discovery at a time; callers share it)."""
        if self._closed:
            raise StateError("redis router used after close()")
        task = self._discovering
        if task is None or task.done():
            task = self._discovering = asyncio.get_running_loop().create_task(self._discover())
        return await asyncio.shield(task)

    def refresh_soon(self) -> None:
        """Refresh in the background (after a MOVED, a lost master, CLUSTERDOWN...)."""
        if self._closed or (self._discovering is not None and not self._discovering.done()):
            return
        task = asyncio.get_running_loop().create_task(self._discover())
        task.add_done_callback(_retrieve)
        self._discovering = task

    async def _discover(self) -> Topology:
        known = self._topology.nodes if self._topology is not None else []
        topology = await discover(self.target, self._timeout_s, known)
        old, self._topology = self._topology, topology
        if not topology.same_as(old):
            if old is not None:
                log.warning("redis %s: topology changed: %s", self.target, _describe(topology))
            for address in list(self._links):
                if address not in topology.masters:
                    link = self._links.pop(address)
                    self.down.pop(address, None)
                    await link.close()
            if topology.cluster and not topology.masters:
                raise BrokerUnavailable(f"redis cluster {self.target} has no master serving slots")
            if self.on_topology is not None:
                self.on_topology(topology)
        return topology

    def address_of(self, key: str | bytes) -> Address:
        topology = self._topology
        if topology is None:
            raise StateError("redis router used before its topology is known")
        address = topology.owner(key_slot(key)) if topology.cluster else topology.masters[0]
        if address is None:
            raise BrokerUnavailable(f"no redis master serves the slot of {key!r}")
        return address

    def link(self, address: Address) -> CommandLink:
        link = self._links.get(address)
        if link is None:
            target = self.target.at(address)
            link = self._links[address] = CommandLink(target, self._timeout_s, self._scripts)
        return link

    # -- commands -------------------------------------------------------------------------

    async def call(self, key: str | bytes | None, *args: str | bytes | int) -> Any:
        """One command, on the master owning ``key`` (any master for None)."""
        return await self._routed(key, lambda link, asking: link.call(*args, asking=asking))

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes | int],
        *,
        replicated: bool = False,
    ) -> Any:
        """A script on the master owning its keys (they share a slot)."""
        topology = self._topology
        if topology is not None and not topology.cluster:
            # One master (standalone, Sentinel): nothing to route, kept cheap, since every
            # publish comes this way.
            shard = topology.shards[0]
            address = shard.master
            if self._fail_fast and address in self.down:
                raise BrokerUnavailable(self.down[address])
            replicas = min(self._ack_replicas, len(shard.replicas)) if replicated else 0
            try:
                return await self.link(address).run(script, keys, args, replicas=replicas)
            except Redirect:
                self.refresh_soon()  # it became a cluster node? the general path follows
            except TransientError as exc:
                if not str(exc).startswith(("NOREPLICAS", "OOM", "BUSY")):
                    self.refresh_soon()
                raise
            except (LinkError, OSError, TimeoutError) as exc:
                self.mark_down(address, exc)
                raise

        async def send(link: CommandLink, asking: bool) -> Any:
            replicas = 0
            if replicated and self._topology is not None:
                address = self.address_of(keys[0])
                replicas = min(self._ack_replicas, self._topology.replicas_of(address))
            return await link.run(script, keys, args, asking=asking, replicas=replicas)

        return await self._routed(keys[0], send)

    async def publish(self, channel: str | bytes, payload: bytes) -> Any:
        """PUBLISH, or SPUBLISH on a cluster (delivered by the channel's shard only)."""
        topology = await self.current()
        command = "SPUBLISH" if topology.cluster else "PUBLISH"
        return await self.call(channel, command, channel, payload)

    async def ping(self) -> None:
        """PING every master; raises for the first that fails. Clears recovered ones."""
        topology = await self.current()
        for address in topology.masters:
            try:
                await self.link(address).call("PING")
            except (BrokerError, OSError, TimeoutError) as exc:
                self.mark_down(address, exc)
                raise
            if self.down.pop(address, None) is not None:
                log.warning("redis %s answers again", self.target.at(address))
        if topology.cluster:
            info = await self.call(None, "CLUSTER", "INFO")
            if b"cluster_state:ok" not in bytes(info):
                self.refresh_soon()
                raise TransientError(f"CLUSTERDOWN redis cluster {self.target} is down")

    def mark_down(self, address: Address, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            reason = f"redis {self.target.at(address)} did not answer within {self._timeout_s} s"
        else:
            reason = f"redis {self.target.at(address)} unreachable: {exc}"
        if address not in self.down:
            log.warning("%s", reason)
        self.down[address] = reason
        if self._topology is not None and (self._topology.cluster or self.target.sentinel_master):
            self.refresh_soon()

    async def _routed(self, key: str | bytes | None, send: Send) -> Any:
        topology = await self.current()
        address = self.address_of(key) if key is not None else topology.masters[0]
        asking = False
        redirects = 0
        deadline = asyncio.get_running_loop().time() + self._timeout_s / 2
        while redirects < _REDIRECTS:
            if self._fail_fast and address in self.down:
                raise BrokerUnavailable(self.down[address])
            try:
                return await send(self.link(address), asking)
            except Redirect as redirect:
                if not redirect.ask:
                    topology.owners[redirect.slot] = redirect.address
                    self.refresh_soon()
                address, asking = redirect.address, redirect.ask
                redirects += 1
            except TransientError as exc:
                # A slot half migrated: the keys are on their way; not run, so try again.
                if str(exc).startswith("TRYAGAIN") and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(_TRYAGAIN_S)
                    continue
                if not str(exc).startswith(("NOREPLICAS", "OOM", "BUSY")):
                    self.refresh_soon()
                raise
            except (LinkError, OSError, TimeoutError) as exc:
                self.mark_down(address, exc)
                raise
        raise BrokerUnavailable(f"redis redirected a command {_REDIRECTS} times; try again")

    async def close(self) -> None:
        self._closed = True
        if self._discovering is not None:
            self._discovering.cancel()
            with contextlib.suppress(BaseException):
                await self._discovering
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()


def _describe(topology: Topology) -> str:
    if not topology.cluster:
        return f"master {topology.masters[0][0]}:{topology.masters[0][1]}"
    return ", ".join(
        f"{s.master[0]}:{s.master[1]} ({sum(e - b + 1 for b, e in s.ranges)} slots,"
        f" {len(s.replicas)} replicas)"
        for s in topology.shards
    )


def _retrieve(task: asyncio.Task[Topology]) -> None:
    if not task.cancelled():
        task.exception()
