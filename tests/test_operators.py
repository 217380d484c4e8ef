"""The audit log names the OS account that ran a CLI command; a typed --actor is kept beside it, never instead."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from sovhub.operators import cli_actor, os_account
from tests.conftest import run_cli


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def test_the_account_comes_from_the_user_id_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "somebody-else")
    monkeypatch.setenv("LOGNAME", "somebody-else")
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert os_account() == _me()
    assert cli_actor() == f"cli:{_me()}"
    assert cli_actor("  Jane\n Roe ") == f"cli:{_me()} as Jane Roe"
    assert len(cli_actor("x" * 1000)) < 200


def _audit(data_dir: Path) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from sovhub.hub import build_hub
    from sovhub.settings import load_settings
    from sovhub.sovereignty.tables import AuditEntry

    hub = build_hub(load_settings(data_dir=str(data_dir)))
    try:
        with hub.db.session() as s:
            return [(e.event, e.actor) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    finally:
        hub.close()


def test_typed_actor_names_are_recorded_beside_the_os_account(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "mallory")  # what a typed name or a forged variable cannot change
    assert run_cli(data_dir, "orgs", "create", "acme") == 0
    assert run_cli(data_dir, "audit", "sign-head", "--actor", "the-auditor") == 0
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    entries = _audit(data_dir)
    assert ("org.created", f"cli:{_me()}") in entries
    assert ("audit.head_signed", f"cli:{_me()} as the-auditor") in entries
    assert not any("mallory" in actor for _, actor in entries)
