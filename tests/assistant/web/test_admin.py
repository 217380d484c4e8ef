"""The staff console over HTTP: verification decisions, keys, quotas and tiers change the database,
are audited like the CLI's, and refuse non-staff, missing form tokens and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.access.state import AccessState
from sovhub.access.tables import Identity, OrgAccess, Verification
from sovhub.access.tiers import list_tiers
from sovhub.access.verification import attach_representative, request_verification, staff_verify
from sovhub.accounts import authenticate, create_key, create_org, get_org
from sovhub.hub import Hub
from sovhub.settings import Settings
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.tables import ApiKey, Membership, User
from tests.conftest import make_settings

from .conftest import Web


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Settings:
    # As the web conftest's settings, on each database the run has (SQLite, and PostgreSQL when set).
    return make_settings(data_dir, database_url=database_url, safety={"enabled": False}, embeddings_enabled=False)


@pytest.fixture
def staff(signed_in: Web) -> Web:
    with signed_in.hub.db.session() as s:
        s.get(User, signed_in.user_id).is_staff = True  # type: ignore[union-attr]
    for name in ("acme", "globex"):
        create_org(signed_in.hub, name)
    return signed_in


def _org_id(hub: Hub, name: str) -> int:
    return get_org(hub, name).id


def _pending(hub: Hub, org: str) -> int:
    """An in-review request, reached as in production: request, then the representative's eID at level high."""
    org_id = _org_id(hub, org)
    _, token = request_verification(hub, org_id, country="UA", registry_number="12345678",
                                    legal_name=f"{org.title()} LLC", actor="key:test")
    with hub.db.session() as s:
        person = Identity(idp="test", subject=f"rep-{org}", level="high", given_name="Olena", family_name="Koval")
        s.add(person)
        s.flush()
        identity_id = person.id
    row = attach_representative(hub, token, identity_id)
    assert row.status == "in_review"  # no registry is connected: staff decide
    return row.id


def _audit(hub: Hub, event: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with hub.db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.seq))
        return [(r.actor, r.subject, json.loads(r.data)) for r in rows]


def _status(hub: Hub, org: str) -> str:
    with hub.db.session() as s:
        row = s.scalar(select(Verification).where(Verification.org_id == _org_id(hub, org))
                       .order_by(Verification.id.desc()).limit(1))
        return row.status if row is not None else "none"


def _post(web: Web, path: str, data: dict[str, str] | None = None, *, page: str = "/admin") -> Any:
    return web.client.post(path, data={"csrf_token": web.csrf(page), **(data or {})}, follow_redirects=False)


def _text(web: Web, location: str) -> str:
    return web.client.get(location).text


# --- verification decisions ---


def test_staff_approves_a_pending_request_from_the_queue(staff: Web) -> None:
    hub = staff.hub
    _pending(hub, "acme")
    page = staff.client.get("/admin").text
    assert 'action="/admin/orgs/acme/verify"' in page and "Olena Koval" in page
    assert 'formaction="/admin/orgs/acme/reject"' in page

    refused = _post(staff, "/admin/orgs/acme/verify", {"from": "queue", "reason": "   "})
    assert refused.headers["location"] == "/admin?error=reason#queue-title"
    assert "Give a reason: it is recorded in the audit log." in _text(staff, refused.headers["location"])
    assert _status(hub, "acme") == "in_review" and _audit(hub, "org.verified") == []

    done = _post(staff, "/admin/orgs/acme/verify", {"from": "queue", "reason": "registry extract checked"})
    assert done.headers["location"] == "/admin?done=verified#queue-title"
    after = _text(staff, done.headers["location"])
    assert "The organization is now verified." in after and 'action="/admin/orgs/acme/verify"' not in after
    assert _status(hub, "acme") == "approved" and hub.services.get(AccessState).org(_org_id(hub, "acme")).verified
    # Audited as `sovhub orgs verify` is: the same event, with who decided and why.
    actor, subject, data = _audit(hub, "org.verified")[-1]
    assert actor == f"user:{staff.user_id}" and subject == f"org:{_org_id(hub, 'acme')}"
    assert data["reason"] == "registry extract checked"


