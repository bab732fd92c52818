"""The Redis broker's settings: where Redis is, retention, and fault detection times."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The parts of a ``redis://[user:password@]host[:port][/db]`` URL."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"broker URL {url!r}: expected redis://HOST:PORT/DB")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} names no host")
        path = parts.path.strip("/")
        try:
            db = int(path) if path else 0
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"broker URL {url!r}: {exc}") from exc
        if db < 0:
            raise ValueError(f"broker URL {url!r}: database must be >= 0")
        return cls(
            host=parts.hostname,
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        """The address without credentials, for logs and /healthz."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisBrokerOptions:
    """The Redis broker's options; defaults and meanings are in ``fanout.settings``
    (``redis_*`` and the history and idempotency limits)."""

    url: str
    key_prefix: str
    history_max_messages: int
    history_max_bytes: int
    idempotency_max_ids: int
    idempotency_ttl_s: float
    room_ttl_s: float
    timeout_s: float
    health_interval_s: float
    reconnect_max_s: float

    def __post_init__(self) -> None:
        RedisTarget.parse(self.url)
        if self.history_max_messages < 1 or self.history_max_bytes < 1:
            raise ValueError("history_max_messages and history_max_bytes must be >= 1")
        if self.idempotency_max_ids < 0 or self.idempotency_ttl_s < 0 or self.room_ttl_s < 0:
            raise ValueError("idempotency limits and room_ttl_s must be >= 0")
        if min(self.timeout_s, self.health_interval_s, self.reconnect_max_s) <= 0:
            raise ValueError("redis timeouts and intervals must be > 0")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}\n "):
            raise ValueError("key_prefix must be non-empty, without braces, spaces or newlines")

    @property
    def target(self) -> RedisTarget:
        return RedisTarget.parse(self.url)
