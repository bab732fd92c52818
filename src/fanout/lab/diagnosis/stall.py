"""Rules read from the stable receivers' delivery while some readers stall."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import code, count, mean, median, num, num0
from fanout.lab.diagnosis._words import close_counts, plural
from fanout.lab.document import Cause, Severity, Verdict

#: A server send queue to the stalled sockets at least this large means the server was
#: writing to them and they were not reading: the head of line. The healthy receivers'
#: queues must stay below it (and below half the stalled ones') for the stall to be theirs.
HOL_SEND_Q_BYTES = 64 * 1024
#: The stable receivers' delivery rate fell below this share of its rate before the stall.
STALL_RATIO = 0.5
#: ... for at least this long.
STALL_MIN_S = 1.0
#: Without a timeline: the stable receivers got less than this share of their messages,
#: the rest stuck (never arrived after the last delivered) on connections still open.
STUCK_DELIVERED_SHARE = 0.9


@dataclass(frozen=True)
class Stall:
    rate_before: float
    rate_after: float
    from_s: float

    @property
    def share_percent(self) -> float:
        return 100 * self.rate_after / self.rate_before


def delivery_rates(run: Run) -> list[tuple[float, float]]:
    """(t, deliveries/s) per tick: ``deliveries_per_s``, else from cumulative ``delivered``."""
    rates = [
        (num0(tick.get("t")), rate)
        for tick in run.ticks
        if (rate := num(tick.get("deliveries_per_s"))) is not None
    ]
    if rates:
        return rates
    previous_t, previous_delivered = 0.0, 0.0
    for tick in run.ticks:
        t, delivered = num0(tick.get("t")), num(tick.get("delivered"))
        if delivered is None or t <= previous_t:
            continue
        rates.append((t, max(0.0, (delivered - previous_delivered) / (t - previous_t))))
        previous_t, previous_delivered = t, delivered
    return rates


def find_stall(run: Run) -> Stall | None:
    """The stable receivers' delivery rate collapsing after the slow readers stopped.

    The timeline counts every receiver: before ``slow_after_s`` the slow ones read too,
    so the rate the stable ones had then is the whole rate times their share.
    """
    rates = delivery_rates(run)
    if len(rates) < 3:
        return None
    tick = median([b - a for (a, _), (b, _) in pairwise(rates)]) or 0.5
    start = run.slow_after_s
    before = median([r for t, r in rates if 0 < t <= start + tick / 4]) or median(
        [r for t, r in rates if 0 < t <= start + tick]
    )
    if not before or before <= 0:
        return None
    everyone = len(run.receivers) or run.n_stable + run.n_slow
    before *= (everyone - run.n_slow) / everyone if everyone > run.n_slow else 1.0
    after = [(t, r) for t, r in rates if start + 0.5 <= t and run.sending(t)]
    for i, (t, r) in enumerate(after):
        if r >= STALL_RATIO * before:
            continue
        rest = [rate for _, rate in after[i:]]
        span = after[-1][0] - t + tick
        rate_after = mean(rest) or 0.0
        if span >= STALL_MIN_S - tick / 4 and rate_after < STALL_RATIO * before:
            return Stall(before, rate_after, max(start, round(t - tick, 1)))
    return None


@dataclass(frozen=True)
class Queues:
    slow: float | None  # largest send queue to the slow sockets (bytes); None: not observed
    stable: float | None
    largest: float | None  # ``send_q_max``, whatever the socket


def send_queues(run: Run, since: float) -> Queues:
    slow: list[float] = []
    stable: list[float] = []
    largest: list[float] = []
    for sample in run.samples:
        if num0(sample.get("t")) < since:
            continue
        by_kind = sample.get("send_q_by_kind")
        if isinstance(by_kind, dict):
            if (q := num(by_kind.get("slow"))) is not None:
                slow.append(q)
            if (q := num(by_kind.get("stable"))) is not None:
                stable.append(q)
        if (q := num(sample.get("send_q_max"))) is not None:
            largest.append(q)
    return Queues(
        max(slow) if slow else None, max(stable) if stable else None, max(largest, default=None)
    )


def stuck_on_open_connections(run: Run) -> int:
    stable = run.receivers_of("stable")
    if not stable:
        return run.total("lost_stuck")
    return sum(count(r.get("lost_stuck")) for r in stable if code(r.get("close_code")) is None)


def slow_cut_cleanly(run: Run) -> bool:
    cut = [r for r in run.receivers_of("slow") if code(r.get("close_code")) is not None]
    return bool(cut) and run.expected > 0 and run.lost == 0


def hol_blocking(run: Run) -> Verdict | None:
    if run.n_slow == 0 or slow_cut_cleanly(run):
        return None
    stall = find_stall(run)
    stuck = stuck_on_open_connections(run)
    share = run.delivered / run.expected if run.expected else None
    stuck_far_below = stuck > 0 and share is not None and share < STUCK_DELIVERED_SHARE
    if stall is None and not stuck_far_below:
        return None
    queues = send_queues(run, since=run.slow_after_s)
    if queues.slow is not None and queues.slow < HOL_SEND_Q_BYTES:
        return None  # the server was not blocked writing to the stalled sockets
    # Queues are summed per kind: compare what one healthy socket held with one stalled.
    per_stable = queues.stable / max(1, run.n_stable) if queues.stable is not None else None
    per_slow = queues.slow / max(1, run.n_slow) if queues.slow is not None else None
    if (
        per_slow is not None
        and per_stable is not None
        and per_stable >= max(HOL_SEND_Q_BYTES, per_slow / 2)
    ):
        return None  # the healthy receivers were not reading either: not the stalled ones

    readers = "a stalled reader" if run.n_slow == 1 else f"{run.n_slow} stalled readers"
    healthy = plural(run.n_stable, "healthy receiver")
    if stall is not None:
        got = (
            f"got {fmt.short_pct(stall.share_percent)} of the messages after t={stall.from_s:.1f} s"
        )
    else:
        got = (
            f"got {fmt.short_pct(100 * (share or 0))} of their messages,"
            f" {fmt.count(stuck)} never came"
        )
    if queues.slow is not None:
        queued = fmt.short_bytes(queues.slow)
        sockets = "socket" if run.n_slow == 1 else "sockets"
        where = f" while the server's send queue to the stalled {sockets} stood at {queued}"
    elif queues.largest is not None and run.samples:
        where = (
            f" while the server's largest send queue stood at {fmt.short_bytes(queues.largest)}"
            " (its sockets were not told apart)"
        )
    else:
        where = " (the server's socket queues were not observed)"
    return Verdict(
        Cause.HOL_BLOCKING,
        Severity.BREAK,
        f"{readers} held up the broadcast: {healthy} {got}{where}",
        {
            "slow_receivers": run.n_slow,
            "stable_receivers": run.n_stable,
            "slow_after_s": run.slow_after_s,
            "stall_from_s": stall.from_s if stall else None,
            "stable_rate_before": stall.rate_before if stall else None,
            "stable_rate_after": stall.rate_after if stall else None,
            "delivered_share_after_percent": round(stall.share_percent, 1) if stall else None,
            "slow_send_q_bytes": queues.slow,
            "stable_send_q_bytes": queues.stable,
            "send_q_max_bytes": queues.largest,
            "expected": run.expected,
            "delivered": run.delivered,
            "lost": run.lost,
            "lost_stuck": run.total("lost_stuck"),
            "lost_holes": run.total("lost_holes"),
            "skipped": run.total("skipped"),
        },
    )


def slow_consumer_cut(run: Run) -> Verdict | None:
    if not slow_cut_cleanly(run):
        return None
    codes: Counter[int] = Counter()
    for receiver in run.receivers_of("slow"):
        if (close := code(receiver.get("close_code"))) is not None:
            codes[close] += 1
    cut = sum(codes.values())
    return Verdict(
        Cause.SLOW_CONSUMER_CUT,
        Severity.INFO,
        f"the server cut {plural(cut, 'slow receiver')} with {close_counts(codes)} and the"
        f" {plural(run.n_stable, 'healthy receiver')} got all {fmt.count(run.expected)} messages",
        {
            "slow_receivers": run.n_slow,
            "slow_closed": cut,
            "close_codes": {str(close): n for close, n in codes.items()},
            "stable_receivers": run.n_stable,
            "expected": run.expected,
            "delivered": run.delivered,
        },
    )
