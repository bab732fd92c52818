"""The Redis broker's settings: where Redis is, retention, and fault detection times."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")
Address = tuple[str, int]


def _address(text: str, url: str, default_port: int) -> Address:
    host, port = text, default_port
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], url)
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = _port(raw, url)
    if not host:
        raise ValueError(f"broker URL {url!r} names no host")
    return host, port


def _port(raw: str, url: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"broker URL {url!r}: bad port {raw!r}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The parts of a broker URL: ``redis://[user:password@]host[:port][,host:port...][/db]``
    (several seed nodes of one Redis Cluster, any of them reachable will do), or
    ``redis+sentinel://host:port[,host:port...]/MASTER_NAME[/db]`` (the Sentinels that
    know where master ``MASTER_NAME`` is). ``host``/``port`` is the first address;
    credentials are those of the data nodes (Sentinels are asked without them)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    seeds: tuple[Address, ...] = ()
    sentinel_master: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"broker URL {url!r}: expected redis://HOST:PORT/DB")
        sentinel = parts.scheme.endswith("+sentinel")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        default_port = 26379 if sentinel else 6379
        seeds = tuple(_address(h, url, default_port) for h in hosts.split(",") if h)
        if not seeds:
            raise ValueError(f"broker URL {url!r} names no host")
        path = [p for p in parts.path.split("/") if p]
        master = None
        if sentinel:
            if not path:
                raise ValueError(
                    f"broker URL {url!r}: expected redis+sentinel://HOST:PORT/MASTER_NAME/DB"
                )
            master = unquote(path.pop(0))
        if len(path) > 1 or (path and not path[0].isdigit()):
            raise ValueError(f"broker URL {url!r}: the database must be a number >= 0")
        return cls(
            host=seeds[0][0],
            port=seeds[0][1],
            db=int(path[0]) if path else 0,
            username=unquote(username) if username else None,
            password=unquote(password) if password else None,
            tls=parts.scheme.startswith("rediss"),
            seeds=seeds,
            sentinel_master=master,
        )

    @property
    def addresses(self) -> tuple[Address, ...]:
        """Every address the URL names (seed nodes, or Sentinels)."""
        return self.seeds or ((self.host, self.port),)

    def at(self, address: Address) -> RedisTarget:
        """The data node at ``address``, with this URL's credentials, TLS and database."""
        host, port = address
        return dataclasses.replace(self, host=host, port=port, seeds=(), sentinel_master=None)

    def __str__(self) -> str:
        """The address without credentials, for logs and /healthz."""
        scheme = "rediss" if self.tls else "redis"
        hosts = ",".join(f"{h}:{p}" for h, p in self.addresses)
        if self.sentinel_master is not None:
            return f"{scheme}+sentinel://{hosts}/{self.sentinel_master}/{self.db}"
        return f"{scheme}://{hosts}/{self.db}"


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
    ack_replicas: int = 1

    def __post_init__(self) -> None:
        RedisTarget.parse(self.url)
        if self.history_max_messages < 1 or self.history_max_bytes < 1:
            raise ValueError("history_max_messages and history_max_bytes must be >= 1")
        if self.idempotency_max_ids < 0 or self.idempotency_ttl_s < 0 or self.room_ttl_s < 0:
            raise ValueError("idempotency limits and room_ttl_s must be >= 0")
        if self.ack_replicas < 0:
            raise ValueError("ack_replicas must be >= 0")
        if min(self.timeout_s, self.health_interval_s, self.reconnect_max_s) <= 0:
            raise ValueError("redis timeouts and intervals must be > 0")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}\n "):
            raise ValueError("key_prefix must be non-empty, without braces, spaces or newlines")

    @property
    def target(self) -> RedisTarget:
        return RedisTarget.parse(self.url)