def test_staff_rejects_a_request_with_a_reason(staff: Web) -> None:
    hub = staff.hub
    nothing_open = _post(staff, "/admin/orgs/acme/reject", {"reason": "wrong number"})
    assert nothing_open.headers["location"] == "/admin/orgs/acme?error=no_request#verification-title"
    assert "This organization has no open verification request." in _text(staff, nothing_open.headers["location"])

    _pending(hub, "acme")
    assert _post(staff, "/admin/orgs/acme/reject", {"from": "queue", "reason": ""}).headers["location"] == (
        "/admin?error=reason#queue-title")
    assert _status(hub, "acme") == "in_review"
    done = _post(staff, "/admin/orgs/acme/reject", {"from": "queue", "reason": "legal name differs"})
    assert done.headers["location"] == "/admin?done=rejected#queue-title"
    assert _status(hub, "acme") == "rejected"
    actor, _, data = _audit(hub, "org.verification_rejected")[-1]
    assert actor == f"user:{staff.user_id}" and data["reason"] == "legal name differs"


def test_staff_revokes_a_verification_from_the_organization_page(staff: Web) -> None:
    hub = staff.hub
    not_verified = _post(staff, "/admin/orgs/acme/revoke-verification", {"reason": "fraud report"})
    assert not_verified.headers["location"] == "/admin/orgs/acme?error=not_verified#verification-title"
    assert _audit(hub, "org.verification_revoked") == []

    staff_verify(hub, _org_id(hub, "acme"), reason="papers checked", actor="cli:test")
    page = staff.client.get("/admin/orgs/acme").text
    assert 'action="/admin/orgs/acme/revoke-verification"' in page and "papers checked" in page
    assert _post(staff, "/admin/orgs/acme/revoke-verification", {"reason": " "},
                 page="/admin/orgs/acme").headers["location"] == "/admin/orgs/acme?error=reason#verification-title"
    assert hub.services.get(AccessState).org(_org_id(hub, "acme")).verified

    done = _post(staff, "/admin/orgs/acme/revoke-verification", {"reason": "struck off the registry"},
                 page="/admin/orgs/acme")
    assert done.headers["location"] == "/admin/orgs/acme?done=revoked#verification-title"
    assert not hub.services.get(AccessState).org(_org_id(hub, "acme")).verified and _status(hub, "acme") == "revoked"
    actor, _, data = _audit(hub, "org.verification_revoked")[-1]
    assert actor == f"user:{staff.user_id}" and data["reason"] == "struck off the registry"
    # The list shows each organization's status.
    assert re.search(r'href="/admin/orgs/acme">acme</a></td><td>\s*Revoked', staff.client.get("/admin").text)


def test_an_unknown_organization_is_a_message_not_a_change(staff: Web) -> None:
    for path in ("/admin/orgs/nobody/verify", "/admin/orgs/nobody/reject", "/admin/orgs/nobody/revoke-verification",
                 "/admin/orgs/nobody/limits", "/admin/orgs/nobody/tiers", "/admin/orgs/nobody/keys",
                 "/admin/orgs/nobody/keys/sk-sov-x/revoke", "/admin/orgs/nobody/keys/sk-sov-x/limits"):
        response = _post(staff, path, {"reason": "x", "tier": "research", "rpm": "5"})
        assert response.headers["location"] == "/admin?error=org", path
    assert staff.client.get("/admin/orgs/nobody", follow_redirects=False).headers["location"] == "/admin?error=org"
    assert "There is no organization with that name." in _text(staff, "/admin?error=org")
    with staff.hub.db.session() as s:
        assert s.scalars(select(ApiKey)).first() is None and s.scalars(select(OrgAccess)).first() is None


# --- keys ---


def test_create_a_key_shows_the_secret_once(staff: Web) -> None:
    hub = staff.hub
    created = _post(staff, "/admin/orgs/acme/keys", {"name": "CI pipeline", "rpm": "5", "budget_month": "1000",
                                                     "tpm": ""}, page="/admin/orgs/acme")
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'id="key-secret"[^>]*value="(sk-sov-[^"]+)"', created.text)
    assert secret, created.text
    principal = authenticate(hub, secret.group(1))
    assert principal.org_name == "acme" and principal.limits == {"rpm": 5, "budget_month": 1000}
    org_page = staff.client.get("/admin/orgs/acme").text
    assert principal.key_prefix is not None and principal.key_prefix in org_page and "CI pipeline" in org_page
    assert secret.group(1) not in org_page  # never shown again
    assert _audit(hub, "key.created")[-1][0] == f"user:{staff.user_id}"


