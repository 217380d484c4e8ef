"""Periodic work (retention purge, audit signing) runs once across three hubs on one PostgreSQL and Redis,
and carries on when the replica doing it stops."""

from __future__ import annotations

import shutil
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sovhub.accounts import create_org
from sovhub.app import create_app
from sovhub.fleet.leases import LEASE_SHARE, Leases
from sovhub.hub import Hub, build_hub
from sovhub.plugins import get_plugin_manager
from sovhub.sovereignty.tables import AuditSignature
from tests.access.conftest import redis_url
from tests.conftest import _drop_schema, _pg_schema_url, make_settings, need_service, postgres_url

pytestmark = [pytest.mark.slow, pytest.mark.services]

INTERVAL = 0.3


def _hub(data_dir: Path, database_url: str, redis: str, prefix: str) -> Hub:
    pm = get_plugin_manager(load_entrypoints=False)
    for name in ("sovhub.safety.plugin", "sovhub.assistant.plugin"):  # slow to start, not under test
        pm.unregister(name=name)
    settings = make_settings(
        data_dir, database_url=database_url, embeddings_enabled=False,
        access={"redis_url": redis, "redis_prefix": prefix},
        sovereignty={"purge_interval_s": INTERVAL, "audit_sign_interval_s": INTERVAL},
    )
    return build_hub(settings, pm=pm)


def test_periodic_work_runs_once_across_three_hubs_and_survives_one_stopping(tmp_path: Path) -> None:
    base = postgres_url()
    if not base:
        need_service("PostgreSQL not configured: set SOVHUB_TEST_DATABASE_URL")
    assert base is not None
    redis = redis_url()
    url, schema = _pg_schema_url(base)
    prefix = f"sovhub-test:{uuid.uuid4().hex[:10]}:"
    hubs: list[Hub] = []
    try:
        setup = _hub(tmp_path / "setup", url, redis, prefix)
        setup.pm.hook.sovhub_init(hub=setup)
        setup.close()
        for i in range(3):
            shutil.copytree(tmp_path / "setup", tmp_path / f"hub{i}")
            hubs.append(_hub(tmp_path / f"hub{i}", url, redis, prefix))
        with ExitStack() as stack:
            clients = [stack.enter_context(TestClient(create_app(h))) for h in hubs]
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < 3.0:  # the audit chain keeps growing: every round has work
                create_org(hubs[n % 3], f"org-{n}")
                n += 1
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            runs = [h.services.get(Leases).runs.copy() for h in hubs]
            with hubs[0].db.session() as s:
                signatures = int(s.scalar(select(func.count()).select_from(AuditSignature)) or 0)
            # The replica doing most of the work stops; the others take over within a round.
            busiest = max(range(3), key=lambda i: runs[i]["retention-purge"])
            clients[busiest].__exit__(None, None, None)
            before = sum(runs[i]["retention-purge"] for i in range(3) if i != busiest)
            time.sleep(1.5)
            after = sum(h.services.get(Leases).runs["retention-purge"] for i, h in enumerate(hubs) if i != busiest)
            clients.pop(busiest)
    finally:
        for h in hubs:
            h.close()
        _drop_schema(base, schema)

    purges = sum(r["retention-purge"] for r in runs)
    signs = sum(r["audit-sign"] for r in runs)
    # One per lease (a lease lasts LEASE_SHARE of the interval), the first round at start, one of slack.
    at_most = int(elapsed / (INTERVAL * LEASE_SHARE)) + 3
    per_replica = int(elapsed / INTERVAL) + 1
    print(f"\n3 hubs, {elapsed:.1f} s, interval {INTERVAL} s: {purges} purges "
          f"(per hub {[r['retention-purge'] for r in runs]}), {signs} signing rounds, {signatures} signatures; without leases each hub would run ~{per_replica}")
    assert at_most < 2 * per_replica  # the bound tells one runner from three
    assert 3 <= purges <= at_most, runs
    assert 3 <= signs <= at_most, runs
    assert signatures <= signs
    assert after - before >= 3, "the remaining hubs carry on after the busiest one stopped"
