"""Removing an organization's members and a partner's staff: domain rules (never the last admin, not even
two admins removing each other at once), the staff API, the CLI; each audited."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from sovhub.accounts import create_org, create_staff_key, get_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.dashboards import add_partner_member, partners_of
from sovhub.credits.programmes import ProgrammeRules, create_programme
from sovhub.errors import Conflict, NotFound
from sovhub.members import add_member, members_of, remove_member
from sovhub.store.tables import User
from tests.conftest import run_cli

from .conftest import credits_hub
from .test_applications import Events
from .test_enforcement import _client


@pytest.fixture
def world(hub) -> dict[str, Any]:
    events = Events()
    hub.pm.register(events, name="tests.events")
    create_org(hub, "fund-office")
    create_org(hub, "acme")
    with hub.db.session() as s:
        people = [User(email=e) for e in ("ann@acme.example", "ben@acme.example", "cat@acme.example")]
        s.add_all([User(email="officer@fund.example", is_staff=True), *people])
        s.flush()
        ids = {u.email.split("@")[0]: u.id for u in people}
    add_member(hub, "acme", "ann@acme.example", "admin")
    add_member(hub, "acme", "ben@acme.example", "admin")
    add_member(hub, "acme", "cat@acme.example", "member")
    create_programme(hub, "Gateway", 100 * MICRO, [("Bank", 10_000)], ProgrammeRules(), actor="tests")
    return {"events": events, **ids, "staff": create_staff_key(hub, "fund-office", "officer@fund.example")}


def _roles(hub) -> dict[str, str]:
    org = get_org(hub, "acme")
    return {email.split("@")[0]: role for _, email, role in members_of(hub, org.id)}


def test_the_last_admin_is_neither_removed_nor_demoted(hub, world) -> None:
    remove_member(hub, "acme", "ben@acme.example", actor="tests")
    assert _roles(hub) == {"ann": "admin", "cat": "member"}
    with pytest.raises(Conflict) as exc:
        remove_member(hub, "acme", "ann@acme.example", actor="tests")
    assert exc.value.code == "last_admin" and exc.value.status == 409
    with pytest.raises(Conflict):
        add_member(hub, "acme", "ann@acme.example", "member", actor="tests")  # demoting is removing the role
    assert _roles(hub) == {"ann": "admin", "cat": "member"}
    remove_member(hub, "acme", world["cat"], actor="tests")  # by user id too
    with pytest.raises(NotFound) as missing:
        remove_member(hub, "acme", "cat@acme.example", actor="tests")
    assert missing.value.code == "not_member"
    with pytest.raises(NotFound):
        remove_member(hub, "nobody", "ann@acme.example", actor="tests")
    removed = [e for e in world["events"].seen if e.name == "membership.removed"]
    assert [(e.actor, e.data["user"], e.data["role"]) for e in removed] == [
        ("tests", world["ben"], "admin"), ("tests", world["cat"], "member")]


def test_two_admins_removing_each_other_at_once_leave_one(hub, world) -> None:
    """Both see two admins if nothing serialises them; the org row's lock makes the second count again."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def remove(email: str) -> None:
        barrier.wait()
        try:
            remove_member(hub, "acme", email, actor="tests")
            outcomes.append("removed")
        except Conflict:
            outcomes.append("last_admin")
        except OperationalError:  # SQLite may refuse the second writer outright: it changed nothing either
            outcomes.append("busy")

    for _ in range(5):
        add_member(hub, "acme", "ann@acme.example", "admin")
        add_member(hub, "acme", "ben@acme.example", "admin")
        outcomes.clear()
        threads = [threading.Thread(target=remove, args=(e,)) for e in ("ann@acme.example", "ben@acme.example")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(outcomes) == 2 and outcomes.count("removed") == 1, outcomes
        assert list(_roles(hub).values()).count("admin") == 1


def test_staff_remove_and_add_members_and_partner_staff_by_api(hub, world) -> None:
    auth = {"authorization": f"Bearer {world['staff'].secret}"}
    for client in _client(hub):
        r = client.delete("/hub/v1/admin/organizations/acme/members/cat@acme.example", headers=auth)
        assert r.status_code == 200 and r.json() == {"object": "organization.member", "organization": "acme",
                                                      "email": "cat@acme.example", "deleted": True}
        again = client.delete("/hub/v1/admin/organizations/acme/members/cat@acme.example", headers=auth)
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_member"
        assert client.delete("/hub/v1/admin/organizations/acme/members/ben@acme.example", headers=auth).status_code == 200
        last = client.delete("/hub/v1/admin/organizations/acme/members/ann@acme.example", headers=auth)
        assert last.status_code == 409 and last.json()["error"]["code"] == "last_admin"
        put = client.put("/hub/v1/admin/organizations/acme/members/Cat@acme.example", headers=auth,
                         json={"role": "admin"})
        assert put.status_code == 200 and put.json()["role"] == "admin"
        assert client.put("/hub/v1/admin/organizations/acme/members/x@acme.example", headers=auth,
                          json={"role": "owner"}).status_code == 400
        assert _roles(hub) == {"ann": "admin", "cat": "admin"}
        # A partner's staff.
        assert client.put("/hub/v1/admin/partners/1/members/cat@acme.example", headers=auth).status_code == 200
        assert partners_of(hub, world["cat"]) == [(1, "Bank")]
        assert client.delete("/hub/v1/admin/partners/1/members/cat@acme.example", headers=auth).status_code == 200
        assert partners_of(hub, world["cat"]) == []
        assert client.delete("/hub/v1/admin/partners/1/members/cat@acme.example", headers=auth).status_code == 404
        assert client.delete("/hub/v1/admin/partners/99/members/cat@acme.example", headers=auth).status_code == 404
    events = [(e.name, e.actor) for e in world["events"].seen if e.name in (
        "membership.removed", "partner.member_removed")]
    assert len(events) == 3 and all(actor.startswith("user:") and "officer@fund.example" in actor
                                    for _, actor in events)


def test_the_cli_removes_members_and_partner_staff(data_dir, capsys) -> None:
    assert run_cli(data_dir, "orgs", "create", "acme") == 0
    hub = credits_hub(data_dir)
    with hub.db.session() as s:
        s.add_all([User(email="ann@acme.example"), User(email="cat@acme.example")])
    create_programme(hub, "Gateway", 100 * MICRO, [("Bank", 10_000)], ProgrammeRules(), actor="tests")
    hub.close()
    assert run_cli(data_dir, "programmes", "member", "acme", "ann@acme.example", "--role", "admin") == 0
    assert run_cli(data_dir, "programmes", "member", "acme", "cat@acme.example") == 0
    assert run_cli(data_dir, "programmes", "partner-member", "Bank", "cat@acme.example") == 0
    capsys.readouterr()
    assert run_cli(data_dir, "programmes", "member-remove", "acme", "ann@acme.example") == 1
    assert "last admin" in capsys.readouterr().err
    assert run_cli(data_dir, "programmes", "member-remove", "acme", "cat@acme.example") == 0
    assert "no longer a member" in capsys.readouterr().out
    assert run_cli(data_dir, "programmes", "partner-member-remove", "Bank", "cat@acme.example") == 0
    assert run_cli(data_dir, "programmes", "partner-member-remove", "Bank", "cat@acme.example") == 1
    hub = credits_hub(data_dir)
    try:
        org = get_org(hub, "acme")
        assert [(e, r) for _, e, r in members_of(hub, org.id)] == [("ann@acme.example", "admin")]
        with hub.db.session() as s:
            cat = s.scalar(select(User.id).where(User.email == "cat@acme.example"))
        assert partners_of(hub, cat) == []
    finally:
        hub.close()


def test_partner_staff_removal_is_audited_in_the_domain(hub, world) -> None:
    add_partner_member(hub, "Bank", "cat@acme.example", actor="tests")
    from sovhub.credits.dashboards import remove_partner_member

    remove_partner_member(hub, "Bank", "CAT@acme.example", actor="tests")
    with pytest.raises(NotFound):
        remove_partner_member(hub, "Bank", world["cat"], actor="tests")
    assert [e.data["user"] for e in world["events"].seen if e.name == "partner.member_removed"] == [world["cat"]]
