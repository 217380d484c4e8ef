#!/usr/bin/env bash
# The foundation benchmarks (docs/benchmarks.md, "Foundation: gateway, inference, memory"), in order.
# Each writes bench/results/<name>.json and prints its table. Loopback only, bounded in time:
# gateway ~25 min (3 repetitions), inference ~12 min (60 repetitions), memory 10 min + start-up.
#
#   bench/foundation.sh                 # all three
#   bench/foundation.sh gateway         # one of: gateway inference memory
#
# LiteLLM for the gateway comparison lives in its own virtualenv, outside the repo:
#   python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]==1.81.0'
# (any release except 1.82.7 and 1.82.8, which carried a credential stealer on PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
what=${1:-all}
if [[ $what == all || $what == gateway ]]; then $PY bench/gateway_bench.py --reps "${REPS:-3}"; fi
if [[ $what == all || $what == inference ]]; then
  $PY bench/inference_bench.py --reps "${REPS:-60}" --rotate --name inference-rot --variant noguards:SOVHUB_SAFETY__ENABLED=false
fi
if [[ $what == all || $what == memory ]]; then $PY bench/memory_soak.py --duration-s "${SOAK_S:-600}" --rate "${SOAK_RATE:-10}"; fi
