"""The engine, sessions, and migrating a database to the newest schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError

__all__ = ["Database", "all_table_modules"]

MIGRATIONS = Path(__file__).with_name("migrations")


def all_table_modules() -> list[str]:
    """Every module that defines tables; imported so that the metadata is complete."""
    return [
        "sovhub.store.tables",
        "sovhub.sovereignty.tables",
        "sovhub.safety.tables",
        "sovhub.access.tables",
        "sovhub.assistant.tables",
        "sovhub.api.responses.tables",
        "sovhub.credits.tables",
    ]


def import_table_modules() -> None:
    import importlib

    for name in all_table_modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except OperationalError:
            return False

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from alembic import command

        try:
            command.upgrade(self.alembic_config(), "head")
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the database {self.safe_url}: {exc.orig}") from exc

    def head_revision(self) -> str:
        """The newest migration this sovhub ships."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        assert head is not None, "the package ships its migrations"
        return head

    def require_migrated(self) -> str:
        """Refuse (ConfigError) a database that is not at this sovhub's newest migration; returns the revision.

        Replicas of a fleet never migrate: one Job does (`sovhub migrate`, the chart's pre-upgrade hook),
        and a replica started against an older or newer schema stops here instead of serving from it.
        """
        current = self.current_revision()
        head = self.head_revision()
        if current != head:
            found = f"revision {current}" if current else "no sovhub schema"
            raise ConfigError(
                f"the database {self.safe_url} has {found}, this sovhub needs revision {head}, and "
                "migrate_on_start is off: run `sovhub migrate` (the chart's migration Job) first; nothing was written"
            )
        return current

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the database {self.safe_url}: {exc.orig}") from exc

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
