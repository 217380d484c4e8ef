"""Fixtures of the pipeline, PII, policy and appeals tests (imported by those modules only, so
the moderation tests in this folder keep the default settings): a hub running the PII guard and
a deterministic marker guard.

The semantic guard (a trained classifier over e5 embeddings) has its own tests; here the
pipeline is driven by :class:`MarkerGuard`, which flags fixed words, so every decision a test
asserts is one the test chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub
from sovhub.safety.guards import GuardFinding
from sovhub.settings import Settings
from tests.conftest import make_settings

MARKERS = {"KABOOM": "S1", "WARNWORD": "S12"}


class MarkerGuard:
    name = "marker"

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        out = []
        for word, code in MARKERS.items():
            at = text.find(word)
            if at >= 0:
                out.append(GuardFinding(code, 0.99, self.name, at, at + len(word)))
        return out


class MarkerPlugin:
    """Contributes one guard, whose behaviour a test may swap through ``guard`` at any time (the hub
    keeps the guards it collected, so the plugin hands it a stand-in that reads ``guard`` per scan)."""

    def __init__(self) -> None:
        self.guard = MarkerGuard()

    @hookimpl
    def sovhub_guards(self, hub: Any) -> list[Any]:
        return [_Current(self)]


class _Current:
    def __init__(self, plugin: MarkerPlugin) -> None:
        self.plugin = plugin

    @property
    def name(self) -> str:
        return self.plugin.guard.name

    def scan(self, text: str, lang: str | None) -> list[GuardFinding]:
        return self.plugin.guard.scan(text, lang)


@pytest.fixture(name="settings")
def pipeline_settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, embeddings_enabled=False, safety={"guards": ["pii"]})


@pytest.fixture(name="marker")
def marker_fixture(hub: Hub) -> Iterator[MarkerPlugin]:
    plugin = MarkerPlugin()
    hub.pm.register(plugin, name="tests.marker")
    yield plugin
    hub.pm.unregister(name="tests.marker")
