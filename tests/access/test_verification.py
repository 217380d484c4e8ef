"""Organization verification: request, representative's eID level, registry check, queue, 90-day rule, CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sovhub.access.auth_routes import link_identity
from sovhub.access.oidc import EidIdentity
from sovhub.access.registry import RegistryEntry, Representative, representative
from sovhub.access.tables import Identity, OrgAccess, Verification
from sovhub.access.verification import (
    attach_representative,
    reject_verification,
    request_verification,
    revoke_verification,
    staff_verify,
    verification_queue,
    verification_status,
)
from sovhub.errors import Conflict, InvalidRequest, NotFound

from .conftest import bearer, org_with_key

REGISTRY_CSV = """country,number,legal_name,status,representatives
UA,12345678,Acme LLC,active,Olena Petrenko|1980-04-02;Ivan Sirko|1975-01-01
UA,87654321,Globex JSC,active,Olena Petrenko|1980-04-02
UA,11111111,Dormant Ltd,liquidated,Bohdan Koval
"""


def person(subject: str = "alice", level: str | None = "high", name: tuple[str, str] = ("Olena", "Petrenko")) -> EidIdentity:
    return EidIdentity(idp="test", subject=subject, level=level, acr=None, given_name=name[0],
                       family_name=name[1], birthdate="1980-04-02", claims={})


@pytest.fixture
def registry_app(make_app: Any, data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "registry.csv").write_text(REGISTRY_CSV, encoding="utf-8")
    return make_app(registry_file="registry.csv")


def _request(
    client: Any, secret: str, number: str = "12345678", name: str = "ACME llc", country: str = "ua"
) -> dict[str, Any]:
    r = client.post("/hub/v1/organization/verification", headers=bearer(secret),
                    json={"country": country, "registry_number": number, "legal_name": name})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_consistent_request_is_approved_automatically(registry_app: Any) -> None:
    hub, client = registry_app
    org_id, secret, _ = org_with_key(hub, "acme")
    status = client.get("/hub/v1/organization/verification", headers=bearer(secret)).json()
    assert status["status"] == "unverified" and status["missing"] == ["verification not requested"]
    assert "POST /hub/v1/organization/verification" in status["next_steps"][0]

    started = _request(client, secret)
    assert started["status"] == "awaiting_representative"
    assert started["representative_url"].startswith("http://testserver/auth/verify/")
    assert "assurance level high" in started["missing"][0]
    token = started["representative_url"].rsplit("/", 1)[1]

    weak, _ = link_identity(hub, person(level="substantial"), None)
    row = attach_representative(hub, token, weak)
    assert row.status == "awaiting_representative" and "level substantial" in row.problems[0]

    strong, _ = link_identity(hub, person(level="high"), None)
    row = attach_representative(hub, token, strong)
    assert row.status == "approved", row.problems
    status = client.get("/hub/v1/organization/verification", headers=bearer(secret)).json()
    assert status["status"] == "verified" and status["verified"] and status["missing"] == []
    assert "org.verified" in hub.pm.get_plugin("tests.events").names()
    with pytest.raises(NotFound):
        attach_representative(hub, token, strong)  # the link is one-time
    with pytest.raises(Conflict):
        request_verification(hub, org_id, country="UA", registry_number="1", legal_name="x", actor="t")


@pytest.mark.parametrize(
    ("number", "name", "rep", "problem"),
    [
        ("12345678", "Acme Holdings", ("Olena", "Petrenko"), "differs from the registry"),
        ("99999999", "Acme LLC", ("Olena", "Petrenko"), "was not found"),
        ("11111111", "Dormant Ltd", ("Bohdan", "Koval"), "not active"),
        ("12345678", "Acme LLC", ("Carol", "Nowak"), "not listed as a legal representative"),
    ],
)
def test_inconsistent_request_queues_for_review(
    registry_app: Any, number: str, name: str, rep: tuple[str, str], problem: str
) -> None:
    hub, client = registry_app
    org_id, secret, _ = org_with_key(hub, "acme")
    token = _request(client, secret, number, name)["representative_url"].rsplit("/", 1)[1]
    identity, _ = link_identity(hub, person(name=rep), None)
    row = attach_representative(hub, token, identity)
    assert row.status == "in_review"
    assert any(problem in p for p in row.problems), row.problems
    queue = verification_queue(hub)
    assert [q["organization"] for q in queue] == ["acme"]
    status = client.get("/hub/v1/organization/verification", headers=bearer(secret)).json()
    assert status["status"] == "in_review" and not status["can_retry"]
    assert any(problem in p for p in status["missing"])

    staff_verify(hub, org_id, reason="registry extract checked by hand", actor="staff:test")
    assert verification_queue(hub) == []
    event = hub.pm.get_plugin("tests.events").last("org.verified")
    assert event.actor == "staff:test" and event.data["reason"] == "registry extract checked by hand"


def test_no_registry_means_staff_review(make_app: Any) -> None:
    hub, client = make_app()
    _, secret, _ = org_with_key(hub, "acme")
    token = _request(client, secret)["representative_url"].rsplit("/", 1)[1]
    identity, _ = link_identity(hub, person(), None)
    row = attach_representative(hub, token, identity)
    assert row.status == "in_review" and "no company registry" in row.problems[0]


def test_one_person_one_organization_per_90_days(registry_app: Any) -> None:
    hub, client = registry_app
    _, secret_a, _ = org_with_key(hub, "acme")
    globex_id, secret_b, _ = org_with_key(hub, "globex")
    identity, _ = link_identity(hub, person(), None)
    token = _request(client, secret_a)["representative_url"].rsplit("/", 1)[1]
    assert attach_representative(hub, token, identity).status == "approved"

    token = _request(client, secret_b, "87654321", "Globex JSC")["representative_url"].rsplit("/", 1)[1]
    row = attach_representative(hub, token, identity)
    assert row.status == "rejected"
    assert "one person may verify one organization per 90 days" in row.problems[0] and "'acme'" in row.problems[0]
    status = client.get("/hub/v1/organization/verification", headers=bearer(secret_b)).json()
    assert status["status"] == "rejected" and status["can_retry"]

    # 91 days later the same person may verify another organization.
    with hub.db.session() as s:
        for v in s.query(Verification).filter(Verification.status == "approved"):
            v.decided_at = v.decided_at - timedelta(days=91)
    token = _request(client, secret_b, "87654321", "Globex JSC")["representative_url"].rsplit("/", 1)[1]
    assert attach_representative(hub, token, identity).status == "approved"
    assert verification_status(hub, globex_id)["verified"]


def test_json_registry_file(make_app: Any, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "reg.json").write_text(json.dumps([
        {"country": "PL", "number": "0000-123", "legal_name": "Zażółć Sp. z o.o.", "status": "active",
         "representatives": [{"name": "Carol Nowak", "birthdate": "1980-04-02"}]},
    ]), encoding="utf-8")
    hub, client = make_app(registry_file="reg.json")
    _, secret, _ = org_with_key(hub, "zazolc")
    token = _request(client, secret, "0000123", "ZAZOLC SP Z OO", country="pl")["representative_url"].rsplit("/", 1)[1]
    identity, _ = link_identity(hub, person("carol", name=("Carol", "Nowak")), None)
    row = attach_representative(hub, token, identity)
    assert row.status == "approved", row.problems


def test_revoke_reject_and_reasons(hub: Any) -> None:
    from sovhub.accounts import create_org

    org = create_org(hub, "acme")
    with pytest.raises(Conflict):
        revoke_verification(hub, org.id, reason="x", actor="t")
    with pytest.raises(NotFound):
        reject_verification(hub, org.id, reason="x", actor="t")
    with pytest.raises(InvalidRequest):
        staff_verify(hub, org.id, reason=" ", actor="t")
    request_verification(hub, org.id, country="UA", registry_number="1", legal_name="Acme", actor="t")
    assert reject_verification(hub, org.id, reason="wrong number", actor="t").status == "rejected"
    assert verification_status(hub, org.id)["request"]["reason"] == "wrong number"
    staff_verify(hub, org.id, reason="ok", actor="t")
    assert revoke_verification(hub, org.id, reason="fraud report", actor="t").status == "revoked"
    status = verification_status(hub, org.id)
    assert status["status"] == "revoked" and not status["verified"] and status["can_retry"]
    with pytest.raises(InvalidRequest):
        request_verification(hub, org.id, country="", registry_number="1", legal_name="x", actor="t")


def test_cli_verify_and_revoke_are_audited(settings: Any) -> None:
    from sovhub.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir)]
    assert runner.invoke(cli, [*args, "orgs", "create", "acme"]).exit_code == 0
    r = runner.invoke(cli, [*args, "orgs", "verify", "acme"])
    assert r.exit_code == 2 and "--reason" in r.output
    r = runner.invoke(cli, [*args, "orgs", "verify", "acme", "--reason", "papers checked"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*args, "orgs", "verification", "acme"])
    assert json.loads(r.output)["status"] == "verified"
    r = runner.invoke(cli, [*args, "orgs", "revoke-verification", "acme", "--reason", "registry struck off"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*args, "orgs", "verification", "acme"])
    assert json.loads(r.output)["status"] == "revoked"
    r = runner.invoke(cli, [*args, "orgs", "revoke-verification", "nobody", "--reason", "x"])
    assert isinstance(r.exception, NotFound)
    r = runner.invoke(cli, [*args, "orgs", "set-limits", "acme", "--rpm", "7", "--budget-month", "1000"])
    assert r.output.strip() == "limits of acme: budget_month=1000, rpm=7"


def test_verification_link_needs_a_known_provider(make_app: Any) -> None:
    hub, client = make_app()
    r = client.get("/auth/verify/sometoken", follow_redirects=False)
    assert r.status_code == 400 and "none configured" in r.json()["error"]["message"]


def _person_with(subject: str, *, birthdate: str | None, person_id: str | None = None,
                 name: tuple[str, str] = ("Olena", "Petrenko")) -> EidIdentity:
    return EidIdentity(idp="test", subject=subject, level="high", acr=None, given_name=name[0], family_name=name[1],
                       birthdate=birthdate, claims={}, person_id=person_id)


@pytest.mark.parametrize("birthdate", ["1991-07-15", None])
def test_a_namesake_is_not_approved(registry_app: Any, birthdate: str | None) -> None:
    # Same full name as the registry's representative, another (or no) birth date: another person.
    hub, client = registry_app
    _, secret, _ = org_with_key(hub, "acme")
    token = _request(client, secret)["representative_url"].rsplit("/", 1)[1]
    identity, _ = link_identity(hub, _person_with("namesake", birthdate=birthdate), None)
    row = attach_representative(hub, token, identity)
    assert row.status == "in_review"
    assert any("not listed as a legal representative" in p for p in row.problems), row.problems
    assert not verification_status(hub, row.org_id)["verified"]


def test_representative_matched_by_person_identifier(make_app: Any, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "reg.json").write_text(json.dumps([
        {"country": "UA", "number": "12345678", "legal_name": "Acme LLC", "status": "active",
         "representatives": [{"name": "Олена Петренко", "birthdate": "1980-04-02", "person_id": "UA/CZ-1234 5678"}]},
        {"country": "UA", "number": "87654321", "legal_name": "Globex JSC", "status": "active",
         "representatives": [{"name": "Olena Petrenko", "birthdate": "1980-04-02", "person_id": "UA/CZ-99999999"}]},
    ]), encoding="utf-8")
    hub, client = make_app(registry_file="reg.json")
    _, secret, _ = org_with_key(hub, "acme")
    token = _request(client, secret, name="Acme LLC")["representative_url"].rsplit("/", 1)[1]
    # The eID spells the name in Latin letters; the identifier (fullwidth, other case, no space) decides.
    identity, _ = link_identity(hub, _person_with("olena", birthdate=None, person_id="ｕａ/cz-12345678"), None)
    with hub.db.session() as s:
        assert s.get(Identity, identity).person_id == "ｕａ/cz-12345678"  # stored as asserted, compared normalised
    row = attach_representative(hub, token, identity)
    assert row.status == "approved", row.problems

    # Name and birth date agree, but both sides carry an identifier and it differs: not the same person.
    _, secret_b, _ = org_with_key(hub, "globex")
    token = _request(client, secret_b, "87654321", "Globex JSC")["representative_url"].rsplit("/", 1)[1]
    other, _ = link_identity(hub, _person_with("other", birthdate="1980-04-02", person_id="UA/CZ-11111111"), None)
    row = attach_representative(hub, token, other)
    assert row.status == "in_review" and any("not listed" in p for p in row.problems)


def test_representative_matching_normalises() -> None:
    rep = representative("  Zoë  O’Neil |１９８０-04-02|")
    assert rep == Representative(name="Zoë  O’Neil", birthdate="１９８０-04-02", person_id=None)
    assert rep.matches("ZOE ONEIL", "1980-04-02", None)
    assert not rep.matches("Zoe ONeil", "1980-04-03", None)
    assert not rep.matches("Zoe ONeil", None, None)
    assert not Representative(name="Zoe ONeil").matches("Zoe ONeil", "1980-04-02", None)  # a name alone: never
    assert Representative(name="x", person_id="AB 12").matches("y", None, "ab12")
    with pytest.raises(TypeError, match="needs a name"):
        representative("|1980-01-01|")
    # A plugin registry that still lists plain names: kept as names, which never match on their own.
    entry = RegistryEntry(country="UA", number="1", legal_name="x", status="active",
                          representatives=("Olena Petrenko",))  # type: ignore[arg-type]
    assert entry.representatives == (Representative(name="Olena Petrenko"),)
    assert entry.as_dict()["representatives"] == [{"name": "Olena Petrenko", "birthdate": None, "person_id": None}]
    assert not entry.representatives[0].matches("Olena Petrenko", "1980-04-02", None)


def test_a_registry_number_belongs_to_one_organization(registry_app: Any) -> None:
    hub, client = registry_app
    _, secret_a, _ = org_with_key(hub, "acme")
    squatter_id, secret_b, _ = org_with_key(hub, "squatter")
    # Both ask before either is verified: the number is claimed at approval, so nobody can squat it.
    token_b = _request(client, secret_b)["representative_url"].rsplit("/", 1)[1]
    token_a = _request(client, secret_a)["representative_url"].rsplit("/", 1)[1]
    identity, _ = link_identity(hub, person(), None)
    assert attach_representative(hub, token_a, identity).status == "approved"

    for number in ("12345678", "12 345-678"):
        r = client.post("/hub/v1/organization/verification", headers=bearer(secret_b),
                        json={"country": "ua", "registry_number": number, "legal_name": "Acme LLC"})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "registry_number_taken" and error["param"] == "registry_number"
        assert "12345678" in error["message"] and "acme" not in error["message"]
    # The squatter's earlier request can no longer be approved, neither automatically nor by staff.
    # Its representative (Ivan Sirko, listed for Acme LLC) passes every other check.
    other, _ = link_identity(hub, _person_with("ivan", birthdate="1975-01-01", name=("Ivan", "Sirko")), None)
    row = attach_representative(hub, token_b, other)
    assert row.status == "in_review"
    assert row.problems == ["registry number 12345678 already belongs to the verified organization 'acme'"]
    with pytest.raises(Conflict, match="already belongs to another verified organization"):
        staff_verify(hub, squatter_id, reason="looked fine", actor="staff:test")
    assert not verification_status(hub, squatter_id)["verified"]

    # Revoking the holder's verification releases the number.
    with hub.db.session() as s:
        holder = s.query(OrgAccess).filter(OrgAccess.registry_number == "12345678").one()
        holder_id = holder.org_id
    revoke_verification(hub, holder_id, reason="fraud", actor="staff:test")
    assert client.post("/hub/v1/organization/verification", headers=bearer(secret_b),
                       json={"country": "UA", "registry_number": "12345678", "legal_name": "Acme LLC"}).status_code == 201


def test_the_database_refuses_a_second_claim(hub: Any) -> None:
    from sqlalchemy.exc import IntegrityError

    from sovhub.accounts import create_org

    a, b = create_org(hub, "a"), create_org(hub, "b")
    with hub.db.session() as s:
        s.add(OrgAccess(org_id=a.id, limits={}, tiers=[], registry_country="UA", registry_number="1"))
    with pytest.raises(IntegrityError), hub.db.session() as s:
        s.add(OrgAccess(org_id=b.id, limits={}, tiers=[], registry_country="UA", registry_number="1"))
