"""Real Redis Sentinels for tests: a master, its replica and three sentinels on free
loopback ports.

``with RedisSentinels(tmp_path) as sentinels: ... sentinels.url`` gives
``redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster/0``. ``failover()``
asks a sentinel to fail over; ``kill_master()`` and ``wait_for_failover()`` let the
sentinels find out by themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from tests.support.redis import RedisServer, redis_binary
from tests.support.redis_cluster import (
    HOST,
    NotYet,
    Reply,
    ReplyError,
    as_text,
    call,
    info,
    log_tails,
    poll,
    unused_port,
)

_DATA_NODE_ARGS = (
    "--repl-diskless-sync-delay", "0",  # the replica syncs at once, not after 5 s
    "--shutdown-timeout", "0",  # stop() never waits for a paused replica
)  # fmt: skip


class SentinelServer(RedisServer):
    """``redis-server <conf> --sentinel``; the conf is written once, here, and then is
    the sentinel's own (it rewrites it with what it learns, so a restart remembers)."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int,
        master_name: str,
        master_port: int,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> None:
        super().__init__(directory, port=port)
        self.log_path = directory / f"sentinel-{self.port}.log"
        self.conf_path = directory / f"sentinel-{self.port}.conf"
        directory.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            f"port {self.port}\n"
            f"bind {HOST}\n"
            "daemonize no\n"
            f'dir "{directory}"\n'
            f'logfile "{self.log_path}"\n'
            f"sentinel monitor {master_name} {HOST} {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master_name} 1\n"
        )

    def _command_line(self) -> list[str]:
        return [redis_binary(), str(self.conf_path), "--sentinel"]


