"""Settings turned into the objects they describe: the one wiring place.

Each function raises ``ConfigError`` (a ValueError) with the reason when settings
cannot work together, so a hub refuses to start instead of starting half-configured.
Brokers are chosen by URL scheme from ``BROKERS``; optional backends are imported only
when their scheme is used, so the default install stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from fanout.auth.handshake import Gate
from fanout.auth.origin import OriginPolicy
from fanout.auth.tokens import TokenVerifier
from fanout.core.broker import Broker
from fanout.core.frame_policy import FrameLimits
from fanout.core.hub import Hub, HubLimits
from fanout.core.outbox import OutboxLimits
from fanout.core.presence import Presence, PresenceLimits
from fanout.core.publishing import PublishRules
from fanout.core.room_options import RoomRules
from fanout.core.session import SessionLimits
from fanout.protocol.errors import ConfigError
from fanout.settings import Settings, is_loopback

P = ParamSpec("P")
T = TypeVar("T")

if TYPE_CHECKING:
    from fanout.brokers.memory import MemoryBrokerLimits
    from fanout.brokers.redis.emitter import EmitterConfig
    from fanout.brokers.redis.options import RedisBrokerOptions


def hub_limits(settings: Settings) -> HubLimits:
    return _checked(
        HubLimits,
        max_connections=settings.max_connections,
        max_rooms_per_connection=settings.max_rooms_per_connection,
        max_connections_per_ip=settings.max_connections_per_ip,
        max_connections_per_user=settings.max_connections_per_user,
        max_revocations=settings.max_revocations,
        rooms=_checked(RoomRules, settings.room_options),
        presence_refresh_s=settings.presence_refresh_s,
        publish=publish_rules(settings),
        publish_timeout_s=settings.publish_timeout_s,
        close_timeout_s=settings.close_timeout_s,
        shutdown_flush_s=settings.shutdown_flush_s,
        write_delay_s=settings.write_delay_ms / 1000,
        outbox=_checked(
            OutboxLimits,
            max_messages=settings.outbox_max_messages,
            max_bytes=settings.outbox_max_bytes,
        ),
    )


def session_limits(settings: Settings) -> SessionLimits:
    return _checked(
        SessionLimits,
        frames=_checked(
            FrameLimits,
            max_message_bytes=settings.max_message_bytes,
            rate_frames_per_s=settings.rate_frames_per_s,
            rate_bytes_per_s=settings.rate_bytes_per_s,
            rate_limit_grace_s=settings.rate_limit_grace_s,
        ),
        publishes_in_flight=settings.publishes_in_flight,
        idle_timeout_s=settings.idle_timeout_s,
    )


def memory_broker_limits(settings: Settings) -> MemoryBrokerLimits:
    from fanout.brokers.memory import MemoryBrokerLimits

    return _checked(
        MemoryBrokerLimits,
        history_max_messages=settings.history_max_messages,
        history_max_bytes=settings.history_max_bytes,
        history_total_max_bytes=settings.history_total_max_bytes,
        max_rooms=settings.max_rooms,
        idempotency_max_ids=settings.idempotency_max_ids,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )


def redis_broker_options(settings: Settings, url: str | None = None) -> RedisBrokerOptions:
    """The Redis options ``settings`` describe (for ``url``, default ``settings.broker``):
    the one mapping, for the nodes and for emitters."""
    from fanout.brokers.redis.options import RedisBrokerOptions

    return _checked(
        RedisBrokerOptions,
        url=settings.broker if url is None else url,
        key_prefix=settings.redis_key_prefix,
        history_max_messages=settings.history_max_messages,
        history_max_bytes=settings.history_max_bytes,
        idempotency_max_ids=settings.idempotency_max_ids,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        room_ttl_s=settings.redis_room_ttl_s,
        timeout_s=settings.redis_timeout_s,
        health_interval_s=settings.redis_health_interval_s,
        reconnect_max_s=settings.redis_reconnect_max_s,
        ack_replicas=settings.redis_ack_replicas,
    )


def publish_rules(settings: Settings) -> PublishRules:
    return _checked(
        PublishRules,
        max_message_bytes=settings.max_message_bytes,
        room_pattern=settings.room_pattern,
    )


def emitter_config(url: str, settings: Settings) -> EmitterConfig:
    """What an emitter with these settings publishes with, as a node with them would:
    ConfigError if it cannot work. The URL's password never appears in the error."""
    from fanout.brokers.redis.emitter import EmitterConfig

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
        hint = (
            " (a hub on the in-memory broker takes publishes through its HTTP API:"
            " fanout publish --url)"
            if url == "memory"
            else ""
        )
        raise ConfigError(
            "an emitter publishes through Redis: expected redis://[:PASSWORD@]HOST:PORT/DB,"
            " rediss://... or redis+sentinel://HOST:PORT/MASTER_NAME/DB,"
            f" got {_redacted(url)!r}{hint}"
        )
    try:
        return EmitterConfig(
            options=redis_broker_options(settings, url),
            rules=publish_rules(settings),
            rooms=_checked(RoomRules, settings.room_options),
        )
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(url, _redacted(url))) from None


