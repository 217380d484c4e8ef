"""Storage: SQLAlchemy 2 tables, the engine, Alembic migrations, and the repositories over them."""
