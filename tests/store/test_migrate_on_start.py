"""A replica with migrate_on_start off (`serve --no-migrate`, the chart's gateway) refuses a database that is not at
its schema, names the revisions, and writes nothing; `sovhub migrate` (the chart's Job) is the one step that migrates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command

import sovhub
from sovhub.errors import ConfigError
from sovhub.hub import build_hub
from sovhub.store.db import Database
from tests.conftest import make_settings, run_cli


def test_serve_no_migrate_refuses_an_empty_database_and_writes_nothing(database_url, data_dir) -> None:
    settings = make_settings(data_dir, database_url=database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVHUB_")}
    env["PYTHONPATH"] = str(Path(sovhub.__file__).parents[1])
    if database_url:
        env["SOVHUB_DATABASE_URL"] = database_url
    served = subprocess.run([sys.executable, "-m", "sovhub", "--data-dir", str(data_dir), "serve", "--no-migrate",
                             "--port", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert served.returncode == 1, served.stderr
    assert "has no sovhub schema" in served.stderr and "run `sovhub migrate`" in served.stderr
    assert "serving at" not in served.stderr
    with pytest.raises(ConfigError, match="migrate_on_start is off"):
        build_hub(make_settings(data_dir, database_url=database_url, migrate_on_start=False))
    db = Database(settings.resolved_database_url)
    assert db.table_names() == [] and db.current_revision() is None  # nothing was created
    db.dispose()


def test_a_database_one_migration_behind_is_refused_until_the_job_runs(database_url, data_dir, capsys) -> None:
    settings = make_settings(data_dir, database_url=database_url, migrate_on_start=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    head = db.head_revision()
    command.upgrade(db.alembic_config(), "0009")
    with pytest.raises(ConfigError) as refused:
        build_hub(settings)
    assert "revision 0009" in refused.value.message and f"needs revision {head}" in refused.value.message
    assert db.current_revision() == "0009"

    if database_url is None:  # the CLI, as the chart runs it (the PostgreSQL URL lives in settings here)
        assert run_cli(data_dir, "migrate", "--check") == 1
        assert "revision 0009" in capsys.readouterr().err
        assert run_cli(data_dir, "migrate") == 0
        assert f"migrated to revision {head} (from 0009)" in capsys.readouterr().out
        assert run_cli(data_dir, "migrate", "--check") == 0
    else:
        db.migrate()
    assert db.current_revision() == head
    hub = build_hub(settings)  # now the replica starts
    assert hub.db.current_revision() == head
    hub.close()
    db.dispose()


def test_migrate_reports_an_unreachable_database_clearly(data_dir, capsys) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "sovhub.toml").write_text('database_url = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n')
    assert run_cli(data_dir, "migrate", "--check") == 1
    assert "cannot reach the database" in capsys.readouterr().err