def _redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    if not password:
        return url
    return url.replace(f":{password}@", ":***@", 1)


def _memory_broker(settings: Settings) -> Broker:
    from fanout.brokers.memory import MemoryBroker

    return MemoryBroker(memory_broker_limits(settings))


def _redis_broker(settings: Settings) -> Broker:
    from fanout.brokers.redis import RedisBroker

    return RedisBroker(redis_broker_options(settings))


def _memory_label(url: str) -> str:
    return url


def _redis_label(url: str) -> str:
    from fanout.brokers.redis.options import RedisTarget

    return str(RedisTarget.parse(url))


def _memory_presence(settings: Settings) -> Presence:
    from fanout.brokers.memory_presence import MemoryPresence

    return MemoryPresence(presence_limits(settings))


def _redis_presence(settings: Settings) -> Presence:
    from fanout.brokers.redis.presence import RedisPresence

    return RedisPresence(redis_broker_options(settings), presence_limits(settings))


def presence_limits(settings: Settings) -> PresenceLimits:
    # Twice the refresh interval: one refresh may be late, two mean the node is gone.
    return _checked(PresenceLimits, ttl_s=2 * settings.presence_refresh_s)


@dataclass(frozen=True, slots=True)
class BrokerScheme:
    example: str
    build: Callable[[Settings], Broker]
    presence: Callable[[Settings], Presence]
    # The URL as /healthz and logs show it: without a password.
    label: Callable[[str], str]


# A new broker is one entry here (and its package under fanout/brokers/).
BROKERS: dict[str, BrokerScheme] = {
    "memory": BrokerScheme("memory", _memory_broker, _memory_presence, _memory_label),
    "redis": BrokerScheme(
        "redis://[:PASSWORD@]HOST:PORT/DB", _redis_broker, _redis_presence, _redis_label
    ),
    "rediss": BrokerScheme(
        "rediss://[:PASSWORD@]HOST:PORT/DB", _redis_broker, _redis_presence, _redis_label
    ),
    "redis+sentinel": BrokerScheme(
        "redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER_NAME/DB",
        _redis_broker,
        _redis_presence,
        _redis_label,
    ),
    "rediss+sentinel": BrokerScheme(
        "rediss+sentinel://HOST:PORT[,HOST:PORT]/MASTER_NAME/DB",
        _redis_broker,
        _redis_presence,
        _redis_label,
    ),
}


def broker_scheme(url: str) -> BrokerScheme:
    scheme = url.split("://", 1)[0] if "://" in url else url
    found = BROKERS.get(scheme.lower())
    if found is None:
        known = ", ".join(s.example for s in BROKERS.values())
        raise ConfigError(f"unknown broker {url!r}: the known brokers are {known}")
    return found


