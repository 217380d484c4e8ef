"""Two `sovhub serve` replicas on one PostgreSQL and one Redis behind a real HAProxy, as clients see them: one
hub. A web session made through the balancer is good on every replica and ends on every replica at sign-out;
a key's rpm and tpd are the hub's, not each replica's; a key revoked through the balancer is refused by every
replica within a second."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.server import RemoteHub, run_cli

from .balancer import HAProxy
from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: Caches far slower than the second asked for: only the published invalidation can explain a refusal.
SLOW_CACHES = {"SOVHUB_KEY_CACHE_TTL_S": "60", "SOVHUB_ACCESS__STATE_REFRESH_S": "60"}
RPM = 20
TPD = 100
EMAIL, PASSWORD = "operator@example.org", "a long enough password for the test"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _chat(client: httpx.Client, url: str, key: str) -> httpx.Response:
    return client.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})


def _served_2xx(lb: HAProxy) -> dict[str, int]:
    return {name: int(row["hrsp_2xx"]) for name, row in lb.stats().items()}


def _signed_in(url: str, cookie: str) -> bool:
    # /login sends a signed-in person on (303) and shows the form (200) to anyone else.
    r = httpx.get(url + "/login", headers={"cookie": f"sovhub_session={cookie}"}, timeout=10)
    assert r.status_code in (200, 303), r.status_code
    return r.status_code == 303


def _new_key(fleet: Fleet, *limits: str) -> str:
    out = run_cli(fleet.root / "setup", "keys", "create", "--org", "acme", *limits, env=fleet.env())
    return out.stdout.strip().splitlines()[-1]


def test_replicas_behind_haproxy_behave_as_one_hub(make_fleet: object, tmp_path: Path) -> None:
    fleet: Fleet = make_fleet(key_limits={"rpm": RPM})  # type: ignore[operator]
    run_cli(fleet.root / "setup", "users", "create", EMAIL, "--password-stdin", env=fleet.env(), input=PASSWORD + "\n")
    budget_lb, budget_one = _new_key(fleet, "--tpd", str(TPD)), _new_key(fleet, "--tpd", str(TPD))
    a, b = fleet.start(2, **SLOW_CACHES)
    with HAProxy(tmp_path, [a.port, b.port]) as lb:
        lb.wait_status("r0", "UP")
        lb.wait_status("r1", "UP")
        replicas: list[RemoteHub] = [a, b]
        with httpx.Client(base_url=lb.url, timeout=30) as web:
            # --- a web session: signed in through the balancer, good on both replicas, ended on both ---
            form = web.get("/login")
            assert form.status_code == 200
            signed = web.post("/login", data={"email": EMAIL, "password": PASSWORD,
                                              "csrf_token": CSRF.findall(form.text)[0], "next": "/"})
            assert signed.status_code == 303, signed.text[:500]
            cookie = web.cookies["sovhub_session"]
            assert all(_signed_in(r.url, cookie) for r in replicas), "the session is the hub's, not one replica's"
            home = web.get("/")
            assert home.status_code == 200
            out = web.post("/logout", data={"csrf_token": CSRF.findall(home.text)[0]})
            assert out.status_code == 303
            assert not any(_signed_in(r.url, cookie) for r in replicas), "signed out everywhere at once"

        with httpx.Client(timeout=30) as client:
            # --- rpm: RPM per minute for the hub, whichever replica answers ---
            before = _served_2xx(lb)
            statuses = [_chat(client, lb.url, fleet.key).status_code for _ in range(2 * RPM)]
            served = {k: v - before[k] for k, v in _served_2xx(lb).items()}
            print(f"\nrpm {RPM} through HAProxy (round robin, 2 replicas): {statuses.count(200)} served of "
                  f"{len(statuses)}, {statuses.count(429)} refused with 429; 2xx per replica {served}")
            assert statuses.count(200) == RPM and statuses.count(429) == RPM, statuses
            assert all(v >= RPM // 2 - 1 for v in served.values()), f"both replicas served: {served}"

            # --- tpd: the same sequence admits as many requests through two replicas as one replica alone ---
            def spend(url: str, key: str) -> tuple[int, int]:
                admitted = tokens = 0
                for _ in range(40):
                    r = _chat(client, url, key)
                    if r.status_code == 429:
                        continue
                    assert r.status_code == 200, r.text
                    admitted += 1
                    tokens += r.json()["usage"]["total_tokens"]
                return admitted, tokens

            through_lb, alone = spend(lb.url, budget_lb), spend(a.url, budget_one)
            print(f"tpd {TPD}: through HAProxy {through_lb[0]} requests / {through_lb[1]} tokens admitted, "
                  f"one replica alone {alone[0]} / {alone[1]}")
            assert through_lb == alone and through_lb[1] <= TPD and through_lb[0] > 1

            # --- revocation: made through the balancer, refused by every replica within a second ---
            for r in replicas:
                assert client.get(r.url + "/v1/models", headers={"authorization": f"Bearer {budget_one}"}
                                  ).status_code == 200  # cached on both
            prefix = budget_one.split("_", 1)[0]
            started = time.perf_counter()
            gone = client.delete(f"{lb.url}/hub/v1/keys/{prefix}",
                                 headers={"authorization": f"Bearer {fleet.admin_key}"})
            assert gone.status_code == 200, gone.text
            refused: dict[str, float] = {}
            while len(refused) < 2 and time.perf_counter() - started < 10:
                for r in replicas:
                    if r.url not in refused and client.get(
                            r.url + "/v1/models", headers={"authorization": f"Bearer {budget_one}"}).status_code == 401:
                        refused[r.url] = time.perf_counter() - started
                time.sleep(0.01)
            print(f"key revoked through HAProxy: refused by the replicas after "
                  f"{sorted(round(v * 1000) for v in refused.values())} ms (revocation request included)")
            assert len(refused) == 2 and max(refused.values()) < 1.0, refused
            assert all(_chat(client, lb.url, budget_one).status_code == 401 for _ in range(4))
