"""``fanout.Emitter`` and ``fanout.SyncEmitter``: the Redis emitters, built from
``fanout.Settings`` here, where settings become objects (``wiring.emitter_config``).

A process with no fanout node (a Celery task, a Django view, a script) publishes into
the hub's rooms through the nodes' own publish step::

    with fanout.SyncEmitter("redis://127.0.0.1:6379/0") as emitter:
        emitter.publish("news", {"title": "hello"}, id="news-1")
"""

from __future__ import annotations

from fanout.asgi.wiring import emitter_config
from fanout.brokers.redis.emitter import RedisEmitter, SyncRedisEmitter
from fanout.settings import Settings


class Emitter(RedisEmitter):
    """Publishes through Redis from asyncio code (see ``RedisEmitter``); ConfigError
    now, with the reason, for a URL or settings that cannot work."""

    def __init__(self, url: str, *, settings: Settings | None = None) -> None:
        super().__init__(emitter_config(url, settings or Settings()))


class SyncEmitter(SyncRedisEmitter):
    """Publishes through Redis from synchronous code (see ``SyncRedisEmitter``)."""

    def __init__(self, url: str, *, settings: Settings | None = None) -> None:
        super().__init__(emitter_config(url, settings or Settings()))
