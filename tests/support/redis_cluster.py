"""A real Redis Cluster for tests: masters with replicas on free loopback ports.

``with RedisCluster(tmp_path) as cluster: ... cluster.seed_url``. The harness forms the
cluster itself over RESP (no redis-cli) and gives every node a free cluster bus port (the
default, port + 10000, fails for ports above 55535). Nodes can be killed, paused, failed
over, and slots migrated with their keys while a test keeps writing.
"""

from __future__ import annotations

import contextlib
import functools
import io
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeAlias, TypeVar

from tests.support.redis import SYSTEM_REDIS_PORT, RedisServer
from tests.support.servers import free_port

SLOTS = 16384
HOST = "127.0.0.1"
POLL_INTERVAL_S = 0.03

Reply: TypeAlias = "str | int | bytes | list[Reply] | None"
T = TypeVar("T")


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-MOVED ...``, ``-NOGOODSLAVE ...``)."""


class NotYet(Exception):
    """Raised by a ``poll`` check that is not satisfied yet; the message says why."""


# --- a tiny sync RESP client on top of RedisServer.command ----------------------------


def parse_reply(raw: bytes) -> Reply:
    """Decode one raw RESP2 reply; an error reply raises ``ReplyError``."""
    return _parse(io.BytesIO(raw))


def _parse(stream: io.BytesIO) -> Reply:
    line = stream.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_parse(stream) for _ in range(count)]
    raise ValueError(f"unsupported RESP reply: {line!r}")


def call(server: RedisServer, *args: str | bytes | int, timeout: float = 2.0) -> Reply:
    """One command on a fresh connection, decoded; an error reply raises ``ReplyError``."""
    return parse_reply(server.command(*args, timeout=timeout))


def as_text(reply: Reply) -> str:
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    raise TypeError(f"expected a string reply, got {reply!r}")


def call_text(server: RedisServer, *args: str | bytes | int, timeout: float = 2.0) -> str:
    return as_text(call(server, *args, timeout=timeout))


def _fields_of(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key] = value.strip()
    return fields


def info(server: RedisServer, section: str = "default", timeout: float = 2.0) -> dict[str, str]:
    """``INFO <section>`` as a dict (``role``, ``master_link_status``, ...)."""
    return _fields_of(call_text(server, "INFO", section, timeout=timeout))


def cluster_info(server: RedisServer, timeout: float = 2.0) -> dict[str, str]:
    """``CLUSTER INFO`` as a dict (``cluster_state``, ``cluster_known_nodes``, ...)."""
    return _fields_of(call_text(server, "CLUSTER", "INFO", timeout=timeout))


# --- bounded waits that explain themselves --------------------------------------------


def log_tails(servers: Iterable[RedisServer], lines: int = 25) -> str:
    """The last ``lines`` of every server's log, each under a header naming it."""
    out = []
    for server in servers:
        state = "running" if server.running else "not running"
        tail = server.log().splitlines()[-lines:]
        out.append(f"--- {server.log_path.name} (port {server.port}, {state}) ---")
        out.extend(tail)
    return "\n".join(out)


def poll(check: Callable[[], T], timeout_s: float, what: str, logs: Callable[[], str]) -> T:
    """Call ``check`` until it returns instead of raising ``NotYet``, ``OSError`` or
    ``ReplyError``; after ``timeout_s`` raise ``TimeoutError`` with the last reason and
    ``logs()``."""
    deadline = time.monotonic() + timeout_s
    last = "never checked"
    while True:
        try:
            return check()
        except NotYet as exc:
            last = str(exc)
        except (OSError, ReplyError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s; last seen: {last}\n{logs()}")
        time.sleep(POLL_INTERVAL_S)


def unused_port(taken: set[int]) -> int:
    """A free loopback port, never 6379 nor one in ``taken`` (which it joins)."""
    port = free_port(avoid={*taken, SYSTEM_REDIS_PORT})
    taken.add(port)
    return port


# --- CLUSTER NODES --------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: how the asked node sees one node of the cluster."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    ranges: tuple[tuple[int, int], ...]
    migrating: frozenset[int]  # set only on the asker's own line
    importing: frozenset[int]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def failed(self) -> bool:
        """Flagged ``fail`` (agreed failure), or not a usable member yet."""
        return bool(self.flags & {"fail", "handshake", "noaddr"})

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.ranges)

    def slots(self) -> frozenset[int]:
        return frozenset(s for lo, hi in self.ranges for s in range(lo, hi + 1))


