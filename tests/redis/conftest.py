"""Tests of fanout over a real redis-server that each test starts on a free port."""

from tests.support.browser import browser
from tests.support.redis_fixtures import redis_cluster, redis_sentinels, redis_server

__all__ = ["browser", "redis_cluster", "redis_sentinels", "redis_server"]