def test_created_key_scope_default_and_choice(staff: Web) -> None:
    def create(data: dict[str, str]) -> frozenset[str]:
        created = _post(staff, "/admin/orgs/acme/keys", data, page="/admin/orgs/acme")
        secret = re.search(r'id="key-secret"[^>]*value="(sk-sov-[^"]+)"', created.text)
        assert secret, created.text
        scopes = authenticate(staff.hub, secret.group(1)).scopes
        assert all(f"<code>{x}</code>" in created.text for x in scopes)
        return scopes

    assert create({"name": "first", "scope": ""}) == {"inference", "admin"}  # the organization's first key
    assert create({"name": "second", "scope": ""}) == {"inference"}
    assert create({"name": "ops", "scope": "admin"}) == {"inference", "admin"}
    page = staff.client.get("/admin/orgs/acme").text
    assert 'name="scope"' in page and "<code>admin</code>" in page


@pytest.mark.parametrize(("data", "error"), [
    ({"rpm": "-1"}, "quota"),
    ({"scope": "root"}, "failed"),
    ({"tpd": "many"}, "quota"),
    ({"budget_day": "1.5"}, "quota"),
    ({"name": "k" * 121}, "key_name"),
])
def test_bad_key_input_creates_no_key(staff: Web, data: dict[str, str], error: str) -> None:
    response = _post(staff, "/admin/orgs/acme/keys", data, page="/admin/orgs/acme")
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/orgs/acme?error={error}#new-key-title"
    page = _text(staff, response.headers["location"])
    assert 'role="alert"' in page and "Nothing was changed." in page
    with staff.hub.db.session() as s:
        assert s.scalars(select(ApiKey)).first() is None


def test_revoke_a_key_only_through_its_own_organization(staff: Web) -> None:
    hub = staff.hub
    acme_key = create_key(hub, "acme", limits={"rpm": 3})
    globex_key = create_key(hub, "globex")
    page = staff.client.get("/admin/orgs/acme").text
    assert f'action="/admin/orgs/acme/keys/{acme_key.prefix}/revoke"' in page and "Requests per minute: 3" in page

    # Globex's key through Acme's page, and a key that does not exist: refused, nothing revoked.
    for prefix in (globex_key.prefix, "sk-sov-nothere"):
        wrong = _post(staff, f"/admin/orgs/acme/keys/{prefix}/revoke", page="/admin/orgs/acme")
        assert wrong.headers["location"] == "/admin/orgs/acme?error=key#keys-title"
    assert "This organization has no such API key." in _text(staff, "/admin/orgs/acme?error=key")
    assert authenticate(hub, globex_key.secret).org_name == "globex"

    done = _post(staff, f"/admin/orgs/acme/keys/{acme_key.prefix}/revoke", page="/admin/orgs/acme")
    assert done.headers["location"] == "/admin/orgs/acme?done=key_revoked#keys-title"
    with hub.db.session() as s:
        assert s.scalar(select(ApiKey).where(ApiKey.prefix == acme_key.prefix)).revoked_at is not None  # type: ignore[union-attr]
    assert "Revoked on" in staff.client.get("/admin/orgs/acme").text
    assert _audit(hub, "key.revoked")[-1][:2] == (f"user:{staff.user_id}", f"key:{acme_key.prefix}")


def _key_limits(hub: Hub, prefix: str) -> dict[str, int]:
    with hub.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert row is not None
        return dict(row.limits)


