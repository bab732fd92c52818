"""The server's memory: a leak, or buffers filling toward their bound.

Resident memory that grows during a run is one of two things, and the verdict says which:

* **buffers filling** toward a bound (outboxes queueing for the sockets, a room's
  history, frames being written, allocator arenas sized for the largest message): the
  memory rises, then stops. Either the growth is no more than what the server's buffers
  may hold (its own gauges, fanout's ``fanout_outbox_bytes`` sampled from ``/metrics``
  during the run; the room history it holds, ``fanout_history_bytes``, or else what its
  configured bounds allow, as it states them on its metrics page; a message in flight on every
  connection), or it levels off: flat over the second half of the sending period. An
  ``info`` verdict says so, with the figures.
* **a leak**: memory that keeps growing steadily through the whole sending period,
  beyond what the buffers explain. A ``warn``, a ``break`` when messages were lost
  meanwhile.

Only the sending period is judged (from the last sample before it starts): during the
drain a leaking server receives nothing and looks as flat as a bounded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fanout.lab import fmt
from fanout.lab.diagnosis._run import Run
from fanout.lab.diagnosis._values import count, num, num0, slope, thirds
from fanout.lab.diagnosis._words import plural
from fanout.lab.document import (
    BUFFER_GAUGES,
    HISTORY_GAUGE,
    Cause,
    JSONObject,
    Severity,
    Verdict,
    mapping,
    objects,
)
from fanout.lab.fmt import MIB

#: Memory growth worth a verdict: more than max(32 MiB, 20 % of the starting RSS).
MEMORY_GROWTH_MIN_BYTES = 32 * MIB
MEMORY_GROWTH_MIN_SHARE = 0.2
#: Growth has levelled off when its slope over the second half of the sending period is
#: at most this share of its mean rate over the whole period.
LEVELLED_SHARE = 0.25
#: A shorter sending period has no shape to read.
MIN_SPAN_S = 1.0
#: Memory a stored message takes per byte of payload counted against the history
#: bounds: its payload, and what comes with it (the frame cached for sending it, the
#: allocator's slack around large blocks). fanout's 64 MiB history of 4 MiB images was
#: measured at 140 MiB of RSS, level from the moment it was full.
HISTORY_OVERHEAD = 2.0
#: A gauge sample speaks for the memory samples this close to it (s).
GAUGE_REACH_S = 1.5

Point = tuple[float, float]


def _judged(run: Run) -> list[Point]:
    """(t, RSS) over the sending period, from the last sample before it started."""
    points = [
        (num0(sample.get("t")), rss)
        for sample in run.samples
        if (rss := num(sample.get("rss_bytes"))) is not None
    ]
    before = [p for p in points if p[0] < 0]
    window = before[-1:] + [p for p in points if run.sending(p[0])]
    return window if len(window) >= 3 else points


def _buffers_peak(server: JSONObject, since: float, until: float) -> dict[str, float]:
    """The most bytes each of the server's buffer gauges held between ``since`` and
    ``until``; empty when it publishes none."""
    peaks: dict[str, float] = {}
    for sample in objects(server, "gauges"):
        t, values = num(sample.get("t")), mapping(sample, "values")
        if t is None or not since - GAUGE_REACH_S <= t <= until + GAUGE_REACH_S:
            continue
        for name in BUFFER_GAUGES:
            if (v := num(values.get(name))) is not None:
                peaks[name] = max(peaks.get(name, 0.0), v)
    return peaks


def _history_bound(run: Run, bounds: JSONObject) -> float | None:
    """The most memory room history may take for this run (:data:`HISTORY_OVERHEAD` times
    the payload its bounds allow); None when the bounds are not known."""
    if not bounds:
        return None
    if bounds.get("history_in_process") is False:
        return 0.0
    size = num0(run.config.get("size"))
    per_room = min(
        num0(bounds.get("history_max_bytes")), num0(bounds.get("history_max_messages")) * size
    )
    rooms = max(1, count(run.config.get("rooms")))
    held = min(rooms * per_room, num0(bounds.get("history_total_max_bytes")))
    sent = run.total("sent")
    return HISTORY_OVERHEAD * (min(held, sent * size) if sent else held)


@dataclass(frozen=True)
class Shape:
    """How the growth went: its mean rate over the window and its late slope (bytes/s)."""

    mean_rate: float
    late_slope: float | None
    levelled_at: float | None

    @property
    def levelled(self) -> bool:
        return self.late_slope is not None and self.late_slope <= LEVELLED_SHARE * self.mean_rate

    @classmethod
    def of(cls, points: Sequence[Point]) -> Shape:
        (t0, v0), (t1, v1) = points[0], points[-1]
        span = t1 - t0
        mean_rate = (v1 - v0) / span if span > 0 else 0.0
        if span < MIN_SPAN_S:
            return cls(mean_rate, None, None)
        late = [p for p in points if p[0] >= t0 + span / 2]
        top = max(v for _, v in points)
        reached = next((t for t, v in points if v >= v0 + 0.9 * (top - v0)), None)
        return cls(mean_rate, slope(late), reached)


def _still_growing(points: Sequence[Point]) -> bool:
    rate, parts = slope(points), thirds([v for _, v in points])
    return rate is not None and rate > 0 and parts is not None and parts[1] > parts[0]


@dataclass(frozen=True)
class Held:
    """What the server's bounded buffers may hold, as far as the run shows (bytes)."""

    gauges: float | None  # the peak of its own buffer gauges
    gauge_names: list[str]
    history: float | None  # the room history its configured bounds allow
    in_flight: float  # one message on every connection, being read or written

    @property
    def total(self) -> float:
        return (self.gauges or 0.0) + (self.history or 0.0) + self.in_flight

    def words(self) -> str:
        parts = []
        if self.gauges is not None:
            names = ", ".join(self.gauge_names)
            held = f"{fmt.short_bytes(self.gauges)} at most" if self.gauges > 0 else "nothing"
            parts.append(f"{held} in {names}")
        if self.history:
            parts.append(f"up to {fmt.short_bytes(self.history)} of room history")
        if self.in_flight:
            parts.append(
                f"{fmt.short_bytes(self.in_flight)} for a message in flight per connection"
            )
        return ", ".join(parts)


