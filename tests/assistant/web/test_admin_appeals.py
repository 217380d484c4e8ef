"""The staff appeals queue: staff list and decide appeals with a reason through the same domain function
as the CLI; the decision is audited; the person reads the outcome in their own language."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from sovhub.assistant.people import create_user
from sovhub.safety.appeals import get_appeal, list_appeals
from sovhub.sovereignty.tables import AuditEntry

from .conftest import PASSWORD, Web
from .test_blocked import _blocked_conversation, _use_language

STAFF = "staff@example.org"


def _file(web: Web, reason: str = "It is my own backup script.") -> tuple[str, str]:
    """The signed-in citizen is blocked and asks for a review; returns (conversation, appeal id)."""
    conversation_id, decision_id = _blocked_conversation(web, ["S11"])
    filed = web.client.post("/appeals", data={"csrf_token": web.csrf(), "decision_id": decision_id,
                                              "reason": reason, "conversation_id": conversation_id},
                            follow_redirects=False)
    found = re.search(r"appeal_id=(apl_[0-9a-f]+)", filed.headers["location"])
    assert found
    return conversation_id, found.group(1)


def _as_staff(web: Web) -> int:
    staff_id = create_user(web.hub, STAFF, PASSWORD, staff=True, locale="en")
    web.sign_in(STAFF)
    return staff_id


def _decide(web: Web, appeal_id: str, **data: str) -> Any:
    token = web.csrf(f"/admin/appeals/{appeal_id}")
    return web.client.post(f"/admin/appeals/{appeal_id}/decide", data={"csrf_token": token, **data},
                           follow_redirects=False)


def test_staff_overturn_an_appeal_and_the_ukrainian_citizen_reads_the_outcome(signed_in: Web) -> None:
    _use_language(signed_in, "uk")
    conversation_id, appeal_id = _file(signed_in)
    staff_id = _as_staff(signed_in)
    queue = signed_in.client.get("/admin/appeals").text
    assert f'href="/admin/appeals/{appeal_id}"' in queue and "It is my own backup script." in queue
    assert "1 waiting for review" in signed_in.client.get("/admin").text
    one = signed_in.client.get(f"/admin/appeals/{appeal_id}").text
    assert "suicide or self-harm" in one and 'name="outcome" value="overturn"' in one
    decided = _decide(signed_in, appeal_id, outcome="overturn", reason="A backup script is not self-harm.")
    assert decided.status_code == 303 and decided.headers["location"] == "/admin/appeals?done=overturned"
    view = get_appeal(signed_in.hub, None, appeal_id)
    assert view.status == "overturned" and view.decision_reason == "A backup script is not self-harm."
    assert list_appeals(signed_in.hub) == []  # the queue of filed ones is empty
    with signed_in.hub.db.session() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.event == "appeal.overturned")).all()
        assert [(a.actor, a.subject) for a in audit] == [(f"user:{staff_id}", appeal_id)]
        assert json.loads(audit[0].data)["categories"] == ["S11"]
    signed_in.sign_in()  # the citizen again, Ukrainian interface
    mine = signed_in.client.get("/me").text
    assert "Рецензент дійшов висновку, що це блокування було помилкою." in mine
    assert "A backup script is not self-harm." in mine
    chat = signed_in.client.get(f"/c/{conversation_id}").text
    assert "Рецензент дійшов висновку, що це блокування було помилкою." in chat
    assert 'action="/appeals"' not in chat  # decided: no second request for a review is offered


def test_a_decision_needs_a_reason_and_an_outcome_and_is_made_once(signed_in: Web) -> None:
    _, appeal_id = _file(signed_in)
    _as_staff(signed_in)
    for data, code in (({"outcome": "uphold", "reason": "   "}, "reason"),
                       ({"outcome": "uphold", "reason": "x" * 4001}, "reason"),
                       ({"outcome": "delete", "reason": "because"}, "outcome")):
        refused = _decide(signed_in, appeal_id, **data)
        assert refused.headers["location"] == f"/admin/appeals/{appeal_id}?error={code}"
        assert get_appeal(signed_in.hub, None, appeal_id).status == "filed"
    assert "Nothing was changed." in signed_in.client.get(refused.headers["location"]).text
    assert _decide(signed_in, appeal_id, outcome="uphold", reason="It asks for a method.").status_code == 303
    again = _decide(signed_in, appeal_id, outcome="overturn", reason="Changed my mind.")
    assert again.headers["location"] == f"/admin/appeals/{appeal_id}?error=decided"
    assert get_appeal(signed_in.hub, None, appeal_id).status == "upheld"
    assert appeal_id in signed_in.client.get("/admin/appeals?status=upheld").text
    assert appeal_id not in signed_in.client.get("/admin/appeals?status=overturned").text
    signed_in.sign_in()
    assert "A reviewer looked at this again: the block stays." in signed_in.client.get("/me").text


def test_only_staff_with_a_form_token_decide(signed_in: Web) -> None:
    _, appeal_id = _file(signed_in)
    # The citizen who filed it is not staff: every page and action is refused, nothing changes.
    assert signed_in.client.get("/admin/appeals").status_code == 403
    assert signed_in.client.get(f"/admin/appeals/{appeal_id}").status_code == 403
    forged = signed_in.client.post(f"/admin/appeals/{appeal_id}/decide",
                                   data={"csrf_token": signed_in.csrf(), "outcome": "overturn", "reason": "mine"},
                                   follow_redirects=False)
    assert forged.status_code == 403
    _as_staff(signed_in)
    no_token = signed_in.client.post(f"/admin/appeals/{appeal_id}/decide",
                                     data={"outcome": "overturn", "reason": "no token"}, follow_redirects=False)
    assert no_token.status_code == 403
    assert get_appeal(signed_in.hub, None, appeal_id).status == "filed"
    signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf()})
    assert signed_in.client.get("/admin/appeals", follow_redirects=False).status_code in (302, 303)


def test_an_unknown_or_malformed_appeal_goes_back_to_the_queue(signed_in: Web) -> None:
    _as_staff(signed_in)
    for appeal_id in ("apl_" + "0" * 24, "../../etc"):
        shown = signed_in.client.get(f"/admin/appeals/{appeal_id}", follow_redirects=False)
        assert shown.status_code in (303, 404)
    missing = _decide_raw(signed_in, "apl_" + "0" * 24)
    assert missing.headers["location"] == "/admin/appeals?error=no_appeal"
    assert "There is no such appeal." in signed_in.client.get(missing.headers["location"]).text


def _decide_raw(web: Web, appeal_id: str) -> Any:
    return web.client.post(f"/admin/appeals/{appeal_id}/decide",
                           data={"csrf_token": web.csrf("/admin/appeals"), "outcome": "uphold", "reason": "r"},
                           follow_redirects=False)
