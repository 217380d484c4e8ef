"""The tamper-evident audit log: append-only, hash-chained, committed before the action is acknowledged.

Each entry's hash covers its number, time, actor, event, subject and data, and the previous
entry's hash; `audit_head` holds the newest number and hash. An edited entry breaks its own
hash, a deleted or reordered one breaks the chain, a deleted tail disagrees with the head, and
a rewritten head disagrees with a signed head anchored outside the hub (`sovhub audit sign-head`).

Appends are synchronous: audit events are rare admin actions and refusals, not per-request
traffic, and an acknowledged action must survive `kill -9`. Appends from several processes are
serialised by updating the head row first (a row lock on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select, update

from ..errors import ConfigError, NotFound
from .tables import AuditEntry, AuditHead, AuditSignature

if TYPE_CHECKING:
    from ..events import Event
    from ..hub import Hub

__all__ = ["AuditProblem", "append", "counts_by_event", "head", "sign_head", "verify", "verify_signature"]

log = logging.getLogger("sovhub.audit")

GENESIS = "0" * 64
_SECRET_FIELDS = ("api_key", "secret", "password", "token", "master_key")


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int
    reason: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _redact(data: dict[str, Any]) -> dict[str, Any]:
    # The log is kept forever and exported: secrets must never reach it, whoever emitted them.
    return {k: ("[redacted]" if any(s in k.lower() for s in _SECRET_FIELDS) else v) for k, v in data.items()}


def entry_hash(prev_hash: str, seq: int, ts: str, actor: str, event: str, subject: str | None, data: str) -> str:
    body = _canonical({"seq": seq, "ts": ts, "actor": actor, "event": event, "subject": subject, "data": data})
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


def append(hub: Hub, event: str, *, actor: str = "system", subject: str | None = None,
           data: dict[str, Any] | None = None) -> int:
    """Append one entry and commit; returns its number."""
    payload = _canonical(_redact(data or {}))
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    with hub.db.session() as s:
        # The write comes first so the lock is taken before the head is read.
        bumped = s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
        if not getattr(bumped, "rowcount", 0):
            s.add(AuditHead(id=1, seq=1, hash=GENESIS))
            s.flush()
            prev_seq, prev_hash = 0, GENESIS
        else:
            row = s.get(AuditHead, 1, populate_existing=True)
            assert row is not None
            prev_seq = row.seq - 1
            prev_hash = row.hash
        seq = prev_seq + 1
        digest = entry_hash(prev_hash, seq, ts, actor[:200], event[:80], subject and subject[:200], payload)
        s.add(AuditEntry(seq=seq, ts=ts, actor=actor[:200], event=event[:80], subject=subject and subject[:200],
                         data=payload, prev_hash=prev_hash, hash=digest))
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=digest))
    return seq


def record_event(hub: Hub, event: Event) -> None:
    append(hub, event.name, actor=event.actor, subject=event.subject, data=event.data)


def head(hub: Hub) -> tuple[int, str]:
    with hub.db.session() as s:
        row = s.get(AuditHead, 1)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


def verify(hub: Hub, batch: int = 5000) -> tuple[int, AuditProblem | None]:
    """Walk the chain; return (entries checked, the first problem or None)."""
    prev_hash, expected, checked = GENESIS, 1, 0
    with hub.db.session() as s:
        last = 0
        while True:
            rows = list(s.scalars(select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq)
                                  .limit(batch)))
            if not rows:
                break
            for row in rows:
                if row.seq != expected:
                    return checked, AuditProblem(expected, f"entry {expected} is missing (next is {row.seq})")
                if row.prev_hash != prev_hash:
                    return checked, AuditProblem(row.seq, "does not link to the entry before it (deleted or reordered)")
                digest = entry_hash(prev_hash, row.seq, row.ts, row.actor, row.event, row.subject, row.data)
                if digest != row.hash:
                    return checked, AuditProblem(row.seq, "content does not match its hash (edited)")
                prev_hash, expected, checked = row.hash, expected + 1, checked + 1
            last = rows[-1].seq
        stored = s.get(AuditHead, 1)
    head_seq, head_hash = (stored.seq, stored.hash) if stored else (0, GENESIS)
    if head_seq != checked or head_hash != prev_hash:
        return checked, AuditProblem(checked + 1 if head_seq > checked else head_seq,
                                     f"chain ends at entry {checked} but the head says {head_seq} (tail deleted?)")
    return checked, None


def counts_by_event(hub: Hub, names: list[str]) -> dict[str, int]:
    with hub.db.session() as s:
        rows = s.execute(select(AuditEntry.event, func.count()).where(AuditEntry.event.in_(names))
                         .group_by(AuditEntry.event)).all()
    found = {name: int(n) for name, n in rows}
    return {name: found.get(name, 0) for name in names}


def entries_about(hub: Hub, subject: str, limit: int = 1000) -> list[dict[str, Any]]:
    with hub.db.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)
                              .limit(limit)))
    return [{"seq": r.seq, "ts": r.ts, "actor": r.actor, "event": r.event, "data": json.loads(r.data)}
            for r in rows]


# --- signing the head ---


def signing_key_path(hub: Hub) -> Path:
    path = Path(hub.settings.sovereignty.audit_signing_key_file)
    return path if path.is_absolute() else hub.settings.data_dir / path


def ensure_signing_key(hub: Hub) -> None:
    import os

    path = signing_key_path(hub)
    if path.exists():
        return
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)


def _load_signing_key(hub: Hub) -> Ed25519PrivateKey:
    path = signing_key_path(hub)
    if not path.is_file():
        raise ConfigError(f"audit signing key {path} is missing (run `sovhub init`)")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def signed_message(seq: int, digest: str) -> bytes:
    return f"sovhub-audit-head:{seq}:{digest}".encode()


def sign_head(hub: Hub, actor: str = "cli") -> dict[str, Any]:
    """Sign the current head; the result is what to anchor outside the hub."""
    key = _load_signing_key(hub)
    seq, digest = head(hub)
    signature = base64.b64encode(key.sign(signed_message(seq, digest))).decode()
    public = _public_hex(key.public_key())
    with hub.db.session() as s:
        s.add(AuditSignature(seq=seq, hash=digest, public_key=public, signature=signature))
    append(hub, "audit.head_signed", actor=actor, subject=f"audit:{seq}", data={"hash": digest})
    return {"seq": seq, "hash": digest, "public_key": public, "signature": signature,
            "message": signed_message(seq, digest).decode()}


def verify_signature(hub: Hub, seq: int, digest: str, signature: str, public_key: str) -> None:
    """Raise NotFound unless the signature is valid and the entry `seq` still has hash `digest`."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            base64.b64decode(signature), signed_message(seq, digest))
    except (InvalidSignature, ValueError) as exc:
        raise NotFound(f"signature over head {seq} is not valid for key {public_key}") from exc
    with hub.db.session() as s:
        row = s.get(AuditEntry, seq)
    if row is None or row.hash != digest:
        raise NotFound(f"audit entry {seq} no longer has the signed hash {digest[:16]}…: the log was rewritten")
