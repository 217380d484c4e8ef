"""Docs a test keeps honest: generated references are current, and every hook, endpoint and command is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fastapi.routing import APIRoute

from sovhub import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md")) + (ROOT / "README.md").read_text()


def test_generated_reference_is_current() -> None:
    result = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_hook_is_documented() -> None:
    text = (DOCS / "plugins.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("sovhub_")]
    assert hooks
    missing = [h for h in hooks if f"`{h}(" not in text]
    assert not missing, f"hooks missing from docs/plugins.md: {missing}"


def _route_paths(routes: list, prefix: str = "") -> set[str]:
    """Every path, also inside routers FastAPI keeps as included-router objects."""
    paths: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            include = getattr(route, "include_context", None)
            sub = getattr(include, "prefix", "") or ""
            paths |= _route_paths(list(inner.routes), prefix + sub)
        elif isinstance(route, APIRoute) or hasattr(route, "path"):
            paths.add(prefix + route.path)
    return paths


def test_every_endpoint_is_documented(hub) -> None:
    from sovhub.app import create_app

    app = create_app(hub)
    text = _all_docs()
    paths = sorted(re.sub(r":\w+}", "}", p) for p in _route_paths(list(app.routes)) if not p.startswith("/static"))
    assert "/v1/chat/completions" in paths and len(paths) > 10
    missing = [p for p in paths if f"`{p}" not in text and f" {p}`" not in text and p not in text]
    assert not missing, f"endpoints missing from docs/: {missing}"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test\b", readme, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
