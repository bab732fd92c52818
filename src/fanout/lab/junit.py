"""``fanout bench --junit FILE``: the gate's cases as a JUnit XML report, for CI.

One ``<testsuite name="fanout bench">`` (inside ``<testsuites>``), one ``<testcase>`` per
run or sweep point. A case that failed the gate has one ``<failure>``: its ``type`` is
the worst failing cause, its ``message`` every failing verdict with its summary and
evidence (in human units), its text the same, one verdict a line. An invalid run has an
``<error type="invalid_run">`` saying why it cannot be trusted. Every case lists all its
verdicts in ``<system-out>``, passing ones included. The suite's properties hold the
``--fail-on`` level and the command line.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from fanout.lab.gate import Case, FailOn, Status, verdict_line

SUITE = "fanout bench"
CLASSNAME = "fanout.bench"
#: Characters XML 1.0 cannot hold, even escaped (a server's log may contain them).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _testcase(case: Case) -> ET.Element:
    element = ET.Element(
        "testcase",
        {"classname": CLASSNAME, "name": _clean(case.name), "time": f"{case.time_s:.3f}"},
    )
    if case.status is Status.ERROR:
        reasons = "; ".join(case.invalid_reasons)
        error = ET.SubElement(
            element,
            "error",
            {"type": "invalid_run", "message": _clean(f"invalid run: {reasons}")},
        )
        error.text = _clean("\n".join(case.invalid_reasons))
    elif case.status is Status.FAILED:
        lines = [verdict_line(v) for v in case.failing]
        failure = ET.SubElement(
            element,
            "failure",
            {"type": case.failing[0].cause, "message": _clean("; ".join(lines))},
        )
        failure.text = _clean("\n".join(lines))
    if case.verdicts:
        out = ET.SubElement(element, "system-out")
        out.text = _clean("\n".join(verdict_line(v) for v in case.verdicts))
    return element


def junit_tree(
    cases: Sequence[Case], fail_on: FailOn, *, command: Sequence[str] | None = None
) -> ET.ElementTree[ET.Element]:
    """The report as an element tree (``<testsuites>`` holding one ``<testsuite>``)."""
    failures = sum(1 for case in cases if case.status is Status.FAILED)
    errors = sum(1 for case in cases if case.status is Status.ERROR)
    total = f"{sum(case.time_s for case in cases):.3f}"
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": SUITE, **counts, "time": total})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": SUITE,
            **counts,
            "skipped": "0",
            "time": total,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": _clean(socket.gethostname()),
        },
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "fail_on", "value": fail_on.value})
    if command:
        ET.SubElement(
            properties, "property", {"name": "command", "value": _clean(" ".join(command))}
        )
    suite.extend(_testcase(case) for case in cases)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(
    cases: Sequence[Case], path: Path, fail_on: FailOn, *, command: Sequence[str] | None = None
) -> None:
    """Write the report to ``path`` (through a temporary file: never half written),
    making its directory if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    junit_tree(cases, fail_on, command=command).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
