"""Rules read from the observed server process's CPU (its memory: :mod:`.memory`)."""

from __future__ import annotations

from itertools import pairwise

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import mean, median, num, num0
from fanout.lab.diagnosis._words import plural
from fanout.lab.document import Cause, JSONObject, Severity, Verdict

#: A sample at or above this share of one core counts as the server being busy.
CPU_BUSY_PERCENT = 90.0
#: ... and busy for at least this share of the sending period means CPU-bound.
CPU_BUSY_SHARE = 0.5
#: Short of that, a server averaging this much (and peaking over CPU_BUSY_PERCENT) that
#: fell behind with its latency growing was short of CPU: the machine was shared.
CPU_STRAINED_MEAN_PERCENT = 50.0
#: ... or, whatever its peak, a server averaging that much while the whole machine was
#: this busy (median, % of all cores: steal time included) was short of CPU too.
MACHINE_BUSY_PERCENT = 90.0
#: Delivering (or sending) below this share of what was offered is falling behind.
BEHIND_SHARE = 0.9
#: Latency "grows" when the last third's median p50 is this many times the first third's
#: and at least LATENCY_GROWTH_MIN_MS higher.
LATENCY_GROWTH_FACTOR = 2.0
LATENCY_GROWTH_MIN_MS = 5.0


def latency_growth(run: Run) -> tuple[float, float] | None:
    """(first third, last third) median p50 over the sending period, when it grew."""
    p50s = [
        p50
        for tick in run.ticks
        if run.sending(num0(tick.get("t"))) and (p50 := num(tick.get("p50_ms"))) is not None
    ]
    if len(p50s) < 3:
        return None
    size = len(p50s) // 3
    first, last = median(p50s[:size]) or 0.0, median(p50s[-size:]) or 0.0
    if last >= LATENCY_GROWTH_FACTOR * first and last - first >= LATENCY_GROWTH_MIN_MS:
        return first, last
    return None


def _sample_step(samples: list[JSONObject]) -> float:
    """The time between samples (median), 0 with fewer than two."""
    times = [num0(s.get("t")) for s in samples]
    return median([b - a for a, b in pairwise(times)]) or 0.0


def server_cpu(run: Run) -> Verdict | None:
    # A sample's CPU is over the step before it: the first one after the start of
    # sending is partly idle time, and would lower the mean of a saturated server.
    step = _sample_step(run.samples)
    sending = [s for s in run.samples if run.sending(t := num0(s.get("t"))) and t >= step]
    cpus = [cpu for s in sending if (cpu := num(s.get("cpu_percent"))) is not None]
    if len(cpus) < 2:
        return None
    busy_share = sum(1 for cpu in cpus if cpu >= CPU_BUSY_PERCENT) / len(cpus)
    cpu_mean, cpu_max = mean(cpus) or 0.0, max(cpus)
    machine = median([m for s in sending if (m := num(s.get("machine_cpu_percent"))) is not None])
    machine_busy = machine is not None and machine >= MACHINE_BUSY_PERCENT
    saturated = busy_share >= CPU_BUSY_SHARE
    # Short of a full core on a machine others were using: busy, behind, queue building.
    strained = cpu_mean >= CPU_STRAINED_MEAN_PERCENT and (
        cpu_max >= CPU_BUSY_PERCENT or machine_busy
    )
    if not saturated and not strained:
        return None
    offered, achieved = run.offered_deliveries_per_s, run.achieved_deliveries_per_s
    asked, sent = run.asked_send_rate, run.sent_rate
    deliveries_behind = bool(offered and achieved is not None and achieved < BEHIND_SHARE * offered)
    skipped = run.total("skipped")  # the server stopped reading the senders
    sends_behind = skipped > 0 or bool(asked and sent is not None and sent < BEHIND_SHARE * asked)
    behind = deliveries_behind or sends_behind or run.lost > 0
    p99 = run.p99_ms
    over_slo = p99 is not None and p99 > run.slo_ms
    growth = latency_growth(run)
    if saturated and not (behind or over_slo or growth):
        return None
    if not saturated and not (behind and growth):
        return None

    if deliveries_behind and offered and achieved is not None:
        outcome = (
            f", delivering {fmt.short(achieved)} of the {fmt.short(offered)} messages/s offered"
        )
        if skipped:
            outcome += f" ({plural(skipped, 'message')} could not be sent: it stopped reading)"
    elif skipped:
        outcome = f", so it stopped reading and {plural(skipped, 'message')} could not be sent"
    elif sends_behind and asked and sent is not None:
        outcome = (
            f", so the senders got {fmt.short(sent)} of the {fmt.short(asked)} messages/s through"
        )
    elif run.lost:
        outcome = f", and {plural(run.lost, 'message')} were lost"
    elif over_slo and p99 is not None:
        outcome = (
            f", and p99 latency reached {fmt.short_ms(p99)} (objective {fmt.short_ms(run.slo_ms)})"
        )
    elif growth:
        outcome = (
            f", and median latency grew from {fmt.short_ms(growth[0])} to {fmt.short_ms(growth[1])}"
        )
    else:
        outcome = ""
    if saturated:
        summary = (
            f"the server was CPU-bound: {fmt.short_pct(cpu_mean)} of a core on average (peak"
            f" {fmt.short_pct(cpu_max)}) for {fmt.short_pct(100 * busy_share)}"
            f" of the sending period{outcome}"
        )
    elif machine_busy and machine is not None:
        summary = (
            f"the server fell behind on its CPU{outcome}; it averaged"
            f" {fmt.short_pct(cpu_mean)} of a core (peak {fmt.short_pct(cpu_max)}) while the"
            f" machine's CPUs were {fmt.short_pct(machine)} busy: the machine was short of CPU"
        )
    else:
        summary = (
            f"the server fell behind on its CPU{outcome}; it averaged"
            f" {fmt.short_pct(cpu_mean)} of a core (peak {fmt.short_pct(cpu_max)}) without"
            " keeping a full one, so the machine was likely short of CPU"
        )
    return Verdict(
        Cause.SERVER_CPU,
        Severity.BREAK if behind else Severity.WARN,
        summary,
        {
            "mean_cpu_percent": round(cpu_mean, 1),
            "max_cpu_percent": cpu_max,
            "busy_share": round(busy_share, 3),
            "saturated": saturated,
            "samples": len(cpus),
            "machine_cpu_percent": machine,
            "machine_cpus": num(run.machine.get("cpus")),
            "offered_deliveries_per_s": offered,
            "achieved_deliveries_per_s": achieved,
            "asked_send_rate": asked,
            "achieved_send_rate": sent,
            "skipped": skipped,
            "p99_ms": p99,
            "slo_p99_ms": run.slo_ms,
            "p50_first_third_ms": growth[0] if growth else None,
            "p50_last_third_ms": growth[1] if growth else None,
            "lost": run.lost,
        },
    )
