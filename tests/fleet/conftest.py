"""Replicas as an operator runs them: `sovhub serve` processes sharing one PostgreSQL schema and one Redis."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sovhub.accounts import create_key, create_org
from sovhub.backends.catalog import add_backend
from sovhub.hub import build_hub
from tests.access.conftest import redis_url
from tests.conftest import _drop_schema, _pg_schema_url, make_settings, need_service, postgres_url
from tests.server import RemoteHub
from tests.upstream_server import FakeUpstream


@dataclass
class Fleet:
    root: Path
    database_url: str
    redis_url: str
    prefix: str
    upstream: FakeUpstream
    admin_key: str = ""
    key: str = ""
    replicas: list[RemoteHub] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")}
        return {
            **base,
            "SOVHUB_DATABASE_URL": self.database_url,
            "SOVHUB_EMBEDDED_ENABLED": "false",
            "SOVHUB_EMBEDDINGS_ENABLED": "false",
            # Other areas' start-up work (safety classifier training) is not what these tests measure.
            "SOVHUB_SAFETY__ENABLED": "false",
            "SOVHUB_ACCESS__REDIS_URL": self.redis_url,
            "SOVHUB_ACCESS__REDIS_PREFIX": self.prefix,
            # One key store for every replica, as the chart mounts one volume (ReadWriteMany) in every pod.
            "SOVHUB_SOVEREIGNTY__KEY_STORE_DIR": str(self.root / "shared-keystore"),
            **extra,
        }

    def start(self, n: int, command: str = "serve", **env: str) -> list[RemoteHub]:
        """n replicas, each on its copy of the setup data dir (as from one config volume)."""
        started = []
        for _ in range(n):
            i = len(self.replicas)
            data_dir = self.root / f"replica{i}"
            shutil.copytree(self.root / "setup", data_dir)
            replica = RemoteHub(data_dir, env=self.env(**env), timeout=180, command=command)
            self.replicas.append(replica)
            started.append(replica.start())
        return started

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait(10)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    base = postgres_url()
    if not base:
        need_service("PostgreSQL not configured: set SOVHUB_TEST_DATABASE_URL")
    assert base is not None
    redis = redis_url()
    try:
        url, schema = _pg_schema_url(base)
    except Exception as exc:  # noqa: BLE001 - any connection failure means the service is missing
        need_service(f"PostgreSQL at {base} not reachable: {exc}")
        raise
    fleets: list[Fleet] = []
    upstreams: list[FakeUpstream] = []

    def make(upstream: FakeUpstream | None = None, key_limits: dict[str, int] | None = None) -> Fleet:
        up = upstream or FakeUpstream(["tiny"])
        up.__enter__()
        upstreams.append(up)
        fleet = Fleet(tmp_path, url, redis, f"sovhub-test:{uuid.uuid4().hex[:10]}:", up)
        setup = build_hub(make_settings(tmp_path / "setup", database_url=url))
        try:
            setup.pm.hook.sovhub_init(hub=setup)
            create_org(setup, "acme")
            fleet.admin_key = create_key(setup, "acme").secret  # an organization's first key is its admin
            fleet.key = create_key(setup, "acme", limits=key_limits).secret
            add_backend(setup, "tiny-upstream", url=up.url, models=up.models)
        finally:
            setup.close()
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.stop_all()
        for up in upstreams:
            up.__exit__()
        _drop_schema(base, schema)
