#!/usr/bin/env bash
# The benchmark, in one command on the GPU machine (repo root):  bash bench/run.sh
#
# Needs there: python3 with torch/triton (the machine's image), the two fla wheels in .whl/
# (carried: flash-linear-attention and fla-core 0.6.0), optionally an lt2c binary at
# bench/.bin/lt2c (carried; built on the CPU machine). Builds nothing. Writes into $OUT
# (or /tmp/bench_out): log, results.jsonl, peaks.json, RESULTS_section.md,
# decode_tokens_per_s.png. Scripts: bench_peaks (ceilings), bench_lt2c (lt2c rows and their checks),
# bench_kernels, bench_e2e (one model: eager, then torch.compile), bench_report.
# Every step runs under its own time limit, taken from one overall
# budget (BENCH_BUDGET_S, default 530 s); rows that do not fit are written as "dropped".
# The whole sweep needs about 15 minutes of GPU time, more than one 10-minute device call:
# split it with BENCH_ONLY (e.g. BENCH_ONLY="peaks kernels e2e-lt2", then "peaks lt2c-tiny
# e2e-ouro e2e-dsa"), each call with its own $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export BENCH_OUT="${OUT:-/tmp/bench_out}"
mkdir -p "$BENCH_OUT"
exec > >(tee -a "$BENCH_OUT/log") 2>&1
START=$(date +%s)
BUDGET=${BENCH_BUDGET_S:-530}
RESERVE=25  # kept for the report
export PYTHONUNBUFFERED=1 FLA_CACHE_RESULTS=1

# fla-core holds fla.ops (the kernels); the flash-linear-attention wheel (fla.layers/models) is
# carried but not installed: its import pulls in transformers (about 20 s per process), and the
# benchmark calls the ops as fla's GatedDeltaNet layer does (see bench_model.py).
if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/fla_core-*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/python"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true

step() {  # step CAP_SECONDS LABEL command...   (BENCH_ONLY="label ..." runs only those steps)
  local cap=$1 label=$2; shift 2
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $label "* ]]; then return; fi
  local now left t
  now=$(date +%s)
  left=$((START + BUDGET - RESERVE - now))
  t=$(( cap < left ? cap : left ))
  if [ "$t" -lt 15 ]; then
    echo "=== SKIP $label: ${left}s left in the budget"
    echo "{\"section\": \"skipped\", \"row\": \"$label\", \"note\": \"dropped: time budget\"}" >> "$BENCH_OUT/results.jsonl"
    return
  fi
  echo "=== $label (limit ${t}s, $((now - START))s elapsed)"
  BENCH_DEADLINE=$((now + t - 8)) timeout -k 5 "$t" "$@"
  local rc=$?
  echo "=== $label done rc=$rc after $(( $(date +%s) - now ))s"
  if [ "$rc" -ne 0 ]; then
    echo "{\"section\": \"skipped\", \"row\": \"$label\", \"note\": \"exit status $rc (124 = time limit)\"}" >> "$BENCH_OUT/results.jsonl"
  fi
}

LT2C_STATUS="${LT2C_STATUS:-}"
if [ -x bench/.bin/lt2c ]; then
  if grep -q "has no CUDA backend yet" bench/.bin/lt2c; then
    LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }the carried lt2c build has no CUDA backend"
  fi
  LT2C_ID="$(bench/.bin/lt2c --version), sha256 $(sha256sum bench/.bin/lt2c | cut -c1-16)"
  echo "lt2c: $LT2C_ID"
  LT2C_STATUS="${LT2C_STATUS:-carried bench/.bin/lt2c ($LT2C_ID), fp32 CUDA backend: tiny zoo models in every run, the 1.3B size only with BENCH_LT2C_BIG=1}"
else
  LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }no lt2c binary carried"
fi
export LT2C_NOTE="$LT2C_STATUS"

step 25  peaks          python3 bench/bench_peaks.py
step 60  lt2c-tiny      python3 bench/bench_lt2c.py
step 120 kernels        python3 bench/bench_kernels.py --set attn,gdn_lt2,gdn_qwen,dsa
step 110 e2e-lt2        python3 bench/bench_e2e.py --model lt2_full_gdn
step 85  e2e-ouro       python3 bench/bench_e2e.py --model ouro
step 110 e2e-dsa        python3 bench/bench_e2e.py --model lt2_gdn_dsa --compile-prefill 1024,8192
if [ "${BENCH_LT2C_BIG:-0}" = 1 ]; then  # lt2c at the 1.3B size: compile on this machine, then check + time
  step 300 lt2c-big     python3 bench/bench_lt2c.py --big lt2_full_gdn --prompt 1024
fi

python3 bench/bench_report.py --command "bash bench/run.sh" --lt2c-status "$LT2C_STATUS" > /dev/null
echo "=== total $(( $(date +%s) - START ))s"
cat "$BENCH_OUT/RESULTS_section.md"
