"""A person's own tier and quotas (set by staff) as admission applies them: over the defaults, to them alone."""

from __future__ import annotations

import pytest

from sovhub.access.person_access import person_access, set_person_limits, set_person_tier
from sovhub.access.quotas import limits_for
from sovhub.access.tiers import check_tier, set_tier
from sovhub.assistant.people import create_user
from sovhub.errors import InvalidRequest, NotFound, PermissionDenied
from sovhub.hub import Hub
from sovhub.pipeline import Principal


def _people(hub: Hub) -> tuple[int, int]:
    return (create_user(hub, "olena@example.ua", "a long password here"),
            create_user(hub, "petro@example.ua", "a long password here"))


def test_a_person_uses_the_open_models_and_those_of_their_own_tier(hub: Hub) -> None:
    olena, petro = _people(hub)
    set_tier(hub, "pilot-model", "pilot")
    set_tier(hub, "research-model", "research")
    me = Principal(org_id=None, user_id=olena)
    check_tier(hub, me, "echo")  # open
    with pytest.raises(PermissionDenied) as refused:
        check_tier(hub, me, "pilot-model")
    assert refused.value.code == "model_tier_not_granted" and "your account" in refused.value.message
    assert set_person_tier(hub, olena, "pilot", actor="user:1") == "pilot"
    check_tier(hub, me, "pilot-model")
    with pytest.raises(PermissionDenied):
        check_tier(hub, me, "research-model")  # one tier, not every tier
    with pytest.raises(PermissionDenied):
        check_tier(hub, Principal(org_id=None, user_id=petro), "pilot-model")  # Olena's tier only
    set_person_tier(hub, olena, "open", actor="user:1")
    with pytest.raises(PermissionDenied):
        check_tier(hub, me, "pilot-model")


def test_a_persons_quotas_replace_the_defaults_field_by_field(hub: Hub) -> None:
    olena, petro = _people(hub)
    hub.settings.access.user_limits = {"rpm": 20, "tpd": 1000}
    assert set_person_limits(hub, olena, {"rpm": 2, "budget_day": 50}, actor="user:1") == {
        "rpm": 2, "budget_day": 50}
    mine = limits_for(hub, Principal(org_id=None, user_id=olena), "echo")
    assert {(lim.scope, lim.field, lim.value) for lim in mine} == {
        (f"user:{olena}", "rpm", 2), (f"user:{olena}", "tpd", 1000), (f"user:{olena}", "budget_day", 50)}
    theirs = limits_for(hub, Principal(org_id=None, user_id=petro), "echo")
    assert {(lim.field, lim.value) for lim in theirs} == {("rpm", 20), ("tpd", 1000)}
    assert set_person_limits(hub, olena, {"rpm": None}, actor="user:1") == {"budget_day": 50}
    assert person_access(hub, olena).effective == {"rpm": 20, "tpd": 1000, "budget_day": 50}


@pytest.mark.parametrize("changes", [{"rpm": -1}, {"rpm": True}, {"rps": 5}, {"tpd": 1.5}])
def test_bad_quotas_are_refused_and_change_nothing(hub: Hub, changes: dict[str, object]) -> None:
    olena, _ = _people(hub)
    set_person_limits(hub, olena, {"rpm": 4}, actor="user:1")
    with pytest.raises(InvalidRequest):
        set_person_limits(hub, olena, changes, actor="user:1")  # type: ignore[arg-type]
    assert person_access(hub, olena).limits == {"rpm": 4}


def test_no_such_person(hub: Hub) -> None:
    with pytest.raises(NotFound):
        set_person_limits(hub, 424242, {"rpm": 1}, actor="user:1")
    with pytest.raises(NotFound):
        set_person_tier(hub, 424242, "pilot", actor="user:1")
    with pytest.raises(NotFound):
        person_access(hub, 424242)
