"""``fanout bench`` as a CI gate: its exit status, ``--fail-on`` and ``--junit``.

0 healthy, 1 a verdict at or above ``--fail-on``, 2 bad arguments, 3 an invalid run.
The runs are real: the lab starts ``faulty.py`` on a free port (or nothing at all).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fanout.cli import main
from fanout.lab.document import Verdict
from fanout.lab.gate import Case, ExitCode, FailOn, exit_code, fails, unmade
from fanout.lab.junit import junit_tree
from tests.lab.conftest import FAULTY
from tests.support.servers import free_port

# A short run: 3 receivers, 40 messages at 200/s.
SHORT = ("--receivers", "3", "--count", "40", "--rate", "200", "--duration", "2", "--drain", "1")


def bench(
    tmp_path: Path, *args: str, faults: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``fanout bench`` against ``faulty.py FAULTS`` started by the lab, results in tmp_path."""
    port = free_port()
    server = shlex.join([sys.executable, str(FAULTY), "--port", str(port), *faults])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fanout.cli",
            "bench",
            f"ws://127.0.0.1:{port}/ws",
            "--server-cmd",
            server,
            "-q",
            "-o",
            str(tmp_path / "run.json"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def test_a_healthy_run_exits_0_and_its_junit_case_passes(tmp_path: Path) -> None:
    report = tmp_path / "ci" / "r.xml"  # its directory is made
    run = bench(tmp_path, *SHORT, "--fail-on", "warn", "--junit", str(report))
    assert run.returncode == ExitCode.HEALTHY, run.stderr
    assert "exit 0" in run.stderr
    suite = junit(report)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    (case,) = suite.findall("testcase")
    assert case.find("failure") is None
    assert case.find("error") is None
    assert "ok: the server kept up" in (case.findtext("system-out") or "")
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["fail_on"] == "warn"


def test_a_broken_run_exits_1_and_its_junit_failure_names_the_cause_and_evidence(
    tmp_path: Path,
) -> None:
    run = bench(tmp_path, *SHORT, "--junit", str(tmp_path / "r.xml"), faults=("--drop-every", "9"))
    assert run.returncode == ExitCode.FAILED, run.stderr
    assert "exit 1" in run.stderr
    assert "loss" in run.stderr
    suite = junit(tmp_path / "r.xml")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "1", "0")
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("type") == "loss"
    message = failure.get("message") or ""
    assert message.startswith("break loss: 12 of 120 messages never reached")
    assert "lost=12" in message  # the evidence
    assert "lost_percent=10 %" in message  # in human units
    assert (tmp_path / "run.json").exists()  # the results are written all the same


def test_fail_on_never_lets_a_broken_run_pass(tmp_path: Path) -> None:
    run = bench(tmp_path, *SHORT, "--fail-on", "never", faults=("--drop-every", "9"))
    assert run.returncode == ExitCode.HEALTHY, run.stderr


def test_a_warning_fails_only_with_fail_on_warn(tmp_path: Path) -> None:
    # Any p99 misses a 1 us objective: a latency_slo warning, nothing worse.
    warned = ("--slo-p99-ms", "0.001")
    strict = bench(
        tmp_path, *SHORT, *warned, "--fail-on", "warn", "--junit", str(tmp_path / "r.xml")
    )
    assert strict.returncode == ExitCode.FAILED, strict.stderr
    failure = junit(tmp_path / "r.xml").find("testcase/failure")
    assert failure is not None
    assert failure.get("type") == "latency_slo"
    default = bench(tmp_path, *SHORT, *warned)
    assert default.returncode == ExitCode.HEALTHY, default.stderr


