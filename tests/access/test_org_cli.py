"""The staff CLI for organizations: the verification queue, rejecting a request, granting a custom tier."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from sovhub.access.tables import Verification
from sovhub.access.tiers import check_tier
from sovhub.access.verification import IN_REVIEW, REJECTED, request_verification
from sovhub.accounts import get_org
from sovhub.errors import InvalidRequest, NotFound, PermissionDenied, SovhubError
from sovhub.hub import build_hub
from sovhub.pipeline import Principal
from sovhub.settings import Settings
from sovhub.sovereignty.tables import AuditEntry


@pytest.fixture
def cli_run(settings: Settings) -> Any:
    from sovhub.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, ["--data-dir", str(settings.data_dir), *args])

    assert run("orgs", "create", "acme").exit_code == 0
    return run


def _in_review(settings: Settings, registry_number: str) -> int:
    hub = build_hub(settings)
    try:
        org = get_org(hub, "acme")
        row, _ = request_verification(hub, org.id, country="UA", registry_number=registry_number,
                                      legal_name="Acme LLC", actor="t")
        with hub.db.session() as s:
            stored = s.get(Verification, row.id)
            assert stored is not None
            stored.status, stored.problems = IN_REVIEW, ["the registry lists another director"]
        return org.id
    finally:
        hub.close()


def _audit_actions(settings: Settings) -> list[str]:
    hub = build_hub(settings)
    try:
        with hub.db.session() as s:
            return list(s.scalars(select(AuditEntry.event).order_by(AuditEntry.seq)))
    finally:
        hub.close()


def test_queue_lists_requests_in_review_and_nothing_else(cli_run: Any, settings: Settings) -> None:
    empty = cli_run("orgs", "verification-queue")
    assert empty.exit_code == 0 and empty.output == ""
    _in_review(settings, "40087654")
    listed = cli_run("orgs", "verification-queue")
    assert listed.exit_code == 0, listed.output
    assert listed.output.strip() == "acme\tUA 40087654\tthe registry lists another director"


def test_reject_closes_the_request_with_its_reason(cli_run: Any, settings: Settings) -> None:
    _in_review(settings, "40087654")
    missing_reason = cli_run("orgs", "reject-verification", "acme")
    assert missing_reason.exit_code == 2 and "--reason" in missing_reason.output
    blank = cli_run("orgs", "reject-verification", "acme", "--reason", "  ")
    assert isinstance(blank.exception, InvalidRequest)
    done = cli_run("orgs", "reject-verification", "acme", "--reason", "director does not match the registry")
    assert done.exit_code == 0, done.output
    hub = build_hub(settings)
    try:
        with hub.db.session() as s:
            row = s.scalars(select(Verification).order_by(Verification.id.desc())).first()
            assert row is not None
            assert (row.status, row.reason, row.token_hash) == (REJECTED, "director does not match the registry", None)
    finally:
        hub.close()
    assert "org.verification_rejected" in _audit_actions(settings)
    assert cli_run("orgs", "verification-queue").output == ""
    # Nothing is open any more: a second rejection is a clear error, and an unknown org too.
    again = cli_run("orgs", "reject-verification", "acme", "--reason", "x")
    assert isinstance(again.exception, NotFound)
    nobody = cli_run("orgs", "reject-verification", "nobody", "--reason", "x")
    assert isinstance(nobody.exception, NotFound)


def test_grant_tier_opens_a_model_and_withdraw_closes_it(cli_run: Any, settings: Settings) -> None:
    assert cli_run("models", "set-tier", "big-model", "research").exit_code == 0
    granted = cli_run("orgs", "grant-tier", "acme", "Research")
    assert granted.exit_code == 0, granted.output
    assert granted.output.strip() == "custom tiers of acme: research"
    hub = build_hub(settings)
    try:
        org = get_org(hub, "acme")
        principal = Principal(org_id=org.id, org_name="acme")
        check_tier(hub, principal, "big-model")  # granted: no error
    finally:
        hub.close()
    withdrawn = cli_run("orgs", "grant-tier", "acme", "research", "--withdraw")
    assert withdrawn.output.strip() == "custom tiers of acme: none"
    hub = build_hub(settings)
    try:
        with pytest.raises(PermissionDenied):
            check_tier(hub, principal, "big-model")
    finally:
        hub.close()
    actions = _audit_actions(settings)
    assert "org.tier_granted" in actions and "org.tier_withdrawn" in actions


@pytest.mark.parametrize("tier", ["verified", "open", "no spaces!"])
def test_grant_tier_refuses_tiers_that_are_not_granted(cli_run: Any, tier: str) -> None:
    result = cli_run("orgs", "grant-tier", "acme", tier)
    assert isinstance(result.exception, SovhubError) and result.exception.param == "tier"
