"""Batches in the database (service, no HTTP): creation, leases on lines, results, finalization.

Every state change is a conditional UPDATE (``WHERE status = ... AND lease ...``), so replicas
sharing the database never both move the same batch or line: whoever's UPDATE matched owns it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from ..errors import Conflict, InvalidRequest, NotFound
from ..files.store import FileStore
from ..pipeline import Principal
from ..sovereignty.crypto import ContentVault
from ..store.base import as_utc, utcnow
from .tables import BatchLine, BatchRow
from .validate import ENDPOINTS, ParsedLine

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["TERMINAL", "UNFINISHED", "BatchStore", "ClaimedLine", "batch_object"]

TERMINAL = ("failed", "completed", "expired", "cancelled")
#: Every other status: a batch with work left for some replica (its status column is indexed).
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
_LINE_DONE = ("succeeded", "failed", "expired", "cancelled")
_TIMESTAMPS = ("in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
               "cancelling_at", "cancelled_at")
_INSERT_CHUNK = 500


def _ts(value: datetime | None) -> int | None:
    return int(as_utc(value).timestamp()) if value is not None else None


def batch_object(row: BatchRow, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """OpenAI's Batch object; timestamps not reached yet are left out (the spec has them non-nullable)."""
    counts = counts or {}
    out: dict[str, Any] = {
        "id": row.id, "object": "batch", "endpoint": row.endpoint, "input_file_id": row.input_file_id,
        "completion_window": row.completion_window, "status": row.status, "created_at": _ts(row.created_at),
        "request_counts": {"total": int(row.total), "completed": counts.get("succeeded", int(row.completed)),
                           "failed": counts.get("failed", int(row.failed))},
        "metadata": row.meta,
        "usage": {"input_tokens": int(row.input_tokens), "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": int(row.output_tokens), "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": int(row.input_tokens) + int(row.output_tokens)},
    }
    if row.model:
        out["model"] = row.model
    for name in _TIMESTAMPS:
        value = _ts(getattr(row, name))
        if value is not None:
            out[name] = value
    for name in ("output_file_id", "error_file_id"):
        if getattr(row, name):
            out[name] = getattr(row, name)
    if row.errors:
        out["errors"] = {"object": "list", "data": row.errors}
    return out


@dataclass(slots=True)
class ClaimedLine:
    id: int
    batch_id: str
    batch_seq: int
    org_id: int
    key_id: int | None
    endpoint: str
    line_no: int
    custom_id: str
    body: dict[str, Any]
    #: This claim's attempt (1: the first); earlier ones were replicas that lost the line.
    attempt: int = 1


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise InvalidRequest("metadata holds at most 16 key-value pairs", param="metadata")
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise InvalidRequest("metadata keys are strings of at most 64 characters, values of at most 512",
                                 param="metadata")
    return dict(metadata)


