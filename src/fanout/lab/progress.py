"""Live progress of a run: sent, delivered, lost so far, p99, CPU.

On a terminal, a ``rich`` live line redrawn every tick; elsewhere (CI logs, pipes), one
plain line every couple of seconds so a long run still shows it is alive.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from fanout.lab.config import BenchConfig

_PLAIN_EVERY_S = 2.0


class Progress:
    def __init__(self, config: BenchConfig, console: Console, *, label: str = "") -> None:
        self.config = config
        self.console = console
        self.label = label
        self.live: Live | None = None
        self._last_plain = 0.0
        self._last_phase: Any = None
        self._server: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(
                Text("connecting ..."), console=self.console, refresh_per_second=8, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.__exit__(exc_type, exc, tb)
            self.live = None

    def server(self, sample: dict[str, Any]) -> None:
        """The latest server sample (CPU, RSS), shown next to the run's figures."""
        self._server = sample

    def __call__(self, snapshot: dict[str, Any]) -> None:
        text = self.render(snapshot)
        if self.live is not None:
            self.live.update(Text(text))
            return
        now = time.monotonic()
        phase = snapshot.get("phase")
        if phase != self._last_phase or now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = now
            self._last_phase = phase
            self.console.print(text, highlight=False, soft_wrap=True)

    def render(self, s: dict[str, Any]) -> str:
        phase = str(s.get("phase", ""))
        head = f"{self.label} " if self.label else ""
        if phase == "connected":
            errors = s.get("connect_errors") or {}
            failed = f", failed: {errors}" if errors else ""
            receivers, senders = s.get("receivers", 0), s.get("senders", 0)
            return f"{head}connected {receivers} receivers, {senders} senders{failed}"
        if "t" not in s:
            return f"{head}{phase}"
        parts = [
            f"{head}{phase:8} t={s['t']:5.1f}/{self.config.duration_s:g}s",
            f"sent {s['sent']:,}",
            f"delivered {s['delivered']:,} ({s['deliveries_per_s']:,.0f}/s)",
            f"lost so far {s['lost_holes']:,}",
            f"p99 {s['p99_ms']:.1f} ms",
            "gen cpu " + "/".join(f"{c:.0f}%" for c in s.get("generator_cpu", [])),
        ]
        if s.get("skipped"):
            parts.insert(2, f"not sent (server not reading) {s['skipped']:,}")
        if self._server:
            cpu = self._server.get("cpu_percent")
            rss = self._server.get("rss_bytes")
            if cpu is not None:
                parts.append(f"server cpu {cpu:.0f}%")
            if rss:
                parts.append(f"rss {rss / 2**20:.0f} MiB")
        return " | ".join(parts)
