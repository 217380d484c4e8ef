"""The two-person rule: request by one staff admin, approval by another, time-limited, audited, shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from sovhub.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from sovhub.hub import Hub
from sovhub.sovereignty.audit import counts_by_event
from sovhub.sovereignty.conversations import _Pending, get_store
from sovhub.sovereignty.rights import export_user
from sovhub.sovereignty.staff_access import approve, deny, read_content, request_access
from sovhub.sovereignty.tables import AccessRequest
from sovhub.store.base import utcnow

from .conftest import add_user

REASON = "suspected account takeover, ticket 4411"


@pytest.fixture
def people(shub: Hub) -> int:
    add_user(shub, "a1@hub.example", staff=True)
    add_user(shub, "a2@hub.example", staff=True)
    add_user(shub, "clerk@hub.example")
    uid = add_user(shub, "citizen@example.ua")
    get_store(shub).write([_Pending(request_id="r", org_id=None, key_id=None, user_id=uid, model="m", backend=None,
                                    messages=[{"role": "user", "content": "private words"}], completion="ok",
                                    finish_reason="stop")])
    return uid


def test_two_admins_time_limited_audited_and_shown(shub: Hub, people: int) -> None:
    req = request_access(shub, people, admin="a1@hub.example", reason=REASON, hours=2)
    with pytest.raises(PermissionDenied, match="requested"):
        read_content(shub, req.id, admin="a1@hub.example")
    with pytest.raises(PermissionDenied, match="must differ"):
        approve(shub, req.id, admin="a1@hub.example")
    approved = approve(shub, req.id, admin="a2@hub.example")
    assert approved.expires_at is not None and approved.expires_at - utcnow() <= timedelta(hours=2)
    with pytest.raises(Conflict):
        deny(shub, req.id, admin="a2@hub.example")
    content = read_content(shub, req.id, admin="a1@hub.example")
    assert content[0]["messages"][0]["content"] == "private words"
    shown = export_user(shub, people)["staff_access"]
    assert shown[0]["reason"] == REASON and shown[0]["approved_by"] == "a2@hub.example"
    assert shown[0]["uses"][0]["by"] == "a1@hub.example"
    with shub.db.session() as s:
        s.execute(update(AccessRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(PermissionDenied, match="expired"):
        read_content(shub, req.id, admin="a1@hub.example")
    counts = counts_by_event(shub, ["access.requested", "access.approved", "access.used"])
    assert counts == {"access.requested": 1, "access.approved": 1, "access.used": 1}


def test_bad_requests_are_refused(shub: Hub, people: int) -> None:
    with pytest.raises(PermissionDenied, match="not a staff account"):
        request_access(shub, people, admin="clerk@hub.example", reason=REASON)
    with pytest.raises(InvalidRequest, match="reason"):
        request_access(shub, people, admin="a1@hub.example", reason="because")
    with pytest.raises(InvalidRequest, match="hours"):
        request_access(shub, people, admin="a1@hub.example", reason=REASON, hours=10_000)
    with pytest.raises(NotFound):
        request_access(shub, 999_999, admin="a1@hub.example", reason=REASON)
    with pytest.raises(NotFound):
        approve(shub, 12345, admin="a2@hub.example")
    req = request_access(shub, people, admin="a1@hub.example", reason=REASON)
    deny(shub, req.id, admin="a2@hub.example", note="not proportionate")
    with pytest.raises(PermissionDenied, match="denied"):
        read_content(shub, req.id, admin="a1@hub.example")
    assert counts_by_event(shub, ["access.denied"]) == {"access.denied": 1}


def test_legal_hold_defers_the_notice_but_is_counted(shub: Hub, people: int) -> None:
    req = request_access(shub, people, admin="a1@hub.example", reason=REASON, legal_hold="prosecutor order 7")
    approve(shub, req.id, admin="a2@hub.example")
    assert export_user(shub, people)["staff_access"] == []
    from sovhub.sovereignty.transparency import own_section

    section = own_section(shub)["sovereignty"]["content_access_requests"]
    assert section["requested"] == 1 and section["approved"] == 1 and section["under_legal_hold"] == 1
    with shub.db.session() as s:
        s.execute(update(AccessRequest).values(notice_after=utcnow() - timedelta(seconds=1)))
    assert [r["id"] for r in export_user(shub, people)["staff_access"]] == [req.id]


def test_access_cli_flow(data_dir, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from sovhub.cli import main

    from .conftest import new_hub

    hub = new_hub(data_dir, None)
    add_user(hub, "a1@hub.example", staff=True)
    add_user(hub, "a2@hub.example", staff=True)
    add_user(hub, "citizen@example.ua")

    def run(*args: str) -> int:
        try:
            main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert run("access", "request", "citizen@example.ua", "--admin", "a1@hub.example", "--reason", REASON) == 0
    assert "access request 1 recorded" in capsys.readouterr().out
    assert run("access", "approve", "1", "--admin", "a1@hub.example") == 1
    assert "two-person rule" in capsys.readouterr().err
    assert run("access", "approve", "1", "--admin", "a2@hub.example") == 0
    assert run("access", "read", "1", "--admin", "a2@hub.example") == 0
    assert run("access", "list") == 0
    out = capsys.readouterr().out
    assert "approved until" in out and "1\tuser:" in out and "approved\ta1@hub.example\ta2@hub.example" in out
    assert run("keys", "rotate-master") == 0
    assert "re-wrapped" in capsys.readouterr().out
    hub.close()