class BatchStore:
    def __init__(self, hub: Hub, files: FileStore) -> None:
        self.hub = hub
        self.files = files
        self.settings = hub.settings.batch

    @property
    def vault(self) -> ContentVault:
        return self.hub.services.get(ContentVault)

    @staticmethod
    def _context(batch_id: str, line_no: int, kind: str) -> bytes:
        return f":batch:{batch_id}:{line_no}:{kind}".encode()

    # --- the API's calls ---

    def create(self, principal: Principal, *, input_file_id: str, endpoint: str, completion_window: str,
               metadata: dict[str, Any] | None = None, output_expires_after_s: int | None = None) -> BatchRow:
        org_id = principal.org_id
        assert org_id is not None
        if endpoint not in ENDPOINTS:
            raise InvalidRequest(f"endpoint {endpoint!r} is not supported for batches here; use one of "
                                 f"{', '.join(ENDPOINTS)}", param="endpoint", code="invalid_endpoint")
        if completion_window != "24h":
            raise InvalidRequest("completion_window must be '24h'", param="completion_window")
        meta = check_metadata(metadata)
        try:
            source = self.files.get(org_id, input_file_id)
        except NotFound:
            raise NotFound(f"No such File object: {input_file_id}", param="input_file_id") from None
        if source.purpose != "batch":
            raise InvalidRequest(f"file {input_file_id} was uploaded with purpose {source.purpose!r}; a batch's input "
                                 "file needs purpose 'batch'", param="input_file_id")
        now = utcnow()
        with self.hub.db.session() as s:
            active = s.scalar(select(func.count()).select_from(BatchRow).where(
                BatchRow.org_id == org_id, BatchRow.status.not_in(TERMINAL)))
            if int(active or 0) >= self.settings.max_active_per_org:
                raise Conflict(f"the organization has {active} unfinished batches, the most it may have at once; "
                               "wait for some to finish or cancel them", code="too_many_batches")
            row = BatchRow(id="batch_" + secrets.token_hex(12), org_id=org_id, key_id=principal.key_id,
                           endpoint=endpoint, input_file_id=input_file_id, completion_window=completion_window,
                           status="validating", created_at=now,
                           expires_at=now + timedelta(seconds=self.settings.window_s), meta=meta,
                           output_expires_after_s=output_expires_after_s, total=0, completed=0, failed=0,
                           input_tokens=0, output_tokens=0)
            s.add(row)
        return row

    def get(self, org_id: int, batch_id: str) -> BatchRow:
        with self.hub.db.session() as s:
            row = s.scalar(select(BatchRow).where(BatchRow.id == batch_id, BatchRow.org_id == org_id))
        if row is None:
            raise NotFound(f"No such Batch object: {batch_id}", param="batch_id")
        return row

    def page(self, org_id: int, *, limit: int = 20, after: str | None = None) -> tuple[list[BatchRow], bool]:
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", param="limit")
        query = select(BatchRow).where(BatchRow.org_id == org_id)
        with self.hub.db.session() as s:
            if after is not None:
                cursor = s.scalar(select(BatchRow.seq).where(BatchRow.id == after, BatchRow.org_id == org_id))
                if cursor is None:
                    raise InvalidRequest(f"after: no such Batch object: {after}", param="after")
                query = query.where(BatchRow.seq < cursor)
            rows = list(s.scalars(query.order_by(BatchRow.seq.desc()).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def counts(self, seqs: Iterable[int]) -> dict[int, dict[str, int]]:
        """Lines per status for these batches, in one grouped query."""
        wanted = list(seqs)
        out: dict[int, dict[str, int]] = {seq: {} for seq in wanted}
        if not wanted:
            return out
        with self.hub.db.session() as s:
            for seq, status, n in s.execute(select(BatchLine.batch_seq, BatchLine.status, func.count())
                                            .where(BatchLine.batch_seq.in_(wanted))
                                            .group_by(BatchLine.batch_seq, BatchLine.status)):
                out[seq][status] = int(n)
        return out

    def cancel(self, org_id: int, batch_id: str) -> BatchRow:
        row = self.get(org_id, batch_id)
        now = utcnow()
        with self.hub.db.session() as s:
            moved = s.execute(update(BatchRow).where(BatchRow.seq == row.seq,
                                                     BatchRow.status.in_(("validating", "in_progress")))
                              .values(status="cancelling", cancelling_at=now))
            s.execute(update(BatchLine).where(BatchLine.batch_seq == row.seq, BatchLine.status == "pending")
                      .values(status="cancelled", finished_at=now))
        if not getattr(moved, "rowcount", 0):
            current = self.get(org_id, batch_id)
            if current.status in ("cancelling", "cancelled"):
                return current
            raise Conflict(f"Cannot cancel a batch with status {current.status}.", code="batch_not_cancellable")
        return self.get(org_id, batch_id)

    # --- validation (one replica at a time, by lease) ---

    def any_unfinished(self) -> bool:
        """Whether any batch has work left: the idle runner's one query a round."""
        with self.hub.db.session() as s:
            return s.scalar(select(BatchRow.seq).where(BatchRow.status.in_(UNFINISHED)).limit(1)) is not None

    def claim_validation(self, owner: str) -> BatchRow | None:
        now = utcnow()
        with self.hub.db.session() as s:
            candidates = list(s.scalars(select(BatchRow.seq).where(
                BatchRow.status == "validating",
                or_(BatchRow.lease_until.is_(None), BatchRow.lease_until < now)).order_by(BatchRow.seq).limit(5)))
        for seq in candidates:
            with self.hub.db.session() as s:
                won = s.execute(update(BatchRow).where(
                    BatchRow.seq == seq, BatchRow.status == "validating",
                    or_(BatchRow.lease_until.is_(None), BatchRow.lease_until < now))
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=self.settings.lease_s)))
            if getattr(won, "rowcount", 0):
                with self.hub.db.session() as s:
                    return s.get(BatchRow, seq)
        return None

    def fail_validation(self, row: BatchRow, errors: list[dict[str, Any]]) -> None:
        with self.hub.db.session() as s:
            s.execute(update(BatchRow).where(BatchRow.seq == row.seq, BatchRow.status == "validating")
                      .values(status="failed", failed_at=utcnow(), errors=errors, lease_owner=None, lease_until=None))

    def start(self, row: BatchRow, lines: list[ParsedLine], model: str | None,
              not_before: dict[int, datetime] | None = None, schedule: dict[str, Any] | None = None) -> bool:
        """Store the validated lines (bodies sealed) and move the batch to in_progress; False when it was cancelled
        meanwhile."""
        not_before = not_before or {}
        with self.hub.db.session() as s:
            s.execute(delete(BatchLine).where(BatchLine.batch_seq == row.seq))  # a validation cut short before
        for start in range(0, len(lines), _INSERT_CHUNK):
            values = [{"batch_seq": row.seq, "line_no": line.line_no, "custom_id": line.custom_id,
                       "status": "pending", "attempts": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "not_before": not_before.get(line.line_no),
                       "body": self.vault.encrypt_bytes("org", row.org_id, json.dumps(line.body).encode(),
                                                        context=self._context(row.id, line.line_no, "body"))}
                      for line in lines[start:start + _INSERT_CHUNK]]
            with self.hub.db.session() as s:
                s.execute(insert(BatchLine), values)
        with self.hub.db.session() as s:
            moved = s.execute(update(BatchRow).where(BatchRow.seq == row.seq, BatchRow.status == "validating")
                              .values(status="in_progress", in_progress_at=utcnow(), total=len(lines), model=model,
                                      schedule=schedule, lease_owner=None, lease_until=None))
            if not getattr(moved, "rowcount", 0):
                s.execute(update(BatchLine).where(BatchLine.batch_seq == row.seq, BatchLine.status == "pending")
                          .values(status="cancelled", finished_at=utcnow()))
                s.execute(update(BatchRow).where(BatchRow.seq == row.seq).values(total=len(lines)))
                return False
        return True

    # --- lines: leased one by one ---

    def claim_lines(self, owner: str, n: int) -> list[ClaimedLine]:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.lease_s)
        free = or_(BatchLine.status == "pending", and_(BatchLine.status == "running", BatchLine.lease_until < now))
        with self.hub.db.session() as s:
            ids = list(s.scalars(
                select(BatchLine.id).join(BatchRow, BatchRow.seq == BatchLine.batch_seq)
                .where(BatchRow.status == "in_progress", free,
                       or_(BatchLine.not_before.is_(None), BatchLine.not_before <= now))
                .order_by(BatchLine.batch_seq, BatchLine.line_no).limit(n * 4)))
        claimed: list[ClaimedLine] = []
        for line_id in ids:
            if len(claimed) >= n:
                break
            with self.hub.db.session() as s:
                won = s.execute(update(BatchLine).where(BatchLine.id == line_id, free)
                                .values(status="running", lease_owner=owner, lease_until=lease,
                                        attempts=BatchLine.attempts + 1))
                if not getattr(won, "rowcount", 0):
                    continue  # another replica took it first
                line, batch = s.execute(select(BatchLine, BatchRow).join(BatchRow, BatchRow.seq == BatchLine.batch_seq)
                                        .where(BatchLine.id == line_id)).one()
            body = json.loads(self.vault.decrypt_bytes("org", batch.org_id, line.body,
                                                       context=self._context(batch.id, line.line_no, "body")))
            claimed.append(ClaimedLine(line.id, batch.id, batch.seq, batch.org_id, batch.key_id, batch.endpoint,
                                       line.line_no, line.custom_id, body, int(line.attempts)))
        return claimed

    def renew(self, owner: str, line_ids: Iterable[int]) -> set[int]:
        """Extend this replica's leases on these lines; returns the ones it no longer holds (taken over by another
        replica, expired with their batch's window, or cancelled), whose work is then worth nothing."""
        ids = list(line_ids)
        if not ids:
            return set()
        mine = (BatchLine.id.in_(ids), BatchLine.lease_owner == owner, BatchLine.status == "running")
        with self.hub.db.session() as s:
            s.execute(update(BatchLine).where(*mine)
                      .values(lease_until=utcnow() + timedelta(seconds=self.settings.lease_s)))
            held = set(s.scalars(select(BatchLine.id).where(*mine)))
        return set(ids) - held

    def finish_line(self, line: ClaimedLine, owner: str, *, status: str, result: dict[str, Any],
                    prompt_tokens: int = 0, completion_tokens: int = 0) -> bool:
        """Record the line's one result; False when this replica lost the line's lease (its result is dropped)."""
        blob = self.vault.encrypt_bytes("org", line.org_id, json.dumps(result).encode(),
                                        context=self._context(line.batch_id, line.line_no, "result"))
        with self.hub.db.session() as s:
            done = s.execute(update(BatchLine).where(BatchLine.id == line.id, BatchLine.lease_owner == owner,
                                                     BatchLine.status == "running")
                             .values(status=status, result=blob, prompt_tokens=prompt_tokens,
                                     completion_tokens=completion_tokens, finished_at=utcnow(),
                                     lease_owner=None, lease_until=None))
            if not getattr(done, "rowcount", 0):
                return False
            s.execute(update(BatchRow).where(BatchRow.seq == line.batch_seq).values(
                input_tokens=BatchRow.input_tokens + prompt_tokens,
                output_tokens=BatchRow.output_tokens + completion_tokens))
        return True

    def retry_line(self, line: ClaimedLine, owner: str, not_before: datetime) -> None:
        """Give the line back (rate-limited, backend down): pending again, not before `not_before`."""
        with self.hub.db.session() as s:
            s.execute(update(BatchLine).where(BatchLine.id == line.id, BatchLine.lease_owner == owner,
                                              BatchLine.status == "running")
                      .values(status="pending", not_before=not_before, lease_owner=None, lease_until=None))

    def release(self, owner: str) -> int:
        """Give back every line this replica holds (a graceful shutdown): another runs them without waiting."""
        with self.hub.db.session() as s:
            done = s.execute(update(BatchLine).where(BatchLine.lease_owner == owner, BatchLine.status == "running")
                             .values(status="pending", lease_owner=None, lease_until=None))
        return int(getattr(done, "rowcount", 0) or 0)

    # --- the window, cancellation, finalization ---

    def sweep(self) -> None:
        """Expire lines of batches past their window; cancel the waiting lines of cancelling batches."""
        now = utcnow()
        with self.hub.db.session() as s:
            late = list(s.scalars(select(BatchRow.seq).where(BatchRow.status == "in_progress",
                                                             BatchRow.expires_at <= now)))
            if late:
                s.execute(update(BatchLine).where(BatchLine.batch_seq.in_(late),
                                                  BatchLine.status.in_(("pending", "running")))
                          .values(status="expired", finished_at=now, lease_owner=None, lease_until=None))
            cancelling = list(s.scalars(select(BatchRow.seq).where(BatchRow.status == "cancelling")))
            if cancelling:
                s.execute(update(BatchLine).where(BatchLine.batch_seq.in_(cancelling), BatchLine.status == "pending")
                          .values(status="cancelled", finished_at=now))
                # A line whose replica died while the batch was being cancelled will not come back.
                s.execute(update(BatchLine).where(BatchLine.batch_seq.in_(cancelling), BatchLine.status == "running",
                                                  BatchLine.lease_until < now)
                          .values(status="cancelled", finished_at=now, lease_owner=None, lease_until=None))

    def claim_finalization(self, owner: str) -> BatchRow | None:
        """A batch with no line left to run, moved to finalizing by this replica (or taken over from a dead one)."""
        now = utcnow()
        unfinished = select(BatchLine.id).where(BatchLine.batch_seq == BatchRow.seq,
                                                BatchLine.status.in_(("pending", "running"))).exists()
        lease = now + timedelta(seconds=self.settings.lease_s)
        with self.hub.db.session() as s:
            seqs = list(s.scalars(select(BatchRow.seq).where(
                or_(and_(BatchRow.status.in_(("in_progress", "cancelling")), ~unfinished),
                    and_(BatchRow.status == "finalizing", BatchRow.lease_until < now))).limit(5)))
        for seq in seqs:
            with self.hub.db.session() as s:
                won = s.execute(update(BatchRow).where(
                    BatchRow.seq == seq,
                    or_(and_(BatchRow.status.in_(("in_progress", "cancelling")), ~unfinished),
                        and_(BatchRow.status == "finalizing", BatchRow.lease_until < now)))
                    .values(status="finalizing", finalizing_at=func.coalesce(BatchRow.finalizing_at, now),
                            lease_owner=owner, lease_until=lease))
                if getattr(won, "rowcount", 0):
                    return s.get(BatchRow, seq)
        return None

    def finalize(self, row: BatchRow, owner: str) -> None:
        """Write the output and error files (OpenAI's line format, input order) and end the batch."""
        output: list[bytes] = []
        errors: list[bytes] = []
        counts = {"succeeded": 0, "failed": 0, "expired": 0, "cancelled": 0}
        last = 0
        while True:
            with self.hub.db.session() as s:
                lines = list(s.scalars(select(BatchLine).where(BatchLine.batch_seq == row.seq,
                                                               BatchLine.line_no > last)
                                       .order_by(BatchLine.line_no).limit(_INSERT_CHUNK)))
            if not lines:
                break
            for line in lines:
                last = line.line_no
                counts[line.status] = counts.get(line.status, 0) + 1
                if line.result is not None:
                    result = json.loads(self.vault.decrypt_bytes(
                        "org", row.org_id, line.result, context=self._context(row.id, line.line_no, "result")))
                else:
                    result = _unrun(line)
                encoded = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                (output if line.status == "succeeded" else errors).append(encoded)
        cancelled = row.cancelling_at is not None
        expired = counts["expired"] > 0
        output_id = error_id = None
        if output:
            output_id = self.files.put(row.org_id, b"".join(output), purpose="batch_output",
                                       filename=f"{row.id}_output.jsonl", key_id=row.key_id).id
        if errors:
            error_id = self.files.put(row.org_id, b"".join(errors), purpose="batch_output",
                                      filename=f"{row.id}_error.jsonl", key_id=row.key_id).id
        now = utcnow()
        final = "cancelled" if cancelled else "expired" if expired else "completed"
        stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "completed": "completed_at"}[final]
        with self.hub.db.session() as s:
            s.execute(update(BatchRow).where(BatchRow.seq == row.seq, BatchRow.lease_owner == owner,
                                             BatchRow.status == "finalizing")
                      .values(status=final, output_file_id=output_id, error_file_id=error_id,
                              completed=counts["succeeded"], failed=counts["failed"], lease_owner=None,
                              lease_until=None, **{stamp: now}))
        self.hub.emit(f"batch.{final}", actor=f"org:{row.org_id}", subject=f"batch:{row.id}", org_id=row.org_id,
                      completed=counts["succeeded"], failed=counts["failed"], expired=counts["expired"],
                      cancelled=counts["cancelled"])

    # --- data rights ---

    def export_org(self, org_id: int) -> list[dict[str, Any]]:
        """Each batch as the API shows it, with its lines: request body, result, status, tokens, attempts (the
        input, output and error files are in the export's files)."""
        with self.hub.db.session() as s:
            rows = list(s.scalars(select(BatchRow).where(BatchRow.org_id == org_id).order_by(BatchRow.seq)))
        return [{**batch_object(r), "schedule": r.schedule, "lines": self._export_lines(r)} for r in rows]

    def _export_lines(self, row: BatchRow) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last = 0
        while True:
            with self.hub.db.session() as s:
                lines = list(s.scalars(select(BatchLine).where(BatchLine.batch_seq == row.seq, BatchLine.line_no > last)
                                       .order_by(BatchLine.line_no).limit(_INSERT_CHUNK)))
            if not lines:
                return out
            for line in lines:
                last = line.line_no
                item: dict[str, Any] = {
                    "line": line.line_no, "custom_id": line.custom_id, "status": line.status,
                    "attempts": line.attempts, "prompt_tokens": line.prompt_tokens,
                    "completion_tokens": line.completion_tokens,
                    "finished_at": line.finished_at.isoformat() if line.finished_at else None,
                    "body": json.loads(self.vault.decrypt_bytes(
                        "org", row.org_id, line.body, context=self._context(row.id, line.line_no, "body")))}
                if line.result is not None:
                    item["result"] = json.loads(self.vault.decrypt_bytes(
                        "org", row.org_id, line.result, context=self._context(row.id, line.line_no, "result")))
                out.append(item)

    def erase_org(self, org_id: int) -> None:
        with self.hub.db.session() as s:
            seqs = select(BatchRow.seq).where(BatchRow.org_id == org_id).scalar_subquery()
            s.execute(delete(BatchLine).where(BatchLine.batch_seq.in_(seqs)))
            s.execute(delete(BatchRow).where(BatchRow.org_id == org_id))


def _unrun(line: BatchLine) -> dict[str, Any]:
    """The error line of a request that never ran (the window ended, or the batch was cancelled)."""
    code, message = {
        "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
        "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    }.get(line.status, ("batch_failed", "This request did not run."))
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": line.custom_id, "response": None,
            "error": {"code": code, "message": message}}
