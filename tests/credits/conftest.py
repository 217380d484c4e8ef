"""Fixtures for the credits tests: a hub over SQLite or PostgreSQL, a funded programme, an org."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sovhub.accounts import create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.programmes import ProgrammeRules, create_programme
from sovhub.hub import Hub, build_hub
from tests.conftest import make_settings

# The safety models and the assistant's UI are not under test here and are slow to start.
OTHER_AREAS = ("sovhub.safety.plugin", "sovhub.assistant.plugin")


def credits_plugin_manager() -> Any:
    from sovhub.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    for name in OTHER_AREAS:
        pm.unregister(name=name)
    return pm


def credits_hub(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Hub:
    overrides.setdefault("safety", {"enabled": False, "warm_up": False})
    return build_hub(make_settings(data_dir, database_url=database_url, **overrides), pm=credits_plugin_manager())


@pytest.fixture
def hub(data_dir: Path, database_url: str | None) -> Iterator[Hub]:
    h = credits_hub(data_dir, database_url)
    yield h
    h.close()


@pytest.fixture
def programme(hub: Hub) -> Any:
    create_org(hub, "acme")
    return create_programme(hub, "Start-up Compute 2027", 1000 * MICRO,
                            [("National Fund", 6000), ("Bank", 3000), ("Foundation", 1000)],
                            ProgrammeRules(), actor="tests")
