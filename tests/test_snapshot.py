"""The in-memory snapshots admission reads (access state, credit state) follow the database.

Rows are written straight into the database, as another replica would, so only a reload can
make them seen: in the background while the app runs, lazily once stale without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from sovhub.access.state import AccessState
from sovhub.access.tables import ModelTier
from sovhub.accounts import create_org
from sovhub.credits.control import Credits
from sovhub.credits.tables import CreditGrant, CreditProgramme
from sovhub.hub import Hub
from sovhub.settings import Settings
from tests.conftest import make_settings

REFRESH_S = 0.05


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, access={"state_refresh_s": REFRESH_S})


def _tier_elsewhere(hub: Hub, model: str, tier: str) -> None:
    with hub.db.session() as s:
        s.merge(ModelTier(model=model, tier=tier))


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(REFRESH_S / 2)
    return False


async def test_the_background_task_reloads_and_stops_with_the_block(hub: Hub) -> None:
    state = AccessState(hub)
    async with state.refreshing():
        assert state.tier("m") == "open"
        _tier_elsewhere(hub, "m", "verified")
        assert await _until(lambda: state.tier("m") == "verified")
    loops = [t for t in asyncio.all_tasks() if t.get_name() == "sovhub-access-state"]
    assert loops == []


def test_without_the_task_a_stale_snapshot_is_reloaded_on_use(hub: Hub) -> None:
    state = AccessState(hub)
    assert state.tier("m") == "open"
    _tier_elsewhere(hub, "m", "verified")
    assert state.tier("m") == "open"  # fresh: not read again
    time.sleep(REFRESH_S * 2)
    assert state.tier("m") == "verified"


class _Blinking(AccessState):
    """The access state over a database that stops answering after the first read."""

    reads = 0

    def read(self) -> None:
        self.reads += 1
        if self.reads > 1:
            raise OperationalError("SELECT", {}, Exception("database unreachable"))
        super().read()


async def test_a_failed_reload_keeps_the_last_snapshot_serving(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    _tier_elsewhere(hub, "m", "verified")
    state = _Blinking(hub)
    with caplog.at_level(logging.WARNING, logger="sovhub.snapshot"):
        async with state.refreshing():
            assert await _until(lambda: state.reads >= 3)
            assert state.tier("m") == "verified"
    assert "access state reload failed, keeping the last one" in caplog.text


async def test_the_credit_state_follows_a_grant_made_elsewhere(hub: Hub) -> None:
    org = create_org(hub, "acme")
    state = hub.services.get(Credits).state
    async with state.refreshing():
        assert state.grants(org.id) == []
        with hub.db.session() as s:
            programme = CreditProgramme(name="seed", budget=1000, created_by="test")
            s.add(programme)
            s.flush()
            s.add(CreditGrant(programme_id=programme.id, org_id=org.id, amount=500, reason="test", created_by="test"))
        assert await _until(lambda: [g.amount for g in state.grants(org.id)] == [500])
