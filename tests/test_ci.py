"""CI runs what the README says, and that includes lint and types: a finding fails the run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _targets() -> dict[str, tuple[list[str], list[str]]]:
    """{target: (prerequisites, recipe lines)} of the Makefile."""
    targets: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z][\w.-]*):(?!=)\s*(.*)$", line)
        if match:
            current = []
            targets[match.group(1)] = ([p for p in match.group(2).split() if not p.startswith("|")], current)
        elif line.startswith("\t") and current is not None:
            current.append(line.strip())
        elif line.strip() and not line.startswith("#"):
            current = None
    return targets


def test_every_phony_target_exists() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M)
    assert phony is not None
    missing = [t for t in phony.group(1).split() if t not in _targets()]
    assert not missing, f"declared .PHONY but not defined: {missing}"


def test_the_test_command_runs_ruff_and_strict_mypy_before_pytest() -> None:
    targets = _targets()
    assert "check" in targets["test"][0]
    assert {"lint", "typecheck"} <= set(targets["check"][0])
    assert any(line.endswith("ruff check src tests bench") for line in targets["lint"][1])
    assert any(line.endswith("mypy --strict src/sovhub") for line in targets["typecheck"][1])
    assert any("pytest" in line for line in targets["test"][1])


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test    # " in readme
    commands = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith(("#", " ", "export", "if", "fi", "cd", "set", "\t"))]
    assert commands[-1] == "make test"