def parse_cluster_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # id addr flags master ping-sent pong-recv config-epoch link-state [slots...]
        fields = line.split()
        if len(fields) < 8:
            raise ValueError(f"unexpected CLUSTER NODES line: {line!r}")
        node_id, address, flags, master = fields[:4]
        slot_fields = fields[8:]
        ranges: list[tuple[int, int]] = []
        migrating: set[int] = set()
        importing: set[int] = set()
        for field in slot_fields:
            if field.startswith("["):  # [slot->-id] migrating, [slot-<-id] importing
                slot = int(field[1:].split("-", 1)[0])
                (migrating if "->-" in field else importing).add(slot)
            else:
                lo, _, hi = field.partition("-")
                ranges.append((int(lo), int(hi or lo)))
        port = address.split(",")[0].split("@")[0].rpartition(":")[2]
        views.append(
            NodeView(
                id=node_id,
                port=int(port or 0),
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                ranges=tuple(sorted(ranges)),
                migrating=frozenset(migrating),
                importing=frozenset(importing),
            )
        )
    return views


def cluster_nodes(server: RedisServer, timeout: float = 2.0) -> list[NodeView]:
    return parse_cluster_nodes(call_text(server, "CLUSTER", "NODES", timeout=timeout))


def even_ranges(masters: int) -> list[tuple[int, int]]:
    """``masters`` contiguous slot ranges covering 0..16383, sizes differing by at most 1."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


# --- the cluster ----------------------------------------------------------------------


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, all redis-server children in
    ``directory``; ``start()`` returns once every node agrees the cluster is ok."""

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        if not 1 <= masters <= SLOTS or replicas < 0:
            raise ValueError(f"bad cluster shape: {masters} masters, {replicas} replicas each")
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.startup_s: float | None = None  # how long start() took
        self.nodes: list[RedisServer] = []
        self.bus_ports: dict[int, int] = {}  # node port -> cluster bus port
        taken: set[int] = set()
        for _ in range(masters * (1 + replicas)):
            port, bus_port = unused_port(taken), unused_port(taken)
            self.bus_ports[port] = bus_port
            args = self._args(port, bus_port)
            self.nodes.append(RedisServer(directory, port=port, extra_args=args))
        self._by_port = {node.port: node for node in self.nodes}
        self._layout = {  # replica -> master it is told to replicate at formation
            self.nodes[masters + i]: self.nodes[i % masters] for i in range(masters * replicas)
        }
        self._initial_masters = self.nodes[:masters]
        self._ids: dict[int, str] = {}
        self._paused: set[int] = set()
        self._last_view: list[NodeView] = []

    def _args(self, port: int, bus_port: int) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-reads-when-down", "no",
            "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
            "--shutdown-timeout", "0",  # stop() never waits for a paused replica
        ]  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> None:
        """Start every node, form the cluster, and wait until all nodes agree it is ok:
        every slot covered, the same owners everywhere, every replica's link up. Each
        wait is bounded by ``timeout_s``; on any error every node is stopped."""
        began = time.monotonic()
        try:
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda node: node.start(timeout_s), self.nodes))
            self._form(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began

    def stop(self) -> None:
        """Stop every node, paused or killed ones too. Idempotent."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))
        self._paused.clear()

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _form(self, timeout_s: float) -> None:
        for node in self.nodes:
            self._ids[node.port] = call_text(node, "CLUSTER", "MYID")
        for epoch, node in enumerate(self.nodes, start=1):  # distinct epochs: no collisions
            call(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        ranges = even_ranges(len(self._initial_masters))
        for master, (lo, hi) in zip(self._initial_masters, ranges, strict=True):
            call(master, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for i, node in enumerate(self.nodes):  # a full mesh at once: no waiting for gossip
            for other in self.nodes[i + 1 :]:
                call(node, "CLUSTER", "MEET", HOST, other.port, self.bus_ports[other.port])
        for replica, master in self._layout.items():
            poll(
                functools.partial(self._knows, replica, master),
                timeout_s,
                f"node {replica.port} to learn master {master.port}",
                self.logs,
            )
            call(replica, "CLUSTER", "REPLICATE", self.node_id(master))
        poll(self._check_formed, timeout_s, "the cluster to form", self.logs)
        self._last_view = cluster_nodes(self.nodes[0])

    def _knows(self, node: RedisServer, other: RedisServer) -> None:
        for view in cluster_nodes(node):
            if view.id == self.node_id(other) and "handshake" not in view.flags:
                return
        raise NotYet(f"{node.port} does not know {other.port} yet")

    def _check_formed(self) -> None:
        expected = {
            (self.node_id(m), "master", None, (r,))
            for m, r in zip(
                self._initial_masters, even_ranges(len(self._initial_masters)), strict=True
            )
        } | {(self.node_id(r), "slave", self.node_id(m), ()) for r, m in self._layout.items()}
        for node in self.nodes:
            state = cluster_info(node)
            if state.get("cluster_state") != "ok":
                raise NotYet(f"{node.port}: cluster_state:{state.get('cluster_state')}")
            seen = {
                (v.id, "master" if v.is_master else "slave", v.master_id, v.ranges)
                for v in cluster_nodes(node)
                if not v.flags & {"fail", "fail?", "handshake", "noaddr"}
            }
            if seen != expected:
                raise NotYet(f"{node.port} sees {sorted(seen, key=str)}")
        for replica in self._layout:
            link = info(replica, "replication").get("master_link_status")
            if link != "up":
                raise NotYet(f"replica {replica.port}: master_link_status:{link}")

    def logs(self) -> str:
        """The tail of every node's log, for error messages."""
        return log_tails(self.nodes)

    # --- what the cluster looks like now ----------------------------------------------

    @property
    def seed_url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the first master at formation."""
        return self.nodes[0].url

    def seed_urls(self) -> list[str]:
        """The URL of every node that is running and not paused."""
        return [node.url for node in self._live()]

    def node_id(self, node: RedisServer) -> str:
        """The node's cluster id (CLUSTER MYID at formation; it keeps it on restart)."""
        return self._ids[node.port]

    def node(self, port: int) -> RedisServer:
        return self._by_port[port]

    def _live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running and n.port not in self._paused]

    def view(self) -> list[NodeView]:
        """CLUSTER NODES as the first live node that answers sees it."""
        errors = []
        for node in self._live():
            try:
                return cluster_nodes(node)
            except (OSError, ReplyError) as exc:
                errors.append(f"{node.port}: {exc}")
        raise RuntimeError(f"no live cluster node answers CLUSTER NODES: {errors}")

    def masters(self) -> list[RedisServer]:
        """Masters not flagged failed, as a live node sees them, by their lowest slot."""
        found = [v for v in self.view() if v.is_master and not v.failed]
        found.sort(key=lambda v: (v.ranges[0][0] if v.ranges else SLOTS, v.port))
        return [self._by_port[v.port] for v in found]

    def replicas(self) -> list[RedisServer]:
        """Replicas not flagged failed, as a live node sees them, in ``nodes`` order."""
        ports = {v.port for v in self.view() if v.is_replica and not v.failed}
        return [n for n in self.nodes if n.port in ports]

    def slots_of(self, master: RedisServer) -> frozenset[int]:
        """The slots ``master`` owns, as a live node sees it."""
        node_id = self.node_id(master)
        return next((v.slots() for v in self.view() if v.id == node_id), frozenset())

    def master_of_slot(self, slot: int) -> RedisServer:
        for v in self.view():
            if v.is_master and v.owns(slot):
                return self._by_port[v.port]
        raise LookupError(f"no master owns slot {slot}")

    def keyslot(self, key: str | bytes) -> int:
        """CLUSTER KEYSLOT ``key``, asked of a live node."""
        reply = call(self._live()[0], "CLUSTER", "KEYSLOT", key)
        assert isinstance(reply, int)
        return reply

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A replica of ``master`` not flagged failed (the first in ``nodes`` order)."""
        master_id = self.node_id(master)
        ports = {v.port for v in self.view() if v.master_id == master_id and not v.failed}
        for node in self.nodes:
            if node.port in ports:
                return node
        raise LookupError(f"master {master.port} has no replica")

    # --- faults -----------------------------------------------------------------------

    def kill(self, node: RedisServer) -> None:
        """SIGKILL ``node`` (paused or not) and wait for it to be gone."""
        with contextlib.suppress(RuntimeError):  # nothing live: keep the last view
            self._last_view = self.view()
        node.kill()
        self._paused.discard(node.port)

    def pause(self, node: RedisServer) -> None:
        """SIGSTOP: the node holds its connections open and answers nothing."""
        node.pause()
        self._paused.add(node.port)

    def resume(self, node: RedisServer) -> None:
        node.resume()
        self._paused.discard(node.port)

    def wait_for_failover(self, old_master: RedisServer, timeout_s: float = 15.0) -> RedisServer:
        """Wait until a replica of ``old_master`` is a master owning all its slots in the
        view of every live node, and every live node says cluster_state:ok; return it."""
        old_id = self.node_id(old_master)
        now = self.view()
        slots: frozenset[int] = frozenset()
        candidates: set[str] = set()
        for view in (now, self._last_view):
            for v in view:
                if v.id == old_id and not slots:
                    slots = v.slots()
                if v.master_id == old_id:
                    candidates.add(v.id)
        if not slots or not candidates:
            raise ValueError(
                f"node {old_master.port} owned no slots ({len(slots)}) or had no replica "
                f"({len(candidates)})"
            )

        def promoted() -> RedisServer:
            winners = set(candidates)
            for node in self._live():
                if node is old_master:
                    continue
                state = cluster_info(node).get("cluster_state")
                if state != "ok":
                    raise NotYet(f"{node.port}: cluster_state:{state}")
                winners &= {v.id for v in cluster_nodes(node) if v.is_master and slots <= v.slots()}
                if not winners:
                    raise NotYet(f"{node.port} sees no replica of {old_master.port} own its slots")
            (winner,) = winners
            return self._by_port[next(p for p, i in self._ids.items() if i == winner)]

        new_master = poll(
            promoted, timeout_s, f"a replica of {old_master.port} to take over", self.logs
        )
        self._last_view = self.view()
        return new_master

    # --- live slot migration ----------------------------------------------------------

    def migrate_slot(
        self,
        slot: int,
        destination: RedisServer,
        *,
        batch: int = 10,
        pause_s: float = 0.0,
        timeout_s: float = 30.0,
    ) -> int:
        """Move ``slot`` and its keys to the master ``destination`` as redis-cli does
        (IMPORTING, MIGRATING, GETKEYSINSLOT + MIGRATE in batches of ``batch`` with
        ``pause_s`` between them, then SETSLOT NODE on every master); wait until every
        live node agrees. Safe while clients write (they follow ASK and MOVED). Returns
        how many keys MIGRATE was asked to move."""
        source = self.master_of_slot(slot)
        if source is destination:
            return 0
        if destination not in self.masters():
            raise ValueError(f"node {destination.port} is not a live master")
        source_id, destination_id = self.node_id(source), self.node_id(destination)
        call(destination, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", destination_id)
        deadline = time.monotonic() + timeout_s
        moved = 0
        while keys := self._keys_in_slot(source, slot, batch):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"slot {slot} still has keys on {source.port} after {timeout_s:g} s"
                )
            call(source, "MIGRATE", HOST, destination.port, "", 0, 5000, "KEYS", *keys, timeout=10)
            moved += len(keys)
            if pause_s > 0:
                time.sleep(pause_s)
        others = [m for m in self.masters() if m not in (source, destination)]
        for node in (destination, source, *others):  # the destination first, as redis-cli
            call(node, "CLUSTER", "SETSLOT", slot, "NODE", destination_id)

        def agreed() -> None:
            for node in self._live():
                for v in cluster_nodes(node):
                    if slot in v.migrating or slot in v.importing:
                        raise NotYet(f"{node.port} still migrates or imports slot {slot}")
                    if v.owns(slot) and v.id != destination_id:
                        raise NotYet(f"{node.port} says {v.port} owns slot {slot}")

        poll(agreed, timeout_s, f"all nodes to agree slot {slot} moved", self.logs)
        self._last_view = self.view()
        return moved

    @staticmethod
    def _keys_in_slot(source: RedisServer, slot: int, count: int) -> list[bytes]:
        reply = call(source, "CLUSTER", "GETKEYSINSLOT", slot, count)
        assert isinstance(reply, list)
        return [key for key in reply if isinstance(key, bytes)]
