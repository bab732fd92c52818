"""Dependencies point one way, checked on the source (lazy imports included).

protocol <- core <- brokers / auth <- asgi <- cli, with settings and backoff neutral at
the bottom (they import nothing from fanout). The client and the lab are the other
halves: the server never imports them. docs/decisions.md says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fanout
import fanout.backoff
import fanout.client

SRC = Path(fanout.__file__).parent

# What each part of the package may import from fanout (besides itself).
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "backoff": set(),
    "protocol": set(),
    "core": {"protocol"},
    "brokers": {"protocol", "core", "backoff"},
    "auth": {"protocol", "core"},
    "apps": {"protocol", "core"},
    "asgi": {"protocol", "core", "brokers", "auth", "settings"},
    "client": {"protocol", "backoff"},
    "lab": {"protocol"},
}
# The top: they wire everything together and may import any part.
WIRING = ("cli", "__init__")
SERVER = ("protocol", "core", "brokers", "auth", "apps", "asgi")
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, lazy ones included: ``from fanout import x`` counts
    as ``fanout.x``, a relative import as the absolute module it names."""
    package = ["fanout", *path.relative_to(SRC).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            if base == "fanout":
                names.update(f"fanout.{alias.name}" for alias in node.names)
    return names


def _part(module: str) -> str:
    """``fanout.core.hub`` -> ``core``; ``fanout.settings`` -> ``settings``."""
    return module.split(".")[1] if module.count(".") else ""


def _modules() -> dict[str, set[str]]:
    return {
        str(path.relative_to(SRC)): _imports(path)
        for path in sorted(SRC.rglob("*.py"))
        if path.parent != SRC or path.name != "__init__.py"
    }


def test_each_part_imports_only_the_parts_below_it() -> None:
    wrong: dict[str, list[str]] = {}
    for name, imports in _modules().items():
        part = name.split("/")[0].removesuffix(".py")
        if part in WIRING:
            continue
        assert part in ALLOWED, f"{name}: a part of the package the layers do not name"
        allowed = ALLOWED[part] | {part}
        bad = [
            module
            for module in sorted(imports)
            if module.startswith("fanout.") and _part(module) not in allowed
        ]
        if bad:
            wrong[name] = bad
    assert wrong == {}


def test_only_asgi_on_the_server_side_imports_the_web_framework() -> None:
    wrong = {
        name: sorted(m for m in imports if m.split(".")[0] in WEB_FRAMEWORKS)
        for name, imports in _modules().items()
        if name.split("/")[0] in SERVER and not name.startswith("asgi/")
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_only_the_redis_broker_imports_redis_code() -> None:
    wrong = {
        name: sorted(m for m in imports if m == "hiredis" or m.startswith("fanout.brokers.redis"))
        for name, imports in _modules().items()
        if not name.startswith(("brokers/redis/", "asgi/wiring", "asgi/emitters"))
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_the_client_still_exports_the_shared_backoff() -> None:
    assert fanout.client.Backoff is fanout.backoff.Backoff