def _fields(reply: Reply) -> dict[str, str]:
    """A flat ``[field, value, ...]`` reply (SENTINEL MASTER, one of SENTINEL REPLICAS)."""
    if not isinstance(reply, list):
        raise TypeError(f"expected a flat field/value list, got {reply!r}")
    items = [as_text(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _records(reply: Reply) -> list[dict[str, str]]:
    if not isinstance(reply, list):
        raise TypeError(f"expected a list of records, got {reply!r}")
    return [_fields(record) for record in reply]


def _healthy(record: dict[str, str]) -> bool:
    flags = set(record.get("flags", "").split(","))
    return not flags & {"s_down", "o_down", "disconnected"}


class RedisSentinels:
    """A master, one replica of it (``--replicaof``) and ``sentinels`` sentinels that
    monitor it as ``master_name``; ``start()`` returns once every sentinel knows the
    master, the replica and the other sentinels."""

    def __init__(
        self,
        directory: Path,
        *,
        master_name: str = "mymaster",
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.directory = directory
        self.master_name = master_name
        taken: set[int] = set()  # distinct ports, even if the OS hands one out twice
        master = RedisServer(directory, port=unused_port(taken), extra_args=_DATA_NODE_ARGS)
        replica = RedisServer(
            directory,
            port=unused_port(taken),
            extra_args=[*_DATA_NODE_ARGS, "--replicaof", HOST, str(master.port)],
        )
        self.nodes: list[RedisServer] = [master, replica]  # the data nodes
        self.sentinels: list[SentinelServer] = [
            SentinelServer(
                directory,
                port=unused_port(taken),
                master_name=master_name,
                master_port=master.port,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            for _ in range(sentinels)
        ]
        self.startup_s: float | None = None  # how long start() took

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:P1,...,127.0.0.1:Pn/<master_name>/0``."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    # --- lifecycle --------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the data nodes, wait for the replica's link, start the sentinels, and
        wait until each knows the master, the replica and all other sentinels."""
        began = time.monotonic()
        master, replica = self.nodes
        try:
            _in_parallel(lambda node: node.start(timeout_s), self.nodes)
            poll(
                lambda: self._replica_link_up(replica),
                timeout_s,
                f"replica {replica.port} to sync from {master.port}",
                self.logs,
            )
            _in_parallel(lambda node: node.start(timeout_s), self.sentinels)
            poll(
                lambda: self._check_sentinels(master, replica),
                timeout_s,
                "the sentinels to know the master, the replica and each other",
                self.logs,
            )
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began

    def stop(self) -> None:
        """Stop the sentinels, then the data nodes, paused or killed ones too. Idempotent."""
        _in_parallel(lambda node: node.stop(), self.sentinels)
        _in_parallel(lambda node: node.stop(), self.nodes)

    def __enter__(self) -> RedisSentinels:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def logs(self) -> str:
        """The tail of every data node's and sentinel's log, for error messages."""
        return log_tails([*self.nodes, *self.sentinels])

    @staticmethod
    def _replica_link_up(replica: RedisServer) -> None:
        link = info(replica, "replication").get("master_link_status")
        if link != "up":
            raise NotYet(f"replica {replica.port}: master_link_status:{link}")

    def _check_sentinels(self, master: RedisServer, replica: RedisServer) -> None:
        name = self.master_name
        for sentinel in self.sentinels:
            where = f"sentinel {sentinel.port}"
            if self._master_port(sentinel) != master.port:
                raise NotYet(f"{where} does not name {master.port} the master")
            if not _healthy(_fields(call(sentinel, "SENTINEL", "MASTER", name))):
                raise NotYet(f"{where} thinks master {master.port} is down")
            replicas = _records(call(sentinel, "SENTINEL", "REPLICAS", name))
            if not any(r.get("port") == str(replica.port) and _healthy(r) for r in replicas):
                raise NotYet(f"{where} does not know replica {replica.port} yet: {replicas}")
            others = _records(call(sentinel, "SENTINEL", "SENTINELS", name))
            if sum(map(_healthy, others)) != len(self.sentinels) - 1:
                ports = [s.get("port") for s in others]
                raise NotYet(f"{where} knows only sentinels {ports}")

    # --- who is master --------------------------------------------------------------

    def _master_port(self, sentinel: SentinelServer) -> int:
        reply = call(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if not isinstance(reply, list) or len(reply) != 2:
            raise NotYet(f"sentinel {sentinel.port} knows no master {self.master_name}")
        return int(as_text(reply[1]))

    def _live_sentinels(self) -> list[SentinelServer]:
        return [s for s in self.sentinels if s.running]

    def _node(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"the sentinels name an unknown master on port {port}")

    def current_master(self) -> RedisServer:
        """The data node the first answering sentinel names as master."""
        errors = []
        for sentinel in self._live_sentinels():
            try:
                return self._node(self._master_port(sentinel))
            except (OSError, ReplyError, NotYet) as exc:
                errors.append(f"{sentinel.port}: {exc}")
        raise RuntimeError(f"no sentinel names a master: {errors}")

    # --- failover -------------------------------------------------------------------

    def failover(self, timeout_s: float = 20.0) -> RedisServer:
        """SENTINEL FAILOVER (no agreement needed), then wait as ``wait_for_failover``.
        The old master keeps running and says role:master until the sentinels make it
        a replica of the new one, about 8 s later."""
        old = self.current_master()
        sentinel = self._live_sentinels()[0]
        poll(  # NOGOODSLAVE while the sentinel's view of the replica is stale: retry
            lambda: call(sentinel, "SENTINEL", "FAILOVER", self.master_name),
            timeout_s,
            f"sentinel {sentinel.port} to accept SENTINEL FAILOVER",
            self.logs,
        )
        return self.wait_for_failover(old, timeout_s)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; return it (for ``wait_for_failover``)."""
        old = self.current_master()
        old.kill()
        return old

    def wait_for_failover(self, old: RedisServer, timeout_s: float = 20.0) -> RedisServer:
        """Wait until every live sentinel names the same master, not ``old``, and that
        node says role:master; return it."""

        def promoted() -> RedisServer:
            ports = {self._master_port(s) for s in self._live_sentinels()}
            if len(ports) != 1:
                raise NotYet(f"the sentinels disagree: {sorted(ports)}")
            (port,) = ports
            if port == old.port:
                raise NotYet(f"the sentinels still name {old.port}")
            new = self._node(port)
            role = info(new, "replication").get("role")
            if role != "master":
                raise NotYet(f"{port} says role:{role}")
            return new

        return poll(promoted, timeout_s, f"the sentinels to replace {old.port}", self.logs)


def _in_parallel(action: Callable[[RedisServer], None], servers: Sequence[RedisServer]) -> None:
    """``action`` on every server at once; the first error is raised after all finish."""
    if servers:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(action, servers))
