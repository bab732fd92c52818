"""Rules read from what the healthy receivers got: loss, misdelivery, latency, ok."""

from __future__ import annotations

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import count, num
from fanout.lab.diagnosis._words import either_and, plural
from fanout.lab.document import Cause, Severity, Verdict


def loss(run: Run) -> Verdict | None:
    """Loss that no other rule explains (the caller decides what is explained)."""
    if run.lost == 0:
        return None
    holes, stuck = run.total("lost_holes"), run.total("lost_stuck")
    announced = run.total("gap_announced")
    share = 100 * run.lost / run.expected if run.expected else None
    of = f" of {fmt.count(run.expected)}" if run.expected else ""
    pct = f" ({fmt.short_pct(share)})" if share is not None else ""
    summary = f"{fmt.count(run.lost)}{of} messages never reached the healthy receivers{pct}"
    if announced >= run.lost:
        summary += ", all of them announced by the server with gap frames"
        severity = Severity.WARN
    else:
        severity = Severity.BREAK
        parts = []
        if holes:
            parts.append(f"{fmt.count(holes)} missing between messages that did arrive")
        if stuck:
            parts.append(f"{fmt.count(stuck)} after the last message a stream got")
        if announced:
            parts.append(f"{fmt.count(announced)} announced with gap frames")
        if parts:
            summary += ": " + ", ".join(parts)
    return Verdict(
        Cause.LOSS,
        severity,
        summary,
        {
            "expected": run.expected,
            "delivered": run.delivered,
            "lost": run.lost,
            "lost_percent": round(share, 3) if share is not None else None,
            "lost_holes": holes,
            "lost_stuck": stuck,
            "gap_announced": announced,
            "duplicated": run.total("duplicated"),
            "out_of_order": run.total("out_of_order"),
        },
    )


def backpressure(run: Run) -> Verdict | None:
    """Messages the senders could not send: the server stopped reading them."""
    skipped = run.total("skipped")
    if not skipped:
        return None
    attempted = run.total("sent") + skipped
    return Verdict(
        Cause.BACKPRESSURE,
        Severity.BREAK,
        f"the server stopped reading the senders: {fmt.count(skipped)} of {fmt.count(attempted)}"
        f" messages could not be sent ({fmt.short_pct(100 * skipped / attempted)})",
        {
            "skipped": skipped,
            "sent": run.total("sent"),
            "asked_send_rate": run.asked_send_rate,
            "achieved_send_rate": run.sent_rate,
            "lost": run.lost,
        },
    )


def misdelivery(run: Run) -> Verdict | None:
    duplicated, out_of_order = run.total("duplicated"), run.total("out_of_order")
    got = either_and(
        f"{fmt.count(duplicated)} duplicated" if duplicated else "",
        f"{fmt.count(out_of_order)} out-of-order" if out_of_order else "",
    )
    if not got:  # neither
        return None
    return Verdict(
        Cause.MISDELIVERY,
        Severity.BREAK,
        f"the healthy receivers got {got} messages (of {fmt.count(run.delivered)} delivered)",
        {
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "delivered": run.delivered,
            "expected": run.expected,
        },
    )


def latency_slo(run: Run) -> Verdict | None:
    p99 = run.p99_ms
    if p99 is None or p99 <= run.slo_ms:
        return None
    p50, worst = num(run.latency.get("p50")), num(run.latency.get("max"))
    detail = [
        f"p50 {fmt.short_ms(p50)}" if p50 is not None else "",
        f"max {fmt.short_ms(worst)}" if worst else "",
    ]
    extra = ", ".join(part for part in detail if part)
    return Verdict(
        Cause.LATENCY_SLO,
        Severity.WARN,
        f"p99 latency was {fmt.short_ms(p99)}, over the {fmt.short_ms(run.slo_ms)} objective"
        + (f" ({extra})" if extra else ""),
        {
            "p99_ms": p99,
            "slo_p99_ms": run.slo_ms,
            "p50_ms": p50,
            "p999_ms": num(run.latency.get("p999")),
            "max_ms": worst,
            "count": count(run.latency.get("count")),
        },
    )


def no_traffic(run: Run) -> Verdict | None:
    if run.expected or run.total("sent") or run.delivered:
        return None
    return Verdict(
        Cause.NO_TRAFFIC,
        Severity.WARN,
        "no message was sent, so this run measured nothing",
        {"sent": 0, "expected": 0, "delivered": 0, "senders": len(run.senders)},
    )


def ok(run: Run) -> Verdict:
    p99 = run.p99_ms
    latency = (
        f", p99 {fmt.short_ms(p99)} (objective {fmt.short_ms(run.slo_ms)})"
        if p99 is not None
        else ""
    )
    rate = run.achieved_deliveries_per_s
    pace = f" at {fmt.short(rate)} deliveries/s" if rate else ""
    return Verdict(
        Cause.OK,
        Severity.INFO,
        f"the server kept up: {plural(run.n_stable, 'receiver')} got all"
        f" {fmt.count(run.delivered)} messages{pace}{latency}",
        {
            "delivered": run.delivered,
            "expected": run.expected,
            "deliveries_per_s": rate,
            "p99_ms": p99,
            "slo_p99_ms": run.slo_ms,
        },
    )
