"""Every DateTime column reads back aware UTC, on SQLite (which keeps no offset) as on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from sovhub.hub import build_hub
from sovhub.store.tables import Organization
from tests.conftest import make_settings


def test_datetimes_read_back_aware_utc_whatever_offset_was_written(database_url: str | None, data_dir: Path) -> None:
    hub = build_hub(make_settings(data_dir, database_url=database_url))
    kyiv = timezone(timedelta(hours=2))
    written = {
        "naive": datetime(2026, 3, 1, 12, 0),  # taken to be UTC
        "utc": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        "kyiv": datetime(2026, 3, 1, 14, 0, tzinfo=kyiv),  # the same instant as 12:00 UTC
    }
    try:
        with hub.db.session() as s:
            s.add_all([Organization(name=name, created_at=value) for name, value in written.items()])
        with hub.db.session() as s:
            read = dict(s.execute(select(Organization.name, Organization.created_at)).all())
            orm = {o.name: o.created_at for o in s.scalars(select(Organization))}
        for value in (*read.values(), *orm.values()):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
            assert value == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    finally:
        hub.close()
