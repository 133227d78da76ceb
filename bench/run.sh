#!/usr/bin/env bash
# The benchmark (issue 6) on the GPU machine, repo root. The whole sweep is TWO device calls of
# at most 540 s each (BENCH_BUDGET_S; under 9.5 min with the start-up), each with its own $OUT:
#
#   call 1:  BENCH_PART=1 BENCH_BUDGET_S=540 bash bench/run.sh
#            = BENCH_ONLY="peaks lt2c-tiny lt2c-big e2e-lt2"   (lt2c and PyTorch on LT2 Full+GDN
#              1.3B in the same run)
#   call 2:  BENCH_PART=2 BENCH_BUDGET_S=540 BENCH_MERGE=out/run1/results.jsonl bash bench/run.sh
#            = BENCH_ONLY="peaks kernels-lt2 kernels-rest e2e-dsa e2e-ouro"
#
# carrying .whl, bench/.bin and, for call 2, out/run1 = call 1's $OUT copied into the working
# tree (out/ is git-ignored: name it in the device call's carry list). Call 2's report then
# merges both calls into one table and one plot. Without BENCH_MERGE each call reports its own
# rows; merge them anywhere later with
#   python3 bench/bench_report.py --out out/merged out/run1/results.jsonl out/run2/results.jsonl
# (the plot needs matplotlib; the table does not).
#
# Needs there: python3 with torch/triton (the machine's image), the two fla wheels in .whl/
# (carried: flash-linear-attention and fla-core 0.6.0), optionally an lt2c binary at
# bench/.bin/lt2c (carried; built on the CPU machine). Builds nothing. Writes into $OUT
# (or /tmp/bench_out): log, results.jsonl, peaks.json, command.txt, RESULTS_section.md,
# decode_tokens_per_s.png. Scripts: bench_peaks (ceilings), bench_lt2c (lt2c rows and their
# checks), bench_kernels, bench_e2e (one model: eager, then torch.compile), bench_report.
# Every step runs under its own time limit, taken from one overall budget (BENCH_BUDGET_S,
# default 540 s); rows that do not fit are written as "dropped" with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
export BENCH_OUT="${OUT:-/tmp/bench_out}"
mkdir -p "$BENCH_OUT"
exec > >(tee -a "$BENCH_OUT/log") 2>&1
START=$(date +%s)
BUDGET=${BENCH_BUDGET_S:-540}
RESERVE=25  # kept for the report
export PYTHONUNBUFFERED=1 FLA_CACHE_RESULTS=1

case "${BENCH_PART:-}" in
  1) BENCH_ONLY="peaks lt2c-tiny lt2c-big e2e-lt2" ;;
  2) BENCH_ONLY="peaks kernels-lt2 kernels-rest e2e-dsa e2e-ouro" ;;
  "") ;;
  *) echo "BENCH_PART must be 1 or 2"; exit 2 ;;
esac
CMD="BENCH_ONLY=\"${BENCH_ONLY:-}\" BENCH_BUDGET_S=$BUDGET bash bench/run.sh"
[ -n "${BENCH_PART:-}" ] && CMD="BENCH_PART=$BENCH_PART BENCH_BUDGET_S=$BUDGET bash bench/run.sh (BENCH_ONLY=\"$BENCH_ONLY\")"
echo "$CMD" > "$BENCH_OUT/command.txt"
echo "command: $CMD"

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
    echo "{\"section\": \"skipped\", \"row\": \"$label\", \"note\": \"dropped: time budget (${left} s left of $BUDGET)\"}" >> "$BENCH_OUT/results.jsonl"
    return
  fi
  echo "=== $label (limit ${t}s, $((now - START))s elapsed)"
  BENCH_DEADLINE=$((now + t - 8)) timeout -k 5 "$t" "$@"
  local rc=$?
  echo "=== $label done rc=$rc after $(( $(date +%s) - now ))s"
  if [ "$rc" -ne 0 ]; then
    echo "{\"section\": \"skipped\", \"row\": \"$label\", \"note\": \"exit status $rc (124 = time limit): rows after the last one it wrote are missing\"}" >> "$BENCH_OUT/results.jsonl"
  fi
}

LT2C_STATUS="${LT2C_STATUS:-}"
if [ -x bench/.bin/lt2c ]; then
  if grep -q "has no CUDA backend yet" bench/.bin/lt2c; then
    LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }the carried lt2c build has no CUDA backend"
  fi
  LT2C_ID="$(bench/.bin/lt2c --version), sha256 $(sha256sum bench/.bin/lt2c | cut -c1-16)"
  if bench/.bin/lt2c --help 2>&1 | grep -q -- "--dtype"; then LT2C_DT="fp32 and --dtype bf16"; else LT2C_DT="fp32 only (no --dtype)"; fi
  echo "lt2c: $LT2C_ID, $LT2C_DT"
  LT2C_STATUS="${LT2C_STATUS:-carried bench/.bin/lt2c ($LT2C_ID), CUDA backend, $LT2C_DT: tiny zoo models (fp32) and LT2 Full+GDN at 1.3B, each after its check in the same call}"
else
  LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }no lt2c binary carried"
fi
export LT2C_NOTE="$LT2C_STATUS"
echo "$LT2C_STATUS" > "$BENCH_OUT/lt2c_status.txt"

# caps: the estimates of an H100 run (see RESULTS.md) plus margin; the budget cuts the last step
step 25  peaks          python3 bench/bench_peaks.py
step 60  lt2c-tiny      python3 bench/bench_lt2c.py
step 200 lt2c-big       python3 bench/bench_lt2c.py --big lt2_full_gdn --runs 1024:fp32,1024:bf16,8192:bf16,8192:fp32
step 130 kernels-lt2    python3 bench/bench_kernels.py --set gdn_lt2
step 170 kernels-rest   python3 bench/bench_kernels.py --set attn,dsa,gdn_qwen
step 200 e2e-lt2        python3 bench/bench_e2e.py --model lt2_full_gdn
step 250 e2e-dsa        python3 bench/bench_e2e.py --model lt2_gdn_dsa
step 170 e2e-ouro       python3 bench/bench_e2e.py --model ouro

python3 bench/bench_report.py --out "$BENCH_OUT" ${BENCH_MERGE:-} "$BENCH_OUT/results.jsonl" > /dev/null
echo "=== total $(( $(date +%s) - START ))s"
cat "$BENCH_OUT/RESULTS_section.md"
