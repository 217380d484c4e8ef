"""Three `sovhub serve` replicas on one PostgreSQL and one Redis behind a real HAProxy, set up once for a test
module (started together), and the probes its tests measure them with.

The set-up is made in the set-up data dir before any replica starts, so every replica starts with it:

- org `acme`: `fleet.key` (rpm 20), keys with a tpd of 100 (two), a token budget, one for the tier change, one
  for the limit change; a staff-less person who signs in to the web app;
- org `credex` holds a grant of `PAID_GRANT` credits; model `paid` costs exactly one credit a request;
- org `repricer` holds a large grant; model `repriced` costs one credit a request until a test re-prices it;
- org `retainer` keeps its exchanges (the default retention) until a test sets zero retention;
- model `gold` is in the custom tier `gold`, which no organization holds yet.

Caches are far slower than the second the tests ask for (`SLOW_CACHES`), so only the published invalidation
can explain a change seen within it; the audit head is signed every `SIGN_EVERY_S`, once across the replicas.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from sovhub.access.tiers import set_tier
from sovhub.accounts import create_key, create_org
from sovhub.assistant.people import create_user
from sovhub.credits.amounts import MICRO
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.hub import Hub
from tests.server import RemoteHub, run_cli
from tests.upstream_server import FakeUpstream

from .balancer import HAProxy
from .conftest import Fleet, postgres_fleet

__all__ = ["OneHub", "Probe", "changes_seen", "chat", "seen_after", "three_behind_haproxy"]

SLOW_CACHES = {"SOVHUB_KEY_CACHE_TTL_S": "60", "SOVHUB_ACCESS__STATE_REFRESH_S": "60"}
SIGN_EVERY_S = 0.5
RPM = 20
TPD = 100
#: A 12-character prompt is estimated at 3 tokens, and the upstream reports 3 prompt tokens and its 4 words:
#: a request reserves exactly what it spends (7 tokens), so a token limit can be met exactly.
PROMPT, MAX_TOKENS, TOKENS_EACH = "hello there!", 4, 7
BUDGET_REQUESTS = 30
#: 0.25 credits per output token, input free: a two-character prompt (estimated at 0 tokens) with max_tokens 4
#: reserves exactly one credit, and its 4 answer tokens cost exactly that.
PAID_PROMPT, PAID_GRANT = "hi", 60
EMAIL, PASSWORD = "operator@example.org", "a long enough password for the test"
KEYS = {"tpd_lb": {"tpd": TPD}, "tpd_one": {"tpd": TPD}, "budget": {"tpd": TOKENS_EACH * BUDGET_REQUESTS},
        "tier": None, "limits": {"rpm": 100_000}, "revoked": None}


@dataclass
class OneHub:
    fleet: Fleet
    replicas: list[RemoteHub]
    lb: HAProxy
    engine: Engine
    keys: dict[str, str] = field(default_factory=dict)

    def db(self) -> Session:
        return Session(self.engine)

    def served_2xx(self) -> dict[str, int]:
        """2xx answers so far per replica (r0, r1, r2), as HAProxy counted them."""
        return {name: int(row["hrsp_2xx"]) for name, row in self.lb.stats().items()}

    def cli(self, *args: str) -> str:
        return run_cli(self.fleet.root / "setup", *args, env=self.fleet.env()).stdout

    def channel(self) -> str:
        return f"{self.fleet.prefix}invalidate"


def chat(client: httpx.Client, url: str, key: str, model: str = "tiny", rid: str | None = None,
         prompt: str = PROMPT) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **({"x-request-id": rid} if rid else {})}
    return client.post(url + "/v1/chat/completions", headers=headers, json={
        "model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt}]})


def _setup(keys: dict[str, str]) -> Callable[[Hub, Fleet], None]:
    def setup(hub: Hub, fleet: Fleet) -> None:
        keys["rpm"], keys["admin"] = fleet.key, fleet.admin_key
        create_user(hub, EMAIL, PASSWORD, actor="tests")
        for name, limits in KEYS.items():
            keys[name] = create_key(hub, "acme", name=name, limits=limits).secret
        create_programme(hub, "Fleet", 1_000_000 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
        for model in ("paid", "repriced"):
            set_price(hub, model, input_per_1m=0, output_per_1m=250_000 * MICRO, actor="tests")
        for org, credits in (("credex", PAID_GRANT), ("repricer", 10_000), ("retainer", 0)):
            create_org(hub, org)
            keys[org] = create_key(hub, org, scopes=["inference"]).secret
            if credits:
                grant_credits(hub, "Fleet", org, credits * MICRO, reason="tests", actor="tests")
        set_tier(hub, "gold", "gold", actor="tests")

    return setup


@contextlib.contextmanager
def three_behind_haproxy(root: Path) -> Iterator[OneHub]:
    keys: dict[str, str] = {}
    upstream = FakeUpstream(["tiny", "paid", "repriced", "gold"], words=MAX_TOKENS)
    with postgres_fleet(root, upstream, key_limits={"rpm": RPM}, setup=_setup(keys)) as fleet:
        replicas = fleet.start(3, **SLOW_CACHES, SOVHUB_SOVEREIGNTY__AUDIT_SIGN_INTERVAL_S=str(SIGN_EVERY_S))
        engine = create_engine(fleet.database_url)
        try:
            with HAProxy(root, [r.port for r in replicas]) as lb:
                for i in range(3):
                    lb.wait_status(f"r{i}", "UP")
                yield OneHub(fleet, replicas, lb, engine, keys)
        finally:
            engine.dispose()


# --- a change made once, seen by every replica ---------------------------------------------------------------


@dataclass
class Probe:
    """One request to one replica: when it started and ended (wall clock), and what it saw."""

    replica: int
    started: float
    ended: float
    seen: Any


def changes_seen(one: OneHub, event: str, change: Callable[[], object],
                 probe: Callable[[httpx.Client, RemoteHub], Any], after_s: float = 2.5,
                 ) -> tuple[float, list[Probe]]:
    """Probe every replica in turn, from before `change()` until `after_s` after the change was published.

    Returns when the change was published (the `at` of its message on the hub's invalidation channel, sent
    right after its transaction committed) and every probe made.
    """
    subscriber = redis.Redis.from_url(one.fleet.redis_url, decode_responses=True)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(one.channel())
    probes: list[Probe] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    for i, replica in enumerate(one.replicas):
                        started = time.time()
                        seen = probe(client, replica)
                        probes.append(Probe(i, started, time.time(), seen))
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - shown by the test, not lost with the thread
            failed.append(exc)

    prober = threading.Thread(target=run, daemon=True)
    try:
        prober.start()
        time.sleep(0.5)  # some probes before the change
        change()
        published = None
        deadline = time.monotonic() + 10
        while published is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
            if message and message.get("type") == "message":
                data = json.loads(message["data"])
                if data["event"] == event:
                    published = float(data["at"])
        assert published is not None, f"{event} was never published on {one.channel()}"
        while time.time() < published + after_s:
            time.sleep(0.05)
    finally:
        stop.set()
        prober.join(15)
        pubsub.close()
        subscriber.close()
    if failed:
        raise AssertionError(f"a probe failed: {failed[0]!r}") from failed[0]
    return published, probes


def seen_after(published: float, probes: list[Probe], changed: Callable[[Any], bool]) -> dict[int, float]:
    """Per replica, seconds from publication to its first probe that saw the change; checks that probes ended well
    before it did not see it, and that every probe after the first that did saw it too."""
    first: dict[int, float] = {}
    for i in range(3):
        mine = [p for p in probes if p.replica == i]
        before = [p for p in mine if p.ended < published - 0.3]
        assert before and not any(changed(p.seen) for p in before), f"replica {i} saw it before it was made"
        seen = [k for k, p in enumerate(mine) if changed(p.seen)]
        assert seen, f"replica {i} never saw the change"
        assert all(changed(p.seen) for p in mine[seen[0]:]), f"replica {i} went back to the old state"
        first[i] = mine[seen[0]].started - published
    return first