def test_nothing_listening_is_an_invalid_run_exit_3_and_a_junit_error(tmp_path: Path) -> None:
    port = free_port()  # nobody listens on it
    xml = tmp_path / "r.xml"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "fanout.cli", "bench", f"ws://127.0.0.1:{port}/ws"),
            *("--duration", "1", "--drain", "0.5", "-q", "-o", str(tmp_path / "run.json")),
            *("--junit", str(xml)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == ExitCode.INVALID, run.stderr
    assert "nothing was listening" in run.stderr
    suite = junit(xml)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    error = suite.find("testcase/error")
    assert error is not None
    assert error.get("type") == "invalid_run"
    assert f"nothing was listening at ws://127.0.0.1:{port}/ws" in (error.get("message") or "")
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["valid"] is False
    assert len(doc["invalid_reasons"]) == 1  # not the generator: a few ms of CPU prove nothing


def test_a_server_command_that_never_listens_is_exit_3_with_a_junit_error(tmp_path: Path) -> None:
    port = free_port()
    dies = shlex.join([sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"])
    xml = tmp_path / "r.xml"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "fanout.cli", "bench", f"ws://127.0.0.1:{port}/ws"),
            *("--server-cmd", dies, "-q", "-o", str(tmp_path / "run.json"), "--junit", str(xml)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == ExitCode.INVALID, run.stderr
    assert "boom: no config" in run.stderr
    error = junit(xml).find("testcase/error")
    assert error is not None
    assert "boom: no config" in (error.text or "")


def test_a_sweep_is_a_junit_case_per_point_and_fails_when_one_point_does(tmp_path: Path) -> None:
    # Message 60 is never broadcast: 51 messages at 50/s hold, 101 at 100/s do not.
    run = bench(
        tmp_path,
        *("--sweep", "--rates", "50,100", "--duration", "1", "--drain", "1", "--receivers", "2"),
        *("--junit", str(tmp_path / "r.xml")),
        faults=("--drop-every", "60"),
    )
    assert run.returncode == ExitCode.FAILED, run.stderr
    suite = junit(tmp_path / "r.xml")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    first, second = suite.findall("testcase")
    assert "rate 50/s" in (first.get("name") or "")
    assert first.find("failure") is None
    assert "rate 100/s" in (second.get("name") or "")
    failure = second.find("failure")
    assert failure is not None
    assert failure.get("type") == "loss"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-on", "maybe"], "invalid choice: 'maybe'"),
        (["--fail-on", "BREAK"], "invalid choice: 'BREAK'"),
        (["--junit", "{file}/report.xml"], "is a file"),
        (["--junit", "{file}/deeper/report.xml"], "is a file"),
        (["--junit", "{dir}"], "is a directory, not a file"),
        (["--junit", ""], "expected a file name"),
        (["-o", "{file}/run.json"], "is a file"),
    ],
)
def test_garbage_gate_arguments_are_refused_with_exit_2_before_running(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exited:
        main(["bench", "ws://127.0.0.1:1/ws", *args])
    assert exited.value.code == ExitCode.USAGE
    assert message in capsys.readouterr().err


# -- the decision, without running anything ---------------------------------------------


def verdict(severity: str, cause: str = "loss") -> Verdict:
    return Verdict(cause, severity, f"{cause} happened", {"lost": 3})


def case(*severities: str, invalid: str = "") -> Case:
    verdicts = tuple(verdict(s) for s in severities)
    failing = tuple(v for v in verdicts if fails(v, FailOn.BREAK))
    return Case("run", verdicts, failing, (invalid,) if invalid else (), 1.0)


@pytest.mark.parametrize(
    ("severity", "fail_on", "expected"),
    [
        ("break", FailOn.BREAK, True),
        ("warn", FailOn.BREAK, False),
        ("warn", FailOn.WARN, True),
        ("break", FailOn.WARN, True),
        ("info", FailOn.WARN, False),
        ("break", FailOn.NEVER, False),
        ("dreadful", FailOn.WARN, False),  # a severity this version does not know
    ],
)
def test_a_verdict_fails_the_gate_at_or_above_the_fail_on_level(
    severity: str, fail_on: FailOn, expected: bool
) -> None:
    assert fails(verdict(severity), fail_on) is expected


def test_a_trustworthy_failure_outranks_an_invalid_point_and_an_invalid_run_any_verdict() -> None:
    assert exit_code([case("info")]) is ExitCode.HEALTHY
    assert exit_code([case("break")]) is ExitCode.FAILED
    assert exit_code([case("break", invalid="generator saturated")]) is ExitCode.INVALID
    assert exit_code([case("info"), case("break"), unmade("p", "x")]) is ExitCode.FAILED
    assert exit_code([case("info"), unmade("p", "server died")]) is ExitCode.INVALID
    assert exit_code([]) is ExitCode.HEALTHY


def test_the_junit_report_holds_text_xml_cannot_and_still_parses() -> None:
    hostile = Case(
        "run <&> \x00\x1b[31m",
        (Verdict("handler_exception", "break", "KeyError('\x07text') & <b>", {"n": 1}),),
        (Verdict("handler_exception", "break", "KeyError('\x07text') & <b>", {"n": 1}),),
        (),
        0.5,
    )
    tree = junit_tree([hostile], FailOn.BREAK, command=["fanout", "bench", "\x01"])
    parsed = ET.fromstring(ET.tostring(tree.getroot()))
    failure = parsed.find("testsuite/testcase/failure")
    assert failure is not None
    assert "& <b>" in (failure.get("message") or "")
