"""The audit log: every core event recorded; edits, deletions, reordering and tail loss detected; signed heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update

from sovhub.accounts import create_key, create_org, revoke_key
from sovhub.errors import ConfigError, InvalidRequest, NotFound
from sovhub.hub import Hub
from sovhub.sovereignty.audit import (
    append,
    entry_hash,
    head,
    load_public_key,
    public_key_hex,
    sign_head,
    sign_head_if_grown,
    signed_message,
    verify,
    verify_signature,
)
from sovhub.sovereignty.tables import AuditEntry, AuditHead, AuditSignature
from tests.conftest import run_cli

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


def _pinned(hub: Hub):  # type: ignore[no-untyped-def]
    return load_public_key(public_key_hex(hub))


def test_signed_head_detects_a_rewritten_log(shub: Hub) -> None:
    _some_history(shub)
    signed = sign_head(shub)
    assert signed["seq"] == 5
    assert verify_signature(shub, signed, _pinned(shub)) == 5
    with pytest.raises(NotFound, match="not valid"):
        verify_signature(shub, {**signed, "hash": "0" * 64}, _pinned(shub))
    # Rewrite the whole chain consistently (an attacker with database access): only the anchor tells.
    with shub.db.session() as s:
        s.execute(delete(AuditEntry))
        s.execute(update(AuditHead).values(seq=0, hash="0" * 64))
    for name in ("org.created", "key.created", "key.revoked", "egress.refused", "backend.added"):
        append(shub, name)
    assert verify(shub)[1] is None
    with pytest.raises(NotFound, match="rewritten"):
        verify_signature(shub, signed, _pinned(shub))


def test_an_entry_altered_before_the_signed_head_is_found(shub: Hub) -> None:
    _some_history(shub)
    signed = sign_head(shub)
    # The signed entry (5) keeps its hash; entry 2 is edited, and in another copy removed.
    with shub.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="nobody"))
    with pytest.raises(NotFound, match="entry 2 content does not match its hash"):
        verify_signature(shub, signed, _pinned(shub))
    with shub.db.session() as s:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    with pytest.raises(NotFound, match="entry 2 is missing"):
        verify_signature(shub, signed, _pinned(shub))


def test_an_entry_rehashed_before_the_signed_head_is_found(shub: Hub) -> None:
    _some_history(shub)
    signed = sign_head(shub)
    # A careful forger recomputes entry 3's hash after editing it, but cannot re-link entry 4 to it
    # without changing every later hash, the signed one included.
    with shub.db.session() as s:
        row = s.get(AuditEntry, 3)
        assert row is not None
        row.actor = "nobody"
        row.hash = entry_hash(row.prev_hash, row.seq, row.ts, row.actor, row.event, row.subject, row.data)
    with pytest.raises(NotFound, match="entry 4 does not link"):
        verify_signature(shub, signed, _pinned(shub))


def test_a_head_signed_by_another_key_fails_against_the_pinned_key(shub: Hub) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _some_history(shub)
    seq, digest = head(shub)
    forger = Ed25519PrivateKey.generate()
    forged = {"seq": seq, "hash": digest,
              "signature": base64.b64encode(forger.sign(signed_message(seq, digest))).decode(),
              "public_key": forger.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw).hex()}
    # Valid under its own embedded key, which is exactly what must not be trusted.
    verify_signature(shub, forged, load_public_key(forged["public_key"]))
    with pytest.raises(NotFound, match="not the pinned key"):
        verify_signature(shub, forged, _pinned(shub))
    without_key = {k: v for k, v in forged.items() if k != "public_key"}
    with pytest.raises(NotFound, match="not valid for the pinned key"):
        verify_signature(shub, without_key, _pinned(shub))
    with pytest.raises(InvalidRequest):
        verify_signature(shub, {"seq": "x"}, _pinned(shub))


def test_a_pinned_key_is_hex_or_pem_and_nothing_else(shub: Hub) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = _pinned(shub).public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert public_key_hex(shub) == load_public_key(pem).public_bytes(serialization.Encoding.Raw,
                                                                     serialization.PublicFormat.Raw).hex()
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        load_public_key("not-a-key")


def test_sign_if_grown_signs_only_new_entries(shub: Hub) -> None:
    assert sign_head_if_grown(shub) is None  # an empty log
    _some_history(shub)
    first = sign_head_if_grown(shub)
    assert first is not None and first["seq"] == 5
    assert sign_head_if_grown(shub) is None  # only its own audit.head_signed entry came since
    append(shub, "org.created")
    second = sign_head_if_grown(shub)
    assert second is not None and second["seq"] == 7
    lines = (shub.settings.data_dir / "audit-heads.jsonl").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [5, 7]
    assert (shub.settings.data_dir / "audit-heads.jsonl").stat().st_mode & 0o777 == 0o600


def test_the_server_signs_the_head_by_itself(data_dir: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from sovhub.app import create_app

    hub = new_hub(data_dir, None, sovereignty={"audit_sign_interval_s": 0.05})
    try:
        with TestClient(create_app(hub)):
            _some_history(hub)
            with hub.db.session() as s:  # the signer may already have signed part of it: its entries interleave
                last = s.scalar(select(func.max(AuditEntry.seq)).where(AuditEntry.event == "backend.added"))
            assert last is not None
            deadline = time.monotonic() + 20
            signed_up_to = 0
            while time.monotonic() < deadline and signed_up_to < last:
                time.sleep(0.05)
                with hub.db.session() as s:
                    signed_up_to = s.scalar(select(func.max(AuditSignature.seq))) or 0
            assert signed_up_to >= last
            with hub.db.session() as s:
                signatures = s.scalar(select(func.count()).select_from(AuditSignature))
            time.sleep(0.3)  # six intervals with nothing new: no new signature
            with hub.db.session() as s:
                assert s.scalar(select(func.count()).select_from(AuditSignature)) == signatures
        newest = json.loads((data_dir / "audit-heads.jsonl").read_text().splitlines()[-1])
        assert verify_signature(hub, newest, _pinned(hub)) == newest["seq"]
        with hub.db.session() as s:
            actors = set(s.scalars(select(AuditEntry.actor).where(AuditEntry.event == "audit.head_signed")))
        assert actors == {"system"}
    finally:
        hub.close()


def test_audit_cli_verify_and_sign(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = new_hub(data_dir, None)
    _some_history(hub)
    assert run_cli(data_dir, "audit", "verify") == 0
    assert "audit chain intact: 5 entries" in capsys.readouterr().out
    assert run_cli(data_dir, "audit", "sign-head") == 0
    signed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sig_file = data_dir.parent / "head.json"
    sig_file.write_text(json.dumps(signed))
    assert run_cli(data_dir, "audit", "verify-signature", str(sig_file)) == 2  # no pinned key: a usage error
    assert "--public-key" in capsys.readouterr().err
    assert run_cli(data_dir, "audit", "public-key") == 0
    pinned = capsys.readouterr().out.strip()
    key_file = data_dir.parent / "pinned.pub"
    key_file.write_text(pinned + "\n")
    assert run_cli(data_dir, "audit", "verify-signature", str(sig_file), "--public-key", pinned) == 0
    assert "entries 1..5 intact" in capsys.readouterr().out
    heads = str(data_dir / "audit-heads.jsonl")  # the heads file: its newest line is checked
    assert run_cli(data_dir, "audit", "verify-signature", heads, "--public-key", f"@{key_file}") == 0
    assert run_cli(data_dir, "audit", "verify-signature", str(sig_file), "--public-key", "ab" * 32) == 1
    assert "not the pinned key" in capsys.readouterr().err
    with hub.db.session() as s:
        s.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(data='{"host":"fine.example"}'))
    assert run_cli(data_dir, "audit", "verify-signature", str(sig_file), "--public-key", pinned) == 1
    assert "entry 4 content does not match" in capsys.readouterr().err
    assert run_cli(data_dir, "audit", "verify") == 1
    err = capsys.readouterr().err
    assert "BROKEN at entry 4" in err
    hub.close()
