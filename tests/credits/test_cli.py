"""The fund office's commands, by their kept names: programmes create/grant, ledger verify."""

from __future__ import annotations

from sqlalchemy import select

from sovhub.credits.amounts import MICRO
from sovhub.credits.tables import CreditGrant, CreditProgramme
from tests.conftest import run_cli

from .conftest import credits_hub


def test_programmes_create_and_grant_by_cli_then_verify(data_dir, capsys) -> None:
    assert run_cli(data_dir, "orgs", "create", "acme") == 0
    assert run_cli(data_dir, "programmes", "create", "Gateway 2027", "--budget", "5000.5",
                   "--partner", "National Fund=60", "--partner", "Bank=40", "--require-verified",
                   "--max-grant", "1000", "--validity-days", "90", "--model", "echo") == 0
    assert "budget of 5000.5 credits" in capsys.readouterr().out
    # Verified only: acme is not verified yet.
    assert run_cli(data_dir, "programmes", "grant", "Gateway 2027", "acme", "100", "--reason", "pilot") == 1
    assert "verified organizations only" in capsys.readouterr().err
    assert run_cli(data_dir, "orgs", "verify", "acme", "--reason", "registry checked") == 0
    assert run_cli(data_dir, "programmes", "grant", "Gateway 2027", "acme", "1000.5", "--reason", "pilot") == 1
    assert "at most 1000 credits" in capsys.readouterr().err
    assert run_cli(data_dir, "programmes", "grant", "Gateway 2027", "acme", "250", "--reason", "pilot",
                   "--expires", "2099-01-31") == 0
    assert "granted 250 credits to acme" in capsys.readouterr().out
    assert run_cli(data_dir, "programmes", "grant", "Gateway 2027", "acme", "1", "--reason", "x",
                   "--expires", "2001-01-01") == 1
    assert run_cli(data_dir, "ledger", "verify") == 0
    hub = credits_hub(data_dir)
    with hub.db.session() as s:
        programme = s.scalar(select(CreditProgramme))
        grant = s.scalar(select(CreditGrant))
    assert programme.require_verified and programme.models == ["echo"] and programme.max_grant == 1000 * MICRO
    assert grant.amount == 250 * MICRO and grant.expires_at.year == 2099
    hub.close()


def test_partner_shares_must_sum_to_100(data_dir, capsys) -> None:
    assert run_cli(data_dir, "programmes", "create", "P", "--budget", "10", "--partner", "A=60",
                   "--partner", "B=30") == 1
    assert "sum to 90%" in capsys.readouterr().err
    assert run_cli(data_dir, "programmes", "create", "P", "--budget", "10", "--partner", "A60") == 2
