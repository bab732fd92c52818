"""``fanout bench --sweep``: a grid over size x rate x receivers x slow share.

Each line of the grid is walked upwards and stops at its first break: rates rise for a
given size until one breaks; sizes rise until even the lowest rate breaks. A break is
loss, errors, closes of healthy connections, a server that stopped reading, or p99
over the SLO. Every step is a complete, bounded run (its own server when the lab
starts it, so one step's damage does not leak into the next).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fanout.lab.config import BenchConfig, ConfigError, format_size
from fanout.lab.results import SWEEP_SCHEMA, provenance

RunFn = Callable[[BenchConfig, str], dict[str, Any]]

# Codes that mean a healthy connection was closed (slow receivers being cut with 4008
# is the server protecting the others, not a break).
_NORMAL_CLOSES = {1000}


@dataclass(frozen=True)
class Axes:
    sizes: tuple[int, ...]
    rates: tuple[float, ...]
    receivers: tuple[int, ...]
    slow_shares: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("sizes", "rates", "receivers", "slow_shares"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"the sweep needs at least one value for {name}")
            if list(values) != sorted(values):
                raise ConfigError(f"sweep {name} must be given in increasing order")
        if any(not 0 <= s < 1 for s in self.slow_shares):
            raise ConfigError("slow shares must be in [0, 1)")

    def steps_at_most(self) -> int:
        return len(self.sizes) * len(self.rates) * len(self.receivers) * len(self.slow_shares)

    def to_json(self) -> dict[str, list[float]]:
        return {
            "size": list(self.sizes),
            "rate": list(self.rates),
            "receivers": list(self.receivers),
            "slow": list(self.slow_shares),
        }


def break_reasons(doc: dict[str, Any]) -> list[str]:
    """Why a run counts as broken; empty when the server handled the load."""
    t = doc["totals"]
    reasons = []
    if t["lost"]:
        reasons.append(f"lost {t['lost']:,} (holes {t['lost_holes']:,}, stuck {t['lost_stuck']:,})")
    if t["send_errors"]:
        reasons.append(f"send errors {t['send_errors']:,}")
    if t.get("skipped"):
        reasons.append(f"server stopped reading: {t['skipped']:,} not sent")
    if t["connect_failures"]:
        reasons.append(f"connect failures {t['connect_failures']:,} {t['connect_errors']}")
    healthy = [
        c
        for r in [*doc["receivers"], *doc["senders"]]
        if r.get("kind", "sender") != "slow"
        and (c := r.get("close_code")) is not None
        and c not in _NORMAL_CLOSES
    ]
    for code in sorted(set(healthy)):
        reasons.append(f"close {code} x{healthy.count(code)}")
    slo = float(doc["config"]["slo_p99_ms"])
    p99 = float(doc["latency_ms"]["p99"])
    if p99 > slo:
        reasons.append(f"p99 {p99:.1f} ms > {slo:g} ms")
    if not doc["valid"]:
        reasons.append("invalid: " + "; ".join(doc["invalid_reasons"]))
    return reasons


def point_label(point: dict[str, Any]) -> str:
    return (
        f"size {format_size(int(point['size']))}, rate {point['rate']:g}/s, "
        f"receivers {point['receivers']}, slow {point['slow']:.0%}"
    )


def sweep(
    base: BenchConfig,
    axes: Axes,
    run: RunFn,
    *,
    argv: Sequence[str] | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    breaking: list[dict[str, Any]] = []
    for receivers in axes.receivers:
        for share in axes.slow_shares:
            slow = round(receivers * share)
            last_ok_size: int | None = None
            for size in axes.sizes:
                fixed = {"size": size, "receivers": receivers, "slow": share}
                last_ok_rate: float | None = None
                first_break: dict[str, Any] | None = None
                for rate in axes.rates:
                    point = {**fixed, "rate": rate}
                    config = base.replace(size=size, rate=rate, receivers=receivers, slow=slow)
                    label = point_label(point)
                    if announce is not None:
                        announce(f"step {len(steps) + 1} (at most {axes.steps_at_most()}): {label}")
                    doc = run(config, label)
                    reasons = break_reasons(doc)
                    steps.append(
                        {
                            "point": point,
                            "broke": bool(reasons),
                            "reasons": reasons,
                            "valid": doc["valid"],
                            "totals": doc["totals"],
                            "latency_ms": doc["latency_ms"],
                            "verdicts": doc["verdicts"],
                        }
                    )
                    if announce is not None:
                        announce("  -> " + ("BREAK: " + "; ".join(reasons) if reasons else "ok"))
                    if reasons:
                        first_break = {"rate": rate, "reasons": reasons}
                        break
                    last_ok_rate = rate
                if first_break is not None:
                    breaking.append(
                        {
                            "axis": "rate",
                            "fixed": fixed,
                            "first_break": first_break["rate"],
                            "last_ok": last_ok_rate,
                            "reasons": first_break["reasons"],
                        }
                    )
                if last_ok_rate is None:
                    # Even the lowest rate broke: larger messages will not do better.
                    breaking.append(
                        {
                            "axis": "size",
                            "fixed": {"rate": axes.rates[0], "receivers": receivers, "slow": share},
                            "first_break": size,
                            "last_ok": last_ok_size,
                            "reasons": first_break["reasons"] if first_break else [],
                        }
                    )
                    break
                last_ok_size = size
    return {
        "schema": SWEEP_SCHEMA,
        **provenance(list(argv) if argv is not None else None),
        "axes": axes.to_json(),
        "base_config": base.to_json(),
        "steps": steps,
        "breaking_points": breaking,
    }
