"""Eligibility by kind of organization (applying and granting), notices of decisions, and the low-balance
notice: once per crossing, across replicas, re-armed when the balance is back over the line."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.credits.amounts import MICRO
from sovhub.credits.applications import decide, submit_application
from sovhub.credits.control import Credits
from sovhub.credits.eligibility import normalize_kind, set_org_kind
from sovhub.credits.notices import LowBalanceWatch, dismiss_notice, list_notices, low_threshold
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditGrant, CreditNotice
from sovhub.errors import InvalidRequest, NotFound, PermissionDenied
from sovhub.events import Event
from sovhub.hookspecs import hookimpl
from sovhub.store.tables import User
from tests.conftest import run_cli

from .conftest import credits_hub
from .test_enforcement import _client

app_client = contextlib.contextmanager(_client)


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def sovhub_event(self, hub: Any, event: Event) -> None:
        self.seen.append(event)


def test_kinds_are_a_known_vocabulary() -> None:
    assert [normalize_kind(k) for k in ("Start-up", "public body", "RESEARCH", "ngo")] == [
        "startup", "public_body", "research", "nonprofit"]
    with pytest.raises(InvalidRequest) as refused:
        normalize_kind("spaceship")
    assert refused.value.param == "kind"


def test_a_programme_for_some_kinds_refuses_others_when_applying_and_when_granting(hub) -> None:
    acme = create_org(hub, "acme")
    programme = create_programme(hub, "Public AI", 100 * MICRO, [("Fund", 10_000)],
                                 ProgrammeRules(org_kinds=("research", "Public-Body")), actor="tests")
    assert programme.org_kinds == ["research", "public_body"]
    with pytest.raises(InvalidRequest):
        create_programme(hub, "Odd", 10 * MICRO, [("Fund", 10_000)], ProgrammeRules(org_kinds=("pirates",)),
                         actor="tests")
    for when in ("unrecorded", "startup"):
        if when == "startup":
            set_org_kind(hub, "acme", "startup", actor="tests")
        with pytest.raises(PermissionDenied) as refused:
            submit_application(hub, programme.id, acme.id, purpose="x", amount=MICRO, actor="tests")
        assert refused.value.code == "kind_not_eligible"
        with pytest.raises(PermissionDenied) as refused:
            grant_credits(hub, programme.id, "acme", MICRO, reason="r", actor="tests")
        assert refused.value.code == "kind_not_eligible"
    set_org_kind(hub, "acme", "public body", actor="tests")
    assert submit_application(hub, programme.id, acme.id, purpose="x", amount=MICRO, actor="tests").id
    assert grant_credits(hub, programme.id, "acme", MICRO, reason="r", actor="tests").id
    with pytest.raises(NotFound):
        set_org_kind(hub, "nobody", "startup", actor="tests")


def test_kinds_members_and_partner_staff_from_the_cli(data_dir) -> None:
    from sovhub.accounts import memberships
    from sovhub.credits.dashboards import partners_of
    from sovhub.store.tables import Organization

    assert run_cli(data_dir, "orgs", "create", "acme") == 0
    assert run_cli(data_dir, "programmes", "create", "Gateway", "--budget", "10", "--partner", "Bank=100",
                   "--kind", "start-up") == 0
    assert run_cli(data_dir, "programmes", "org-kind", "acme", "start-up") == 0
    assert run_cli(data_dir, "programmes", "org-kind", "acme", "spaceship") != 0
    hub = credits_hub(data_dir)
    try:
        with hub.db.session() as s:
            s.add(User(email="banker@bank.example"))
        assert run_cli(data_dir, "programmes", "partner-member", "Bank", "banker@bank.example") == 0
        assert run_cli(data_dir, "programmes", "partner-member", "Bank", "ghost@bank.example") != 0
        assert run_cli(data_dir, "programmes", "member", "acme", "banker@bank.example", "--role", "admin") == 0
        with hub.db.session() as s:
            assert s.scalar(select(Organization.kind).where(Organization.name == "acme")) == "startup"
            banker = s.scalar(select(User.id).where(User.email == "banker@bank.example"))
        assert partners_of(hub, banker) == [(1, "Bank")]
        assert [(name, role) for _, name, role in memberships(hub, banker)] == [("acme", "admin")]
    finally:
        hub.close()


def test_a_decision_leaves_one_notice_a_member_dismisses(hub) -> None:
    acme = create_org(hub, "acme")
    create_org(hub, "beta")
    programme = create_programme(hub, "Gateway", 100 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
    with hub.db.session() as s:
        staff = User(email="officer@fund.example", is_staff=True)
        s.add(staff)
        s.flush()
        staff_id = staff.id
    application = submit_application(hub, programme.id, acme.id, purpose="x", amount=5 * MICRO, actor="tests")
    decide(hub, application.id, "approved", reason="good", reviewer_id=staff_id, amount=3 * MICRO)
    [notice] = list_notices(hub, acme.id)
    assert notice["kind"] == "application_approved" and notice["application"] == application.id
    assert notice["data"] == {"programme": "Gateway", "reason": "good", "asked": 5, "credits": 3}
    with pytest.raises(NotFound):
        dismiss_notice(hub, notice["id"], acme.id + 1, actor="tests")  # another organization's: not found
    dismiss_notice(hub, notice["id"], acme.id, actor="tests")
    assert list_notices(hub, acme.id) == [] and len(list_notices(hub, acme.id, include_dismissed=True)) == 1


def test_low_balance_is_noticed_once_per_crossing_and_rearmed(hub) -> None:
    events = Events()
    hub.pm.register(events, name="tests.events")
    create_org(hub, "acme")
    create_programme(hub, "Gateway", 100 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
    grant = grant_credits(hub, "Gateway", "acme", 10 * MICRO, reason="r", actor="tests")
    secret = create_key(hub, "acme").secret
    assert low_threshold(10 * MICRO, 10.0) == MICRO
    with app_client(hub) as client:
        credits = hub.services.get(Credits)
        live = credits.live

        def check() -> list[int]:
            return client.portal.call(credits.check_low_balances)  # type: ignore[union-attr,no-any-return]

        def hold(tid: str, amount: int) -> None:
            async def run() -> None:
                assert (await live.reserve(tid, [grant.id], amount, 60_000, "{}")).ok
            client.portal.call(run)  # type: ignore[union-attr]

        def release(tid: str) -> None:
            async def run() -> None:
                await live.settle([(tid, 0, "{}")])
            client.portal.call(run)  # type: ignore[union-attr]

        counted = [e for e in events.seen if e.name == "credits.low_balance"]
        hold("t1", int(9.5 * MICRO))  # 0.5 credits left: under 10%
        check(), check()
        low = [e for e in events.seen if e.name == "credits.low_balance"]
        assert len(low) - len(counted) == 1 and low[-1].data["grant"] == grant.id
        with hub.db.session() as s:
            assert s.get(CreditGrant, grant.id).low_since is not None  # type: ignore[union-attr]
        # A second replica seeing the same crossing does not notify again.
        other = LowBalanceWatch(hub)
        assert client.portal.call(other.check, credits.state.open_grants(), live) == []  # type: ignore[union-attr]
        answer = client.get("/hub/v1/organization/credits", headers={"authorization": f"Bearer {secret}"})
        assert answer.json()["grants"][0]["low"] is True
        notices = client.get("/hub/v1/organization/notices", headers={"authorization": f"Bearer {secret}"}).json()
        assert [n["kind"] for n in notices["data"]] == ["low_balance"]
        release("t1")  # the balance is back over the line: the mark clears
        check()
        with hub.db.session() as s:
            assert s.get(CreditGrant, grant.id).low_since is None  # type: ignore[union-attr]
        hold("t2", int(9.5 * MICRO))  # the next crossing notifies again
        check()
        with hub.db.session() as s:
            assert len(s.scalars(select(CreditNotice).where(CreditNotice.kind == "low_balance")).all()) == 2


def test_no_low_balance_notice_when_turned_off(data_dir) -> None:
    hub = credits_hub(data_dir, credits={"low_balance_percent": 0})
    try:
        create_org(hub, "acme")
        create_programme(hub, "Gateway", 10 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
        grant_credits(hub, "Gateway", "acme", MICRO, reason="r", actor="tests")
        with app_client(hub) as client:
            credits = hub.services.get(Credits)

            async def drain_and_check() -> list[int]:
                await credits.live.take(credits.state.open_grants()[0].id)  # balance 0
                return await credits.check_low_balances()

            assert client.portal.call(drain_and_check) == []  # type: ignore[union-attr]
    finally:
        hub.close()
