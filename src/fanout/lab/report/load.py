"""Read a results file written by ``fanout bench`` (see ``docs/lab-results.md``).

The documents are kept as the decoded JSON and wrapped in small read-only views whose
accessors never fail on a missing optional section: a run without a server has
``server is None`` and no samples, a run that never ticked has an empty timeline. What
the loader refuses, with a :class:`ReportError` naming the file, is a file it cannot
read, text that is not JSON, a schema it does not know (or none), and a section of the
wrong JSON type (a ``timeline`` that is not a list, say): those mean the file is not a
results document at all, and guessing would make a report that lies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_SCHEMA = "fanout.lab.run/1"
SWEEP_SCHEMA = "fanout.lab.sweep/1"
KNOWN_SCHEMAS = (RUN_SCHEMA, SWEEP_SCHEMA)

JSONObject = Mapping[str, Any]

_EMPTY: JSONObject = {}


class ReportError(Exception):
    """A results file cannot be reported on; the message names the file and why."""


def number(obj: JSONObject, key: str) -> float | None:
    """``obj[key]`` as a float, or None when it is missing, null or not a finite number."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


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
    value = obj.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


def objects(obj: JSONObject, key: str) -> list[JSONObject]:
    """The JSON objects in the list ``obj[key]`` (other items and a missing list: none)."""
    value = obj.get(key)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


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


@dataclass(frozen=True)
class Verdict:
    """One diagnosis the lab made about a run."""

    cause: str
    severity: str
    summary: str
    evidence: JSONObject


def _verdicts(obj: JSONObject) -> list[Verdict]:
    return [
        Verdict(
            cause=text(v, "cause", "unknown"),
            severity=text(v, "severity", "info"),
            summary=text(v, "summary"),
            evidence=mapping(v, "evidence"),
        )
        for v in objects(obj, "verdicts")
    ]


class _Outcome:
    """What a run and a sweep step share: totals, latency, verdicts, validity."""

    raw: JSONObject

    @property
    def totals(self) -> JSONObject:
        return mapping(self.raw, "totals")

    @property
    def latency(self) -> JSONObject:
        return mapping(self.raw, "latency_ms")

    @property
    def verdicts(self) -> list[Verdict]:
        return _verdicts(self.raw)

    @property
    def valid(self) -> bool:
        return self.raw.get("valid") is not False

    @property
    def invalid_reasons(self) -> list[str]:
        return strings(self.raw, "invalid_reasons")


@dataclass(frozen=True)
class RunDoc(_Outcome):
    """A ``fanout.lab.run/1`` document."""

    path: Path
    raw: JSONObject

    @property
    def created(self) -> str:
        return text(self.raw, "created")

    @property
    def config(self) -> JSONObject:
        return mapping(self.raw, "config")

    @property
    def machine(self) -> JSONObject:
        return mapping(self.raw, "machine")

    @property
    def versions(self) -> JSONObject:
        return mapping(self.raw, "versions")

    @property
    def timeline(self) -> list[JSONObject]:
        return objects(self.raw, "timeline")

    @property
    def server(self) -> JSONObject | None:
        value = self.raw.get("server")
        return value if isinstance(value, Mapping) else None

    @property
    def server_samples(self) -> list[JSONObject]:
        server = self.server
        return [] if server is None else objects(server, "samples")

    @property
    def generator(self) -> JSONObject:
        return mapping(self.raw, "generator")

    @property
    def receivers(self) -> list[JSONObject]:
        return objects(self.raw, "receivers")


@dataclass(frozen=True)
class SweepStep(_Outcome):
    """One configuration a sweep ran."""

    raw: JSONObject

    @property
    def point(self) -> JSONObject:
        return mapping(self.raw, "point")

    @property
    def broke(self) -> bool:
        return self.raw.get("broke") is True

    @property
    def reasons(self) -> list[str]:
        return strings(self.raw, "reasons")


