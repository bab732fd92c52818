"""The harness itself: real Redis Clusters and Sentinels that tests start on free ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

import pytest

from tests.support.redis import encode_command, read_reply
from tests.support.redis_cluster import SLOTS, RedisCluster, ReplyError, call, info, parse_reply
from tests.support.redis_sentinel import RedisSentinels


def test_a_cluster_of_three_masters_covers_every_slot_with_a_replica_each(
    redis_cluster: RedisCluster,
) -> None:
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3
    assert len(replicas) == 3
    owned = [redis_cluster.slots_of(m) for m in masters]
    assert sum(map(len, owned)) == SLOTS
    assert frozenset().union(*owned) == frozenset(range(SLOTS))
    assert {redis_cluster.replica_of(m) for m in masters} == set(replicas)
    assert redis_cluster.seed_url == masters[0].url
    assert 6379 not in {n.port for n in redis_cluster.nodes}

    slot = redis_cluster.keyslot("{room}")
    owner = redis_cluster.master_of_slot(slot)
    assert call(owner, "SET", "{room}", "v") == "OK"
    other = next(m for m in masters if m is not owner)
    with pytest.raises(ReplyError, match=f"MOVED {slot} 127.0.0.1:{owner.port}"):
        call(other, "GET", "{room}")

    paused = replicas[0]
    redis_cluster.pause(paused)  # left paused: the fixture's stop() must still end it
    assert paused.url not in redis_cluster.seed_urls()
    assert len(redis_cluster.seed_urls()) == 5


def test_a_killed_master_is_replaced_by_its_replica(redis_cluster: RedisCluster) -> None:
    slot = redis_cluster.keyslot("{room}")
    old = redis_cluster.master_of_slot(slot)
    replica = redis_cluster.replica_of(old)
    call(old, "SET", "{room}", "kept")
    assert call(old, "WAIT", 1, 2000) == 1

    redis_cluster.kill(old)
    new = redis_cluster.wait_for_failover(old)

    assert new is replica
    assert redis_cluster.master_of_slot(slot) is new
    assert old not in redis_cluster.masters()
    assert len(redis_cluster.masters()) == 3
    assert call(new, "GET", "{room}") == b"kept"
    assert old.url not in redis_cluster.seed_urls()


class _ClusterWriter(threading.Thread):
    """INCRs one key flat out, following MOVED and ASK as a cluster client must."""

    def __init__(self, key: str, port: int) -> None:
        super().__init__(daemon=True)
        self.key, self.port = key, port
        self.acked = 0
        self.redirects: list[str] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._streams: dict[int, tuple[socket.socket, BinaryIO]] = {}

    def _send(self, port: int, *commands: tuple[str, ...]) -> bytes:
        if port not in self._streams:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            self._streams[port] = (sock, sock.makefile("rb"))
        sock, stream = self._streams[port]
        sock.sendall(b"".join(encode_command(*c) for c in commands))
        return [read_reply(stream) for _ in commands][-1]

    def run(self) -> None:
        try:
            while not self.done.is_set():
                reply = self._send(self.port, ("INCR", self.key))
                if reply.startswith(b"-ASK "):
                    self.redirects.append("ASK")
                    ask_port = int(reply.split()[2].rpartition(b":")[2])
                    reply = self._send(ask_port, ("ASKING",), ("INCR", self.key))
                elif reply.startswith(b"-MOVED "):
                    self.redirects.append("MOVED")
                    self.port = int(reply.split()[2].rpartition(b":")[2])
                    continue
                assert isinstance(parse_reply(reply), int), reply
                self.acked += 1
        except BaseException as exc:
            self.error = exc
        finally:
            for sock, stream in self._streams.values():
                stream.close()
                sock.close()


def _until(condition: Callable[[], object], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.01)


def test_a_slot_migrates_with_its_keys_while_a_client_keeps_writing_to_it(
    redis_cluster: RedisCluster,
) -> None:
    slot = redis_cluster.keyslot("{room}")
    source = redis_cluster.master_of_slot(slot)
    destination = next(m for m in redis_cluster.masters() if m is not source)
    for i in range(40):
        call(source, "SET", f"{{room}}:{i}", i)
    writer = _ClusterWriter("{room}:counter", source.port)
    writer.start()
    try:
        _until(lambda: writer.acked >= 20 or writer.error, "the writer to get going")
        moved = redis_cluster.migrate_slot(slot, destination, batch=5, pause_s=0.01)
        before = writer.acked
        _until(lambda: writer.acked >= before + 20 or writer.error, "writes after the move")
    finally:
        writer.done.set()
        writer.join(5)
    assert writer.error is None
    assert moved == 41  # 40 keys and the counter
    assert redis_cluster.master_of_slot(slot) is destination
    assert "MOVED" in writer.redirects
    assert call(destination, "GET", "{room}:counter") == str(writer.acked).encode()
    assert call(destination, "GET", "{room}:39") == b"39"
    assert call(source, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    with pytest.raises(ReplyError, match="MOVED"):
        call(source, "GET", "{room}:0")


def test_sentinels_promote_the_replica_on_failover(redis_sentinels: RedisSentinels) -> None:
    old = redis_sentinels.current_master()
    call(old, "SET", "k", "kept")
    assert call(old, "WAIT", 1, 2000) == 1
    assert (
        redis_sentinels.url
        == "redis+sentinel://"
        + ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinels.sentinels)
        + "/mymaster/0"
    )

    new = redis_sentinels.failover()

    assert new is not old
    assert redis_sentinels.current_master() is new
    assert info(new, "replication")["role"] == "master"
    assert call(new, "GET", "k") == b"kept"


def test_sentinels_replace_a_killed_master(redis_sentinels: RedisSentinels) -> None:
    old = redis_sentinels.kill_master()
    new = redis_sentinels.wait_for_failover(old)
    assert new is not old
    assert not old.running
    assert call(new, "SET", "k", "written") == "OK"
