"""Read a results file written by ``fanout bench`` (see ``docs/lab-results.md``).

The document is kept as the decoded JSON and read through the never-raising views of
:mod:`fanout.lab.document` (:class:`RunDoc`, :class:`SweepDoc`). What the loader refuses,
with a :class:`ReportError` naming the file, is a file it cannot read, text that is not
JSON, a schema it does not know (or none), and a section of the wrong JSON type (a
``timeline`` that is not a list, say): those mean the file is not a results document at
all, and guessing would make a report that lies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fanout.lab.document import (
    KNOWN_SCHEMAS,
    RUN_SCHEMA,
    SWEEP_SCHEMA,
    JSONObject,
    RunDoc,
    SweepDoc,
)


class ReportError(Exception):
    """A results file cannot be reported on; the message names the file and why."""


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
