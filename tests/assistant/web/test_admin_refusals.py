"""Every staff page refuses whoever may not use it, and a refused request changes nothing.

Each route under /admin is tried by a signed-out visitor (sent to sign in), a signed-in person who
is not staff (403), and, for each form, a staff member posting without a form token or with a
forged one (403). The whole database is compared before and after: nothing may differ. A route
added under /admin without a row in ROUTES fails the first test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sovhub.accounts import add_member, create_key, create_org
from sovhub.assistant.people import create_user
from sovhub.assistant.web import routers
from sovhub.backends.catalog import add_backend
from sovhub.credits.amounts import MICRO
from sovhub.credits.applications import submit_application
from sovhub.credits.dashboards import add_partner_member
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.sovereignty.staff_access import request_access
from sovhub.store.base import Base
from sovhub.store.tables import User

from .conftest import PASSWORD, Web
from .test_admin_appeals import _file

# Tables a refused request may still write: the signed-in session's row (read, and its last use
# kept) and sign-in bookkeeping. Everything else must be byte for byte as before.
_MAY_CHANGE = {"access_sessions"}


@dataclass
class World:
    web: Web
    staff: TestClient
    staff_csrf: str
    anonymous: TestClient
    ids: dict[str, Any]


def _routes() -> set[tuple[str, str]]:
    return {(method, route.path) for router in routers() for route in router.routes
            if route.path.startswith("/admin") for method in route.methods if method != "HEAD"}


#: (method, path, form): placeholders are filled from World.ids; every form is one that would
#: change something if it were accepted.
ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/admin", {}),
    ("POST", "/admin/kb/{document_id}/delete", {}),
    ("POST", "/admin/kb", {"collection": "evil"}),
    ("GET", "/admin/orgs/{org}", {}),
    ("POST", "/admin/orgs/{org}/verify", {}),
    ("POST", "/admin/orgs/{org}/reject", {"reason": "forged"}),
    ("POST", "/admin/orgs/{org}/revoke-verification", {}),
    ("POST", "/admin/orgs/{org}/limits", {"rpm": "999999"}),
    ("POST", "/admin/orgs/{org}/tiers", {"tiers": "verified"}),
    ("POST", "/admin/orgs/{org}/keys", {"name": "minted", "scope": "admin"}),
    ("POST", "/admin/orgs/{org}/keys/{prefix}/revoke", {}),
    ("POST", "/admin/orgs/{org}/keys/{prefix}/limits", {"rpm": "999999"}),
    ("POST", "/admin/models/tier", {"model": "echo", "tier": "verified"}),
    ("GET", "/admin/access", {}),
    ("POST", "/admin/access", {"person": "citizen@example.org", "reason": "forged", "hours": "1"}),
    ("POST", "/admin/access/{access_request}/approve", {}),
    ("POST", "/admin/access/{access_request}/deny", {}),
    ("POST", "/admin/access/{access_request}/read", {}),
    ("GET", "/admin/appeals", {}),
    ("GET", "/admin/appeals/{appeal}", {}),
    ("POST", "/admin/appeals/{appeal}/decide", {"outcome": "overturned", "reason": "forged"}),
    ("GET", "/admin/requests", {}),
    ("GET", "/admin/usage", {}),
    ("GET", "/admin/backends", {}),
    ("POST", "/admin/backends", {"name": "evil", "url": "http://127.0.0.1:9/v1", "models": "evil"}),
    ("POST", "/admin/backends/{backend}/remove", {}),
    ("POST", "/admin/backends/{backend}/edit", {"url": "http://evil.example/v1"}),
    ("GET", "/admin/people", {}),
    ("POST", "/admin/people", {"email": "evil@example.org", "password": PASSWORD, "staff": "yes"}),
    ("POST", "/admin/people/{citizen}/staff", {"action": "grant"}),
    ("POST", "/admin/people/{boss}/staff", {"action": "withdraw"}),
    ("POST", "/admin/people/{boss}/reset", {}),
    ("GET", "/admin/people/{citizen}", {}),
    ("POST", "/admin/people/{citizen}/limits", {"rpm": "999999"}),
    ("POST", "/admin/people/{citizen}/tier", {"tier": "verified"}),
    ("POST", "/admin/orgs", {"name": "evil-org"}),
    ("GET", "/admin/credits", {}),
    ("GET", "/admin/credits/programmes/{programme_id}", {}),
    ("GET", "/admin/credits/grants/{grant_id}", {}),
    ("GET", "/admin/credits/partners/{partner_id}", {}),
    ("POST", "/admin/credits/programmes", {"name": "Evil", "budget": "10", "partners": "Evil=100"}),
    ("POST", "/admin/credits/grants", {"programme": "{programme_id}", "org": "acme", "credits": "5", "reason": "x"}),
    ("POST", "/admin/credits/applications/{application_id}/decide", {"decision": "approve", "reason": "forged"}),
    ("POST", "/admin/credits/kinds", {"org": "acme", "kind": "startup"}),
    ("POST", "/admin/credits/members", {"org": "acme", "email": "citizen@example.org", "role": "admin"}),
    ("POST", "/admin/credits/partners/{partner_id}/members", {"email": "citizen@example.org"}),
    ("POST", "/admin/credits/members/remove", {"org": "acme", "email": "citizen@example.org"}),
    ("POST", "/admin/credits/partners/{partner_id}/members/remove", {"email": "second@example.org"}),
]
FORMS = [(path, form) for method, path, form in ROUTES if method == "POST"]


def _template(path: str) -> str:
    """The route's own path for a row's path ({org} and the like named as the route names them)."""
    names = {"{org}": "{name}", "{backend}": "{name}", "{citizen}": "{user_id}", "{boss}": "{user_id}",
             "{appeal}": "{appeal_id}", "{access_request}": "{request_id}"}
    for ours, theirs in names.items():
        path = path.replace(ours, theirs)
    return path


def _dump(web: Web) -> dict[str, list[tuple[Any, ...]]]:
    with web.hub.db.engine.connect() as conn:
        return {name: sorted(conn.execute(text(f'SELECT * FROM "{name}"')).all(), key=repr)
                for name in Base.metadata.tables if name not in _MAY_CHANGE}


def _signed_in_client(web: Web, email: str) -> tuple[TestClient, str]:
    client = TestClient(web.client.app, base_url="http://testserver")
    other = Web(client, web.hub, 0, email)
    other.sign_in(email)
    return client, other.csrf("/admin")


@pytest.fixture
def world(signed_in: Web) -> Iterator[World]:
    hub = signed_in.hub
    boss = create_user(hub, "boss@example.org", PASSWORD, staff=True)
    second = create_user(hub, "second@example.org", PASSWORD, staff=True)
    citizen = create_user(hub, "citizen@example.org", PASSWORD)
    acme = create_org(hub, "acme")
    key = create_key(hub, "acme", name="app")
    programme = create_programme(hub, "Gateway", 100 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="t")
    grant = grant_credits(hub, "Gateway", "acme", MICRO, reason="pilot", actor="t")
    application = submit_application(hub, programme.id, acme.id, purpose="more", amount=MICRO, actor="t")
    # Someone for the removal forms to remove, were they accepted.
    add_member(hub, "acme", "citizen@example.org", "member")
    add_partner_member(hub, 1, "second@example.org", actor="t")
    add_backend(hub, "victim", url="http://127.0.0.1:9/v1", models=["victim-model"])
    _conversation, appeal = _file(signed_in)
    access = request_access(hub, citizen, staff_id=second, reason="complaint 42", hours=1)
    staff, token = _signed_in_client(signed_in, "boss@example.org")
    anonymous = TestClient(signed_in.client.app, base_url="http://testserver")
    with staff, anonymous:
        yield World(signed_in, staff, token, anonymous, {
            "org": "acme", "prefix": key.prefix, "backend": "victim", "citizen": citizen, "boss": boss,
            "appeal": appeal, "access_request": access.id, "document_id": 1, "programme_id": programme.id,
            "grant_id": grant.id, "partner_id": 1, "application_id": application.id})


def _send(client: TestClient, world: World, method: str, path: str, form: dict[str, str]) -> Any:
    url = path.format(**world.ids)
    if method == "GET":
        return client.get(url, follow_redirects=False)
    return client.post(url, data={k: v.format(**world.ids) for k, v in form.items()}, follow_redirects=False)


def test_every_admin_route_is_in_the_table() -> None:
    assert _routes() == {(method, _template(path)) for method, path, _ in ROUTES}


def test_a_signed_out_visitor_is_sent_to_sign_in_and_changes_nothing(world: World) -> None:
    before = _dump(world.web)
    token = world.staff_csrf  # even with a real staff member's form token
    for method, path, form in ROUTES:
        r = _send(world.anonymous, world, method, path, {"csrf_token": token, **form})
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), (method, path, r.status_code)
    assert _dump(world.web) == before


def test_a_person_who_is_not_staff_is_refused_and_changes_nothing(world: World) -> None:
    before = _dump(world.web)
    token = world.web.csrf()  # their own valid form token
    for method, path, form in ROUTES:
        r = _send(world.web.client, world, method, path, {"csrf_token": token, **form})
        assert r.status_code == 403, (method, path, r.status_code)
    assert _dump(world.web) == before


@pytest.mark.parametrize("forged", ["", "missing", "another-session", "altered"])
def test_a_staff_form_without_its_token_is_refused_and_changes_nothing(world: World, forged: str) -> None:
    tokens = {"": "", "another-session": world.web.csrf(),
              "altered": world.staff_csrf[:-1] + ("A" if world.staff_csrf[-1] != "A" else "B")}
    before = _dump(world.web)
    for path, form in FORMS:
        data = form if forged == "missing" else {"csrf_token": tokens[forged], **form}
        r = _send(world.staff, world, "POST", path, data)
        assert r.status_code == 403, (path, forged, r.status_code)
    assert _dump(world.web) == before


def test_the_same_forms_with_the_real_token_do_change_things(world: World) -> None:
    """The refusals above are the token's doing: with it, staff get through (the test could fail)."""
    before = _dump(world.web)
    r = _send(world.staff, world, "POST", "/admin/people/{citizen}/staff",
              {"csrf_token": world.staff_csrf, "action": "grant"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=staff_granted")
    with world.web.hub.db.session() as s:
        assert s.scalar(select(User.is_staff).where(User.id == world.ids["citizen"])) is True
    changed = {name for name, rows in _dump(world.web).items() if rows != before[name]}
    assert {"users", "audit_log"} <= changed, changed
