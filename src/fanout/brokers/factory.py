"""Builds the broker a settings URL names; optional backends are imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fanout.brokers.memory import MemoryBroker

if TYPE_CHECKING:
    from fanout.brokers.base import Broker
    from fanout.settings import Settings


def make_broker(settings: Settings) -> Broker:
    url = settings.broker
    if url == "memory":
        return MemoryBroker(settings.memory_broker_limits())
    options = settings.redis_broker_options()
    from fanout.brokers.redis import RedisBroker

    return RedisBroker(options)


def broker_label(url: str) -> str:
    """The broker for /healthz and logs: a Redis URL without its password."""
    if url == "memory":
        return url
    from fanout.brokers.redis.options import RedisTarget

    return str(RedisTarget.parse(url))
