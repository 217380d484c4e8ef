"""Alembic environment: runs against the engine sovhub hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from sovhub.store.base import Base
from sovhub.store.db import import_table_modules

import_table_modules()
target_metadata = Base.metadata


def run() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run()
