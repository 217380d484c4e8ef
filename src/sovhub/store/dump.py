"""A dialect-neutral dump of every table: one consistent snapshot out, loaded into an empty database.

The dump is gzip-compressed JSON lines, ``{"t": table, "r": {column: cell}}``, tables in
foreign-key order; every cell is tagged (``{"v": json}``, ``{"b": base64}``, ``{"dt": iso}``,
``{"d": iso}``, ``{"n": decimal}``) so a JSON column's own dictionaries are never mistaken for
bytes or times. A SQLite hub's dump loads into PostgreSQL and back. Derived columns (PostgreSQL's
full-text vectors) are left out and rebuilt by the loader's caller.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.engine import Connection

from ..errors import ConfigError
from .base import Base, as_utc
from .db import Database, import_table_modules

__all__ = ["DERIVED_COLUMNS", "dump_tables", "load_tables", "reset_sequences", "sha256_file"]

# Rebuilt after a load, never dumped: PostgreSQL's tsvector has no portable text form.
DERIVED_COLUMNS = {("kb_chunks", "tsv")}
_BATCH = 1000


def _tables() -> list[Table]:
    import_table_modules()
    return list(Base.metadata.sorted_tables)


def _live_tables(conn: Connection) -> list[Table]:
    """The hub's tables as this database has them (its migration may be older than this code's models),
    in the models' foreign-key order; FTS shadow tables and anything else not the hub's are left out."""
    known = [t.name for t in _tables()]
    live = MetaData()
    live.reflect(bind=conn, only=lambda name, _meta: name in known)
    return [live.tables[name] for name in known if name in live.tables]


def _encode(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {"dt": as_utc(value).isoformat()}  # every time the hub stores is UTC; SQLite hands it back naive
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    return {"v": value}


def _decode(cell: dict[str, Any]) -> Any:
    if "v" in cell:
        return cell["v"]
    if "b" in cell:
        return base64.b64decode(cell["b"])
    if "dt" in cell:
        return datetime.fromisoformat(cell["dt"])
    if "d" in cell:
        return date.fromisoformat(cell["d"])
    if "n" in cell:
        return Decimal(cell["n"])
    raise ValueError(f"unknown cell {cell!r}")


def _rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    columns = [c for c in table.columns if (table.name, c.name) not in DERIVED_COLUMNS]
    order = list(table.primary_key.columns) or columns
    result = conn.execution_options(yield_per=_BATCH).execute(select(*columns).order_by(*order))
    for row in result:
        yield {c.name: _encode(v) for c, v in zip(columns, row, strict=True)}


def dump_tables(db: Database, out: IO[bytes]) -> tuple[dict[str, int], str | None, dict[str, Any]]:
    """Write every table from one snapshot; returns (rows per table, Alembic revision, extra facts).

    PostgreSQL reads under REPEATABLE READ; SQLite's read transaction (WAL) is a snapshot as well.
    The facts (the audit head) are read in the same snapshot.
    """
    from alembic.runtime.migration import MigrationContext

    counts: dict[str, int] = {}
    with db.engine.connect() as conn:
        if not db.is_sqlite:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            revision = MigrationContext.configure(conn).get_current_revision()
            facts: dict[str, Any] = {}
            head = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
            facts["audit_head"] = {"seq": int(head[0]), "hash": str(head[1])} if head else {"seq": 0, "hash": None}
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
                for table in _live_tables(conn):
                    n = 0
                    for row in _rows(conn, table):
                        gz.write(json.dumps({"t": table.name, "r": row}, ensure_ascii=False,
                                            separators=(",", ":")).encode("utf-8") + b"\n")
                        n += 1
                    counts[table.name] = n
    return counts, revision, facts


def load_tables(db: Database, path: Path) -> dict[str, int]:
    """Load a dump into a database freshly migrated to the dump's revision, in one transaction; rows per table.

    Rows the migrations seeded (the audit head, default policies) are replaced by the dump's.
    """
    counts: dict[str, int] = {}
    with db.engine.begin() as conn:
        ordered = _live_tables(conn)  # the backup's migration, not necessarily this code's newest
        tables = {t.name: t for t in ordered}
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for table in reversed(ordered):
            conn.execute(table.delete())
        pending: list[dict[str, Any]] = []
        current: Table | None = None

        def flush() -> None:
            if current is not None and pending:
                conn.execute(current.insert(), pending)
                pending.clear()

        with gzip.open(path, "rb") as gz:
            for number, line in enumerate(gz, 1):
                try:
                    record = json.loads(line)
                    table = tables[record["t"]]
                    row = {name: _decode(cell) for name, cell in record["r"].items()}
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{path}, record {number}: not a sovhub dump record ({exc})") from exc
                if table is not current:
                    flush()
                    current = table
                pending.append(row)
                counts[table.name] = counts.get(table.name, 0) + 1
                if len(pending) >= _BATCH:
                    flush()
        flush()
    return counts


def reset_sequences(db: Database, floors: dict[str, int] | None = None) -> None:
    """Set each table's id counter past its largest id (and past `floors[table]`), so no id is handed out twice."""
    floors = floors or {}
    with db.engine.begin() as conn:
        for table in _tables():
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or pk[0].name != "id" or not _is_integer(pk[0].type):
                continue
            top = max(int(conn.execute(select(func.coalesce(func.max(pk[0]), 0))).scalar_one()),
                      floors.get(table.name, 0))
            if db.is_sqlite:
                if table.kwargs.get("sqlite_autoincrement") and top:
                    conn.execute(text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table.name})
                    conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"),
                                 {"t": table.name, "n": top})
            else:
                sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"),
                                        {"t": table.name}).scalar()
                if sequence:
                    conn.execute(text("SELECT setval(:s, :n, :called)"),
                                 {"s": sequence, "n": max(top, 1), "called": top > 0})


def _is_integer(column_type: Any) -> bool:
    try:
        return column_type.python_type is int
    except NotImplementedError:
        return False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
