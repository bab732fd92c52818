"""Where a Redis deployment keeps its data: which master owns which slots, with which
replicas, learned from the deployment itself.

- A standalone Redis: one master owning every slot (``INFO replication`` counts its
  replicas).
- A Redis Cluster: ``CLUSTER SHARDS``, which lists every node with its role and health.
  ``CLUSTER SLOTS`` is not used: on Redis 7.0 it leaves out a replica that has not
  replicated anything yet, so a client reading only it may never find a promoted one.
- Sentinel: the Sentinels name the master (``SENTINEL GET-MASTER-ADDR-BY-NAME``), which
  must then say ``ROLE`` master itself (a Sentinel may lag a failover).

``discover`` asks each address in turn and returns the first full answer; nothing here
keeps a connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fanout.brokers.redis.commands import CommandLink
from fanout.brokers.redis.options import Address, RedisTarget
from fanout.brokers.redis.resp import LinkError
from fanout.brokers.redis.slots import SLOTS
from fanout.protocol.errors import BrokerError, BrokerUnavailable, ConfigError


@dataclass(frozen=True, slots=True)
class Shard:
    master: Address
    replicas: tuple[Address, ...]  # online ones
    ranges: tuple[tuple[int, int], ...]


@dataclass(slots=True)
class Topology:
    cluster: bool
    shards: tuple[Shard, ...]
    # Owner of each slot; MOVED updates a slot here before the next full refresh.
    owners: list[Address | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.owners:
            self.owners = [None] * SLOTS
            for shard in self.shards:
                for start, end in shard.ranges:
                    self.owners[start : end + 1] = [shard.master] * (end - start + 1)

    @classmethod
    def single(cls, master: Address, replicas: Sequence[Address]) -> Topology:
        """A standalone (or Sentinel-watched) master: every slot."""
        shard = Shard(master, tuple(sorted(replicas)), ((0, SLOTS - 1),))
        return cls(cluster=False, shards=(shard,))

    @property
    def nodes(self) -> list[Address]:
        """Every node it names, masters first: where to ask next time."""
        return self.masters + [r for s in self.shards for r in s.replicas]

    def owner(self, slot: int) -> Address | None:
        return self.owners[slot] if self.cluster else self.shards[0].master

    def replicas_of(self, master: Address) -> int:
        return next((len(s.replicas) for s in self.shards if s.master == master), 0)

    @property
    def masters(self) -> list[Address]:
        return [s.master for s in self.shards]

    def same_as(self, other: Topology | None) -> bool:
        return other is not None and (self.cluster, self.shards) == (other.cluster, other.shards)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(flat) - 1, 2):
        key = flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])
        out[key] = flat[i + 1]
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_cluster_shards(reply: Sequence[Any]) -> Topology:
    """The topology in a ``CLUSTER SHARDS`` reply (RESP2: flat key/value lists)."""
    shards = []
    for raw in reply:
        entry = _pairs(raw)
        bounds = [int(x) for x in entry.get("slots", [])]
        ranges = tuple(zip(bounds[::2], bounds[1::2], strict=True))
        master: Address | None = None
        replicas: list[Address] = []
        for node_raw in entry.get("nodes", []):
            node = _pairs(node_raw)
            host = _text(node.get("endpoint") or node.get("ip") or b"")
            if host in ("", "?"):
                host = _text(node.get("ip", b""))
            address = (host, int(node.get("port", 0)))
            role, health = _text(node.get("role", b"")), _text(node.get("health", b""))
            if role == "master":
                master = address
            elif health == "online":
                replicas.append(address)
        if master is not None and ranges:
            shards.append(Shard(master, tuple(sorted(replicas)), ranges))
    return Topology(cluster=True, shards=tuple(sorted(shards, key=lambda s: s.ranges)))


def _info_field(info: bytes, name: str) -> str | None:
    for line in bytes(info).decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s} s"
    return str(exc) or type(exc).__name__


def _replicas(replication: bytes) -> list[Address]:
    """The online replicas in ``INFO replication`` (``slaveN:ip=..,port=..,state=online``)."""
    found = []
    for line in bytes(replication).decode(errors="replace").splitlines():
        if line.startswith("slave") and ":" in line:
            fields = dict(f.split("=", 1) for f in line.split(":", 1)[1].split(",") if "=" in f)
            if fields.get("state") == "online" and "ip" in fields and "port" in fields:
                found.append((fields["ip"], int(fields["port"])))
    return found


async def _ask(target: RedisTarget, timeout_s: float, *commands: tuple[str, ...]) -> list[Any]:
    """The replies of ``commands`` from one short-lived connection to ``target``."""
    link = CommandLink(target, timeout_s)
    try:
        return [await link.call(*command) for command in commands]
    finally:
        await link.close()


async def _node_topology(target: RedisTarget, timeout_s: float) -> Topology:
    node = dataclasses.replace(target, db=0)  # a Cluster node refuses SELECT of any other
    (info,) = await _ask(node, timeout_s, ("INFO", "cluster"))
    if _info_field(info, "cluster_enabled") != "1":
        (replication,) = await _ask(node, timeout_s, ("INFO", "replication"))
        if _info_field(replication, "role") != "master":
            raise BrokerUnavailable(f"redis {node} is a replica, not a master")
        return Topology.single((target.host, target.port), _replicas(replication))
    if target.db != 0:
        raise ConfigError(
            f"redis {target} is a Redis Cluster node: a cluster has only database 0,"
            f" so the broker URL must end in /0 (not /{target.db})"
        )
    (shards,) = await _ask(node, timeout_s, ("CLUSTER", "SHARDS"))
    return parse_cluster_shards(shards)


async def _sentinel_master(target: RedisTarget, timeout_s: float) -> Address:
    name = target.sentinel_master
    assert name is not None
    failures = []
    unknown = 0
    for host, port in target.addresses:
        sentinel = RedisTarget(host, port, 0, None, None, target.tls)
        try:
            (reply,) = await _ask(
                sentinel, timeout_s, ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            )
        except (BrokerError, OSError, TimeoutError) as exc:
            failures.append(f"{host}:{port}: {_why(exc, timeout_s)}")
            continue
        if reply is None:
            unknown += 1
            continue
        return _text(reply[0]), int(reply[1])
    if unknown and not failures:
        raise ConfigError(f"no Sentinel of {target} knows a master named {name!r}")
    raise BrokerUnavailable(f"no Sentinel of {target} answered: {'; '.join(failures)}")


async def discover(
    target: RedisTarget, timeout_s: float, known: Sequence[Address] = ()
) -> Topology:
    """The deployment's current topology, asking the URL's addresses, then the ``known``
    nodes (the last topology's: a seed may be the master that died); ConfigError for
    one fanout cannot use, BrokerUnavailable when no address answers."""
    if target.sentinel_master is not None:
        master = await _sentinel_master(target, timeout_s)
        node = target.at(master)
        info = dataclasses.replace(node, db=0)
        (replication,) = await _ask(info, timeout_s, ("INFO", "replication"))
        if _info_field(replication, "role") != "master":
            raise BrokerUnavailable(f"redis {node} (named by the Sentinels) is not a master yet")
        return Topology.single(master, _replicas(replication))
    failures = []
    timeouts = 0
    for address in dict.fromkeys([*target.addresses, *known]):
        try:
            return await _node_topology(target.at(address), timeout_s)
        except (LinkError, OSError, TimeoutError) as exc:
            timeouts += isinstance(exc, TimeoutError)
            failures.append(f"{address[0]}:{address[1]}: {_why(exc, timeout_s)}")
    if timeouts == len(failures):
        raise TimeoutError  # all there but silent (paused): not "unreachable"
    raise LinkError(f"no redis of {target} answered: {'; '.join(failures)}")
