"""Every setting and limit, with its default and meaning. The environment is read here only."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fanout.brokers.memory import MemoryBrokerLimits
from fanout.core.hub import HubLimits
from fanout.core.outbox import OutboxLimits

if TYPE_CHECKING:
    from fanout.auth.handshake import Gate
    from fanout.brokers.redis.options import RedisBrokerOptions

MiB = 1024 * 1024
ENV_PREFIX = "FANOUT_"
# ``fanout serve`` flags that lift the per-client limits: for benchmarks that measure the
# hub itself with one client sending faster, or more clients from 127.0.0.1, than allowed.
NO_CLIENT_LIMITS = (
    "--rate-frames-per-s",
    "0",
    "--rate-bytes-per-s",
    "0",
    "--max-connections-per-ip",
    "0",
)


def _opt(default: Any, help_text: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"help": help_text})


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = _opt("127.0.0.1", "address to bind")
    port: int = _opt(8000, "TCP port to listen on")
    broker: str = _opt(
        "memory",
        "'memory' (one process) or redis://[:PASSWORD@]HOST:PORT/DB (many processes and"
        " machines sharing rooms)",
    )
    max_message_bytes: int = _opt(
        16 * MiB, "largest WebSocket message accepted; larger closes with 1009"
    )
    outbox_max_messages: int = _opt(
        4096, "frames queued per connection before it is closed with 4008 (slow consumer)"
    )
    outbox_max_bytes: int = _opt(
        64 * MiB, "bytes queued per connection before it is closed with 4008 (slow consumer)"
    )
    history_max_messages: int = _opt(1000, "messages kept per room for resume")
    history_max_bytes: int = _opt(64 * MiB, "bytes kept per room for resume")
    history_total_max_bytes: int = _opt(
        512 * MiB, "bytes kept for all rooms of the process; least active rooms trimmed first"
    )
    max_rooms: int = _opt(10_000, "rooms the memory broker remembers (idle rooms forgotten first)")
    max_connections: int = _opt(10_000, "connections per process; more are closed with 1013")
    max_connections_per_ip: int = _opt(
        1000, "connections per client address; more are closed with 1013 (0: no limit)"
    )
    max_rooms_per_connection: int = _opt(100, "rooms one connection may subscribe to")
    room_pattern: str = _opt(
        "",
        "regular expression every room name must also fully match, e.g. 'chat\\.[a-z0-9-]+'"
        " (default: any name of 1-128 characters of A-Z a-z 0-9 _ . : @ -)",
    )
    rate_frames_per_s: float = _opt(
        1000.0,
        "frames one connection may send per second (1 s burst); over it a fanout.v1 client"
        " gets error 'rate_limited', a plain client is closed 4029 (0: no limit)",
    )
    rate_bytes_per_s: float = _opt(
        32.0 * MiB,
        "bytes one connection may send per second, same policy (0: no limit); a single"
        " message up to max_message_bytes always fits",
    )
    rate_limit_grace_s: float = _opt(
        2.0, "a connection still over its rate this long after its first refusal is closed 4029"
    )
    handshake_timeout_s: float = _opt(
        5.0, "a connection that has not sent its request headers within this time is dropped"
    )
    max_header_bytes: int = _opt(
        64 * 1024, "largest request head (request line and headers); larger get HTTP 431"
    )
    idle_timeout_s: float = _opt(
        300.0, "close (1000) a connection in no room that sent nothing this long (0: never)"
    )
    auth_secret: str = _opt(
        "",
        "HMAC secret (32+ bytes) verifying tokens; prefer FANOUT_AUTH_SECRET or"
        " --auth-secret-file, since command lines are visible to other users",
        secret=True,
    )
    auth_secret_file: str = _opt("", "file holding the HMAC secret")
    auth_public_key_file: str = _opt(
        "", "PEM public key (RSA, EC or Ed25519) verifying tokens signed by your login service"
    )
    auth_algorithms: str = _opt(
        "",
        "comma-separated JWT algorithms accepted (default: HS256 with a secret, inferred"
        " from the public key's type otherwise)",
    )
    auth_audience: str = _opt(
        "", "required 'aud' claim (default: not checked; a token that has an 'aud' is refused)"
    )
    auth_issuer: str = _opt("", "required 'iss' claim (default: not checked)")
    auth_leeway_s: float = _opt(0.0, "clock skew allowed when checking 'exp'")
    auth_cookie: str = _opt("fanout_token", "cookie the token may come in")
    auth_query_param: str = _opt(
        "token", "query parameter the token may come in (for browsers; redacted from logs)"
    )
    allow_anonymous: bool = _opt(
        False,
        "serve without auth on an address other than loopback (anyone who can reach the"
        " port may subscribe and publish anywhere)",
    )
    allowed_origins: str = _opt(
        "",
        "comma-separated origins (https://app.example.com) allowed besides the hub's own;"
        " '*' allows any. Browsers' handshakes from other origins get HTTP 403",
    )
    forwarded_allow_ips: str = _opt(
        "127.0.0.1",
        "proxies trusted to name the client in X-Forwarded-For (per-address limits count"
        " that client); '*' trusts everyone",
    )
    publishes_in_flight: int = _opt(
        64,
        "publishes of one fanout.v1 connection handled at once (answered in order); 1 handles"
        " each after the previous one was answered",
    )
    publish_timeout_s: float = _opt(5.0, "a publish is answered (ack or error) within this time")
    close_timeout_s: float = _opt(
        5.0, "time a closed client gets to answer the close frame before the socket is aborted"
    )
    shutdown_flush_s: float = _opt(10.0, "on SIGTERM, time to flush outboxes before closing 1001")
    idempotency_max_ids: int = _opt(10_000, "publish ids remembered per room for retries")
    idempotency_ttl_s: float = _opt(300.0, "seconds a publish id is remembered for retries")
    ping_interval_s: float = _opt(20.0, "WebSocket ping interval (0 disables)")
    ping_timeout_s: float = _opt(20.0, "close a connection whose pong is this late")
    chat_page: bool = _opt(True, "serve the chat page at /")
    redis_key_prefix: str = _opt(
        "fanout", "prefix of every Redis key and channel (one per deployment sharing a Redis)"
    )
    redis_room_ttl_s: float = _opt(
        86_400.0, "Redis forgets a room unused this long (0: never); it returns with a new epoch"
    )
    redis_timeout_s: float = _opt(
        2.0, "a Redis command or health ping unanswered this long counts as a failure"
    )
    redis_health_interval_s: float = _opt(
        1.0,
        "how often Redis is pinged; a dead or paused Redis is reported within about"
        " this plus redis_timeout_s",
    )
    redis_reconnect_max_s: float = _opt(
        2.0, "reconnect attempts to Redis back off (jittered) up to this delay"
    )

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be >= 1024")
        if self.outbox_max_bytes < self.max_message_bytes:
            raise ValueError(
                "outbox_max_bytes must be >= max_message_bytes, or one large message would"
                " close every receiver as a slow consumer"
            )
        if self.publishes_in_flight < 1:
            raise ValueError("publishes_in_flight must be >= 1")
        if min(self.rate_frames_per_s, self.rate_bytes_per_s, self.rate_limit_grace_s) < 0:
            raise ValueError("rate limits must be >= 0 (0: no limit)")
        if self.handshake_timeout_s <= 0 or self.idle_timeout_s < 0:
            raise ValueError("handshake_timeout_s must be > 0 and idle_timeout_s >= 0")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes must be >= 1024")
        self.gate()
        self.check_exposure()
        if not 0 < self.port < 65536 and self.port != 0:
            raise ValueError("port must be 0-65535")
        self.hub_limits()
        self.memory_broker_limits()
        if self.broker != "memory":
            self.redis_broker_options()

    def hub_limits(self) -> HubLimits:
        return HubLimits(
            max_connections=self.max_connections,
            max_rooms_per_connection=self.max_rooms_per_connection,
            max_connections_per_ip=self.max_connections_per_ip,
            room_pattern=self.room_pattern,
            publish_timeout_s=self.publish_timeout_s,
            close_timeout_s=self.close_timeout_s,
            shutdown_flush_s=self.shutdown_flush_s,
            outbox=OutboxLimits(
                max_messages=self.outbox_max_messages, max_bytes=self.outbox_max_bytes
            ),
        )

    def memory_broker_limits(self) -> MemoryBrokerLimits:
        return MemoryBrokerLimits(
            history_max_messages=self.history_max_messages,
            history_max_bytes=self.history_max_bytes,
            history_total_max_bytes=self.history_total_max_bytes,
            max_rooms=self.max_rooms,
            idempotency_max_ids=self.idempotency_max_ids,
            idempotency_ttl_s=self.idempotency_ttl_s,
        )

    def redis_broker_options(self) -> RedisBrokerOptions:
        """The Redis broker's options; raises ValueError for a URL that is not redis://."""
        from fanout.brokers.redis.options import RedisBrokerOptions

        if not self.broker.startswith(("redis://", "rediss://")):
            raise ValueError(
                f"broker must be 'memory' or a redis://HOST:PORT/DB URL, got {self.broker!r}"
            )
        return RedisBrokerOptions(
            url=self.broker,
            key_prefix=self.redis_key_prefix,
            history_max_messages=self.history_max_messages,
            history_max_bytes=self.history_max_bytes,
            idempotency_max_ids=self.idempotency_max_ids,
            idempotency_ttl_s=self.idempotency_ttl_s,
            room_ttl_s=self.redis_room_ttl_s,
            timeout_s=self.redis_timeout_s,
            health_interval_s=self.redis_health_interval_s,
            reconnect_max_s=self.redis_reconnect_max_s,
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_secret or self.auth_secret_file or self.auth_public_key_file)

    def gate(self) -> Gate:
        """The handshake checks; raises ValueError for auth settings that cannot work."""
        from fanout.auth.handshake import Gate
        from fanout.auth.origin import OriginPolicy
        from fanout.auth.tokens import TokenVerifier

        origins = OriginPolicy.parse(self.allowed_origins)
        keys = [
            k for k in ("secret", "secret_file", "public_key_file") if getattr(self, "auth_" + k)
        ]
        if len(keys) > 1:
            raise ValueError("give one of auth_secret, auth_secret_file, auth_public_key_file")
        algorithms = tuple(a.strip() for a in self.auth_algorithms.split(",") if a.strip())
        options: dict[str, Any] = {
            "audience": self.auth_audience or None,
            "issuer": self.auth_issuer or None,
            "leeway_s": self.auth_leeway_s,
        }
        verifier: TokenVerifier | None = None
        if self.auth_secret:
            verifier = TokenVerifier.for_secret(self.auth_secret, algorithms, **options)
        elif self.auth_secret_file:
            verifier = TokenVerifier.for_secret(
                _read(self.auth_secret_file, "auth_secret_file").decode().strip(),
                algorithms,
                **options,
            )
        elif self.auth_public_key_file:
            verifier = TokenVerifier.for_public_key(
                _read(self.auth_public_key_file, "auth_public_key_file"), algorithms, **options
            )
        elif algorithms:
            raise ValueError("auth_algorithms needs a key: auth_secret or auth_public_key_file")
        return Gate(
            origins=origins,
            verifier=verifier,
            cookie=self.auth_cookie,
            query_param=self.auth_query_param,
            loopback_host_only=verifier is None and not self.allow_anonymous,
        )

    def check_exposure(self) -> None:
        """Refuse to serve anonymous clients beyond this machine unless told to."""
        if self.auth_enabled or self.allow_anonymous or is_loopback(self.host):
            return
        raise ValueError(
            f"refusing to serve on {self.host} without auth: anyone who can reach it could"
            " subscribe and publish to every room. Configure tokens (FANOUT_AUTH_SECRET, or"
            " --auth-public-key-file; see docs/security.md), bind to 127.0.0.1, or pass"
            " --allow-anonymous if that is what you want."
        )

    def to_env(self) -> dict[str, str]:
        """``FANOUT_<NAME>`` variables that ``from_env`` reads back as these settings
        (how ``--workers`` hands the command line to each worker process)."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            env[ENV_PREFIX + f.name.upper()] = text
        if Settings.from_env(env) != self:
            raise ValueError("these settings do not survive the trip through the environment")
        return env

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``FANOUT_<NAME>`` variables, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    kind: type[Any] = type(f.default)
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{f.name}: expected a boolean, got {raw!r}")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{f.name}: expected {kind.__name__}, got {raw!r}") from exc


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror}") from exc
