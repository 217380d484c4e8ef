from __future__ import annotations

from pathlib import Path

import pytest

from sovhub.cli import initialize
from sovhub.errors import ConfigError
from sovhub.settings import Settings, load_settings


def test_defaults_and_sqlite_in_data_dir(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path / "d"))
    assert s.port == 8080 and s.host == "127.0.0.1"
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'd' / 'sovhub.db').resolve()}"


def test_env_overrides_toml_and_nested_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "sovhub.toml").write_text('port = 9000\nlog_level = "debug"\n[safety]\nenabled = false\n')
    s = load_settings(data_dir=str(d))
    assert s.port == 9000 and s.log_level == "debug" and s.safety.enabled is False
    monkeypatch.setenv("SOVHUB_PORT", "9100")
    monkeypatch.setenv("SOVHUB_SAFETY__ENABLED", "true")
    s = load_settings(data_dir=str(d))
    assert s.port == 9100 and s.safety.enabled is True
    assert load_settings(data_dir=str(d), port=9200).port == 9200


def test_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVHUB_DATA_DIR", str(tmp_path / "e"))
    assert load_settings().data_dir == tmp_path / "e"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 70000}, "port"),
        ({"database_url": "mysql://x"}, "database_url"),
        ({"secret_key": "dev-insecure-secret"}, "secret_key"),
        ({"secret_key": "dev-insecure-secret", "environment": "development"}, "published default"),
        ({"secret_key": "short-but-not-default"}, "shorter than 32"),
        ({"secret_key": "a" * 40}, "distinct characters"),
        ({"log_level": "loud"}, "log_level"),
        ({"max_body_bytes": 5}, "max_body_bytes"),
    ],
)
def test_invalid_values_are_one_clear_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(data_dir=str(tmp_path), **overrides)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sovhub.toml").write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(data_dir=str(tmp_path))


def test_broken_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sovhub.toml").write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(data_dir=str(tmp_path))


def test_init_writes_every_setting_commented_and_the_file_loads(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path / "d"))
    assert initialize(s) is True
    text = s.config_path.read_text()
    for name, field in Settings.model_fields.items():
        if name != "data_dir" and not hasattr(field.annotation, "model_fields"):
            assert f"# {name} = " in text, name
    assert load_settings(data_dir=str(tmp_path / "d")) == s
    assert initialize(s) is False


def test_postgres_url_gets_the_psycopg_driver(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path), database_url="postgresql://u@h/db")
    assert s.resolved_database_url == "postgresql+psycopg://u@h/db"


def test_secret_key_is_written_once_per_data_dir_and_kept_private(tmp_path: Path) -> None:
    first = load_settings(data_dir=str(tmp_path))
    assert first.secret_key is None
    key = first.signing_key
    path = tmp_path / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(key) >= 32 and key != "dev-insecure-secret"
    assert load_settings(data_dir=str(tmp_path)).signing_key == key  # the next start signs with the same key
    assert load_settings(data_dir=str(tmp_path / "other")).signing_key != key


def test_a_weak_secret_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("dev-insecure-secret\n")
    with pytest.raises(ConfigError, match="published default"):
        _ = load_settings(data_dir=str(tmp_path)).signing_key



def test_processes_starting_together_agree_on_one_secret_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sovhub.secret_key import load_or_create_secret_key

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_or_create_secret_key(tmp_path), range(32)))
    assert len(keys) == 1  # nobody read a half-written file or kept a key that lost the race
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no drafts left behind


def test_the_default_toml_uncommented_reads_back_as_the_defaults() -> None:
    """`init` writes every setting commented out; each line must be valid TOML once uncommented."""
    import re
    import tomllib

    from sovhub.settings import Settings, default_toml

    defaults = Settings()
    text = default_toml(defaults)
    setting = re.compile(r"^# [a-z_]+ = ")
    lines = [line[2:] if setting.match(line) else line for line in text.splitlines()]
    parsed = tomllib.loads("\n".join(lines))
    assert parsed["assistant"]["model_languages"] == {"smollm2-135m-instruct": ["en"]}
    assert parsed["assistant"]["kb_min_similarity"] == 0.83