def test_change_a_key_quotas(staff: Web) -> None:
    hub = staff.hub
    key = create_key(hub, "acme", limits={"rpm": 3, "tpd": 100})
    page = staff.client.get("/admin/orgs/acme").text
    assert f'action="/admin/orgs/acme/keys/{key.prefix}/limits"' in page
    assert f'id="key-{key.prefix}-rpm" name="rpm"' in page
    assert authenticate(hub, key.secret).limits == {"rpm": 3, "tpd": 100}

    # The form shows every limit in force: an empty field removes that one.
    done = _post(staff, f"/admin/orgs/acme/keys/{key.prefix}/limits",
                 {"rpm": "7", "budget_month": " 1000 ", "tpd": ""}, page="/admin/orgs/acme")
    assert done.headers["location"] == "/admin/orgs/acme?done=key_limits#keys-title"
    assert _key_limits(hub, key.prefix) == {"rpm": 7, "budget_month": 1000}
    assert authenticate(hub, key.secret).limits == {"rpm": 7, "budget_month": 1000}
    after = _text(staff, done.headers["location"])
    assert "The key's quotas were saved." in after and "Requests per minute: 7" in after
    actor, subject, data = _audit(hub, "key.limits_set")[-1]
    assert (actor, subject) == (f"user:{staff.user_id}", f"key:{key.prefix}")
    assert data == {"org": "acme", "limits": {"rpm": 7, "budget_month": 1000}}


@pytest.mark.parametrize("data", [{"rpm": "-1"}, {"tpd": "many"}, {"budget_day": "1.5"}, {"rpm": "2", "tpm": "-3"}])
def test_bad_key_quotas_change_nothing(staff: Web, data: dict[str, str]) -> None:
    hub = staff.hub
    key = create_key(hub, "acme", limits={"rpm": 3})
    refused = _post(staff, f"/admin/orgs/acme/keys/{key.prefix}/limits", data, page="/admin/orgs/acme")
    assert refused.headers["location"] == "/admin/orgs/acme?error=quota#keys-title"
    page = _text(staff, refused.headers["location"])
    assert "Quotas are whole numbers, zero or more" in page and "Nothing was changed." in page
    assert _key_limits(hub, key.prefix) == {"rpm": 3}
    assert _audit(hub, "key.limits_set") == []


def test_key_quotas_only_through_its_own_organization_and_not_once_revoked(staff: Web) -> None:
    hub = staff.hub
    acme_key = create_key(hub, "acme", limits={"rpm": 3})
    globex_key = create_key(hub, "globex", limits={"rpm": 4})
    for prefix in (globex_key.prefix, "sk-sov-nothere"):
        wrong = _post(staff, f"/admin/orgs/acme/keys/{prefix}/limits", {"rpm": "99"}, page="/admin/orgs/acme")
        assert wrong.headers["location"] == "/admin/orgs/acme?error=key#keys-title"
    assert _key_limits(hub, globex_key.prefix) == {"rpm": 4}

    _post(staff, f"/admin/orgs/acme/keys/{acme_key.prefix}/revoke", page="/admin/orgs/acme")
    assert f"/keys/{acme_key.prefix}/limits" not in staff.client.get("/admin/orgs/acme").text  # no form for it
    refused = _post(staff, f"/admin/orgs/acme/keys/{acme_key.prefix}/limits", {"rpm": "99"}, page="/admin/orgs/acme")
    assert refused.headers["location"] == "/admin/orgs/acme?error=revoked_key#keys-title"
    assert "This API key is revoked; its quotas can no longer be changed." in _text(
        staff, refused.headers["location"])
    assert _key_limits(hub, acme_key.prefix) == {"rpm": 3}
    assert _audit(hub, "key.limits_set") == []


# --- quotas and tiers ---


def test_set_and_clear_organization_quotas(staff: Web) -> None:
    hub = staff.hub
    org_id = _org_id(hub, "acme")
    done = _post(staff, "/admin/orgs/acme/limits", {"rpm": "7", "budget_month": " 1000 ", "tpm": ""},
                 page="/admin/orgs/acme")
    assert done.headers["location"] == "/admin/orgs/acme?done=limits#limits-title"
    assert hub.services.get(AccessState).org(org_id).limits == {"rpm": 7, "budget_month": 1000}
    page = staff.client.get("/admin/orgs/acme?done=limits").text
    assert "The quotas were saved." in page and 'id="org-rpm" name="rpm"' in page and 'value="7"' in page
    assert _audit(hub, "org.limits_set")[-1][2]["limits"] == {"rpm": 7, "budget_month": 1000}

    for bad in ({"rpm": "-5"}, {"rpm": "seven"}, {"tpd": "-1", "rpm": "9"}):
        refused = _post(staff, "/admin/orgs/acme/limits", bad, page="/admin/orgs/acme")
        assert refused.headers["location"] == "/admin/orgs/acme?error=quota#limits-title"
        assert hub.services.get(AccessState).org(org_id).limits == {"rpm": 7, "budget_month": 1000}
    assert "Quotas are whole numbers, zero or more" in _text(staff, "/admin/orgs/acme?error=quota")

    _post(staff, "/admin/orgs/acme/limits", {}, page="/admin/orgs/acme")
    assert hub.services.get(AccessState).org(org_id).limits == {}


