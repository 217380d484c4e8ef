"""The file store (service, no HTTP): encrypted chunks in the database, one organization's files apart.

Every read and write names the organization, taken from the caller's API key: a file id of
another organization is simply not found (404), never told apart from one that does not exist.
"""

from __future__ import annotations

import base64
import logging
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from sovhub import linear_re

from ..errors import InvalidRequest, NotFound, PayloadTooLarge
from ..sovereignty.crypto import ContentVault
from ..store.base import as_utc, utcnow
from .tables import FileChunk, StoredFile

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["UPLOAD_PURPOSES", "Draft", "FileStore", "file_object"]

log = logging.getLogger("sovhub.files")

#: Purposes a client may upload with; `batch_output` files are written by the hub only.
UPLOAD_PURPOSES = ("batch", "user_data")
_ALL_PURPOSES = (*UPLOAD_PURPOSES, "batch_output")
#: Files at most this large are exported with their content; larger ones by name and size.
EXPORT_CONTENT_MAX = 10 * 1024 * 1024
_MIN_EXPIRY_S, _MAX_EXPIRY_S = 3600, 30 * 86400
_UNSAFE = linear_re.compile(r"[\x00-\x1f\x7f/\\]")


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def clean_filename(raw: str | None) -> str:
    """The name as shown back: no path, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", name).strip() or "upload"
    return name[:255]


def check_purpose(purpose: str | None) -> str:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"purpose {purpose!r} is not supported by this hub; use one of: {', '.join(UPLOAD_PURPOSES)}",
            param="purpose", code="invalid_purpose" if purpose else "missing_required_parameter",
        )
    return purpose


def expiry_seconds(anchor: str | None, seconds: str | int | None) -> int | None:
    """OpenAI's expires_after (anchor `created_at`, 3600..2592000 seconds); None when not given."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'", param="expires_after")
    try:
        value = int(str(seconds))
    except ValueError:
        raise InvalidRequest("expires_after[seconds] must be an integer", param="expires_after") from None
    if not _MIN_EXPIRY_S <= value <= _MAX_EXPIRY_S:
        raise InvalidRequest(f"expires_after[seconds] must be between {_MIN_EXPIRY_S} and {_MAX_EXPIRY_S}",
                             param="expires_after")
    return value


def file_object(row: StoredFile) -> dict[str, Any]:
    """OpenAI's File object."""
    out: dict[str, Any] = {
        "id": row.id, "object": "file", "bytes": int(row.bytes), "created_at": _ts(row.created_at),
        "filename": row.filename, "purpose": row.purpose, "status": "processed",
    }
    if row.expires_at is not None:
        out["expires_at"] = _ts(row.expires_at)
    return out


def _ts(value: datetime) -> int:
    return int(as_utc(value).timestamp())


@dataclass(slots=True)
class Draft:
    """An upload being written: its row exists but is invisible until :meth:`FileStore.finish`."""

    seq: int
    id: str
    org_id: int
    size: int = 0
    chunks: int = 0


