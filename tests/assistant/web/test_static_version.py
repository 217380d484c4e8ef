"""The `?v=` of the page's CSS and JS follows their content, so a changed file is never served stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.assistant.web import render


def test_the_version_changes_with_the_files_and_only_with_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app.css").write_text("body { color: black }", encoding="utf-8")
    (tmp_path / "app.js").write_text("console.log(1)", encoding="utf-8")
    monkeypatch.setattr(render, "_STATIC_DIR", tmp_path)
    first = render.static_version()
    assert render.static_version() == first
    (tmp_path / "app.css").write_text("body { color: navy }", encoding="utf-8")
    assert render.static_version() != first


def test_the_pages_link_the_shipped_files_version() -> None:
    version = render.environment().globals["static_version"]
    assert version == render.static_version() and len(version) == 12
    html = render.environment().from_string(
        '<link href="/static/app.css?v={{ static_version }}">').render()
    assert f"app.css?v={version}" in html
