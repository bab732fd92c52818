"""Every setting and limit, with its default and meaning. The environment is read here only.

This module is data: the schema, the environment, checks of single values. It imports
nothing from fanout; ``fanout.asgi.wiring`` turns settings into a hub, a broker and the
handshake checks (and refuses, at start, what cannot work together).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024
ENV_PREFIX = "FANOUT_"
MIN_ADMIN_KEY_CHARS = 16
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
    max_connections_per_user: int = _opt(
        0, "connections one user may have on each node; more are closed with 1013 (0: no limit)"
    )
    max_revocations: int = _opt(
        100_000, "users and tokens a node keeps refused (POST /api/revoke) at the same time"
    )
    presence_refresh_s: float = _opt(
        5.0,
        "how often each node writes its rooms' members again; a node that dies takes its"
        " members out of presence within twice this",
    )
    room_options: str = _opt(
        "",
        "options per room by pattern, first match wins:"
        " 'PATTERN:key=value,...;PATTERN:...' with history=N, history_age=SECONDS, presence=on|off,"
        " join_leave=on|off (default off), client_publish=on|off, e.g."
        " 'chat.*:join_leave=on;typing.*:presence=off,history=1'",
    )
    max_rooms_per_connection: int = _opt(100, "rooms one connection may subscribe to")
    room_pattern: str = _opt(
        "",
        "regular expression every room name must also fully match, e.g. 'chat\\.[a-z0-9-]+';"
        " empty: any name of 1-128 characters of A-Z a-z 0-9 _ . : @ -",
    )
    rate_frames_per_s: float = _opt(
        1000.0,
        "frames one connection may send per second (1 s burst); over it a fanout.v1 client"
        " gets error 'rate_limited', a plain client is paced: not read until it fits"
        " (0: no limit)",
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
    api_key: str = _opt(
        "",
        "key (16+ characters) that turns on the server HTTP API (/api/publish, broadcast,"
        " disconnect, unsubscribe, revoke, presence, presence_stats, history; see"
        " docs/server-api.md); callers send 'Authorization: apikey KEY'. Prefer"
        " FANOUT_API_KEY to the flag",
        secret=True,
    )
    admin_key: str = _opt(
        "",
        "key for the /admin dashboard (16+ characters); empty: the dashboard is off."
        " Prefer FANOUT_ADMIN_KEY to the flag",
        secret=True,
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
    write_delay_ms: float = _opt(
        0.0,
        "write each connection's frames at most once per this many ms, so under load several"
        " messages leave in one write (adds at most this much latency; 0: write at once)",
    )
    idempotency_max_ids: int = _opt(10_000, "publish ids remembered per room for retries")
    idempotency_ttl_s: float = _opt(300.0, "seconds a publish id is remembered for retries")
    ping_interval_s: float = _opt(20.0, "WebSocket ping interval (0 disables)")
    ping_timeout_s: float = _opt(20.0, "close a connection whose pong is this late")
    chat_page: bool = _opt(True, "serve the chat page at /")
    log_format: str = _opt(
        "text", "log lines as text (time level logger: message) or json (one object per line)"
    )
    metrics_dir: str = _opt(
        "",
        "directory where each process writes its metrics, so /metrics on any one covers all"
        " (--workers sets it; set it when another process manager runs several fanout"
        " processes on one machine)",
    )
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
    redis_ack_replicas: int = _opt(
        1,
        "a publish is acked once this many replicas of its Redis master have it (fewer if"
        " the master has fewer), so a failover cannot take an acked message back; 0: ack"
        " on the master's word",
    )

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, got {self.log_format!r}")
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
        keys = [
            k for k in ("secret", "secret_file", "public_key_file") if getattr(self, "auth_" + k)
        ]
        if len(keys) > 1:
            raise ValueError("give one of auth_secret, auth_secret_file, auth_public_key_file")
        if self.auth_algorithm_names and not keys:
            raise ValueError("auth_algorithms needs a key: auth_secret or auth_public_key_file")
        if not 0 <= self.port < 65536:
            raise ValueError("port must be 0-65535")
        if self.admin_key and (
            len(self.admin_key) < MIN_ADMIN_KEY_CHARS
            or not all("!" <= c <= "~" for c in self.admin_key)  # what a browser can send
        ):
            raise ValueError(
                f"admin_key must be at least {MIN_ADMIN_KEY_CHARS} characters, printable ASCII"
                " without spaces (make one with python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))')"
            )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_secret or self.auth_secret_file or self.auth_public_key_file)

    @property
    def auth_algorithm_names(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.auth_algorithms.split(",") if a.strip())

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
