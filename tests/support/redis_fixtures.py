"""Pytest fixtures for real Redis servers, clusters and sentinels.

Use in a test module with ``from tests.support.redis_fixtures import redis_server  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis import RedisServer
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_sentinel import RedisSentinels


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started ``redis-server`` in ``tmp_path``; stopped at teardown even if paused or killed."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A formed Redis Cluster of 3 masters with a replica each, in ``tmp_path``; every
    node stopped at teardown even if paused or killed."""
    cluster = RedisCluster(tmp_path / "cluster", masters=3, replicas=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_sentinels(tmp_path: Path) -> Iterator[RedisSentinels]:
    """A master, its replica and 3 sentinels monitoring it as ``mymaster``, in
    ``tmp_path``; all stopped at teardown even if killed."""
    sentinels = RedisSentinels(tmp_path / "sentinel")
    sentinels.start()
    try:
        yield sentinels
    finally:
        sentinels.stop()
