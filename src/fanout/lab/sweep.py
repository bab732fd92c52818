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

from fanout.lab import fmt
from fanout.lab.config import BenchConfig, ConfigError, format_size
from fanout.lab.document import SWEEP_SCHEMA
from fanout.lab.results import provenance

RunFn = Callable[[BenchConfig, str], dict[str, Any]]
Announce = Callable[[str], None] | None

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
        holes, stuck = fmt.count(t["lost_holes"]), fmt.count(t["lost_stuck"])
        reasons.append(f"lost {fmt.count(t['lost'])} (holes {holes}, stuck {stuck})")
    if t["send_errors"]:
        reasons.append(f"send errors {fmt.count(t['send_errors'])}")
    if t.get("skipped"):
        reasons.append(f"server stopped reading: {fmt.count(t['skipped'])} not sent")
    if t["connect_failures"]:
        reasons.append(f"connect failures {fmt.count(t['connect_failures'])} {t['connect_errors']}")
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


class _Walk:
    """Runs the grid, records every step, and knows which lines already broke."""

    def __init__(self, base: BenchConfig, axes: Axes, run: RunFn, announce: Announce) -> None:
        self.base, self.axes, self.run, self.announce = base, axes, run, announce
        self.steps: list[dict[str, Any]] = []
        self.breaking: list[dict[str, Any]] = []

    def step(self, point: dict[str, Any]) -> list[str]:
        config = self.base.replace(
            size=point["size"],
            rate=point["rate"],
            receivers=point["receivers"],
            slow=round(point["receivers"] * point["slow"]),
        )
        label = point_label(point)
        if self.announce is not None:
            self.announce(
                f"step {len(self.steps) + 1} (at most {self.axes.steps_at_most()}): {label}"
            )
        doc = self.run(config, label)
        reasons = break_reasons(doc)
        self.steps.append(
            {
                "point": point,
                "broke": bool(reasons),
                "reasons": reasons,
                "valid": doc["valid"],
                "invalid_reasons": doc.get("invalid_reasons", []),
                "totals": doc["totals"],
                "latency_ms": doc["latency_ms"],
                "verdicts": doc["verdicts"],
            }
        )
        if self.announce is not None:
            self.announce("  -> " + ("BREAK: " + "; ".join(reasons) if reasons else "ok"))
        return reasons

    def broke(
        self, axis: str, fixed: dict[str, Any], first: Any, last_ok: Any, reasons: list[str]
    ) -> None:
        """Record a breaking point, on axes that were actually swept."""
        if len(getattr(self.axes, _AXIS_FIELDS[axis])) > 1:
            self.breaking.append(
                {
                    "axis": axis,
                    "fixed": fixed,
                    "first_break": first,
                    "last_ok": last_ok,
                    "reasons": reasons,
                }
            )

    def rates(self, size: int, receivers: int, share: float) -> tuple[float | None, list[str]]:
        """Rates upwards until one breaks: (last rate that held, why the next broke)."""
        last_ok: float | None = None
        for rate in self.axes.rates:
            point = {"size": size, "rate": rate, "receivers": receivers, "slow": share}
            reasons = self.step(point)
            if reasons:
                fixed = {"size": size, "receivers": receivers, "slow": share}
                self.broke("rate", fixed, rate, last_ok, reasons)
                return last_ok, reasons
            last_ok = rate
        return last_ok, []

    def sizes(self, receivers: int, share: float) -> list[str]:
        """Sizes upwards until even the lowest rate breaks; the reasons if the first did."""
        last_ok: int | None = None
        for size in self.axes.sizes:
            held, reasons = self.rates(size, receivers, share)
            if held is None:
                fixed = {"rate": self.axes.rates[0], "receivers": receivers, "slow": share}
                self.broke("size", fixed, size, last_ok, reasons)
                return reasons if last_ok is None else []
            last_ok = size
        return []

    def grid(self) -> None:
        last_ok_receivers: int | None = None
        for receivers in self.axes.receivers:
            last_ok_share: float | None = None
            first_reasons: list[str] = []
            for share in self.axes.slow_shares:
                reasons = self.sizes(receivers, share)
                if reasons:  # the smallest size at the lowest rate broke
                    fixed = {
                        "size": self.axes.sizes[0],
                        "rate": self.axes.rates[0],
                        "receivers": receivers,
                    }
                    self.broke("slow", fixed, share, last_ok_share, reasons)
                    if last_ok_share is None:
                        first_reasons = reasons
                    break
                last_ok_share = share
            if first_reasons:  # even no slow receivers broke: more receivers will too
                fixed = {
                    "size": self.axes.sizes[0],
                    "rate": self.axes.rates[0],
                    "slow": self.axes.slow_shares[0],
                }
                self.broke("receivers", fixed, receivers, last_ok_receivers, first_reasons)
                return
            last_ok_receivers = receivers


_AXIS_FIELDS = {"size": "sizes", "rate": "rates", "receivers": "receivers", "slow": "slow_shares"}


def sweep(
    base: BenchConfig,
    axes: Axes,
    run: RunFn,
    *,
    argv: Sequence[str] | None = None,
    announce: Announce = None,
) -> dict[str, Any]:
    """Walk the grid (each line upwards, stopping at its first break)."""
    walk = _Walk(base, axes, run, announce)
    walk.grid()
    breaking = walk.breaking
    if not breaking:
        broken = [s for s in walk.steps if s["broke"]]
        if broken:  # a single point was asked for, and it broke
            breaking = [
                {
                    "axis": "point",
                    "fixed": broken[0]["point"],
                    "first_break": None,
                    "last_ok": None,
                    "reasons": broken[0]["reasons"],
                }
            ]
    return {
        "schema": SWEEP_SCHEMA,
        **provenance(list(argv) if argv is not None else None),
        "axes": axes.to_json(),
        "base_config": base.to_json(),
        "steps": walk.steps,
        "breaking_points": breaking,
    }
