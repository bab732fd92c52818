"""The lab's results document, as everything that reads it sees it.

A run writes ``fanout.lab.run/1`` (:mod:`fanout.lab.results`), a sweep
``fanout.lab.sweep/1`` (:mod:`fanout.lab.sweep`); the layout is described in
``docs/lab-results.md``. This module names what the two schemas share with their
readers, the diagnosis (:mod:`fanout.lab.diagnosis`) and the report
(:mod:`fanout.lab.report`):

* the schema names, the verdict causes (:class:`Cause`) and severities (:class:`Severity`),
  both ``StrEnum`` so a document holds them as plain JSON strings;
* accessors that never fail on a missing or mistyped part: :func:`number`, :func:`text`,
  :func:`mapping`, :func:`objects`, ... give ``None``, ``""``, ``{}`` or ``[]`` instead;
* typed read-only views on them: :class:`RunView` (the sections of a run, which the
  diagnosis extends with its figures), :class:`RunDoc` and :class:`SweepDoc` (a run and
  a sweep read from a file, which the report draws) and :class:`Verdict`.

A run without a server has ``server is None`` and no samples, a run that never ticked
has an empty timeline: the views say so with empty values, never with an exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

RUN_SCHEMA = "fanout.lab.run/1"
SWEEP_SCHEMA = "fanout.lab.sweep/1"
KNOWN_SCHEMAS = (RUN_SCHEMA, SWEEP_SCHEMA)

#: The gauges (in ``server.gauges``) that count bytes a server holds on purpose, in
#: bounded buffers: the diagnosis weighs memory growth against them, the report draws them.
HISTORY_GAUGE = "fanout_history_bytes"
BUFFER_GAUGES = ("fanout_outbox_bytes", HISTORY_GAUGE)

JSONObject = Mapping[str, Any]

_EMPTY: JSONObject = {}


class Cause(StrEnum):
    """Every cause a verdict can name.

    The members are in priority order: the diagnosis reports verdicts of one severity in
    this order (``ok`` first, then root causes before the symptoms they explain).
    """

    OK = "ok"
    SERVER_EXITED = "server_exited"
    GENERATOR_SATURATED = "generator_saturated"
    HOL_BLOCKING = "hol_blocking"
    HANDLER_EXCEPTION = "handler_exception"
    SIZE_LIMIT = "size_limit"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_LIMITED = "connect_limited"
    CONNECT_FAILED = "connect_failed"
    SERVER_CPU = "server_cpu"
    MEMORY_GROWTH = "memory_growth"
    UNEXPECTED_CLOSE = "unexpected_close"
    LOSS = "loss"
    BACKPRESSURE = "backpressure"
    MISDELIVERY = "misdelivery"
    LATENCY_SLO = "latency_slo"
    RATE_LIMITED = "rate_limited"
    NO_TRAFFIC = "no_traffic"
    SLOW_CONSUMER_CUT = "slow_consumer_cut"


class Severity(StrEnum):
    """How bad a verdict is, worst first."""

    BREAK = "break"  # the server failed this load: loss, errors, closes
    WARN = "warn"  # degraded
    INFO = "info"


# -- values that never raise ---------------------------------------------------------


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:  # an int beyond float
        return None
    return result if math.isfinite(result) else None


def as_mapping(value: object) -> JSONObject:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else _EMPTY


def mappings(value: object) -> list[JSONObject]:
    """The JSON objects in the list ``value`` (other items, and a non-list: none)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def number(obj: JSONObject, key: str) -> float | None:
    """``obj[key]`` as a float, or None when it is missing, null or not a finite number."""
    return finite(obj.get(key))


def integer(obj: JSONObject, key: str) -> int | None:
    """``obj[key]`` as an int (a float is truncated), or None when not a number."""
    value = number(obj, key)
    return None if value is None else int(value)


def text(obj: JSONObject, key: str, default: str = "") -> str:
    """``obj[key]`` as a string; numbers are formatted, anything else gives ``default``."""
    value = obj.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return default


def mapping(obj: JSONObject, key: str) -> JSONObject:
    """``obj[key]`` when it is a JSON object, else an empty one."""
    return as_mapping(obj.get(key))


def objects(obj: JSONObject, key: str) -> list[JSONObject]:
    """The JSON objects in the list ``obj[key]`` (other items and a missing list: none)."""
    return mappings(obj.get(key))


def strings(obj: JSONObject, key: str) -> list[str]:
    """The list ``obj[key]`` as strings (each item formatted; missing list: empty)."""
    value = obj.get(key)
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, str) else json.dumps(item) for item in value]