def _held(run: Run, server: JSONObject, since: float, until: float) -> Held:
    """What the buffers may hold: the room history the server's own gauge measured
    (:data:`HISTORY_OVERHEAD` times it, as for the bound), else what its configured bounds
    allow; the other buffer gauges as measured."""
    peaks = _buffers_peak(server, since, until)
    measured_history = peaks.pop(HISTORY_GAUGE, None)
    history = (
        _history_bound(run, mapping(server, "bounds"))
        if measured_history is None
        else HISTORY_OVERHEAD * measured_history
    )
    size = num0(run.config.get("size"))
    return Held(
        gauges=sum(peaks.values()) if peaks else None,
        gauge_names=sorted(peaks),
        history=history,
        in_flight=size * run.n_connections,
    )


def memory_growth(run: Run) -> Verdict | None:
    points = _judged(run)
    if len(points) < 3:
        return None
    start, end = points[0][1], points[-1][1]
    growth = end - start
    threshold = max(MEMORY_GROWTH_MIN_BYTES, MEMORY_GROWTH_MIN_SHARE * start)
    if growth <= threshold:
        return None
    server = run.server or {}
    held = _held(run, server, points[0][0], points[-1][0])
    unexplained = growth - held.total
    shape = Shape.of(points)
    outbox_bound = num(mapping(server, "bounds").get("outbox_max_bytes"))
    sent = run.total("sent")
    evidence: dict[str, Any] = {
        "rss_start_bytes": round(start),
        "rss_end_bytes": round(end),
        "rss_max_bytes": round(max(rss for _, rss in points)),
        "growth_bytes": round(growth),
        "threshold_bytes": round(threshold),
        "slope_bytes_per_s": round(shape.mean_rate),
        "late_slope_bytes_per_s": None if shape.late_slope is None else round(shape.late_slope),
        "levelled_at_s": shape.levelled_at if shape.levelled else None,
        "buffer_gauges": held.gauge_names,
        "buffers_max_bytes": None if held.gauges is None else round(held.gauges),
        "history_bound_bytes": None if held.history is None else round(held.history),
        "in_flight_bytes": round(held.in_flight),
        "outbox_bound_bytes": (
            None if outbox_bound is None else round(outbox_bound * max(1, run.n_connections))
        ),
        "unexplained_growth_bytes": round(unexplained),
        "growth_per_message_bytes": round(growth / sent) if sent else None,
        "lost": run.lost,
    }
    grew = (
        f"server memory grew from {fmt.short_bytes(start)} to {fmt.short_bytes(end)}"
        f" (+{fmt.short_bytes(growth)}"
    )
    if unexplained <= threshold:
        summary = f"{grew}), no more than its bounded buffers may hold ({held.words()}): not a leak"
        return Verdict(Cause.MEMORY_GROWTH, Severity.INFO, summary, evidence)
    if not shape.levelled and not _still_growing(points):
        return None  # up and partly given back: not growth that lasts
    if shape.levelled:
        late = 0.0 if shape.late_slope is None else shape.late_slope
        when = f" from {fmt.duration(shape.levelled_at)}" if shape.levelled_at is not None else ""
        pace = "flat" if late <= 0 else f"{fmt.short_bytes(late)}/s"
        summary = (
            f"{grew}), then levelled off{when} ({pace} over the second half of the sending"
            f" period, against {fmt.short_bytes(shape.mean_rate)}/s on average): buffers"
            " filling to their bound, not a leak"
        )
        return Verdict(Cause.MEMORY_GROWTH, Severity.INFO, summary, evidence)
    summary = (
        f"{grew}, {fmt.short(shape.mean_rate / MIB)} MiB/s) and kept growing steadily until"
        " sending ended"
        + (
            f" while {plural(run.lost, 'message')} were lost"
            if run.lost
            else ": a leak, or buffers not yet at their bound"
        )
    )
    if held.gauges is not None or held.history:
        summary += f"; its buffers may hold {fmt.short_bytes(held.total)} of it ({held.words()})"
    return Verdict(
        Cause.MEMORY_GROWTH, Severity.BREAK if run.lost else Severity.WARN, summary, evidence
    )