def test_grant_and_withdraw_a_custom_tier(staff: Web) -> None:
    hub = staff.hub
    org_id = _org_id(hub, "acme")
    done = _post(staff, "/admin/orgs/acme/tiers", {"tier": "research", "action": "grant"}, page="/admin/orgs/acme")
    assert done.headers["location"] == "/admin/orgs/acme?done=tier_granted#tiers-title"
    assert hub.services.get(AccessState).org(org_id).tiers == {"research"}
    for tier in ("verified", "Not a tier!"):
        refused = _post(staff, "/admin/orgs/acme/tiers", {"tier": tier, "action": "grant"}, page="/admin/orgs/acme")
        assert refused.headers["location"] == "/admin/orgs/acme?error=grant_tier#tiers-title"
    assert hub.services.get(AccessState).org(org_id).tiers == {"research"}
    _post(staff, "/admin/orgs/acme/tiers", {"tier": "research", "action": "withdraw"}, page="/admin/orgs/acme")
    assert hub.services.get(AccessState).org(org_id).tiers == frozenset()
    assert [e[2]["tier"] for e in _audit(hub, "org.tier_withdrawn")] == ["research"]


def test_change_a_model_tier(staff: Web) -> None:
    hub = staff.hub
    page = staff.client.get("/admin").text
    assert '<input type="hidden" name="model" value="echo">' in page  # the served models are listed
    done = _post(staff, "/admin/models/tier", {"model": "echo", "tier": "Verified "})
    assert done.headers["location"] == "/admin?done=tier_set#tiers-title"
    assert list_tiers(hub) == {"echo": "verified"}
    assert _audit(hub, "model.tier_set")[-1][:2] == (f"user:{staff.user_id}", "model:echo")

    for data, error in (({"model": "echo", "tier": "no such tier!"}, "tier"), ({"model": " ", "tier": "open"}, "model")):
        refused = _post(staff, "/admin/models/tier", data)
        assert refused.headers["location"] == f"/admin?error={error}#tiers-title"
        assert list_tiers(hub) == {"echo": "verified"}
    assert "A tier name uses lowercase letters" in _text(staff, "/admin?error=tier")
    _post(staff, "/admin/models/tier", {"model": "echo", "tier": "open"})
    assert list_tiers(hub) == {}


# --- who may act ---

ACTIONS = [
    ("/admin/orgs/globex/verify", {"reason": "x"}), ("/admin/orgs/globex/reject", {"reason": "x"}),
    ("/admin/orgs/globex/revoke-verification", {"reason": "x"}), ("/admin/orgs/globex/limits", {"rpm": "1"}),
    ("/admin/orgs/globex/tiers", {"tier": "research"}), ("/admin/orgs/globex/keys", {"name": "mine"}),
    ("/admin/orgs/globex/keys/PREFIX/revoke", {}), ("/admin/models/tier", {"model": "echo", "tier": "verified"}),
    ("/admin/orgs/globex/keys/PREFIX/limits", {"rpm": "1"}),
]


def _nothing_changed(hub: Hub, key_prefix: str) -> None:
    with hub.db.session() as s:
        assert s.scalars(select(OrgAccess)).first() is None
        assert [k.prefix for k in s.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))] == [key_prefix]
        assert [k.limits for k in s.scalars(select(ApiKey))] == [{}]
    assert list_tiers(hub) == {}


