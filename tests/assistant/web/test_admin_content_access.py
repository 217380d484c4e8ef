"""The two-person rule in the staff console: two signed-in staff sessions, never a typed name.

Attacked here: one staff member requesting and approving their own request (also with another
admin's id or e-mail slipped into the form), a non-staff session, a signed-out visitor, a post
without the form token, and a third staff member reading under someone else's approval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.assistant.people import create_user
from sovhub.settings import Settings
from sovhub.sovereignty.content_store import ConversationStore, _Pending
from sovhub.sovereignty.tables import AccessRequest, AuditEntry
from sovhub.store.tables import User
from tests.conftest import make_settings

from .conftest import PASSWORD, Web

REASON = "suspected account takeover, ticket 4411"


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Settings:
    return make_settings(data_dir, database_url=database_url, safety={"enabled": False}, embeddings_enabled=False)


@pytest.fixture
def staff(web: Web) -> dict[str, int]:
    """Two staff accounts (ada, the fixture's account, and bob), a third (cy), and the citizen with content."""
    hub = web.hub
    bob = create_user(hub, "bob@example.org", PASSWORD, display_name="Bob")
    cy = create_user(hub, "cy@example.org", PASSWORD, display_name="Cy")
    citizen = create_user(hub, "citizen@example.ua", PASSWORD, display_name="Citizen")
    with hub.db.session() as s:
        for uid in (web.user_id, bob, cy):
            s.get(User, uid).is_staff = True  # type: ignore[union-attr]
    hub.services.get(ConversationStore).write([_Pending(request_id="r", org_id=None, key_id=None, user_id=citizen, model="m",
                                   backend=None, messages=[{"role": "user", "content": "private words"}],
                                   completion="ok", finish_reason="stop")])
    return {"ada": web.user_id, "bob": bob, "cy": cy, "citizen": citizen}


def _as(web: Web, email: str) -> None:
    web.client.cookies.clear()
    web.sign_in(email)


def _post(web: Web, path: str, data: dict[str, str] | None = None) -> Any:
    return web.client.post(path, data={"csrf_token": web.csrf("/admin/access"), **(data or {})},
                           follow_redirects=False)


def _requests(web: Web) -> list[tuple[int, str, int | None, int | None]]:
    with web.hub.db.session() as s:
        return [(r.id, r.status, r.requested_by_id, r.decided_by_id)
                for r in s.scalars(select(AccessRequest).order_by(AccessRequest.id))]


def _audit(web: Web) -> list[tuple[str, str]]:
    with web.hub.db.session() as s:
        return [(r.event, r.actor) for r in s.scalars(select(AuditEntry).where(AuditEntry.event.like("access.%"))
                                                       .order_by(AuditEntry.seq))]


def test_two_signed_in_staff_request_approve_and_read(web: Web, staff: dict[str, int]) -> None:
    _as(web, "ada@example.org")
    made = _post(web, "/admin/access", {"person": "citizen@example.ua", "reason": REASON, "hours": "2"})
    assert made.status_code == 303 and made.headers["location"] == "/admin/access?done=requested"
    [(req_id, status, requester, _)] = _requests(web)
    assert (status, requester) == ("requested", staff["ada"])
    page = web.client.get("/admin/access").text
    assert REASON in page and f"/admin/access/{req_id}/approve" not in page  # no approve button for the requester

    # The requester approving their own request: refused, also with another admin named in the form.
    for extra in ({}, {"admin": "bob@example.org"}, {"staff_id": str(staff["bob"])},
                  {"decided_by": "bob@example.org"}):
        refused = _post(web, f"/admin/access/{req_id}/approve", extra)
        assert refused.headers["location"] == "/admin/access?error=refused", extra
    assert "two-person" not in web.client.get(refused.headers["location"]).text  # the page's own message
    assert _requests(web)[0][1] == "requested"
    assert _post(web, f"/admin/access/{req_id}/read").headers["location"] == "/admin/access?error=refused"

    _as(web, "bob@example.org")
    assert f"/admin/access/{req_id}/approve" in web.client.get("/admin/access").text
    approved = _post(web, f"/admin/access/{req_id}/approve", {"note": "proportionate"})
    assert approved.headers["location"] == "/admin/access?done=approved"
    assert _requests(web)[0] == (req_id, "approved", staff["ada"], staff["bob"])
    read = _post(web, f"/admin/access/{req_id}/read")
    assert read.status_code == 200 and "private words" in read.text
    assert read.headers["cache-control"] == "no-store"

    _as(web, "cy@example.org")  # staff, but neither of the two
    assert _post(web, f"/admin/access/{req_id}/read").headers["location"] == "/admin/access?error=refused"
    _as(web, "ada@example.org")
    assert "private words" in _post(web, f"/admin/access/{req_id}/read").text

    assert _audit(web) == [("access.requested", f"user:{staff['ada']}"), ("access.approved", f"user:{staff['bob']}"),
                           ("access.used", f"user:{staff['bob']}"), ("access.used", f"user:{staff['ada']}")]
    with web.hub.db.session() as s:
        uses = s.scalar(select(AccessRequest.uses))
    assert [u["by_id"] for u in uses] == [staff["bob"], staff["ada"]]


def test_a_denied_request_cannot_be_read_or_decided_again(web: Web, staff: dict[str, int]) -> None:
    _as(web, "ada@example.org")
    _post(web, "/admin/access", {"person": str(staff["citizen"]), "reason": REASON})
    [(req_id, *_)] = _requests(web)
    _as(web, "bob@example.org")
    assert _post(web, f"/admin/access/{req_id}/deny").headers["location"] == "/admin/access?done=denied"
    assert _post(web, f"/admin/access/{req_id}/approve").headers["location"] == "/admin/access?error=decided"
    _as(web, "ada@example.org")
    assert _post(web, f"/admin/access/{req_id}/read").headers["location"] == "/admin/access?error=refused"
    assert [e for e, _ in _audit(web)] == ["access.requested", "access.denied"]


@pytest.mark.parametrize(("data", "error"), [
    ({"person": "citizen@example.ua", "reason": "because"}, "reason"),
    ({"person": "citizen@example.ua", "reason": REASON, "hours": "10000"}, "hours"),
    ({"person": "citizen@example.ua", "reason": REASON, "hours": "soon"}, "hours"),
    ({"person": "nobody@example.ua", "reason": REASON}, "not_found"),
    ({"person": "ada@example.org", "reason": REASON}, "refused"),  # one's own content
])
def test_bad_requests_are_refused_and_record_nothing(web: Web, staff: dict[str, int], data: dict[str, str],
                                                     error: str) -> None:
    _as(web, "ada@example.org")
    response = _post(web, "/admin/access", data)
    assert response.headers["location"] == f"/admin/access?error={error}"
    assert "Nothing was changed." in web.client.get(response.headers["location"]).text
    assert _requests(web) == [] and _audit(web) == []
    assert _post(web, "/admin/access/999/approve").headers["location"] == "/admin/access?error=not_found"


def test_a_non_staff_session_gets_403_and_changes_nothing(web: Web, staff: dict[str, int]) -> None:
    _as(web, "ada@example.org")
    _post(web, "/admin/access", {"person": "citizen@example.ua", "reason": REASON})
    [(req_id, *_)] = _requests(web)
    _as(web, "citizen@example.ua")
    assert web.client.get("/admin/access").status_code == 403
    for path in ("/admin/access", f"/admin/access/{req_id}/approve", f"/admin/access/{req_id}/deny",
                 f"/admin/access/{req_id}/read"):
        response = web.client.post(path, data={"csrf_token": web.csrf("/"), "person": "citizen@example.ua",
                                               "reason": REASON}, follow_redirects=False)
        assert response.status_code == 403 and "private words" not in response.text, path
    assert [status for _, status, *_ in _requests(web)] == ["requested"]
    assert [e for e, _ in _audit(web)] == ["access.requested"]


def test_a_post_without_the_form_token_is_refused(web: Web, staff: dict[str, int]) -> None:
    _as(web, "ada@example.org")
    _post(web, "/admin/access", {"person": "citizen@example.ua", "reason": REASON})
    [(req_id, *_)] = _requests(web)
    _as(web, "bob@example.org")
    for token in (None, "forged"):
        data = {} if token is None else {"csrf_token": token}
        response = web.client.post(f"/admin/access/{req_id}/approve", data=data, follow_redirects=False)
        assert response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"
    assert _requests(web)[0][1] == "requested"


def test_signed_out_visitors_are_sent_to_sign_in(web: Web, staff: dict[str, int]) -> None:
    web.client.cookies.clear()
    response = web.client.get("/admin/access", follow_redirects=False)
    assert response.status_code in (302, 303) and "/login" in response.headers["location"]
    posted = web.client.post("/admin/access", data={"person": "1", "reason": REASON}, follow_redirects=False)
    assert posted.status_code in (302, 303, 403)
    assert _requests(web) == []
    assert json.dumps(_audit(web)) == "[]"


def test_an_api_key_without_a_staff_session_opens_nothing(web: Web, staff: dict[str, int]) -> None:
    """An organization's admin-scoped API key is not a staff identity: every route refuses it."""
    from sovhub.accounts import create_key, create_org

    _as(web, "ada@example.org")
    _post(web, "/admin/access", {"person": "citizen@example.ua", "reason": REASON})
    [(req_id, *_)] = _requests(web)
    create_org(web.hub, "acme")
    secret = create_key(web.hub, "acme", scopes=["admin"]).secret
    web.client.cookies.clear()
    headers = {"authorization": f"Bearer {secret}"}
    got = web.client.get("/admin/access", headers=headers, follow_redirects=False)
    assert got.status_code in (302, 303, 401, 403) and REASON not in got.text
    for path in ("/admin/access", f"/admin/access/{req_id}/approve", f"/admin/access/{req_id}/deny",
                 f"/admin/access/{req_id}/read"):
        response = web.client.post(path, headers=headers, data={"person": "citizen@example.ua", "reason": REASON},
                                   follow_redirects=False)
        assert response.status_code in (302, 303, 401, 403) and "private words" not in response.text, path
    assert [status for _, status, *_ in _requests(web)] == ["requested"]
    assert [e for e, _ in _audit(web)] == ["access.requested"]
