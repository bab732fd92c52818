"""The lab as a CI gate: what a run (or each sweep point) means as pass or fail.

``fanout bench`` exits with an :class:`ExitCode`:

* ``0`` every run is healthy: no verdict at or above ``--fail-on``;
* ``1`` a verdict at or above ``--fail-on`` (``break`` by default; ``warn`` is stricter,
  ``never`` only ever fails on an invalid run);
* ``2`` bad arguments: nothing was run;
* ``3`` an invalid run: it cannot be trusted (nothing listening at the URL, the server
  command died before listening, the load generator was the bottleneck).

Each run, or each point of a sweep, is a :class:`Case`: passed, failed (its failing
verdicts) or in error (why it is invalid). A run that is invalid is in error whatever
its verdicts say (they may be the lab's own doing). A sweep exits 1 when any point
failed, otherwise 3 when any point is invalid: a trustworthy failure is the stronger
news.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path

from fanout.lab import fmt
from fanout.lab.document import (
    JSONObject,
    RunDoc,
    RunView,
    Severity,
    SweepStep,
    Verdict,
    mapping,
    number,
    objects,
    text,
)


class ExitCode(IntEnum):
    """``fanout bench``'s exit status, documented in ``docs/lab.md``."""

    HEALTHY = 0
    FAILED = 1
    USAGE = 2
    INVALID = 3


class FailOn(StrEnum):
    """The least severe verdict that fails the gate (``never``: none does)."""

    WARN = "warn"
    BREAK = "break"
    NEVER = "never"


_RANK: dict[str, int] = {Severity.INFO: 0, Severity.WARN: 1, Severity.BREAK: 2}


def fails(verdict: Verdict, fail_on: FailOn) -> bool:
    """Whether ``verdict`` is at or above ``fail_on`` (an unknown severity ranks as info)."""
    if fail_on is FailOn.NEVER:
        return False
    return _RANK.get(verdict.severity, 0) >= _RANK[fail_on.value]


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True)
class Case:
    """One run, or one sweep point, judged."""

    name: str
    verdicts: tuple[Verdict, ...]
    failing: tuple[Verdict, ...]
    invalid_reasons: tuple[str, ...]
    time_s: float

    @property
    def status(self) -> Status:
        if self.invalid_reasons:
            return Status.ERROR
        return Status.FAILED if self.failing else Status.PASSED


def run_label(config: JSONObject) -> str:
    """``ws://127.0.0.1:8000/ws: plain, 10 receivers, rate 100/s, 200 B``."""
    size, receivers = number(config, "size"), number(config, "receivers")
    rate = config.get("rate")
    parts = [
        text(config, "mode", "plain"),
        f"{fmt.count(receivers)} receivers" if receivers is not None else "",
        f"rate {fmt.rate(rate)}" if "rate" in config else "",
        fmt.short_bytes(size) if size is not None else "",
    ]
    described = ", ".join(part for part in parts if part)
    return f"{text(config, 'url', 'run')}: {described}" if described else text(config, "url")


def _case(name: str, outcome: RunView | SweepStep, fail_on: FailOn, time_s: float | None) -> Case:
    reasons = tuple(outcome.invalid_reasons)
    if not outcome.valid and not reasons:
        reasons = ("the run is marked invalid",)
    spent = time_s if time_s is not None else number(outcome.totals, "sending_s") or 0.0
    return Case(
        name=name,
        verdicts=tuple(outcome.verdicts),
        failing=tuple(v for v in outcome.verdicts if fails(v, fail_on)),
        invalid_reasons=reasons,
        time_s=spent,
    )


def run_cases(doc: JSONObject, fail_on: FailOn, time_s: float | None = None) -> list[Case]:
    """A ``fanout.lab.run/1`` document as one case."""
    run = RunDoc(Path(text(mapping(doc, "config"), "url", "run")), doc)
    return [_case(run_label(run.config), run, fail_on, time_s)]


def sweep_cases(doc: JSONObject, fail_on: FailOn) -> list[Case]:
    """A ``fanout.lab.sweep/1`` document as one case per point it ran."""
    return [
        _case(f"sweep point: {fmt.point(step.point)}", step, fail_on, None)
        for step in (SweepStep(raw) for raw in objects(doc, "steps"))
    ]


def unmade(name: str, why: str) -> Case:
    """A run that could not take place at all (the server never listened, ...)."""
    return Case(name=name, verdicts=(), failing=(), invalid_reasons=(why,), time_s=0.0)


def exit_code(cases: Sequence[Case]) -> ExitCode:
    """1 when a case failed, else 3 when one is in error, else 0."""
    statuses = {case.status for case in cases}
    if Status.FAILED in statuses:
        return ExitCode.FAILED
    if Status.ERROR in statuses:
        return ExitCode.INVALID
    return ExitCode.HEALTHY


def verdict_line(verdict: Verdict) -> str:
    """``break loss: 12 of 1,000 messages never arrived (lost=12, lost_percent=1.2 %)``."""
    evidence = fmt.evidence_line(verdict.evidence)
    line = f"{verdict.severity} {verdict.cause}: {verdict.summary}"
    return f"{line} ({evidence})" if evidence else line


def outcome_line(cases: Sequence[Case], fail_on: FailOn) -> str:
    """One sentence for the end of ``fanout bench``'s output: the exit code and why."""
    code = exit_code(cases)
    if code is ExitCode.FAILED:
        causes = sorted({v.cause for case in cases for v in case.failing})
        failed = sum(1 for case in cases if case.status is Status.FAILED)
        where = f" in {failed} of {len(cases)} runs" if len(cases) > 1 else ""
        return f"exit 1: verdicts at or above --fail-on {fail_on.value}{where}: {', '.join(causes)}"
    if code is ExitCode.INVALID:
        reasons = [r for case in cases for r in case.invalid_reasons]
        return f"exit 3: invalid run, it cannot be trusted: {reasons[0]}"
    return f"exit 0: no verdict at or above --fail-on {fail_on.value}"
