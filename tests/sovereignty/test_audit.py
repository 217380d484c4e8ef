"""The audit log: every core event recorded; edits, deletions, reordering and tail loss detected; signed heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from sovhub.accounts import create_key, create_org, revoke_key
from sovhub.cli import main
from sovhub.errors import NotFound
from sovhub.hub import Hub
from sovhub.sovereignty.audit import append, head, sign_head, verify, verify_signature
from sovhub.sovereignty.tables import AuditEntry, AuditHead

from .conftest import new_hub


def _events(hub: Hub) -> list[tuple[int, str, str | None]]:
    with hub.db.session() as s:
        return [(r.seq, r.event, r.subject) for r in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]


def _some_history(hub: Hub) -> None:
    create_org(hub, "acme")
    key = create_key(hub, "acme")
    revoke_key(hub, key.prefix)
    hub.emit("egress.refused", subject="host:evil.example", host="evil.example", path="/x")
    hub.emit("backend.added", actor="cli", subject="backend:b", jurisdiction="EU", api_key="sk-upstream-secret")


def test_core_events_are_recorded_in_order(shub: Hub) -> None:
    _some_history(shub)
    names = [e for _, e, _ in _events(shub)]
    assert names == ["org.created", "key.created", "key.revoked", "egress.refused", "backend.added"]
    assert [s for s, _, _ in _events(shub)] == [1, 2, 3, 4, 5]
    with shub.db.session() as s:
        data = s.scalar(select(AuditEntry.data).where(AuditEntry.event == "backend.added"))
    assert data is not None and "sk-upstream-secret" not in data and "[redacted]" in data
    assert verify(shub) == (5, None)
    assert head(shub)[0] == 5


def test_edit_is_detected(shub: Hub) -> None:
    _some_history(shub)
    with shub.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="someone-else"))
    checked, problem = verify(shub)
    assert checked == 2 and problem is not None and problem.seq == 3 and "edited" in problem.reason


def test_delete_is_detected(shub: Hub) -> None:
    _some_history(shub)
    with shub.db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    _, problem = verify(shub)
    assert problem is not None and problem.seq == 2 and "missing" in problem.reason


def test_reorder_is_detected(shub: Hub) -> None:
    _some_history(shub)
    with shub.db.session() as s:
        a, b = s.get(AuditEntry, 2), s.get(AuditEntry, 3)
        assert a is not None and b is not None
        fields = ("ts", "actor", "event", "subject", "data", "prev_hash", "hash")
        va, vb = ({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields})
        for f in fields:
            setattr(a, f, vb[f])
            setattr(b, f, va[f])
    _, problem = verify(shub)
    assert problem is not None and problem.seq == 2


def test_tail_deletion_is_detected(shub: Hub) -> None:
    _some_history(shub)
    with shub.db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
    _, problem = verify(shub)
    assert problem is not None and "tail" in problem.reason


def test_signed_head_detects_a_rewritten_log(shub: Hub) -> None:
    _some_history(shub)
    signed = sign_head(shub)
    assert signed["seq"] == 5
    verify_signature(shub, signed["seq"], signed["hash"], signed["signature"], signed["public_key"])
    with pytest.raises(NotFound, match="not valid"):
        verify_signature(shub, signed["seq"], "0" * 64, signed["signature"], signed["public_key"])
    # Rewrite the whole chain consistently (an attacker with database access): only the anchor tells.
    with shub.db.session() as s:
        s.execute(delete(AuditEntry))
        s.execute(update(AuditHead).values(seq=0, hash="0" * 64))
    for name in ("org.created", "key.created", "key.revoked", "egress.refused", "backend.added"):
        append(shub, name)
    assert verify(shub)[1] is None
    with pytest.raises(NotFound, match="rewritten"):
        verify_signature(shub, signed["seq"], signed["hash"], signed["signature"], signed["public_key"])


def _run(data_dir: Path, *args: str) -> int:
    try:
        main(["--data-dir", str(data_dir), *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_audit_cli_verify_and_sign(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = new_hub(data_dir, None)
    _some_history(hub)
    assert _run(data_dir, "audit", "verify") == 0
    assert "audit chain intact: 5 entries" in capsys.readouterr().out
    assert _run(data_dir, "audit", "sign-head") == 0
    signed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sig_file = data_dir.parent / "head.json"
    sig_file.write_text(json.dumps(signed))
    assert _run(data_dir, "audit", "verify-signature", str(sig_file)) == 0
    with hub.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(data='{"host":"fine.example"}'))
    assert _run(data_dir, "audit", "verify") == 1
    err = capsys.readouterr().err
    assert "BROKEN at entry 4" in err
    hub.close()
