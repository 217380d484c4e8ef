"""The container image's invariants, read from the Dockerfile (no container engine runs on these machines), and
the one install script that the image, `make` and CI share."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORDS = re.compile(r"secret|master_key|password|token|api_key|database_url", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions((ROOT / "Dockerfile").read_text()):
        if word == "FROM":
            found.append([])
        if found:
            found[-1].append((word, rest))
    return found


def test_multi_stage_and_the_final_stage_runs_as_an_unprivileged_user() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "a build stage (compiler) and a runtime stage without it"
    final = all_stages[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage must switch user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "a numeric non-root uid (Kubernetes' runAsNonRoot checks it)"
    after_user = final[[w for w, _ in final].index("USER"):]
    assert not [r for w, r in after_user if w == "RUN"], "no RUN after USER: the runtime image only starts the hub"
    assert not any("build-essential" in r for w, r in final if w == "RUN"), "no compiler in the runtime image"


def test_health_check_asks_the_hub() -> None:
    final = stages()[-1]
    checks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0] and "CMD" in checks[0]


def test_install_steps_are_the_shared_script() -> None:
    runs = [rest for stage in stages() for word, rest in stage if word == "RUN"]
    installs = [r for r in runs if "pip" in r or "install.sh" in r]
    assert installs and all("scripts/install.sh" in r and "pip" not in r for r in installs), installs
    makefile = (ROOT / "Makefile").read_text()
    for target in ("runtime", "test"):
        assert re.search(rf"^\tscripts/install\.sh {target}$", makefile, re.MULTILINE), target
    assert "pip install" not in makefile and "pip wheel" not in makefile, "the Makefile installs only through the script"


def test_no_secret_is_baked_in_and_only_sources_are_copied() -> None:
    for stage in stages():
        for word, rest in stage:
            if word in ("ENV", "ARG", "LABEL"):
                assert not SECRET_WORDS.search(rest), rest
            if word in ("COPY", "ADD"):
                assert not re.search(r"sovhub-data|\.key|keystore|\.env\b", rest), rest
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[i for i, line in enumerate(ignore) if not line.startswith("#")][0]] == "*", \
        "everything is ignored but what the build copies"
    for pattern in ("**/*.key", "**/*.kek", "**/secret_key", "**/metrics_token"):
        assert pattern in ignore


def test_read_only_root_writes_only_to_volumes() -> None:
    final = stages()[-1]
    volumes = " ".join(rest for word, rest in final if word == "VOLUME")
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "/var/lib/sovhub" in volumes and "/var/cache/sovhub" in volumes
    assert "SOVHUB_DATA_DIR=/var/lib/sovhub" in env and "XDG_CACHE_HOME=/var/cache/sovhub" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_the_install_script_parses_and_explains_itself() -> None:
    script = ROOT / "scripts" / "install.sh"
    assert script.stat().st_mode & 0o111, "executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "runtime" in shown.stdout and "test" in shown.stdout
    wrong = subprocess.run([str(script), "everything"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "usage" in wrong.stderr
    # The portable llama.cpp build is defined once, in the script.
    assert "-DGGML_NATIVE=OFF" in script.read_text()
    assert "GGML_NATIVE" not in (ROOT / "Makefile").read_text()


def healthcheck_command() -> list[str]:
    final = stages()[-1]
    check = next(rest for word, rest in final if word == "HEALTHCHECK")
    return json.loads(check[check.index("CMD") + 3:].strip())


@pytest.mark.slow
def test_the_health_check_passes_against_the_hub_the_image_starts_and_fails_without_it(tmp_path) -> None:
    """The image's own sequence: `sovhub migrate` (the chart's Job), then `serve --no-migrate`, then its HEALTHCHECK."""
    from tests.server import RemoteHub, free_port, run_cli

    command = healthcheck_command()
    assert command[0] == "python"
    command[0] = sys.executable
    data = tmp_path / "data"
    port = free_port()
    env = {"SOVHUB_PORT": str(port), "SOVHUB_SAFETY__ENABLED": "false", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert "migrated to revision" in run_cli(data, "migrate", env=env).stdout
    down = subprocess.run(command, env={**os.environ, **env}, capture_output=True, timeout=30)
    assert down.returncode != 0, "nothing listens yet: the check must fail"
    hub = RemoteHub(data, env={**env, "SOVHUB_MIGRATE_ON_START": "false"}, port=port)  # as the chart runs it
    hub.start()
    try:
        up = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
        assert up.returncode == 0, up.stderr
    finally:
        hub.stop()
