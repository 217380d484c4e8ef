"""The `?v=` of the page's CSS and JS follows their content, so a changed file is never served stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.assistant.web import render
from tests.assistant.web.conftest import Web


def test_the_version_changes_with_the_files_and_only_with_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app.css").write_text("body { color: black }", encoding="utf-8")
    (tmp_path / "app.js").write_text("console.log(1)", encoding="utf-8")
    monkeypatch.setattr(render, "STATIC_DIR", tmp_path)
    first = render.static_version()
    assert render.static_version() == first
    (tmp_path / "app.css").write_text("body { color: navy }", encoding="utf-8")
    assert render.static_version() != first


def test_the_login_page_links_the_shipped_files_by_their_version(web: Web) -> None:
    html = web.client.get("/login").text
    version = render.static_version()
    assert f"/static/app.css?v={version}" in html and f"/static/app.js?v={version}" in html