def make_broker(settings: Settings) -> Broker:
    return broker_scheme(settings.broker).build(settings)


def broker_label(url: str) -> str:
    return broker_scheme(url).label(url)


def make_gate(settings: Settings, *, hooked: bool = False) -> Gate:
    """The handshake checks, with the token verifier and its key files read now.
    ``hooked``: the application authenticates with its own hook instead of tokens."""
    if hooked and settings.auth_enabled:
        raise ConfigError(
            "give either token keys (auth_secret, auth_public_key_file) or an authenticate="
            " hook, not both: with a hook, your application decides who connects"
        )
    verifier: TokenVerifier | None = None
    algorithms = settings.auth_algorithm_names
    options: dict[str, Any] = {
        "audience": settings.auth_audience or None,
        "issuer": settings.auth_issuer or None,
        "leeway_s": settings.auth_leeway_s,
    }
    if settings.auth_secret:
        verifier = TokenVerifier.for_secret(settings.auth_secret, algorithms, **options)
    elif settings.auth_secret_file:
        secret = _read(settings.auth_secret_file, "auth_secret_file").decode().strip()
        verifier = TokenVerifier.for_secret(secret, algorithms, **options)
    elif settings.auth_public_key_file:
        key = _read(settings.auth_public_key_file, "auth_public_key_file")
        verifier = TokenVerifier.for_public_key(key, algorithms, **options)
    return Gate(
        origins=_checked(OriginPolicy.parse, settings.allowed_origins),
        verifier=verifier,
        cookie=settings.auth_cookie,
        query_param=settings.auth_query_param,
        hooked=hooked,
        loopback_host_only=verifier is None and not hooked and not settings.allow_anonymous,
    )


def check_exposure(settings: Settings, *, hooked: bool = False) -> None:
    """Refuse to serve anonymous clients beyond this machine unless told to."""
    if settings.auth_enabled or hooked or settings.allow_anonymous or is_loopback(settings.host):
        return
    raise ConfigError(
        f"refusing to serve on {settings.host} without auth: anyone who can reach it could"
        " subscribe and publish to every room. Configure tokens (FANOUT_AUTH_SECRET, or"
        " --auth-public-key-file; see docs/security.md) or your app's own authenticate="
        " hook, bind to 127.0.0.1, or pass --allow-anonymous if that is what you want."
    )


MIN_API_KEY_CHARS = 16


def api_key(settings: Settings) -> bytes | None:
    """The server API's key (None: the API is off); ConfigError if too short to guess."""
    if not settings.api_key:
        return None
    if len(settings.api_key) < MIN_API_KEY_CHARS:
        raise ConfigError(
            f"api_key must be at least {MIN_API_KEY_CHARS} characters (make one with"
            " python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return settings.api_key.encode()


@dataclass(frozen=True, slots=True)
class Wiring:
    """What one hub process is made of."""

    hub: Hub
    gate: Gate
    session: SessionLimits
    broker_label: str
    api_key: bytes | None


def wire(settings: Settings, broker: Broker | None = None, *, hooked: bool = False) -> Wiring:
    """Everything the settings describe, or ConfigError with the reason. ``hooked``: the
    application authenticates connections with its own hook."""
    check_exposure(settings, hooked=hooked)
    gate = make_gate(settings, hooked=hooked)
    session = session_limits(settings)
    label = broker_label(settings.broker)
    scheme = broker_scheme(settings.broker)
    hub = Hub(
        broker or scheme.build(settings),
        hub_limits(settings),
        scheme.presence(settings),
    )
    return Wiring(
        hub=hub, gate=gate, session=session, broker_label=label, api_key=api_key(settings)
    )


def _checked(build: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``build(...)``, its ValueError raised as a ConfigError."""
    try:
        return build(*args, **kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _read(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
