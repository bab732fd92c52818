"""Why a server broke under the lab's load: verdicts read from one run document.

``diagnose(doc)`` takes a ``fanout.lab.run/1`` document (everything but ``verdicts``)
and returns its verdicts, most important first: ``break`` (the server failed this load:
loss, errors, closes), then ``warn`` (degraded), then ``info``. Within a severity, root
causes come before their symptoms (a stalled reader before the latency it caused). A run
with nothing wrong gets a single ``ok`` (followed by any ``info`` verdicts, such as slow
consumers cut as designed). ``invalid_reasons(doc)`` lists the reasons the run does not
measure the server (the lab sets ``valid=false`` from them): its generator was the
bottleneck (``is_generator_saturated``), or not one connection opened.

The rules, one module per family: ``stall`` (stalled readers and their isolation),
``delivery`` (what the healthy receivers got), ``server`` (the observed process's CPU),
``memory`` (its memory: a leak, or buffers filling to their bound), ``failures`` (its
exceptions and exit), ``connections`` (opens and closes), ``generator`` (the lab itself).
Each rule is a function of the document alone and never raises on a valid document;
missing optional parts (``server: null``, an empty timeline) only weaken the evidence.
A rule reads the run through ``_run.Run`` (a :class:`fanout.lab.document.RunView` with the
figures the rules share) and returns a :class:`fanout.lab.document.Verdict` naming a
:class:`~fanout.lab.document.Cause`; ``diagnose`` returns them as JSON objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fanout.lab.diagnosis import (
    connections,
    delivery,
    failures,
    generator,
    memory,
    server,
    stall,
)
from fanout.lab.diagnosis._run import Run
from fanout.lab.document import Cause, Severity, Verdict

__all__ = ["diagnose", "invalid_reasons", "is_generator_saturated"]

Rule = Callable[[Run], Verdict | None]

#: Every rule, in priority order: the order verdicts of one severity are reported in.
RULES: tuple[Rule, ...] = (
    failures.server_exited,
    generator.generator_saturated,
    stall.hol_blocking,
    failures.handler_exception,
    connections.size_limit,
    connections.connect_refused,
    connections.connect_limited,
    connections.connect_failed,
    server.server_cpu,
    memory.memory_growth,
    connections.unexpected_close,
    delivery.misdelivery,
    delivery.latency_slo,
    connections.rate_limited,
    stall.slow_consumer_cut,
)

#: Every cause ``diagnose`` can name (``ok``, ``loss`` and ``no_traffic`` included), in
#: the order verdicts of one severity are reported in.
_CAUSE_ORDER = list(Cause)
_SEVERITY_ORDER = list(Severity)

#: Causes that account for lost messages (and for senders held back) when they are a
#: ``break``: no separate ``loss`` or ``backpressure``.
_EXPLAINS_LOSS = {
    Cause.SERVER_EXITED,
    Cause.HOL_BLOCKING,
    Cause.HANDLER_EXCEPTION,
    Cause.SIZE_LIMIT,
    Cause.SERVER_CPU,
    Cause.MEMORY_GROWTH,
    Cause.UNEXPECTED_CLOSE,
}
#: Connection failures explain loss only when healthy receivers never connected.
_CONNECT_CAUSES = {Cause.CONNECT_REFUSED, Cause.CONNECT_LIMITED, Cause.CONNECT_FAILED}


def _loss_explained(run: Run, found: list[Verdict]) -> bool:
    for v in found:
        if v.severity == Severity.BREAK and v.cause in _EXPLAINS_LOSS:
            return True
        if v.cause in _CONNECT_CAUSES and run.stable_unconnected > 0:
            return True
    return False


def _order(v: Verdict) -> tuple[int, int]:
    return _SEVERITY_ORDER.index(Severity(v.severity)), _CAUSE_ORDER.index(Cause(v.cause))


def diagnose(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdicts for one run document, most important first (see the module doc)."""
    run = Run(doc)
    found = [v for rule in RULES if (v := rule(run)) is not None]
    if not _loss_explained(run, found):
        # What is left once the causes above are named: loss, and senders held back.
        found += [v for rule in (delivery.loss, delivery.backpressure) if (v := rule(run))]
    if not any(v.severity in (Severity.BREAK, Severity.WARN) for v in found):
        quiet = delivery.no_traffic(run)
        found.append(quiet if quiet is not None else delivery.ok(run))
    return [v.to_json() for v in sorted(found, key=_order)]


def is_generator_saturated(doc: dict[str, Any]) -> list[str]:
    """Why this run measured the lab rather than the server; empty when it is valid."""
    return generator.reasons(Run(doc))


def invalid_reasons(doc: dict[str, Any]) -> list[str]:
    """Why this run does not measure the server; empty when it is valid."""
    run = Run(doc)
    return generator.reasons(run) + connections.nothing_connected(run)
