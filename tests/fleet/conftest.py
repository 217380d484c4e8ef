"""Replicas as an operator runs them: `sovhub serve` processes sharing one PostgreSQL schema and one Redis."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sovhub.accounts import create_key, create_org
from sovhub.backends.catalog import add_backend
from sovhub.hub import Hub, build_hub
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
            # Live credit balances of this fleet only (a grant id of another run's schema is another grant).
            "SOVHUB_CREDITS__REDIS_PREFIX": self.prefix + "cr:",
            # One key store for every replica, as the chart mounts one volume (ReadWriteMany) in every pod.
            "SOVHUB_SOVEREIGNTY__KEY_STORE_DIR": str(self.root / "shared-keystore"),
            **extra,
        }

    def start(self, n: int, command: str = "serve", **env: str) -> list[RemoteHub]:
        """n replicas, each on its copy of the setup data dir (as from one config volume), started together."""
        new = []
        for _ in range(n):
            i = len(self.replicas)
            data_dir = self.root / f"replica{i}"
            shutil.copytree(self.root / "setup", data_dir)
            replica = RemoteHub(data_dir, env=self.env(**env), timeout=180, command=command)
            self.replicas.append(replica)
            new.append(replica)
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(RemoteHub.start, new))

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait(10)


@contextlib.contextmanager
def postgres_fleet(root: Path, upstream: FakeUpstream | None = None, key_limits: dict[str, int] | None = None,
                   setup: Callable[[Hub, Fleet], None] | None = None) -> Iterator[Fleet]:
    """A fresh PostgreSQL schema, the upstream, and the set-up data dir (org acme, an admin key, `key`, the upstream
    as a backend; then `setup(hub, fleet)`, before any replica starts). Replicas are started by `fleet.start`."""
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
    up = upstream or FakeUpstream(["tiny"])
    fleet = Fleet(root, url, redis, f"sovhub-test:{uuid.uuid4().hex[:10]}:", up)
    try:
        with up:
            hub = build_hub(make_settings(root / "setup", database_url=url))
            try:
                hub.pm.hook.sovhub_init(hub=hub)
                create_org(hub, "acme")
                fleet.admin_key = create_key(hub, "acme").secret  # an organization's first key is its admin
                fleet.key = create_key(hub, "acme", limits=key_limits).secret
                add_backend(hub, "tiny-upstream", url=up.url, models=up.models)
                if setup is not None:
                    setup(hub, fleet)
            finally:
                hub.close()
            try:
                yield fleet
            finally:
                fleet.stop_all()
    finally:
        _drop_schema(base, schema)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    with contextlib.ExitStack() as stack:

        def make(upstream: FakeUpstream | None = None, key_limits: dict[str, int] | None = None) -> Fleet:
            return stack.enter_context(postgres_fleet(tmp_path, upstream, key_limits))

        yield make
