"""The operator console and the appeals queue in a real browser."""

from __future__ import annotations

from typing import Any

import pytest

from sovhub.hub import build_hub
from sovhub.pipeline import Principal
from sovhub.safety.appeals import file_appeal
from sovhub.safety.records import ModerationRecorder, PendingDecision
from sovhub.settings import load_settings
from sovhub.store.tables import User
from tests.server import RemoteHub, run_cli

from .conftest import SERVER_ENV, shot, sign_in
from .test_web import UNLABELLED_JS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CITIZEN, CITIZEN_PASSWORD = "appellant@example.ua", "an appellant's long password"


def _appeal(server: RemoteHub) -> str:
    run_cli(server.data_dir, "users", "create", CITIZEN, "--password-stdin", "--locale", "uk", env=SERVER_ENV,
            input=CITIZEN_PASSWORD + "\n")
    hub = build_hub(load_settings(data_dir=str(server.data_dir)), migrate=False)
    try:
        with hub.db.session() as s:
            user_id = s.query(User.id).filter(User.email == CITIZEN).scalar()
        recorder = ModerationRecorder(hub)
        entry = PendingDecision(direction="input", action="block", categories=["S11"], clauses=["categories.S11"],
                                policy_version="2025.1", lang="uk", principal=f"user:{user_id}", org_id=None,
                                user_id=user_id)
        recorder.add(entry)
        recorder.flush()
        return file_appeal(hub, Principal(org_id=None, user_id=user_id), entry.id, "Це скрипт резервного копіювання").id
    finally:
        hub.close()


def test_staff_overturn_an_appeal_and_the_citizen_reads_it(open_page: Any, server: RemoteHub) -> None:
    appeal_id = _appeal(server)
    staff = open_page("en-GB")
    sign_in(staff)
    staff.goto("/admin/appeals")
    staff.click(f"a[href='/admin/appeals/{appeal_id}']")
    assert "suicide or self-harm" in staff.locator("dl.facts").inner_text()
    assert staff.evaluate(UNLABELLED_JS) == []
    staff.fill("#decision-reason", "A backup script is not self-harm.")
    staff.click("button[value=overturn]")
    staff.wait_for_selector("p.notice[role=status]")
    shot(staff, "admin-appeal-decided")
    citizen = open_page("uk-UA", phone=True)
    sign_in(citizen, CITIZEN, CITIZEN_PASSWORD)
    citizen.goto("/me")
    assert "Рецензент дійшов висновку, що це блокування було помилкою." in citizen.locator("main").inner_text()
    assert "A backup script is not self-harm." in citizen.locator("main").inner_text()
    shot(citizen, "appeal-outcome-uk-phone")


def test_console_pages_request_log_usage_backends_people(page: Any) -> None:
    sign_in(page)
    for path, heading in (("/admin/requests", "Request log"), ("/admin/usage", "Usage"),
                          ("/admin/backends", "Backends"), ("/admin/people", "People")):
        page.goto(path)
        assert page.locator("h1").inner_text() == heading
        assert page.evaluate(UNLABELLED_JS) == [], path
        shot(page, "console" + path.replace("/", "-"))
    page.goto("/admin/people")
    page.fill("#person-email", "new.clerk@example.org")
    page.fill("#person-password", "a first password here")
    page.click("form[action='/admin/people'] button[type=submit]")
    page.wait_for_selector("p.notice[role=status]")
    assert "new.clerk@example.org" in page.locator("table").inner_text()