def counts(obj: JSONObject, key: str) -> dict[str, int]:
    """A ``{"name": count}`` object such as ``close_codes``, keeping the numeric entries."""
    out: dict[str, int] = {}
    for name, value in mapping(obj, key).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(name)] = int(value)
    return out


# -- verdicts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One diagnosis the lab made about a run.

    Read from a document, ``cause`` may be one this version does not know (so it is a
    ``str``, which a :class:`Cause` is too) and ``severity`` anything a file says.
    """

    cause: str
    severity: str
    summary: str
    evidence: JSONObject

    @classmethod
    def from_json(cls, obj: JSONObject) -> Verdict:
        return cls(
            cause=text(obj, "cause", "unknown"),
            severity=text(obj, "severity", "info"),
            summary=text(obj, "summary"),
            evidence=mapping(obj, "evidence"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
        }


# -- views ----------------------------------------------------------------------------


class _Provenance:
    """What a run and a sweep both record about where they were made."""

    raw: JSONObject

    @cached_property
    def created(self) -> str:
        return text(self.raw, "created")

    @cached_property
    def machine(self) -> JSONObject:
        return mapping(self.raw, "machine")

    @cached_property
    def versions(self) -> JSONObject:
        return mapping(self.raw, "versions")


class _Outcome:
    """What a run and a sweep step share: totals, latency, verdicts, validity."""

    raw: JSONObject

    @cached_property
    def totals(self) -> JSONObject:
        return mapping(self.raw, "totals")

    @cached_property
    def latency(self) -> JSONObject:
        return mapping(self.raw, "latency_ms")

    @cached_property
    def verdicts(self) -> list[Verdict]:
        return [Verdict.from_json(v) for v in objects(self.raw, "verdicts")]

    @cached_property
    def valid(self) -> bool:
        return self.raw.get("valid") is not False

    @cached_property
    def invalid_reasons(self) -> list[str]:
        return strings(self.raw, "invalid_reasons")


class RunView(_Provenance, _Outcome):
    """The sections of a ``fanout.lab.run/1`` document, read never-raising."""

    raw: JSONObject

    @cached_property
    def config(self) -> JSONObject:
        return mapping(self.raw, "config")

    @cached_property
    def timeline(self) -> list[JSONObject]:
        return objects(self.raw, "timeline")

    @cached_property
    def server(self) -> JSONObject | None:
        """The observed server; None when the lab did not observe one (``server: null``)."""
        value = self.raw.get("server")
        return value if isinstance(value, Mapping) else None

    @cached_property
    def server_samples(self) -> list[JSONObject]:
        server = self.server
        return [] if server is None else objects(server, "samples")

    @cached_property
    def generator(self) -> JSONObject:
        return mapping(self.raw, "generator")

    @cached_property
    def receivers(self) -> list[JSONObject]:
        return objects(self.raw, "receivers")

    @cached_property
    def senders(self) -> list[JSONObject]:
        return objects(self.raw, "senders")


@dataclass(frozen=True)
class RunDoc(RunView):
    """A ``fanout.lab.run/1`` document and the file it is from."""

    path: Path
    raw: JSONObject


@dataclass(frozen=True)
class SweepStep(_Outcome):
    """One configuration a sweep ran."""

    raw: JSONObject

    @cached_property
    def point(self) -> JSONObject:
        return mapping(self.raw, "point")

    @cached_property
    def broke(self) -> bool:
        return self.raw.get("broke") is True

    @cached_property
    def reasons(self) -> list[str]:
        return strings(self.raw, "reasons")


@dataclass(frozen=True)
class SweepDoc(_Provenance):
    """A ``fanout.lab.sweep/1`` document and the file it is from."""

    path: Path
    raw: JSONObject

    @cached_property
    def axes(self) -> dict[str, list[Any]]:
        return {
            str(name): list(values)
            for name, values in mapping(self.raw, "axes").items()
            if isinstance(values, list)
        }

    @cached_property
    def base_config(self) -> JSONObject:
        return mapping(self.raw, "base_config")

    @cached_property
    def steps(self) -> list[SweepStep]:
        return [SweepStep(raw) for raw in objects(self.raw, "steps")]

    @cached_property
    def breaking_points(self) -> list[JSONObject]:
        return objects(self.raw, "breaking_points")

    def coordinate(self, step: SweepStep, axis: str) -> Any:
        """The step's value on ``axis``: its point's, else the base config's."""
        point = step.point
        return point[axis] if axis in point else self.base_config.get(axis)
