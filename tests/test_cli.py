from __future__ import annotations

import re
import subprocess
import sys

import pytest

from fanout.cli import main


def test_serve_help_documents_host_port_and_every_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in [
        "--host",
        "--port",
        "--max-message-bytes",
        "--outbox-max-messages",
        "--outbox-max-bytes",
        "--history-max-messages",
        "--history-max-bytes",
        "--max-connections",
    ]:
        assert flag in out
    assert "16777216" in out  # the default message size lets a phone photo through


def test_a_bad_limit_value_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--outbox-max-messages", "lots"])
    assert info.value.code == 2
    assert "outbox_max_messages: expected int, got 'lots'" in capsys.readouterr().err


def test_inconsistent_limits_are_refused_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--max-message-bytes", "2000000", "--outbox-max-bytes", "1000000"]) == 2
    assert "outbox_max_bytes must be >= max_message_bytes" in capsys.readouterr().err


def test_serve_help_explains_that_several_workers_need_the_redis_broker() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--workers INT" in out
    assert "needs --broker redis://HOST:PORT/DB" in " ".join(out.split())


def test_serve_help_has_no_empty_defaults_and_one_style_of_metavar() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "(default: )" not in out
    metavars = set(re.findall(r"^  --[a-z-]+ ([^ ,\n]+)", out, re.M))
    assert metavars <= {"INT", "FLOAT", "STR", "LEVEL"}, metavars


def test_fanout_version_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert re.fullmatch(r"fanout \d+\.\d+\.\d+\n", done.stdout), done.stdout


def test_an_unknown_log_format_is_refused_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--log-format", "xml"]) == 2
    assert "log_format must be text or json" in capsys.readouterr().err