def test_an_organization_admin_who_is_not_staff_gets_403(signed_in: Web) -> None:
    hub = signed_in.hub
    acme, globex = create_org(hub, "acme"), create_org(hub, "globex")
    _pending(hub, "globex")
    key = create_key(hub, "globex")
    with hub.db.session() as s:
        s.add(Membership(user_id=signed_in.user_id, org_id=acme.id, role="admin"))
    assert signed_in.client.get("/admin/orgs/globex").status_code == 403
    assert signed_in.client.get("/admin/orgs/acme").status_code == 403
    for path, data in [*ACTIONS, ("/admin/orgs/acme/limits", {"rpm": "1"})]:
        response = _post(signed_in, path.replace("PREFIX", key.prefix), data, page="/")
        assert response.status_code == 403, path
    _nothing_changed(hub, key.prefix)
    assert _status(hub, "globex") == "in_review" and globex.id


def test_a_post_without_a_valid_form_token_is_refused(staff: Web) -> None:
    key = create_key(staff.hub, "globex")
    for path, data in ACTIONS:
        path = path.replace("PREFIX", key.prefix)
        missing = staff.client.post(path, data=data, follow_redirects=False)
        assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed", path
        forged = staff.client.post(path, data={**data, "csrf_token": "forged"}, follow_redirects=False)
        assert forged.status_code == 403, path
    _nothing_changed(staff.hub, key.prefix)


def test_signed_out_visitors_are_sent_to_sign_in(web: Web) -> None:
    create_org(web.hub, "acme")
    response = web.client.get("/admin/orgs/acme", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/admin/orgs/acme")


# --- languages ---


def test_the_console_speaks_the_staff_members_language(staff: Web) -> None:
    _pending(staff.hub, "acme")
    with staff.hub.db.session() as s:
        s.get(User, staff.user_id).locale = "uk"  # type: ignore[union-attr]
    admin = staff.client.get("/admin").text
    assert "Рівні доступу до моделей" in admin and "Схвалити" in admin
    org = staff.client.get("/admin/orgs/acme?error=reason").text
    assert "Квоти організації" in org and "Нічого не змінено." in org
    with staff.hub.db.session() as s:
        s.get(User, staff.user_id).locale = "ar"  # type: ignore[union-attr]
    arabic = staff.client.get("/admin/orgs/acme").text
    assert 'dir="rtl"' in arabic and "إنشاء مفتاح لواجهة البرمجة" in arabic


def test_the_fidelity_table_shows_each_language_with_failures_and_unreadable_answers(staff: Web) -> None:
    from sovhub.assistant.fidelity import FidelityTracker

    tracker = staff.hub.services.get(FidelityTracker)
    tracker.record("smol", "uk", "uk")
    tracker.record("smol", "uk", None, text="абв где жзи " * 5)
    tracker.record("smol", "ar", None, failed=True)
    page = staff.client.get("/admin").text
    table = page[page.index('id="fidelity-title"'):page.index('id="orgs-title"')]
    assert "Unreadable" in table and "Failed" in table and "Wrong language" in table
    # uk: 1 right of 2 counted (the unreadable one counts against it); ar: its only answer failed.
    assert re.search(r"<td>smol</td><td>uk</td><td>2</td>\s*<td>50 %</td>", table), table
    assert re.search(r"<td>smol</td><td>ar</td><td>1</td>\s*<td>0 %</td>", table), table


def test_staff_cannot_give_a_minted_key_more_than_its_creator(staff: Web) -> None:
    hub = staff.hub
    parent = create_key(hub, "acme", scopes=["admin"], limits={"rpm": 5})
    child = create_key(hub, "acme", creator=authenticate(hub, parent.secret))
    for data in ({"rpm": "50"}, {"rpm": ""}):
        refused = _post(staff, f"/admin/orgs/acme/keys/{child.prefix}/limits", data, page="/admin/orgs/acme")
        assert refused.headers["location"] == "/admin/orgs/acme?error=above_parent#keys-title"
        page = _text(staff, refused.headers["location"])
        assert "cannot have higher quotas than the key that made it" in page and "Nothing was changed." in page
    assert _key_limits(hub, child.prefix) == {"rpm": 5}
    assert _audit(hub, "key.limits_set") == []
