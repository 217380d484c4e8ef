"""A change made through one replica (or the CLI) is in force on every replica within a second."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.server import RemoteHub, run_cli

from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: Long enough that no cache expiry can explain a refusal: only the published invalidation can.
SLOW_CACHES = {"SOVHUB_KEY_CACHE_TTL_S": "60", "SOVHUB_ACCESS__STATE_REFRESH_S": "60"}
WITHIN_S = 1.0


def _models(replica: RemoteHub, key: str) -> httpx.Response:
    return httpx.get(replica.url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=5)


def _until_refused(replicas: list[RemoteHub], key: str, started: float, refused: int, deadline_s: float = 10.0,
                   ) -> dict[str, float]:
    """Seconds from `started` until each replica refuses `key` (status `refused`); asks every 10 ms."""
    when: dict[str, float] = {}
    while len(when) < len(replicas) and time.perf_counter() - started < deadline_s:
        for replica in replicas:
            if replica.url not in when and _models(replica, key).status_code == refused:
                when[replica.url] = time.perf_counter() - started
        time.sleep(0.01)
    return when


def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_a_second(make_fleet: object) -> None:
    fleet: Fleet = make_fleet()  # type: ignore[operator]
    a, b, c = fleet.start(3, **SLOW_CACHES)
    prefix = fleet.key.split("_", 1)[0]
    for replica in (a, b, c):  # every replica has the key in its cache
        assert _models(replica, fleet.key).status_code == 200

    started = time.perf_counter()
    r = httpx.delete(f"{a.url}/hub/v1/keys/{prefix}", headers={"authorization": f"Bearer {fleet.admin_key}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    when = _until_refused([b, c], fleet.key, started, refused=401)
    print(f"\nkey revoked on replica A: refused by B after {when.get(b.url, float('nan')) * 1000:.0f} ms, "
          f"by C after {when.get(c.url, float('nan')) * 1000:.0f} ms (revocation request included)")
    assert set(when) == {b.url, c.url}, f"still accepted after 10 s: {when}"
    assert max(when.values()) < WITHIN_S, when
    assert _models(b, fleet.key).json()["error"]["code"] == "revoked_api_key"
    assert _models(c, fleet.admin_key).status_code == 200  # only that key is gone

    # A change made by the CLI (no server in that process) reaches every replica too.
    assert all(_models(r, fleet.admin_key).json()["data"] for r in (a, b, c))  # listed while it is open
    run_cli(fleet.root / "setup", "models", "set-tier", "tiny", "verified", env=fleet.env())
    started = time.perf_counter()  # the CLI has committed and published, and exited
    hidden: dict[str, float] = {}
    while len(hidden) < 3 and time.perf_counter() - started < 10:
        for replica in (a, b, c):
            if replica.url not in hidden and not _models(replica, fleet.admin_key).json()["data"]:
                hidden[replica.url] = time.perf_counter() - started
        time.sleep(0.01)
    print(f"model moved to the verified tier by the CLI: hidden on all 3 replicas "
          f"{max(hidden.values(), default=float('nan')) * 1000:.0f} ms after the CLI exited")
    assert len(hidden) == 3, hidden
    assert max(hidden.values()) < WITHIN_S, hidden
