"""The staff console in a real browser: approving a verification request from the queue."""

from __future__ import annotations

from typing import Any

import pytest

from sovhub.access.tables import Identity
from sovhub.access.verification import attach_representative, request_verification
from sovhub.accounts import create_org
from sovhub.hub import build_hub
from sovhub.settings import load_settings
from tests.server import RemoteHub

from .conftest import shot, sign_in
from .test_web import UNLABELLED_JS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _pending_request(server: RemoteHub, org: str) -> None:
    """An organization whose request waits for staff: no registry is connected, so review it is."""
    hub = build_hub(load_settings(data_dir=str(server.data_dir)), migrate=False)
    try:
        org_id = create_org(hub, org).id
        _, token = request_verification(hub, org_id, country="UA", registry_number="40087654",
                                        legal_name="Browser Co LLC", actor="tests")
        with hub.db.session() as s:
            person = Identity(idp="tests", subject="browser-rep", level="high", given_name="Taras",
                              family_name="Shevchuk")
            s.add(person)
            s.flush()
            identity_id = person.id
        assert attach_representative(hub, token, identity_id).status == "in_review"
    finally:
        hub.close()


def test_staff_approve_a_pending_verification(page: Any, server: RemoteHub) -> None:
    _pending_request(server, "browserco")
    sign_in(page)
    page.goto("/admin")
    request = page.locator("form[action='/admin/orgs/browserco/verify']")
    assert "Taras Shevchuk" in request.inner_text()
    assert page.evaluate(UNLABELLED_JS) == []
    request.get_by_label("Reason for the decision (recorded in the audit log)").fill("Registry extract checked")
    request.get_by_role("button", name="Approve").click()
    page.wait_for_selector("p.notice[role=status]")
    assert page.locator("p.notice").inner_text() == "The organization is now verified."
    assert page.locator("form[action='/admin/orgs/browserco/verify']").count() == 0
    page.click("a[href='/admin/orgs/browserco']")
    page.wait_for_selector("#verification-title")
    assert "Verified" in page.locator("dl.facts").first.inner_text()
    shot(page, "admin-verification-approved")
