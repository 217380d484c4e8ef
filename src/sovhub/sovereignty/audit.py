"""The tamper-evident audit log: append-only, hash-chained, committed before the action is acknowledged.

Each entry's hash covers its number, time, actor, event, subject and data, and the previous
entry's hash; `audit_head` holds the newest number and hash. An edited entry breaks its own
hash, a deleted or reordered one breaks the chain, a deleted tail disagrees with the head, and
a rewritten log disagrees with a signed head anchored outside the hub. The server signs the head
every `audit_sign_interval_s` (when the chain grew; `sovhub audit sign-head` does it by hand) with
the Ed25519 key in the data dir, never in the database, and appends each signed head to
`audit_signed_heads_file` and the log, to be shipped off the host. `verify_signature` checks a
signed head against a public key the verifier pinned (not the one the JSON carries) and walks
the chain from genesis to the signed entry.

Appends are synchronous: audit events are rare admin actions and refusals, not per-request
traffic, and an acknowledged action must survive `kill -9`. Appends from several processes are
serialised by updating the head row first (a row lock on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError, InvalidRequest, NotFound
from .tables import AuditEntry, AuditHead, AuditSignature

if TYPE_CHECKING:
    from ..events import Event
    from ..hub import Hub

__all__ = [
    "AuditProblem",
    "append",
    "counts_by_event",
    "head",
    "load_public_key",
    "public_key_hex",
    "sign_head",
    "sign_head_if_grown",
    "sign_once",
    "verify",
    "verify_signature",
]

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


def verify(hub: Hub, batch: int = 5000, *, upto: int | None = None) -> tuple[int, AuditProblem | None]:
    """Walk the chain from genesis; return (entries checked, the first problem or None).

    With `upto`, only entries 1..upto are walked (the head may have moved on since).
    """
    prev_hash, expected, checked = GENESIS, 1, 0
    with hub.db.session() as s:
        last = 0
        while upto is None or last < upto:
            stmt = select(AuditEntry).where(AuditEntry.seq > last)
            if upto is not None:
                stmt = stmt.where(AuditEntry.seq <= upto)
            rows = list(s.scalars(stmt.order_by(AuditEntry.seq).limit(batch)))
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
    if upto is not None:
        if checked != upto:
            return checked, AuditProblem(checked + 1, f"chain ends at entry {checked}, before entry {upto}")
        return checked, None
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


def public_key_hex(hub: Hub) -> str:
    """The public half of this hub's signing key: what verifiers pin (`sovhub audit public-key`)."""
    return _public_hex(_load_signing_key(hub).public_key())


def load_public_key(text: str) -> Ed25519PublicKey:
    """A pinned Ed25519 public key: 64 hex digits (as `audit public-key` prints) or a PEM block."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigError(f"the pinned public key is not an Ed25519 public key (64 hex digits or PEM): {exc}") from exc


def signed_heads_path(hub: Hub) -> Path:
    path = Path(hub.settings.sovereignty.audit_signed_heads_file)
    return path if path.is_absolute() else hub.settings.data_dir / path


def sign_head(hub: Hub, actor: str = "cli") -> dict[str, Any]:
    """Sign the current head; the result is what to anchor outside the hub (also appended to the heads file)."""
    key = _load_signing_key(hub)
    seq, digest = head(hub)
    signature = base64.b64encode(key.sign(signed_message(seq, digest))).decode()
    public = _public_hex(key.public_key())
    with hub.db.session() as s:
        s.add(AuditSignature(seq=seq, hash=digest, public_key=public, signature=signature))
    append(hub, "audit.head_signed", actor=actor, subject=f"audit:{seq}", data={"hash": digest})
    signed = {"seq": seq, "hash": digest, "public_key": public, "signature": signature,
              "message": signed_message(seq, digest).decode()}
    line = json.dumps(signed, sort_keys=True)
    path = signed_heads_path(hub)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    log.info("audit head signed: %s", line)
    return signed


def sign_head_if_grown(hub: Hub, actor: str = "system") -> dict[str, Any] | None:
    """Sign the head unless nothing but the last signature's own entry was added since it."""
    seq, _ = head(hub)
    with hub.db.session() as s:
        last = s.scalar(select(func.max(AuditSignature.seq)))
        newest = s.get(AuditEntry, seq) if seq else None
    if seq == 0 or last == seq or (last == seq - 1 and newest is not None and newest.event == "audit.head_signed"):
        return None
    return sign_head(hub, actor=actor)


async def sign_once(hub: Hub) -> None:
    """One round of the server's signer (every `audit_sign_interval_s`, once across replicas): sign the head
    if the chain grew."""
    import asyncio

    try:
        await asyncio.to_thread(sign_head_if_grown, hub)
    except (SQLAlchemyError, OSError, ConfigError) as exc:
        log.error("signing the audit head failed, will retry: %s", exc)


def verify_signature(hub: Hub, signed: dict[str, Any], pinned: Ed25519PublicKey) -> int:
    """Raise NotFound unless `signed` is valid under the pinned key and the log up to it is intact.

    The public key in `signed` is not trusted: an attacker who rewrote the log signs with a key of
    their own and puts that one there. The chain is walked from genesis to the signed entry, so an
    edited or removed entry before it is found even though the signed hash itself was kept.
    Returns the number of entries checked.
    """
    try:
        seq, digest, signature = int(signed["seq"]), str(signed["hash"]), str(signed["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest("a signed head holds seq, hash and signature (the JSON `sign-head` prints)") from exc
    pinned_hex = _public_hex(pinned)
    if signed.get("public_key") not in (None, pinned_hex):
        raise NotFound(f"head {seq} was signed by key {signed.get('public_key')}, not the pinned key {pinned_hex}")
    try:
        pinned.verify(base64.b64decode(signature, validate=True), signed_message(seq, digest))
    except (InvalidSignature, ValueError) as exc:
        raise NotFound(f"signature over head {seq} is not valid for the pinned key {pinned_hex}") from exc
    with hub.db.session() as s:
        row = s.get(AuditEntry, seq)
    if row is None or row.hash != digest:
        raise NotFound(f"audit entry {seq} no longer has the signed hash {digest[:16]}…: the log was rewritten")
    checked, problem = verify(hub, upto=seq)
    if problem is not None:
        raise NotFound(f"the log before the signed head {seq} was altered: entry {problem.seq} {problem.reason}")
    return checked
