"""The run document as the rules read it: its sections, and the figures they share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from typing import Any

from fanout.lab.diagnosis._values import code, count, num, num0
from fanout.lab.document import JSONObject, RunView, as_mapping, mapping

#: Ticks and samples are taken a little after their nominal time: this much is forgiven.
SLACK_S = 0.1


class Run(RunView):
    """A read-only, never-raising view of one run document (any value: a non-object
    reads as an empty document), with the figures the rules share."""

    def __init__(self, doc: Any) -> None:
        self.raw = as_mapping(doc)

    def receivers_of(self, kind: str) -> list[JSONObject]:
        return [r for r in self.receivers if r.get("kind") == kind]

    @cached_property
    def ticks(self) -> list[JSONObject]:
        """The timeline's ticks that have a time, in time order."""
        ticks = [t for t in self.timeline if num(t.get("t")) is not None]
        return sorted(ticks, key=lambda tick: num0(tick.get("t")))

    @cached_property
    def samples(self) -> list[JSONObject]:
        """The server's samples that have a time, in time order; empty without server
        observation."""
        found = [s for s in self.server_samples if num(s.get("t")) is not None]
        return sorted(found, key=lambda sample: num0(sample.get("t")))

    # config

    @cached_property
    def n_slow(self) -> int:
        if self.receivers:
            return len(self.receivers_of("slow"))
        slow = num0(self.config.get("slow"))
        if 0 < slow < 1:  # a share of the receivers (sweeps vary it as a fraction)
            return max(1, round(slow * num0(self.config.get("receivers"))))
        return count(slow)

    @cached_property
    def n_stable(self) -> int:
        if self.receivers:
            return len(self.receivers_of("stable"))
        rest = count(self.config.get("receivers")) - self.n_slow - count(self.config.get("churn"))
        return max(0, rest)

    @cached_property
    def n_connections(self) -> int:
        listed = len(self.receivers) + len(self.senders)
        if listed:
            return listed
        return count(self.config.get("receivers")) + count(self.config.get("senders"))

    @cached_property
    def slow_after_s(self) -> float:
        return num0(self.config.get("slow_after_s"))

    @cached_property
    def slo_ms(self) -> float:
        slo = num(self.config.get("slo_p99_ms"))
        return 100.0 if slo is None or slo <= 0 else slo

    @cached_property
    def send_end(self) -> float:
        """When sending stopped: ``duration_s``, else the last tick or sample."""
        duration = num(self.config.get("duration_s"))
        if duration is not None and duration > 0:
            return duration
        for series in (self.ticks, self.samples):
            if series:
                return num0(series[-1].get("t"))
        return 0.0

    def sending(self, t: float) -> bool:
        """Whether ``t`` falls in the sending period (ticks and samples come a little late)."""
        return 0 <= t <= self.send_end + SLACK_S

    # totals

    def total(self, key: str) -> int:
        return count(self.totals.get(key))

    @cached_property
    def expected(self) -> int:
        return self.total("expected")

    @cached_property
    def delivered(self) -> int:
        return self.total("delivered")

    @cached_property
    def lost(self) -> int:
        lost = self.total("lost")
        if lost == 0 and "lost" not in self.totals and self.expected > self.delivered:
            return self.expected - self.delivered
        return lost

    @cached_property
    def p99_ms(self) -> float | None:
        if count(self.latency.get("count")) == 0 and "count" in self.latency:
            return None
        return num(self.latency.get("p99"))

    @cached_property
    def achieved_deliveries_per_s(self) -> float | None:
        """Deliveries per second to the stable receivers (``totals.deliveries_per_s``
        counts every receiver, slow ones included: only the fallback)."""
        if self.send_end > 0 and (self.expected or self.delivered):
            return self.delivered / self.send_end
        return num(self.totals.get("deliveries_per_s"))

    @cached_property
    def offered_deliveries_per_s(self) -> float | None:
        """Deliveries per second the stable receivers were offered: what was sent to them,
        scaled up by what the senders could not send (``skipped``: the server not reading)."""
        if self.send_end <= 0 or not self.expected:
            return None
        sent, skipped = self.total("sent"), self.total("skipped")
        scale = (sent + skipped) / sent if sent else 1.0
        return self.expected * scale / self.send_end

    @cached_property
    def asked_send_rate(self) -> float | None:
        """Messages per second the senders were asked to send, ramp allowed for."""
        rate = num(self.config.get("rate"))
        senders = len(self.senders) or count(self.config.get("senders"))
        if rate is None or rate <= 0 or senders == 0 or self.send_end <= 0:
            return None
        ramp = min(num0(self.config.get("ramp_s")), self.send_end)
        return rate * senders * (1 - ramp / (2 * self.send_end))  # a linear ramp sends half

    @cached_property
    def sent_rate(self) -> float | None:
        return self.total("sent") / self.send_end if self.send_end > 0 else None

    # closes

    def closes(self, conns: Iterable[JSONObject], close: int) -> int:
        return sum(1 for c in conns if code(c.get("close_code")) == close)

    @cached_property
    def close_codes(self) -> Counter[int]:
        """Close codes the server sent: the totals, or the connections when they say more."""
        totals: Counter[int] = Counter()
        for key, n in mapping(self.totals, "close_codes").items():
            close = code(key)
            if close is not None:
                totals[close] += count(n)
        listed: Counter[int] = Counter()
        for conn in [*self.receivers, *self.senders]:
            close = code(conn.get("close_code"))
            if close is not None:
                listed[close] += 1
        return totals | listed  # the larger count of each

    @cached_property
    def connect_errors(self) -> dict[str, int]:
        found = mapping(self.totals, "connect_errors")
        return {str(k).strip().lower(): count(n) for k, n in found.items() if count(n) > 0}

    @cached_property
    def stable_unconnected(self) -> int:
        return sum(1 for r in self.receivers_of("stable") if r.get("connect_error"))