class FileStore:
    """Reads and writes one organization's files at a time (sync: callers run it in a thread)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings.files

    @property
    def vault(self) -> ContentVault:
        return self.hub.services.get(ContentVault)

    @staticmethod
    def _context(file_id: str, n: int) -> bytes:
        return f":file:{file_id}:{n}".encode()

    # --- writing ---

    def stored_bytes(self, org_id: int) -> int:
        with self.hub.db.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(StoredFile.bytes), 0))
                                .where(StoredFile.org_id == org_id)) or 0)

    def begin(self, org_id: int, *, key_id: int | None = None, user_id: int | None = None,
              purpose: str = "user_data", filename: str = "upload") -> Draft:
        if self.stored_bytes(org_id) >= self.settings.max_org_bytes:
            raise PayloadTooLarge(
                f"the organization's files hold {self.settings.max_org_bytes} bytes already; delete some first",
                code="storage_quota_exceeded",
            )
        file_id = new_file_id()
        with self.hub.db.session() as s:
            row = StoredFile(id=file_id, org_id=org_id, key_id=key_id, user_id=user_id, purpose=purpose,
                             filename=filename, bytes=0, complete=False)
            s.add(row)
            s.flush()
            seq = row.seq
        return Draft(seq=seq, id=file_id, org_id=org_id)

    def check_size(self, draft: Draft, more: int, already_stored: int) -> None:
        """Refuse (413) as soon as the upload passes the file limit or the organization's quota."""
        if draft.size + more > self.settings.max_bytes:
            raise PayloadTooLarge(f"the file is larger than the limit of {self.settings.max_bytes} bytes",
                                  code="file_too_large")
        if already_stored + draft.size + more > self.settings.max_org_bytes:
            raise PayloadTooLarge(f"the organization's files would pass {self.settings.max_org_bytes} bytes; "
                                  "delete some first", code="storage_quota_exceeded")

    def write_chunk(self, draft: Draft, data: bytes) -> None:
        blob = self.vault.encrypt_bytes("org", draft.org_id, data, context=self._context(draft.id, draft.chunks))
        with self.hub.db.session() as s:
            s.add(FileChunk(file_seq=draft.seq, n=draft.chunks, data=blob))
            s.execute(update(StoredFile).where(StoredFile.seq == draft.seq)
                      .values(bytes=StoredFile.bytes + len(data)))
        draft.chunks += 1
        draft.size += len(data)

    def finish(self, draft: Draft, *, purpose: str, filename: str, expires_after_s: int | None = None) -> StoredFile:
        now = utcnow()
        if expires_after_s is None and purpose == "batch":
            expires_after_s = int(self.settings.batch_expiry_days * 86400)
        if expires_after_s is None and purpose == "batch_output":
            expires_after_s = int(self.hub.settings.batch.output_expiry_days * 86400)
        expires = now + timedelta(seconds=expires_after_s) if expires_after_s is not None else None
        with self.hub.db.session() as s:
            row = s.scalar(select(StoredFile).where(StoredFile.seq == draft.seq))
            if row is None:
                raise NotFound(f"upload {draft.id} was removed while it was written")
            row.purpose, row.filename, row.complete = purpose, filename, True
            row.bytes, row.created_at, row.expires_at = draft.size, now, expires
        return row

    def abandon(self, draft: Draft) -> None:
        with self.hub.db.session() as s:
            s.execute(delete(StoredFile).where(StoredFile.seq == draft.seq))

    def put(self, org_id: int, data: bytes, *, purpose: str, filename: str, key_id: int | None = None) -> StoredFile:
        """Store a whole file at once (the hub's own batch output and error files)."""
        draft = self.begin(org_id, key_id=key_id, purpose=purpose, filename=filename)
        try:
            step = self.settings.chunk_bytes
            for start in range(0, len(data), step):
                self.write_chunk(draft, data[start:start + step])
            return self.finish(draft, purpose=purpose, filename=filename)
        except BaseException:
            self.abandon(draft)
            raise

    # --- reading ---

    def get(self, org_id: int, file_id: str) -> StoredFile:
        with self.hub.db.session() as s:
            row = s.scalar(select(StoredFile).where(StoredFile.id == file_id, StoredFile.org_id == org_id,
                                                    StoredFile.complete.is_(True)))
        if row is None or (row.expires_at is not None and as_utc(row.expires_at) <= utcnow()):
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return row

    def page(self, org_id: int, *, purpose: str | None = None, limit: int = 10_000, order: str = "desc",
             after: str | None = None) -> tuple[list[StoredFile], bool]:
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be between 1 and 10000", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
        query = select(StoredFile).where(StoredFile.org_id == org_id, StoredFile.complete.is_(True),
                                         (StoredFile.expires_at.is_(None)) | (StoredFile.expires_at > utcnow()))
        if purpose is not None:
            query = query.where(StoredFile.purpose == purpose)
        with self.hub.db.session() as s:
            if after is not None:
                cursor = s.scalar(select(StoredFile.seq).where(StoredFile.id == after, StoredFile.org_id == org_id))
                if cursor is None:
                    raise InvalidRequest(f"after: no such File object: {after}", param="after")
                query = query.where(StoredFile.seq < cursor if order == "desc" else StoredFile.seq > cursor)
            query = query.order_by(StoredFile.seq.desc() if order == "desc" else StoredFile.seq.asc())
            rows = list(s.scalars(query.limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def iter_content(self, org_id: int, file_id: str) -> Iterator[bytes]:
        """The file's bytes, one decrypted chunk at a time (a 200 MB file never sits in memory whole)."""
        row = self.get(org_id, file_id)
        n = 0
        while True:
            with self.hub.db.session() as s:
                blob = s.scalar(select(FileChunk.data).where(FileChunk.file_seq == row.seq, FileChunk.n == n))
            if blob is None:
                return
            yield self.vault.decrypt_bytes("org", org_id, blob, context=self._context(row.id, n))
            n += 1

    def read(self, org_id: int, file_id: str) -> bytes:
        return b"".join(self.iter_content(org_id, file_id))

    def delete(self, org_id: int, file_id: str) -> None:
        row = self.get(org_id, file_id)
        with self.hub.db.session() as s:
            s.execute(delete(StoredFile).where(StoredFile.seq == row.seq))
        self.hub.emit("file.deleted", actor=f"org:{org_id}", subject=f"file:{file_id}", org_id=org_id)

    # --- housekeeping and data rights ---

    def purge(self, *, stale_upload_s: float = 3600.0) -> int:
        """Delete expired files, and uploads that never finished (their replica died mid-stream)."""
        now = utcnow()
        with self.hub.db.session() as s:
            expired = s.execute(delete(StoredFile).where(StoredFile.expires_at <= now))
            stale = s.execute(delete(StoredFile).where(StoredFile.complete.is_(False),
                                                       StoredFile.created_at < now - timedelta(seconds=stale_upload_s)))
        return int(getattr(expired, "rowcount", 0) or 0) + int(getattr(stale, "rowcount", 0) or 0)

    def export_org(self, org_id: int) -> list[dict[str, Any]]:
        with self.hub.db.session() as s:
            rows = list(s.scalars(select(StoredFile).where(StoredFile.org_id == org_id, StoredFile.complete.is_(True))
                                  .order_by(StoredFile.seq)))
        out = []
        for row in rows:
            item = file_object(row)
            if row.bytes <= EXPORT_CONTENT_MAX:
                try:
                    item["content_base64"] = base64.b64encode(self.read(org_id, row.id)).decode()
                except NotFound as exc:
                    item["unreadable"] = exc.message
            else:
                item["content_omitted"] = (f"larger than {EXPORT_CONTENT_MAX} bytes: download it with "
                                           f"GET /v1/files/{row.id}/content")
            out.append(item)
        return out

    def export_user(self, user_id: int) -> list[dict[str, Any]]:
        """The files a person uploaded (their organization's: listed, not copied)."""
        with self.hub.db.session() as s:
            rows = list(s.scalars(select(StoredFile).where(StoredFile.user_id == user_id).order_by(StoredFile.seq)))
        return [file_object(r) for r in rows]

    def unlink_user(self, user_id: int) -> None:
        """The files stay the organization's; only the link to the person who uploaded them goes."""
        with self.hub.db.session() as s:
            s.execute(update(StoredFile).where(StoredFile.user_id == user_id).values(user_id=None))

    def erase_org(self, org_id: int) -> int:
        with self.hub.db.session() as s:
            result = s.execute(delete(StoredFile).where(StoredFile.org_id == org_id))
        return int(getattr(result, "rowcount", 0) or 0)
