"""The operator console over HTTP: request log (metadata only), usage charts, backends, people and
organizations, each through the CLI's domain function, audited, staff-only and CSRF-checked."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.accounts import create_key, create_org, list_orgs
from sovhub.backends.catalog import backend_configs
from sovhub.backends.registry import BackendRegistry
from sovhub.egress import Egress
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.base import utcnow
from sovhub.store.tables import ApiKey, UsageRecord, User
from tests.upstream_server import FakeUpstream

from .conftest import PASSWORD, Web, sse_events


@pytest.fixture
def staff(signed_in: Web) -> Web:
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    return signed_in


def _post(web: Web, path: str, data: dict[str, str], page: str = "/admin") -> Any:
    return web.client.post(path, data={"csrf_token": web.csrf(page), **data}, follow_redirects=False)


def _audit(web: Web, event: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with web.hub.db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.seq))
        return [(r.actor, r.subject, json.loads(r.data)) for r in rows]


def _traffic(web: Web) -> None:
    org = create_org(web.hub, "ministry-of-health")
    key = create_key(web.hub, "ministry-of-health")
    with web.hub.db.session() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.prefix == key.prefix))
        now = utcnow()
        for i, (model, tokens, status) in enumerate([("big-model", 900, 200), ("echo", 40, 200), ("echo", 0, 503)]):
            s.add(UsageRecord(ts=now - timedelta(minutes=i), request_id=f"req_{i}", org_id=org.id, key_id=key_id,
                              endpoint="chat", model=model, backend="fake1", prompt_tokens=tokens // 2,
                              completion_tokens=tokens - tokens // 2, latency_ms=12.5, status=status))
        s.add(UsageRecord(ts=now - timedelta(days=40), request_id="req_old", org_id=org.id, key_id=key_id,
                          endpoint="chat", model="ancient", prompt_tokens=5, completion_tokens=5))


def test_the_request_log_shows_metadata_and_never_content(staff: Web) -> None:
    staff.ask("My secret medical question about insulin")
    _traffic(staff)
    page = staff.client.get("/admin/requests").text
    assert "ministry-of-health" in page and "big-model" in page and "503" in page
    assert "insulin" not in page  # content is read only under the two-person rule
    assert 'href="/admin/access"' in page
    only_failed = staff.client.get("/admin/requests?failed=1").text
    assert "503" in only_failed and "big-model" not in only_failed
    by_model = staff.client.get("/admin/requests?model=big-model").text
    assert "big-model" in by_model and "ancient" not in by_model


def test_usage_charts_per_org_key_and_model_with_their_numbers(staff: Web) -> None:
    _traffic(staff)
    page = staff.client.get("/admin/usage?days=30").text
    assert page.count('<svg class="chart"') == 3 and 'role="img"' in page
    assert 'aria-label="Tokens per model"' in page
    assert "big-model" in page and "900" in page and "ancient" not in page  # 40 days old: outside the period
    assert "ancient" in staff.client.get("/admin/usage?days=90").text
    assert staff.client.get("/admin/usage?days=12345").status_code == 200  # an unknown period falls back to 30


def test_backends_are_added_and_removed_through_the_catalog_and_audited(staff: Web) -> None:
    added = _post(staff, "/admin/backends", {"name": "gpu-kyiv", "url": "http://127.0.0.1:9/v1",
                                             "models": "llama-uk, mistral-uk", "jurisdiction": "ua",
                                             "operator": "Ministry IT", "api_key": "sk-upstream"}, "/admin/backends")
    assert added.headers["location"] == "/admin/backends?done=backend_added"
    config = next(c for c in backend_configs(staff.hub) if c.name == "gpu-kyiv")
    assert config.models == ["llama-uk", "mistral-uk"] and config.jurisdiction == "UA"
    [(actor, subject, data)] = _audit(staff, "backend.added")
    assert actor == f"user:{staff.user_id}" and subject == "backend:gpu-kyiv" and "sk-upstream" not in json.dumps(data)
    page = staff.client.get("/admin/backends").text
    assert "gpu-kyiv" in page and "sk-upstream" not in page
    for data, code in (({"name": "gpu-kyiv", "url": "http://127.0.0.1:9/v1"}, "exists"),
                       ({"name": "x", "url": "http://127.0.0.1:9/v1", "jurisdiction": "ZZ"}, "jurisdiction"),
                       ({"name": "y", "url": "ftp://nowhere"}, "url"),
                       ({"name": "Bad Name", "url": "http://127.0.0.1:9/v1"}, "name")):
        refused = _post(staff, "/admin/backends", data, "/admin/backends")
        assert refused.headers["location"] == f"/admin/backends?error={code}", data
    removed = _post(staff, "/admin/backends/gpu-kyiv/remove", {}, "/admin/backends")
    assert removed.headers["location"] == "/admin/backends?done=backend_removed"
    assert all(c.name != "gpu-kyiv" for c in backend_configs(staff.hub))
    assert _audit(staff, "backend.removed")[0][0] == f"user:{staff.user_id}"


def test_people_and_organizations_are_created_and_staff_rights_managed(staff: Web) -> None:
    created = _post(staff, "/admin/people", {"email": "Olena@Example.UA", "password": PASSWORD,
                                             "display_name": "Олена", "locale": "uk"}, "/admin/people")
    assert created.headers["location"] == "/admin/people?done=user_created"
    with staff.hub.db.session() as s:
        olena = s.scalar(select(User).where(User.email == "olena@example.ua"))
        assert olena is not None and not olena.is_staff and olena.locale == "uk"
        olena_id = olena.id
    assert _audit(staff, "user.created")[-1][0] == f"user:{staff.user_id}"
    for data, code in (({"email": "olena@example.ua", "password": PASSWORD}, "exists"),
                       ({"email": "no-at-sign", "password": PASSWORD}, "email"),
                       ({"email": "short@example.ua", "password": "short"}, "password")):
        assert _post(staff, "/admin/people", data, "/admin/people").headers["location"] == (
            f"/admin/people?error={code}")
    granted = _post(staff, f"/admin/people/{olena_id}/staff", {"action": "grant"}, "/admin/people")
    assert granted.headers["location"] == "/admin/people?done=staff_granted"
    assert _audit(staff, "user.staff_granted")[0][:2] == (f"user:{staff.user_id}", f"user:{olena_id}")
    myself = _post(staff, f"/admin/people/{staff.user_id}/staff", {"action": "withdraw"}, "/admin/people")
    assert myself.headers["location"] == "/admin/people?error=self_staff"
    org = _post(staff, "/admin/orgs", {"name": "State Tax Service"})
    assert org.headers["location"].startswith("/admin?done=org_created")
    assert "State Tax Service" in [o.name for o in list_orgs(staff.hub)]
    assert _post(staff, "/admin/orgs", {"name": "  "}).headers["location"].startswith("/admin?error=org_name")
    staff.sign_in("olena@example.ua")  # the new account signs in, now with the staff pages
    assert staff.client.get("/admin/people").status_code == 200


def test_the_console_refuses_non_staff_and_forms_without_a_token(signed_in: Web) -> None:
    for path in ("/admin/requests", "/admin/usage", "/admin/backends", "/admin/people"):
        assert signed_in.client.get(path).status_code == 403, path
    token = signed_in.csrf()
    for path, data in (("/admin/backends", {"name": "evil", "url": "http://127.0.0.1:9/v1"}),
                       ("/admin/people", {"email": "evil@example.org", "password": PASSWORD, "staff": "yes"}),
                       (f"/admin/people/{signed_in.user_id}/staff", {"action": "grant"}),
                       ("/admin/orgs", {"name": "evil-org"})):
        refused = signed_in.client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)
        assert refused.status_code == 403, path
    with signed_in.hub.db.session() as s:
        assert not s.get(User, signed_in.user_id).is_staff  # type: ignore[union-attr]
        assert s.scalar(select(User).where(User.email == "evil@example.org")) is None
    assert all(c.name != "evil" for c in backend_configs(signed_in.hub))
    assert "evil-org" not in [o.name for o in list_orgs(signed_in.hub)]
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    no_token = signed_in.client.post("/admin/orgs", data={"name": "no-token"}, follow_redirects=False)
    assert no_token.status_code == 403 and "no-token" not in [o.name for o in list_orgs(signed_in.hub)]


def _answer(web: Web, model: str) -> str:
    events = sse_events(web.ask("hello there", model=model))
    return "".join(d["text"] for n, d in events if n == "delta")


def test_backends_are_served_as_added_edited_and_removed_without_a_restart(staff: Web) -> None:
    registry = staff.hub.services.get(BackendRegistry)
    egress = staff.hub.services.get(Egress)
    with FakeUpstream(["llama-uk"], texts=["first server"]) as first, \
            FakeUpstream(["llama-uk"], texts=["second server"], api_key="sk-second") as second:
        added = _post(staff, "/admin/backends", {"name": "gpu-kyiv", "url": first.url, "models": "llama-uk",
                                                 "jurisdiction": "DE"}, "/admin/backends")
        assert added.headers["location"] == "/admin/backends?done=backend_added"
        assert "llama-uk" in registry.model_ids()  # no restart: the running registry serves it
        assert "first server" in _answer(staff, "llama-uk")
        running = registry.get("gpu-kyiv")
        # Edited in place: a new address and key, and one more model.
        edited = _post(staff, "/admin/backends/gpu-kyiv/edit", {
            "url": second.url, "models": "llama-uk mistral-uk", "jurisdiction": "DE", "operator": "Ministry IT",
            "api_key": "sk-second"}, "/admin/backends")
        assert edited.headers["location"] == "/admin/backends?done=backend_changed"
        assert registry.get("gpu-kyiv") is not running and "mistral-uk" in registry.model_ids()
        assert "second server" in _answer(staff, "llama-uk")  # the new address, with the new key
        config = next(c for c in backend_configs(staff.hub) if c.name == "gpu-kyiv")
        assert (config.url, config.models, config.operator) == (second.url, ["llama-uk", "mistral-uk"],
                                                                "Ministry IT")
        [(actor, subject, data)] = _audit(staff, "backend.changed")
        assert actor == f"user:{staff.user_id}" and subject == "backend:gpu-kyiv"
        assert data["url"] == second.url and data["credentials"] == "replaced" and "sk-second" not in json.dumps(data)
        # The first server's host is the second's too (loopback): the allowlist follows the catalog.
        assert "127.0.0.1" in egress._guard.allowed  # type: ignore[union-attr]
        unchanged = registry.get("gpu-kyiv")
        again = _post(staff, "/admin/backends/gpu-kyiv/edit", {
            "url": second.url, "models": "llama-uk mistral-uk", "jurisdiction": "DE", "operator": "Ministry IT"},
            "/admin/backends")
        assert again.headers["location"] == "/admin/backends?done=backend_changed"
        assert registry.get("gpu-kyiv") is unchanged  # nothing changed: the backend kept serving as it was
        for data, code in (({"url": "ftp://nowhere"}, "url"), ({"jurisdiction": "ZZ"}, "jurisdiction")):
            refused = _post(staff, "/admin/backends/gpu-kyiv/edit", data, "/admin/backends")
            assert refused.headers["location"] == f"/admin/backends?error={code}", data
        missing = _post(staff, "/admin/backends/no-such/edit", {"models": "x"}, "/admin/backends")
        assert missing.headers["location"] == "/admin/backends?error=not_found"
        removed = _post(staff, "/admin/backends/gpu-kyiv/remove", {}, "/admin/backends")
        assert removed.headers["location"] == "/admin/backends?done=backend_removed"
        assert "llama-uk" not in registry.model_ids() and registry.get("gpu-kyiv") is None
        assert "127.0.0.1" not in egress._guard.allowed  # type: ignore[union-attr]


def test_editing_a_backend_is_refused_without_staff_or_a_token(signed_in: Web) -> None:
    from sovhub.backends.catalog import add_backend

    add_backend(signed_in.hub, "gpu-lviv", url="http://127.0.0.1:9/v1", models=["m1"])
    token = signed_in.csrf()
    refused = signed_in.client.post("/admin/backends/gpu-lviv/edit", data={"csrf_token": token, "url":
                                    "http://evil.example/v1"}, follow_redirects=False)
    assert refused.status_code == 403
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    no_token = signed_in.client.post("/admin/backends/gpu-lviv/edit", data={"url": "http://evil.example/v1"},
                                     follow_redirects=False)
    assert no_token.status_code == 403
    config = next(c for c in backend_configs(signed_in.hub) if c.name == "gpu-lviv")
    assert config.url == "http://127.0.0.1:9/v1"
    assert _audit(signed_in, "backend.changed") == []


def _reset_link(page: str) -> str:
    import re

    found = re.search(r'<code id="reset-link" dir="ltr">http://testserver(/reset/[^<]+)</code>', page)
    assert found, "no reset link on the page"
    return found.group(1)


def test_staff_reset_a_password_once_ending_the_persons_sessions(staff: Web) -> None:
    from fastapi.testclient import TestClient

    from sovhub.app import create_app
    from sovhub.assistant.people import create_user

    olena_id = create_user(staff.hub, "olena@example.ua", PASSWORD)
    with TestClient(create_app(staff.hub), base_url="http://testserver") as other:
        olena = Web(other, staff.hub, olena_id, "olena@example.ua")
        olena.sign_in()
        assert other.get("/").status_code == 200 and "/login" not in str(other.get("/").url)
        reset = _post(staff, f"/admin/people/{olena_id}/reset", {}, "/admin/people")
        assert reset.status_code == 200 and "reset" not in reset.headers.get("location", "")
        link = _reset_link(reset.text)
        [(actor, subject, data)] = _audit(staff, "user.password_reset")
        assert (actor, subject, data["sessions_ended"]) == (f"user:{staff.user_id}", f"user:{olena_id}", 1)
        assert link.split("/")[-1] not in json.dumps(data)  # the token is never audited
        # Her session ended, and the old password no longer signs in.
        assert other.get("/", follow_redirects=False).status_code == 303
        login = olena.csrf("/login")
        refused = other.post("/login", data={"email": "olena@example.ua", "password": PASSWORD, "csrf_token": login,
                                             "next": "/"}, follow_redirects=False)
        assert refused.status_code == 401
        # The link: a page, a too-short password refused, a new one set; then it is spent.
        assert other.get(link).status_code == 200
        token = olena.csrf(link)
        short = other.post(link, data={"password": "short", "csrf_token": token}, follow_redirects=False)
        assert short.status_code == 400
        no_token = other.post(link, data={"password": "a new long password"}, follow_redirects=False)
        assert no_token.status_code == 403
        done = other.post(link, data={"password": "a new long password", "csrf_token": olena.csrf(link)},
                          follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/login?reset=done"
        olena.sign_in(password="a new long password")
        assert other.get(link).status_code == 404  # one use
        again = other.post(link, data={"password": "another long password", "csrf_token": olena.csrf("/login")},
                           follow_redirects=False)
        assert again.status_code == 404
        olena.sign_in(password="a new long password")  # the spent link changed nothing


def test_a_newer_reset_voids_the_older_link_and_forged_links_are_refused(staff: Web) -> None:
    from sovhub.assistant.people import create_user, reset_is_valid, reset_password

    olena_id = create_user(staff.hub, "olena@example.ua", PASSWORD)
    first = _reset_link(_post(staff, f"/admin/people/{olena_id}/reset", {}, "/admin/people").text)
    second = _reset_link(_post(staff, f"/admin/people/{olena_id}/reset", {}, "/admin/people").text)
    assert staff.client.get(first).status_code == 404 and staff.client.get(second).status_code == 200
    forged = second[:-4] + ("AAAA" if not second.endswith("AAAA") else "BBBB")
    assert staff.client.get(forged).status_code == 404
    assert staff.client.get(f"/reset/{staff.user_id}.{second.split('.')[-1]}").status_code == 404  # another person
    token, _ended = reset_password(staff.hub, olena_id, now=0.0)  # issued long ago: expired
    assert not reset_is_valid(staff.hub, token)
    missing = _post(staff, "/admin/people/999999/reset", {}, "/admin/people")
    assert missing.headers["location"] == "/admin/people?error=not_found"


def test_a_password_reset_is_refused_without_staff_or_a_token(signed_in: Web) -> None:
    from sovhub.assistant.people import create_user

    olena_id = create_user(signed_in.hub, "olena@example.ua", PASSWORD)
    refused = signed_in.client.post(f"/admin/people/{olena_id}/reset", data={"csrf_token": signed_in.csrf()},
                                    follow_redirects=False)
    assert refused.status_code == 403 and "reset-link" not in refused.text
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    no_token = signed_in.client.post(f"/admin/people/{olena_id}/reset", follow_redirects=False)
    assert no_token.status_code == 403
    assert _audit(signed_in, "user.password_reset") == []
    signed_in.sign_in("olena@example.ua")  # her password still works
