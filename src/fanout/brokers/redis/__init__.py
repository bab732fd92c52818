"""The Redis broker: rooms shared by many fanout processes and machines."""

from fanout.brokers.redis.broker import RedisBroker
from fanout.brokers.redis.options import RedisBrokerOptions, RedisTarget

__all__ = ["RedisBroker", "RedisBrokerOptions", "RedisTarget"]