@dataclass(frozen=True)
class SweepDoc:
    """A ``fanout.lab.sweep/1`` document."""

    path: Path
    raw: JSONObject

    @property
    def created(self) -> str:
        return text(self.raw, "created")

    @property
    def axes(self) -> dict[str, list[Any]]:
        return {
            str(name): list(values)
            for name, values in mapping(self.raw, "axes").items()
            if isinstance(values, list)
        }

    @property
    def base_config(self) -> JSONObject:
        return mapping(self.raw, "base_config")

    @property
    def machine(self) -> JSONObject:
        return mapping(self.raw, "machine")

    @property
    def steps(self) -> list[SweepStep]:
        return [SweepStep(raw) for raw in objects(self.raw, "steps")]

    @property
    def breaking_points(self) -> list[JSONObject]:
        return objects(self.raw, "breaking_points")

    def coordinate(self, step: SweepStep, axis: str) -> Any:
        """The step's value on ``axis``: its point's, else the base config's."""
        point = step.point
        return point[axis] if axis in point else self.base_config.get(axis)


Doc = RunDoc | SweepDoc

# Sections whose JSON type is checked when present (null is allowed for optional ones).
_RUN_SECTIONS: dict[str, tuple[type, ...]] = {
    "config": (dict,),
    "totals": (dict,),
    "latency_ms": (dict,),
    "invalid_reasons": (list,),
    "receivers": (list,),
    "senders": (list,),
    "timeline": (list,),
    "server": (dict,),
    "generator": (dict,),
    "verdicts": (list,),
}
_SWEEP_SECTIONS: dict[str, tuple[type, ...]] = {
    "axes": (dict,),
    "base_config": (dict,),
    "steps": (list,),
    "breaking_points": (list,),
}
_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _check_sections(path: Path, doc: JSONObject, sections: Mapping[str, tuple[type, ...]]) -> None:
    for key, types in sections.items():
        value = doc.get(key)
        if value is not None and not isinstance(value, types):
            wanted = _JSON_TYPE_NAMES[types[0]]
            raise ReportError(f"{path}: {key!r} must be {wanted}, got {_json_type(value)}")
    server = doc.get("server")
    if isinstance(server, dict):
        samples = server.get("samples")
        if samples is not None and not isinstance(samples, list):
            raise ReportError(f"{path}: 'server.samples' must be a list, got {_json_type(samples)}")


def parse_results(path: Path, content: str) -> RunDoc | SweepDoc:
    """Decode ``content`` read from ``path`` (named in every error) into a document."""
    try:
        decoded: Any = json.loads(content)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ReportError(f"{path}: not a JSON results file ({detail})") from exc
    if not isinstance(decoded, dict):
        raise ReportError(f"{path}: not a results document (JSON {_json_type(decoded)})")
    schema = decoded.get("schema")
    if schema is None:
        raise ReportError(f"{path}: no 'schema' field; expected one of {', '.join(KNOWN_SCHEMAS)}")
    if schema == RUN_SCHEMA:
        _check_sections(path, decoded, _RUN_SECTIONS)
        return RunDoc(path, decoded)
    if schema == SWEEP_SCHEMA:
        _check_sections(path, decoded, _SWEEP_SECTIONS)
        return SweepDoc(path, decoded)
    shown = schema if isinstance(schema, str) else json.dumps(schema)
    raise ReportError(
        f"{path}: unknown schema {shown[:80]!r}; this fanout reads {', '.join(KNOWN_SCHEMAS)}"
    )


def load_results(path: Path | str) -> RunDoc | SweepDoc:
    """Read one results file; :class:`ReportError` (naming the file) if it is not one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ReportError(f"{path}: is a directory, not a results file") from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not a JSON results file (not UTF-8 text)") from exc
    return parse_results(path, content)


def load_all(paths: Sequence[Path | str]) -> list[RunDoc | SweepDoc]:
    """Load every file, stopping at the first that is not a results document."""
    return [load_results(p) for p in paths]
