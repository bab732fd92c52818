"""What one lab run is asked to do: a frozen, validated, picklable description."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

Mode = Literal["plain", "v1"]
Kind = Literal["text", "binary", "jpeg", "png"]
MODES: tuple[Mode, ...] = ("plain", "v1")
KINDS: tuple[Kind, ...] = ("text", "binary", "jpeg", "png")

# Every run is bounded: these are the largest values the lab accepts.
MAX_CONNECTIONS = 20_000
MAX_DURATION_S = 600.0
MAX_SIZE = 256 * 1024 * 1024
MAX_PROCESSES = 16
# At most this many messages per sender and run, whatever the rate and duration.
MAX_MESSAGES_PER_SENDER = 10_000_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)


class ConfigError(ValueError):
    """A run description the lab refuses, with the reason in words."""


def parse_size(text: str) -> int:
    """``200``, ``64k``, ``1.5MiB``, ``16m`` -> bytes (k, m, g are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"not a size: {text!r} (examples: 200, 64k, 1MiB, 16m)")
    number, unit = float(m.group(1)), m.group(2).lower()
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    return int(number * factor)


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % (factor // 1024 or 1) == 0:
            value = n / factor
            return f"{value:g} {unit}"
    return f"{n} B"


def check_loopback(url: str) -> tuple[str, int]:
    """The lab only ever targets this machine: refuse any other host."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http"):
        raise ConfigError(f"{url!r}: the lab speaks ws:// (no TLS) to this machine only")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"{url!r}: the lab only targets this machine (127.0.0.1, ::1 or localhost)"
        )
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"{url!r}: bad port") from exc
    return host, port


@dataclass(frozen=True)
class BenchConfig:
    url: str
    # Where the senders connect, when not to ``url`` (another node of the same hub).
    sender_url: str | None = None
    mode: Mode = "plain"
    receivers: int = 10
    senders: int = 1
    rooms: int = 1
    size: int = 200
    kind: Kind = "text"
    # Messages per second per sender; None: as fast as the in-flight window allows.
    rate: float | None = 100.0
    window: int = 64
    # Messages per sender at most (the run also ends at duration_s): exact counts.
    count: int | None = None
    ramp_s: float = 0.0
    duration_s: float = 10.0
    drain_s: float = 5.0
    slow: int = 0
    slow_after_s: float = 1.0
    churn: int = 0
    churn_every_s: float = 1.0
    churn_abort: bool = False
    processes: int = 1
    slo_p99_ms: float = 100.0
    connect_timeout_s: float = 10.0
    server_pid: int | None = None
    server_cmd: str | None = None
    metrics_url: str | None = None

    def __post_init__(self) -> None:
        check_loopback(self.url)
        if self.sender_url is not None:
            check_loopback(self.sender_url)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for name in ("receivers", "senders", "rooms", "slow", "churn", "window", "processes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.senders < 1:
            raise ConfigError("at least one sender is needed")
        if self.rooms < 1:
            raise ConfigError("at least one room is needed")
        if self.receivers + self.senders + self.churn > MAX_CONNECTIONS:
            raise ConfigError(f"at most {MAX_CONNECTIONS} connections per run")
        if self.slow > self.receivers:
            raise ConfigError("slow receivers are counted among --receivers: slow <= receivers")
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise ConfigError(f"processes must be between 1 and {MAX_PROCESSES}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ConfigError(f"duration must be in (0, {MAX_DURATION_S:g}] seconds")
        if not 0 <= self.drain_s <= 120:
            raise ConfigError("drain must be between 0 and 120 seconds")
        if self.ramp_s < 0 or self.ramp_s > self.duration_s:
            raise ConfigError("ramp must be between 0 and the duration")
        if self.rate is not None and not 0 < self.rate <= 1_000_000:
            raise ConfigError("rate must be in (0, 1000000] messages/s per sender")
        if self.count is not None and not 1 <= self.count <= MAX_MESSAGES_PER_SENDER:
            raise ConfigError(f"count must be between 1 and {MAX_MESSAGES_PER_SENDER}")
        if self.rate is None and self.window < 1:
            raise ConfigError("as-fast-as-possible sending needs a window of at least 1")
        if not 41 <= self.size <= MAX_SIZE:
            raise ConfigError(f"size must be between 41 bytes and {format_size(MAX_SIZE)}")
        if self.churn and self.churn_every_s < 0.05:
            raise ConfigError("churn every must be at least 0.05 s")
        if self.slo_p99_ms <= 0:
            raise ConfigError("the p99 SLO must be positive")
        if self.rooms > 1 and self.mode == "plain" and "{room}" not in self.url:
            raise ConfigError(
                "several rooms in plain mode need '{room}' in the URL, e.g. ws://host:port/ws/{room}"
            )
        if self.rooms > 1 and self.mode == "plain" and "{room}" not in self.senders_url:
            raise ConfigError("several rooms in plain mode need '{room}' in the sender URL too")
        if self.server_pid is not None and self.server_cmd is not None:
            raise ConfigError(
                "observe a server by --server-pid or start one with --server-cmd, not both"
            )
        if self.metrics_url is not None:
            check_metrics = self.metrics_url.replace("https://", "ws://").replace(
                "http://", "ws://"
            )
            check_loopback(check_metrics)

    @property
    def host(self) -> str:
        return check_loopback(self.url)[0]

    @property
    def port(self) -> int:
        return check_loopback(self.url)[1]

    @property
    def senders_url(self) -> str:
        return self.sender_url or self.url

    def endpoint(self, *, sender: bool = False) -> tuple[str, int]:
        """Host and port the receivers (or the senders) connect to."""
        return check_loopback(self.senders_url if sender else self.url)

    def room_name(self, index: int) -> str:
        return f"lab-{index % self.rooms}"

    def path_for(self, room: str, *, sender: bool = False) -> str:
        parts = urlsplit(self.senders_url if sender else self.url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return path.replace("{room}", room)

    def messages_per_sender(self) -> int:
        """The most a sender may send: the run is bounded in count as well as time."""
        limit = self.count or MAX_MESSAGES_PER_SENDER
        if self.rate is None:
            return limit
        due = self.rate * (self.duration_s - self.ramp_s / 2) + (1 if self.ramp_s == 0 else 0)
        return min(limit, max(1, int(due)))

    def replace(self, **changes: Any) -> BenchConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
