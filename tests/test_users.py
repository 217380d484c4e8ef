"""E-mail addresses: one normal form on write, one lookup everywhere (CLI export/erase, staff access, sign-in)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sovhub.assistant.people import create_user
from sovhub.store.tables import User
from sovhub.users import normalize_email, user_by_email
from tests.conftest import run_cli
from tests.sovereignty.conftest import new_hub


@pytest.mark.parametrize(("given", "stored"), [
    ("Alice@X.org", "alice@x.org"),
    ("  ÅSA@x.org ", "åsa@x.org"),
    ("ＡＬＩＣＥ＠Ｘ．ｏｒｇ", "alice@x.org"),   # full-width letters, at sign and full stop
    ("Straße@x.de", "strasse@x.de"),           # full case folding, not lower()
    ("A\u030aSA@x.org", "åsa@x.org"),          # A + combining ring is the same person as Å
])
def test_normal_form(given: str, stored: str) -> None:
    assert normalize_email(given) == stored
    assert normalize_email(stored) == stored  # idempotent


def test_cli_finds_the_person_in_any_case_or_width(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = new_hub(data_dir, None)
    alice = create_user(hub, "Alice@X.org", "a long password")
    asa = create_user(hub, "ÅSA@x.org", "a long password")
    with hub.db.session() as s:
        assert s.get(User, alice).email == "alice@x.org"  # type: ignore[union-attr]
        assert s.get(User, asa).email == "åsa@x.org"  # type: ignore[union-attr]
    out = data_dir.parent / "export.json"
    assert run_cli(data_dir, "users", "export", "alice@x.org", "-o", str(out)) == 0
    assert json.loads(out.read_text())["user"]["id"] == alice
    assert run_cli(data_dir, "users", "export", "ＡＬＩＣＥ＠ｘ.ｏｒｇ", "-o", str(out)) == 0
    assert json.loads(out.read_text())["user"]["id"] == alice
    assert run_cli(data_dir, "users", "export", "åsa@X.ORG", "-o", str(out)) == 0
    assert json.loads(out.read_text())["user"]["id"] == asa
    capsys.readouterr()
    assert run_cli(data_dir, "users", "erase", "ÅSA@x.org", "--yes") == 0
    assert f"erased user {asa}" in capsys.readouterr().out
    assert run_cli(data_dir, "users", "erase", "alice@x.org", "--yes") == 0
    with hub.db.session() as s:
        assert s.scalars(select(User)).all() == []
    hub.close()


def test_create_refuses_a_case_or_width_variant_of_an_existing_account(data_dir: Path) -> None:
    from sovhub.errors import Conflict

    hub = new_hub(data_dir, None)
    create_user(hub, "åsa@x.org", "a long password")
    for variant in ("ÅSA@x.org", "ÅSA@X.ORG", "A\u030aSA@x.org", "Ａ\u030aＳＡ＠ｘ.ｏｒｇ"):
        with pytest.raises(Conflict):
            create_user(hub, variant, "a long password")
    hub.close()


def test_password_command_uses_the_same_lookup(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = new_hub(data_dir, None)
    staff = create_user(hub, "Ops@Hub.example", "a long password", staff=True)
    person = create_user(hub, "person@x.org", "a long password")
    assert person != staff
    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    assert run_cli(data_dir, "users", "set-password", "ＯＰＳ@hub.example", "--password-stdin") == 0
    assert f"password of user {staff} changed" in capsys.readouterr().out
    assert run_cli(data_dir, "users", "set-password", "nobody@x.org", "--password-stdin") == 1
    assert "no user with e-mail 'nobody@x.org'" in capsys.readouterr().err
    with hub.db.session() as s:
        assert user_by_email(s, "Person@X.ORG") is not None
    hub.close()
