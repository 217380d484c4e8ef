"""`sovhub users set-limits` and `users set-tier`: the same domain functions as the console's person page."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.access.person_access import person_access
from sovhub.assistant.people import create_user
from sovhub.hub import build_hub
from sovhub.settings import load_settings
from tests.test_cli import run_main


def _person(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> int:
    assert run_main(data_dir, "init", capsys=capsys)[0] == 0
    hub = build_hub(load_settings(data_dir=str(data_dir)))
    try:
        return create_user(hub, "olena@example.ua", "a long password here")
    finally:
        hub.close()


def _access(data_dir: Path, user_id: int) -> tuple[str, dict[str, int]]:
    hub = build_hub(load_settings(data_dir=str(data_dir)))
    try:
        view = person_access(hub, user_id)
        return view.tier, view.limits
    finally:
        hub.close()


def test_set_limits_and_tier_of_one_person(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user_id = _person(data_dir, capsys)
    code, out, _ = run_main(data_dir, "users", "set-limits", "Olena@Example.UA", "--rpm", "5", "--tpd", "100",
                            capsys=capsys)
    # What is in force: the person's own over the defaults (rpm 20, rpd 500, tpd 200000).
    assert code == 0 and out.strip() == f"limits of user {user_id}: rpd=500, rpm=5, tpd=100"
    code, out, _ = run_main(data_dir, "users", "set-limits", "olena@example.ua", "--clear", "rpm", capsys=capsys)
    assert code == 0 and out.strip() == f"limits of user {user_id}: rpd=500, rpm=20, tpd=100"
    code, out, _ = run_main(data_dir, "users", "set-tier", "olena@example.ua", "pilot", capsys=capsys)
    assert code == 0 and out.strip() == f"tier of user {user_id}: pilot"
    assert _access(data_dir, user_id) == ("pilot", {"tpd": 100})


@pytest.mark.parametrize(("args", "exit_code", "message"), [
    (("set-limits", "nobody@example.ua", "--rpm", "5"), 1, "no user with e-mail 'nobody@example.ua'"),
    (("set-limits", "olena@example.ua", "--rpm", "-1"), 2, "Invalid value for '--rpm'"),
    (("set-limits", "olena@example.ua", "--clear", "rps"), 1, "unknown limit 'rps'"),
    (("set-limits", "olena@example.ua"), 2, "give at least one limit"),
    (("set-tier", "olena@example.ua", "Not A Tier"), 1, "invalid tier"),
])
def test_bad_input_changes_nothing(
    data_dir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], exit_code: int, message: str
) -> None:
    user_id = _person(data_dir, capsys)
    code, _, err = run_main(data_dir, "users", *args, capsys=capsys)
    assert code == exit_code and message in err and "Traceback" not in err
    assert _access(data_dir, user_id) == ("open", {})
