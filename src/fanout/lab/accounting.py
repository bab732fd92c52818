"""Accounting for every message: what each receiver got, per sender stream.

Every payload carries ``(sender, seq, sent_ns)`` (``payloads.header``); each sender
numbers its messages 1, 2, 3, ... A receiver keeps, per sender, the highest ``seq`` it
got and the set of numbers below it that are still missing. From that, once the drain
period is over and the senders' totals are known:

- *delivered*: distinct messages that arrived;
- *holes*: missing below one that arrived on the same stream (the server skipped it);
- *stuck*: never arrived after the last one that did (the connection was stuck, closed
  or too slow to drain in time) -- told apart from holes on purpose: the causes differ;
- *duplicated*: a number that arrived again; *out of order*: one that arrived after a
  later one (it filled a hole, so it is delivered, and counted here too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Stream:
    """One sender's messages as one receiver saw them."""

    __slots__ = ("high", "missing")

    def __init__(self, high: int = 0) -> None:
        self.high = high
        self.missing: set[int] | None = None


@dataclass
class ReceiverTally:
    id: int
    kind: str  # "stable" | "slow" | "churn"
    room: str
    streams: dict[int, Stream] = field(default_factory=dict)
    delivered: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    gap_announced: int = 0
    connects: int = 0
    close_code: int | None = None
    connect_error: str | None = None
    latency_count: int = 0
    latency_sum_ns: int = 0
    latency_max_ns: int = 0
    # Churning receivers in plain mode cannot resume: their losses while away are not
    # losses of the server. In fanout.v1 they resume from their last offset, so they
    # are held to every message like the others.
    resumes: bool = True

    def note(self, sender: int, seq: int) -> None:
        """Account one arrival (the receive loop inlines this for the common case)."""
        st = self.streams.get(sender)
        if st is None:
            st = self.streams[sender] = Stream()
        high = st.high
        if seq == high + 1:
            st.high = seq
            self.delivered += 1
        elif seq > high:
            missing = st.missing
            if missing is None:
                missing = st.missing = set()
            missing.update(range(high + 1, seq))
            st.high = seq
            self.delivered += 1
        else:
            missing = st.missing
            if missing is not None and seq in missing:
                missing.discard(seq)
                self.out_of_order += 1
                self.delivered += 1
            else:
                self.duplicated += 1

    def holes(self) -> int:
        return sum(len(st.missing) for st in self.streams.values() if st.missing)

    def complete(self, sent: dict[int, int], senders: list[int]) -> bool:
        """Has this receiver got every message ``senders`` sent so far?"""
        for s in senders:
            st = self.streams.get(s)
            total = sent.get(s, 0)
            if total == 0:
                continue
            if st is None or st.high < total or st.missing:
                return False
        return True

    def lost(self, sent: dict[int, int], senders: list[int]) -> tuple[int, int]:
        """(holes, stuck) for the messages ``senders`` sent."""
        holes = stuck = 0
        for s in senders:
            st = self.streams.get(s)
            total = sent.get(s, 0)
            if st is None:
                stuck += total
                continue
            if st.missing:
                holes += sum(1 for seq in st.missing if seq <= total)
            stuck += max(0, total - st.high)
        return holes, stuck

    def summary(self, sent: dict[int, int], senders: list[int], process: int) -> dict[str, Any]:
        expected: int | None = sum(sent.get(s, 0) for s in senders)
        if self.kind == "churn" and not self.resumes:
            holes = stuck = 0
            expected = None
        else:
            holes, stuck = self.lost(sent, senders)
        count = self.latency_count
        return {
            "id": self.id,
            "process": process,
            "kind": self.kind,
            "room": self.room,
            "expected": expected,
            "delivered": self.delivered,
            "lost_holes": holes,
            "lost_stuck": stuck,
            "gap_announced": self.gap_announced,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "close_code": self.close_code,
            "connects": self.connects,
            "connect_error": self.connect_error,
            "latency_ms": {
                "count": count,
                "mean": round(self.latency_sum_ns / count / 1e6, 3) if count else 0.0,
                "max": round(self.latency_max_ns / 1e6, 3),
            },
        }


@dataclass
class SenderTally:
    id: int
    room: str
    size: int
    sent: int = 0
    acked: int = 0
    echoed: int = 0
    send_errors: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    close_code: int | None = None
    connect_error: str | None = None

    def summary(self, process: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "process": process,
            "room": self.room,
            "size": self.size,
            "sent": self.sent,
            "acked": self.acked,
            "send_errors": self.send_errors,
            "skipped": self.skipped,
            "errors": dict(self.errors),
            "close_code": self.close_code,
            "connect_error": self.connect_error,
        }
