"""The JavaScript client (clients/js/fanout.js) in Node against real hubs.

The Node tests (``node:test``, clients/js/test/*.test.js) start their own ``fanout serve``
processes (with this interpreter) and a real ``redis-server`` where they need one, so
they can restart and kill hubs mid-test. Here: install the dev dependency ``ws`` when it
is missing (npm registry), run them, and fail with their output when one fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis import redis_binary

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: the JavaScript client's tests need Node.js 20+")
    return path


@pytest.fixture(scope="module")
def node_env() -> dict[str, str]:
    """The environment for ``node --test``, with ``ws`` installed in clients/js."""
    node = _tool("node")
    major = subprocess.run(
        [node, "-p", "process.versions.node.split('.')[0]"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert int(major) >= 20, f"Node.js 20+ needed, found {major.strip()}"
    if not (CLIENT / "node_modules" / "ws" / "package.json").exists():
        subprocess.run(
            [_tool("npm"), "install", "--no-audit", "--no-fund"],
            cwd=CLIENT,
            check=True,
            timeout=300,
        )
    return {**os.environ, "FANOUT_PYTHON": sys.executable, "REDIS_SERVER": redis_binary()}


NODE_TESTS = sorted(p.name for p in (CLIENT / "test").glob("*.test.js"))


def test_the_node_tests_are_found() -> None:
    assert {
        "hub.test.js",
        "auth.test.js",
        "redis.test.js",
        "hostile.test.js",
        "users.test.js",
        "users-hub.test.js",
        "ephemeral.test.js",
        "history-join.test.js",
    } <= set(NODE_TESTS)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("test_file", NODE_TESTS)
def test_the_javascript_client_passes_its_node_tests_against_real_hubs(
    node_env: dict[str, str], test_file: str
) -> None:
    result = subprocess.run(
        [_tool("node"), "--test", "--test-reporter=spec", f"test/{test_file}"],
        cwd=CLIENT,
        env=node_env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "ℹ fail 0" in result.stdout, result.stdout
