"""The client sits on top: the server side never imports it, and what both use (the
backoff) lives in a neutral module that imports nothing else from fanout."""

from __future__ import annotations

import ast
from pathlib import Path

import fanout
import fanout.backoff
import fanout.client

SRC = Path(fanout.__file__).parent


def _fanout_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name for name in names if name == "fanout" or name.startswith("fanout.")}


def test_the_backoff_imports_nothing_from_fanout() -> None:
    assert _fanout_imports(SRC / "backoff.py") == set()


def test_nothing_outside_the_client_imports_the_client() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(
            name for name in _fanout_imports(path) if name.startswith("fanout.client")
        )
        for path in SRC.rglob("*.py")
        if "client" not in path.relative_to(SRC).parts[:1]
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_client_still_exports_the_shared_backoff() -> None:
    assert fanout.client.Backoff is fanout.backoff.Backoff
