"""The two-person rule: request by one staff admin, approval by another, time-limited, audited, shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from sovhub.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from sovhub.hub import Hub
from sovhub.sovereignty.audit import counts_by_event
from sovhub.sovereignty.conversations import ConversationStore, _Pending
from sovhub.sovereignty.rights import export_user
from sovhub.sovereignty.staff_access import approve, deny, read_content, request_access
from sovhub.sovereignty.tables import AccessRequest, AuditEntry
from sovhub.store.base import utcnow
from sovhub.store.tables import User

from .conftest import add_user

REASON = "suspected account takeover, ticket 4411"


A1, A2, CLERK = 1, 2, 3  # the user ids `people` creates, in order


@pytest.fixture
def people(shub: Hub) -> int:
    assert add_user(shub, "a1@hub.example", staff=True) == A1
    assert add_user(shub, "a2@hub.example", staff=True) == A2
    assert add_user(shub, "clerk@hub.example") == CLERK
    uid = add_user(shub, "citizen@example.ua")
    shub.services.get(ConversationStore).write([_Pending(request_id="r", org_id=None, key_id=None, user_id=uid, model="m", backend=None,
                                    messages=[{"role": "user", "content": "private words"}], completion="ok",
                                    finish_reason="stop")])
    return uid


def test_two_admins_time_limited_audited_and_shown(shub: Hub, people: int) -> None:
    req = request_access(shub, people, staff_id=A1, reason=REASON, hours=2)
    with pytest.raises(PermissionDenied, match="requested"):
        read_content(shub, req.id, staff_id=A1)
    with pytest.raises(PermissionDenied, match="must differ"):
        approve(shub, req.id, staff_id=A1)
    approved = approve(shub, req.id, staff_id=A2)
    assert approved.expires_at is not None and approved.expires_at - utcnow() <= timedelta(hours=2)
    with pytest.raises(Conflict):
        deny(shub, req.id, staff_id=A2)
    content = read_content(shub, req.id, staff_id=A1)
    assert content[0]["messages"][0]["content"] == "private words"
    shown = export_user(shub, people)["staff_access"]
    assert shown[0]["reason"] == REASON and shown[0]["approved_by"] == "a2@hub.example"
    assert shown[0]["uses"][0]["by"] == "a1@hub.example"
    with shub.db.session() as s:
        s.execute(update(AccessRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(PermissionDenied, match="expired"):
        read_content(shub, req.id, staff_id=A1)
    with shub.db.session() as s:
        actors = {e: a for e, a in s.execute(select(AuditEntry.event, AuditEntry.actor)
                                              .where(AuditEntry.event.like("access.%")))}
    assert actors == {"access.requested": "user:1", "access.approved": "user:2", "access.used": "user:1"}
    counts = counts_by_event(shub, ["access.requested", "access.approved", "access.used"])
    assert counts == {"access.requested": 1, "access.approved": 1, "access.used": 1}


def test_bad_requests_are_refused(shub: Hub, people: int) -> None:
    with pytest.raises(PermissionDenied, match="not a staff account"):
        request_access(shub, people, staff_id=CLERK, reason=REASON)
    with pytest.raises(PermissionDenied, match="not a staff account"):
        request_access(shub, people, staff_id=999_999, reason=REASON)
    with pytest.raises(PermissionDenied, match="their own content"):
        request_access(shub, A1, staff_id=A1, reason=REASON)
    with pytest.raises(InvalidRequest, match="reason"):
        request_access(shub, people, staff_id=A1, reason="because")
    with pytest.raises(InvalidRequest, match="hours"):
        request_access(shub, people, staff_id=A1, reason=REASON, hours=10_000)
    with pytest.raises(NotFound):
        request_access(shub, 999_999, staff_id=A1, reason=REASON)
    with pytest.raises(NotFound):
        approve(shub, 12345, staff_id=A2)
    req = request_access(shub, people, staff_id=A1, reason=REASON)
    deny(shub, req.id, staff_id=A2, note="not proportionate")
    with pytest.raises(PermissionDenied, match="denied"):
        read_content(shub, req.id, staff_id=A1)
    assert counts_by_event(shub, ["access.denied"]) == {"access.denied": 1}


def test_legal_hold_defers_the_notice_but_is_counted(shub: Hub, people: int) -> None:
    req = request_access(shub, people, staff_id=A1, reason=REASON, legal_hold="prosecutor order 7")
    approve(shub, req.id, staff_id=A2)
    assert export_user(shub, people)["staff_access"] == []
    from sovhub.sovereignty.transparency import own_section

    section = own_section(shub)["sovereignty"]["content_access_requests"]
    assert section["requested"] == 1 and section["approved"] == 1 and section["under_legal_hold"] == 1
    with shub.db.session() as s:
        s.execute(update(AccessRequest).values(notice_after=utcnow() - timedelta(seconds=1)))
    assert [r["id"] for r in export_user(shub, people)["staff_access"]] == [req.id]


def test_a_staff_member_who_lost_staff_rights_can_no_longer_approve_or_read(shub: Hub, people: int) -> None:
    req = request_access(shub, people, staff_id=A1, reason=REASON)
    approve(shub, req.id, staff_id=A2)
    with shub.db.session() as s:
        s.execute(update(User).where(User.id == A1).values(is_staff=False))
    with pytest.raises(PermissionDenied, match="not a staff account"):
        read_content(shub, req.id, staff_id=A1)
    assert read_content(shub, req.id, staff_id=A2)[0]["messages"][0]["content"] == "private words"
    bystander = add_user(shub, "a3@hub.example", staff=True)  # staff, but neither of the two
    with pytest.raises(PermissionDenied, match="requesting or approving"):
        read_content(shub, req.id, staff_id=bystander)


def test_a_request_without_a_known_requester_cannot_be_approved(shub: Hub, people: int) -> None:
    # A request from before ids were recorded, whose requester's account no longer exists.
    req = request_access(shub, people, staff_id=A1, reason=REASON)
    with shub.db.session() as s:
        s.execute(update(AccessRequest).values(requested_by_id=None))
    with pytest.raises(PermissionDenied, match="two-person rule"):
        approve(shub, req.id, staff_id=A2)


def test_the_cli_no_longer_takes_typed_names(data_dir, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from sovhub.cli import main

    from .conftest import new_hub

    hub = new_hub(data_dir, None)
    a1 = add_user(hub, "a1@hub.example", staff=True)
    add_user(hub, "a2@hub.example", staff=True)
    citizen = add_user(hub, "citizen@example.ua")
    req = request_access(hub, citizen, staff_id=a1, reason=REASON)

    def run(*args: str) -> int:
        try:
            main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    # One operator typing both names used to request, approve and read alone.
    assert run("access", "request", "citizen@example.ua", "--admin", "a1@hub.example", "--reason", REASON) != 0
    assert run("access", "approve", str(req.id), "--admin", "a2@hub.example") != 0
    assert run("access", "read", str(req.id), "--admin", "a1@hub.example") != 0
    capsys.readouterr()
    with hub.db.session() as s:
        assert [(r.id, r.status) for r in s.scalars(select(AccessRequest))] == [(req.id, "requested")]
    assert counts_by_event(hub, ["access.approved", "access.used"]) == {"access.approved": 0, "access.used": 0}
    assert run("access", "list") == 0
    assert f"{req.id}\tuser:{citizen}\trequested\ta1@hub.example\t-" in capsys.readouterr().out
    assert run("keys", "rotate-master") == 0
    assert "re-wrapped" in capsys.readouterr().out
    hub.close()
