#!/usr/bin/env bash
# Every figure of docs/benchmarks.md that the current code can reproduce, each with the settings the
# page states (the command recorded in each result file's "config"). Each step writes
# bench/results/<name>.json (commit, machine, load average, config, every run) and prints its table.
# Loopback only, bounded in time; run on an idle machine (`uptime` first: see docs/benchmarks.md).
#
#   bench/foundation.sh                 # the foundation steps: floor gateway guards inference memory (~2 h)
#   bench/foundation.sh everything      # and the other sections' steps (services too: see below)
#   bench/foundation.sh STEP...         # any of the steps below
#
# Steps (result files):
#   floor      loopback floor, 100 RPS x 3                                  loopback-floor.json        ~1 min
#   gateway    gateway overhead, guards off, rate ladder to 1500, 3 reps    gateway.json               ~13 min
#   guards     gateway guards on: same message / distinct messages          gateway-guards{,-distinct}.json ~5 min
#   inference  embedded TTFT/decode, 128 tokens, rotated, 60 reps, guards on and off
#                                                                           inference-rot.json         ~12 min
#   ttft32     the same at 32 tokens; and with safety.encoder_threads = 2   inference-ttft-variants-rot.json,
#                                                                           inference-ttft-enc2.json   ~20 min
#   memory     memory soak, 100 RPS, guards off, 60 s warm-up + 600 s        memory.json                ~12 min
#   safety     moderation latency per encoder + eval                        safety.json                ~10 min
#   everyday   everyday false positives and hazard recall                   everyday.json              ~2 min
#   output     output check on the bundled model's saved answers + harmful  output-fpr.json            ~1 min
#   window     semantic guard window sizes                                  window-probe.json          ~3 min
#   pii        PII analyzer vs plain Presidio, 40 rounds x 3 runs           pii.json                   ~1 min
#   web        chat page server time and weight, 3 runs                     web.json                   ~3 min
#   retrieval  knowledge base retrieval (100,000 passages) and ingestion    retrieval.json             ~10 min
#   grounded   grounded answers in 8 languages, answer-check calibration, both calibration sets and held-out
#              grounded-answering-calibration.json, grounded(-calib2)(-heldout).json   ~10 min
# The credits, replicas and batches sections' steps (PostgreSQL and Redis: SOVHUB_BENCH_DATABASE_URL,
# SOVHUB_BENCH_REDIS_URL for ledger and credits-kill; replicas starts its own redis-server and HAProxy):
#   ledger       ledger throughput, 20,000 transfers x 3 per mode and batch  ledger.json                ~12 min
#   credits      gateway with credits on against off, 500+150 RPS, 3 reps    credits.json               ~8 min
#   credits-kill 3 replicas, 64 clients, one killed with SIGKILL              credits-replicas-kill.json ~1 min
#   replicas     1-3 replicas behind HAProxy, 40 RPS, 3 runs                  replicas.json              ~10 min
#   batch        batch throughput and the carbon-aware scheduler, 3 rounds    batch.json                 ~15 min
#
# LiteLLM for the gateway comparison lives in its own virtualenv, outside the repo:
#   python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]==1.81.0'
# (any release except 1.82.7 and 1.82.8, which carried a credential stealer on PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD/src}
NOGUARDS=SOVHUB_SAFETY__ENABLED=false

step() {
  case $1 in
    floor) $PY bench/loopback_floor.py --rate 100 --runs 3 ;;
    gateway) $PY bench/gateway_bench.py --reps "${REPS:-3}" --sovhub-env $NOGUARDS \
               --ladder 25,50,100,150,200,300,400,500,600,800,1000,1500 ;;
    guards)
      $PY bench/gateway_bench.py --reps 1 --no-litellm --ladder 10,25,50,75,100,150,200,300 --low-rate 10 \
        --name gateway-guards
      $PY bench/gateway_bench.py --reps 1 --no-litellm --distinct 20000 --ladder 25,50,75,100,125,150,200,300 \
        --name gateway-guards-distinct ;;
    inference) $PY bench/inference_bench.py --reps 60 --rotate --name inference-rot --variant noguards:$NOGUARDS ;;
    ttft32)
      $PY bench/inference_bench.py --reps 60 --rotate --max-tokens 32 --name inference-ttft-variants-rot \
        --variant noguards:$NOGUARDS
      $PY bench/inference_bench.py --reps 60 --rotate --max-tokens 32 --name inference-ttft-enc2 \
        --variant enc2:SOVHUB_SAFETY__ENCODER_THREADS=2 --variant noguards:$NOGUARDS ;;
    memory) $PY bench/memory_soak.py --rate 100 --duration-s 600 --sovhub-env $NOGUARDS ;;
    safety) $PY bench/safety_bench.py --runs 5 ;;
    everyday) $PY bench/everyday_bench.py --name everyday ;;
    output) $PY bench/output_fpr.py --answers tests/safety/data/model_answers.jsonl ;;
    window) $PY bench/window_probe.py --window 160:40 --window 200:50 --window 240:60 --window 320:80 ;;
    pii) $PY bench/pii_bench.py --rounds 40 --runs 3 ;;
    web) $PY bench/web_bench.py --requests 300 --runs 3 ;;
    retrieval) $PY bench/retrieval_bench.py --runs 3 --queries 100 --pages 4 ;;
    grounded) $PY bench/answering_calibrate.py
      $PY bench/grounded_bench.py
      $PY bench/grounded_bench.py --set calib2
      $PY bench/grounded_bench.py --set heldout ;;
    ledger) : "${SOVHUB_BENCH_DATABASE_URL:?set SOVHUB_BENCH_DATABASE_URL to a PostgreSQL URL}"
      $PY bench/ledger_bench.py --transfers 20000 --reps 3 ;;
    credits) $PY bench/credits_bench.py --reps 3 --rates 500,150 ;;
    credits-kill) : "${SOVHUB_BENCH_DATABASE_URL:?set it}" "${SOVHUB_BENCH_REDIS_URL:?set it}"
      $PY bench/credits_replicas_bench.py --kill ;;
    replicas) $PY bench/replicas_bench.py --runs 3 --replicas 1,2,3 --duration 6 --rate 40 ;;
    batch) $PY bench/batch_bench.py --rounds 3 ;;
    *) echo "unknown step: $1 (see the list at the top of $0)" >&2; return 2 ;;
  esac
}

FOUNDATION=(floor gateway guards inference ttft32 memory)
OTHERS=(safety everyday output window pii web retrieval grounded)
SERVICES=(ledger credits credits-kill replicas batch)
if [[ $# -eq 0 ]]; then set -- "${FOUNDATION[@]}"; fi
if [[ $1 == everything ]]; then set -- "${FOUNDATION[@]}" "${OTHERS[@]}" "${SERVICES[@]}"; fi
for s in "$@"; do echo "== $s" >&2; step "$s"; done
