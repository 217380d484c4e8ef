"""The CLI contract: exact commands, clear errors, non-zero exits on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sovhub.cli import cli, main


def run(data_dir: Path, *args: str, input: str | None = None):
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], input=input, catch_exceptions=True)
    return result


def run_main(data_dir: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(["--data-dir", str(data_dir), *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_is_idempotent(data_dir: Path, capsys) -> None:
    assert run_main(data_dir, "init", capsys=capsys)[0] == 0
    assert (data_dir / "sovhub.toml").is_file() and (data_dir / "sovhub.db").is_file()
    secret = data_dir / "secret_key"
    assert secret.stat().st_mode & 0o777 == 0o600  # a random secret, no public default to forge with
    written = secret.read_text()
    code, out, _ = run_main(data_dir, "init", capsys=capsys)
    assert code == 0 and "already initialized" in out
    assert secret.read_text() == written


def test_init_records_jurisdiction(data_dir: Path, capsys) -> None:
    assert run_main(data_dir, "init", "--jurisdiction", "ua", capsys=capsys)[0] == 0
    assert 'jurisdiction = "UA"' in (data_dir / "sovhub.toml").read_text()
    code, _, err = run_main(data_dir, "init", "--jurisdiction", "XX", capsys=capsys)
    assert code == 1 and "unknown jurisdiction 'XX'" in err


def test_orgs_and_keys_flow(data_dir: Path, capsys) -> None:
    assert run_main(data_dir, "orgs", "create", "acme", capsys=capsys)[0] == 0
    code, out, err = run_main(data_dir, "keys", "create", "--org", "acme", "--rpm", "10", capsys=capsys)
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("sk-sov-") and "_" in secret
    prefix = secret.split("_")[0]
    code, out, _ = run_main(data_dir, "keys", "list", capsys=capsys)
    assert prefix in out and "active" in out and secret not in out
    assert run_main(data_dir, "keys", "revoke", prefix, capsys=capsys)[0] == 0
    assert "revoked" in run_main(data_dir, "keys", "list", capsys=capsys)[1]


def test_keys_create_scope_and_expiry(data_dir: Path, capsys) -> None:
    assert run_main(data_dir, "orgs", "create", "acme", capsys=capsys)[0] == 0
    code, _, err = run_main(data_dir, "keys", "create", "--org", "acme", capsys=capsys)
    assert code == 0 and "scopes inference, admin" in err  # the first key of an organization manages the others
    code, _, err = run_main(data_dir, "keys", "create", "--org", "acme", "--expires", "2999-01-31", capsys=capsys)
    assert code == 0 and "scopes inference;" in err
    code, _, err = run_main(data_dir, "keys", "create", "--org", "acme", "--scope", "admin", capsys=capsys)
    assert code == 0 and "scopes inference, admin" in err
    listed = run_main(data_dir, "keys", "list", capsys=capsys)[1].splitlines()
    assert [line.split("\t")[3] for line in listed] == ["inference,admin", "inference", "inference,admin"]
    code, _, err = run_main(data_dir, "keys", "create", "--org", "acme", "--scope", "root", capsys=capsys)
    assert code == 2 and "'root' is not one of" in err
    code, _, err = run_main(data_dir, "keys", "create", "--org", "acme", "--expires", "2001-01-01", capsys=capsys)
    assert code == 1 and "is not in the future" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "create", "--org", "ghost"), "no organization named 'ghost'"),
        (("orgs", "create", "../bad"), "invalid organization"),
        (("keys", "revoke", "sk-sov-nothing"), "no API key"),
        (("backends", "add", "x", "--url", "ftp://host"), "invalid URL"),
        (("backends", "add", "x"), "exactly one of --url"),
        (("backends", "add", "Bad Name", "--url", "http://h/v1"), "invalid backend name"),
        (("backends", "add", "x", "--gguf", "/no/such.gguf"), "GGUF file not found"),
        (("backends", "add", "x", "--url", "http://h/v1", "--jurisdiction", "ZZ"), "unknown jurisdiction"),
        (("backends", "remove", "ghost"), "no backend named"),
    ],
)
def test_bad_input_is_a_clear_error(data_dir: Path, capsys, args: tuple[str, ...], message: str) -> None:
    code, _, err = run_main(data_dir, *args, capsys=capsys)
    assert code == 1
    assert message in err and "Traceback" not in err


def test_duplicate_org_and_backend(data_dir: Path, capsys) -> None:
    run_main(data_dir, "orgs", "create", "acme", capsys=capsys)
    assert run_main(data_dir, "orgs", "create", "acme", capsys=capsys)[0] == 1
    assert run_main(data_dir, "backends", "add", "up", "--url", "http://127.0.0.1:1/v1", "--model", "m",
                    capsys=capsys)[0] == 0
    code, _, err = run_main(data_dir, "backends", "add", "up", "--url", "http://127.0.0.1:1/v1", capsys=capsys)
    assert code == 1 and "already exists" in err


def test_backends_and_models_list(data_dir: Path, capsys) -> None:
    run_main(data_dir, "backends", "add", "vllm", "--url", "http://10.1.1.1:8000/v1", "--model", "qwen",
             "--jurisdiction", "PL", "--operator", "Ministry", capsys=capsys)
    out = run_main(data_dir, "backends", "list", capsys=capsys)[1]
    assert "embedded" in out.splitlines()[0] and "vllm\topenai\thttp://10.1.1.1:8000/v1\tqwen\tPL\tMinistry" in out
    models = run_main(data_dir, "models", "list", capsys=capsys)[1]
    assert "smollm2-135m-instruct" in models and "qwen\tvllm" in models and "multilingual-e5-small" in models


def test_gguf_backend_registration(data_dir: Path, capsys, tmp_path: Path) -> None:
    gguf = tmp_path / "My-Model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    code, out, _ = run_main(data_dir, "backends", "add", "local2", "--gguf", str(gguf), capsys=capsys)
    assert code == 0 and "embedded" in out
    assert "my-model.q4\tlocal2" in run_main(data_dir, "models", "list", capsys=capsys)[1]


def test_usage_error_exits_2(data_dir: Path, capsys) -> None:
    assert run_main(data_dir, "keys", "create", capsys=capsys)[0] == 2
    assert run_main(data_dir, "nonsense", capsys=capsys)[0] == 2


def test_bad_config_is_reported(data_dir: Path, capsys) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "sovhub.toml").write_text("port = 'x'\n")
    code, _, err = run_main(data_dir, "orgs", "list", capsys=capsys)
    assert code == 1 and "port" in err


def _key_with_limits(data_dir: Path, capsys: pytest.CaptureFixture[str], *limits: str) -> str:
    assert run_main(data_dir, "orgs", "create", "acme", capsys=capsys)[0] == 0
    code, out, _ = run_main(data_dir, "keys", "create", "--org", "acme", *limits, capsys=capsys)
    assert code == 0
    return out.strip().splitlines()[-1].split("_")[0]


def _stored_limits(data_dir: Path, prefix: str) -> dict[str, int]:
    from sovhub.accounts import list_keys
    from sovhub.hub import build_hub
    from sovhub.settings import load_settings

    hub = build_hub(load_settings(data_dir=str(data_dir)))
    try:
        return next(dict(k.limits) for k, _ in list_keys(hub) if k.prefix == prefix)
    finally:
        hub.close()


def test_keys_set_limits_changes_and_clears(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _key_with_limits(data_dir, capsys, "--rpm", "10", "--tpd", "500")
    code, out, _ = run_main(data_dir, "keys", "set-limits", prefix, "--rpm", "60", "--budget-month", "9000",
                            "--clear", "tpd", capsys=capsys)
    assert code == 0 and out.strip() == f"limits of {prefix}: budget_month=9000, rpm=60"
    assert _stored_limits(data_dir, prefix) == {"rpm": 60, "budget_month": 9000}
    code, out, _ = run_main(data_dir, "keys", "set-limits", prefix, "--clear", "budget-month", capsys=capsys)
    assert code == 0 and out.strip() == f"limits of {prefix}: rpm=60"
    code, out, _ = run_main(data_dir, "keys", "set-limits", prefix, "--clear", "all", capsys=capsys)
    assert code == 0 and out.strip() == f"limits of {prefix}: none"
    assert _stored_limits(data_dir, prefix) == {}


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("sk-sov-nothing", "--rpm", "5"), 1, "no API key with prefix 'sk-sov-nothing'"),
        (("PREFIX", "--rpm", "-1"), 2, "Invalid value for '--rpm'"),
        (("PREFIX", "--tpm", "lots"), 2, "Invalid value for '--tpm'"),
        (("PREFIX", "--clear", "rps"), 1, "unknown limit 'rps'"),
        (("PREFIX", "--rpm", "5", "--clear", "rpm"), 2, "--clear rpm contradicts --rpm"),
        (("PREFIX",), 2, "give at least one limit"),
        (("PREFIX", "--rps", "5"), 2, "No such option '--rps'"),
    ],
)
def test_keys_set_limits_bad_input(
    data_dir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], exit_code: int, message: str
) -> None:
    prefix = _key_with_limits(data_dir, capsys, "--rpm", "10")
    code, _, err = run_main(data_dir, "keys", "set-limits", *(a.replace("PREFIX", prefix) for a in args),
                            capsys=capsys)
    assert code == exit_code
    assert message in err and "Traceback" not in err
    assert _stored_limits(data_dir, prefix) == {"rpm": 10}


def test_keys_set_limits_refuses_a_revoked_key(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _key_with_limits(data_dir, capsys, "--rpm", "10")
    assert run_main(data_dir, "keys", "revoke", prefix, capsys=capsys)[0] == 0
    code, _, err = run_main(data_dir, "keys", "set-limits", prefix, "--rpm", "99", capsys=capsys)
    assert code == 1 and f"API key {prefix} is revoked" in err
    assert _stored_limits(data_dir, prefix) == {"rpm": 10}


def test_keys_set_limits_keeps_a_minted_key_within_its_creator(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sovhub.accounts import authenticate, create_key
    from sovhub.hub import build_hub
    from sovhub.settings import load_settings

    assert run_main(data_dir, "orgs", "create", "acme", capsys=capsys)[0] == 0
    code, out, _ = run_main(data_dir, "keys", "create", "--org", "acme", "--rpm", "10", capsys=capsys)
    secret = out.strip().splitlines()[-1]  # the organization's first key: admin, it may mint keys
    hub = build_hub(load_settings(data_dir=str(data_dir)))
    try:
        child = create_key(hub, "acme", creator=authenticate(hub, secret)).prefix
    finally:
        hub.close()
    code, _, err = run_main(data_dir, "keys", "set-limits", child, "--rpm", "99", capsys=capsys)
    assert code == 1 and "rpm=99 is above rpm=10" in err and "Traceback" not in err
    code, _, err = run_main(data_dir, "keys", "set-limits", child, "--clear", "all", capsys=capsys)
    assert code == 1 and "no limit is above rpm=10" in err
    assert _stored_limits(data_dir, child) == {"rpm": 10}
