"""The gateway's own tests run without the safety pipeline (tests/safety covers it, and the contract
suite runs the whole hub with it on): what they check is routing, streaming and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.settings import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, safety={"enabled": False})
