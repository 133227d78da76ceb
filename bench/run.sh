#!/usr/bin/env bash
# The benchmark (issue 6) on the GPU machine, repo root. The whole sweep is two parts of at most
# 540 s each (BENCH_BUDGET_S): side by side in ONE device call on a two-GPU host with
# bench/sweep.sh (the way to run it), or as two device calls, each with its own $OUT:
#
#   call 1:  BENCH_PART=1 BENCH_BUDGET_S=540 bash bench/run.sh
#            = BENCH_ONLY="peaks lt2c-tiny lt2c-big e2e-lt2 kernels-rest lt2c-kernels"   (lt2c and
#              PyTorch on LT2 Full+GDN 1.3B in the same run; then the SDPA, DSA and Qwen-style GDN
#              kernel rows, and lt2c's kernels alone on every kernel shape)
#   call 2:  BENCH_PART=2 BENCH_BUDGET_S=540 BENCH_MERGE=out/run1/results.jsonl bash bench/run.sh
#            = BENCH_ONLY="peaks lt2c-prep kernels-lt2 e2e-ouro lt2c-ouro e2e-dsa lt2c-dsa"   (lt2c
#              and PyTorch on LT2 GDN+DSA 1.3B and Ouro-1.4B-shaped in the same run; LT2's GDN kernels)
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
# default 540 s); rows that do not fit are written as "dropped" with the reason. BENCH_CAP_PERCENT
# scales every step's cap (sweep.sh raises it for a part with few steps on a GPU of its own).
# lt2c-prep (call 2) is the one background step: the ONNX files and lt2c compiles of GDN+DSA and
# Ouro (CPU and disk only: weights drawn on the CPU, the GPU hidden from it) run beside
# kernels-lt2 (GPU kernels timed with CUDA events; its first minute is fla's autotuning);
# lt2c-dsa and lt2c-ouro then use them (waiting for them if need be).
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
  1) BENCH_ONLY="peaks lt2c-tiny lt2c-big e2e-lt2 kernels-rest lt2c-kernels" ;;
  2) BENCH_ONLY="peaks lt2c-prep kernels-lt2 e2e-ouro lt2c-ouro e2e-dsa lt2c-dsa" ;;
  "") ;;
  *) echo "BENCH_PART must be 1 or 2"; exit 2 ;;
esac
CMD="BENCH_ONLY=\"${BENCH_ONLY:-}\" BENCH_BUDGET_S=$BUDGET bash bench/run.sh"
[ -n "${BENCH_PART:-}" ] && CMD="BENCH_PART=$BENCH_PART BENCH_BUDGET_S=$BUDGET bash bench/run.sh (BENCH_ONLY=\"$BENCH_ONLY\")"
# bench/sweep.sh runs the two parts side by side, one GPU each: say which
[ -n "${CUDA_VISIBLE_DEVICES:-}" ] && CMD="CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES $CMD"
echo "$CMD" > "$BENCH_OUT/command.txt"
echo "command: $CMD"

# fla-core holds fla.ops (the kernels); the flash-linear-attention wheel (fla.layers/models) is
# carried but not installed: its import pulls in transformers (about 20 s per process), and the
# benchmark calls the ops as fla's GatedDeltaNet layer does (see bench_model.py).
# Each run installs into a folder of its own: sweep.sh's parts start together, and pip
# installs racing into one folder failed (part 2 of the seventh-session sweep ran without fla).
if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  SITE=$(mktemp -d /tmp/bench_site.XXXXXX)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/fla_core-*.whl \
    && export PYTHONPATH="$SITE"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/python"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true

step() {  # step CAP_SECONDS LABEL command...   (BENCH_ONLY="label ..." runs only those steps)
  local cap=$(( $1 * ${BENCH_CAP_PERCENT:-100} / 100 )) label=$2; shift 2
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

bg_step() {  # bg_step CAP LABEL command...: start it in the background (CPU work beside the GPU steps); its log: $BENCH_OUT/LABEL.log
  local cap=$1 label=$2; shift 2
  if [ -n "${BENCH_ONLY:-}" ] && [[ " $BENCH_ONLY " != *" $label "* ]]; then return 1; fi
  local now
  now=$(date +%s)
  echo "=== $label: started in the background (limit ${cap}s, $((now - START))s elapsed; its log: $label.log)"
  ( BENCH_DEADLINE=$((now + cap - 8)) timeout -k 5 "$cap" "$@" > "$BENCH_OUT/$label.log" 2>&1 &
    echo $! > "$BG_DIR/$label.pid"
    wait $!
    rc=$?
    echo "=== $label (background) done rc=$rc after $(( $(date +%s) - now ))s, $(( $(date +%s) - START ))s elapsed"
    if [ "$rc" -ne 0 ]; then
      echo "{\"section\": \"skipped\", \"row\": \"$label\", \"note\": \"background step: exit status $rc (124 = time limit); see $label.log\"}" >> "$BENCH_OUT/results.jsonl"
    fi ) &
  BG_PIDS="${BG_PIDS:-} $!"
}

LT2C_STATUS="${LT2C_STATUS:-}"
if [ -x bench/.bin/lt2c ]; then
  if grep -q "has no CUDA backend yet" bench/.bin/lt2c; then
    LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }the carried lt2c build has no CUDA backend"
  fi
  LT2C_ID="$(bench/.bin/lt2c --version), sha256 $(sha256sum bench/.bin/lt2c | cut -c1-16)"
  if bench/.bin/lt2c --help 2>&1 | grep -q -- "--dtype"; then LT2C_DT="fp32 and --dtype bf16"; else LT2C_DT="fp32 only (no --dtype)"; fi
  echo "lt2c: $LT2C_ID, $LT2C_DT"
  case "${BENCH_PART:-}" in
    1) LT2C_WHAT="tiny zoo models (fp32) and LT2 Full+GDN at 1.3B (fp32 and bf16)" ;;
    2) LT2C_WHAT="LT2 GDN+DSA and Ouro-1.4B-shaped at 1.3B (bf16 timed, fp32 built for the check; their ONNX and compiles ran in the background beside kernels-lt2, CPU and disk only)" ;;
    *) LT2C_WHAT="tiny zoo models (fp32), LT2 Full+GDN at 1.3B (fp32 and bf16), LT2 GDN+DSA and Ouro at 1.3B (bf16)" ;;
  esac
  LT2C_STATUS="${LT2C_STATUS:-carried bench/.bin/lt2c ($LT2C_ID), CUDA backend, $LT2C_DT: $LT2C_WHAT, each after its check in the same call}"
else
  LT2C_STATUS="${LT2C_STATUS:+$LT2C_STATUS; }no lt2c binary carried"
fi
# The 1.3B lt2c steps run only after the tiny-model checks passed: in this call (lt2c-tiny), or
# in the merged call 1 of the same sweep (call 2 has no lt2c-tiny step)
for f in ${BENCH_MERGE:-}; do
  d=$f; [ -d "$d" ] || d=$(dirname "$f")
  if [ -e "$d/lt2c_tiny_ok" ]; then
    export LT2C_TINY_OK="$d/lt2c_tiny_ok"
    [ "${BENCH_PART:-}" = 2 ] && LT2C_STATUS="$LT2C_STATUS; tiny-model checks passed in call 1 of this sweep"
  fi
done
# A selection with 1.3B lt2c steps but neither lt2c-tiny nor a merged call that passed it would
# skip them all ("not tried"): add the tiny-model checks (about 25 s) instead.
if [ -n "${BENCH_ONLY:-}" ] && [ -z "${LT2C_TINY_OK:-}" ] && [[ " $BENCH_ONLY " != *" lt2c-tiny "* ]] \
   && [[ " $BENCH_ONLY " =~ \ lt2c-(big|ouro|dsa)\  ]]; then
  BENCH_ONLY="$BENCH_ONLY lt2c-tiny"
  echo "BENCH_ONLY has 1.3B lt2c steps, which need the tiny-model checks first: added lt2c-tiny"
fi
export LT2C_NOTE="$LT2C_STATUS"
echo "$LT2C_STATUS" > "$BENCH_OUT/lt2c_status.txt"
# where lt2c-prep leaves the compiled models (GiBs; not under $OUT, which travels back), removed
# at the end. One folder per run: sweep.sh's parts share the host, and a part that ended first removed the
# models another part had prepared (the GDN+DSA lt2c rows of the sweep at ef27289 were lost so).
export LT2C_PREP_DIR=$(mktemp -d /tmp/lt2c_prep.XXXXXX)
BG_DIR=$(mktemp -d /tmp/bench_bg.XXXXXX)  # this run's background steps: their pid files

# caps: the estimates of an H100 run (see RESULTS.md) plus margin; the budget cuts the last step.
# Estimates (s, H100, from the step and row times of the earlier sweeps):
#   call 1: peaks 20, lt2c-tiny 25, lt2c-big 170, e2e-lt2 180, kernels-rest 105,
#           lt2c-kernels 60-75 (not measured yet)                                   = about 560
#   call 2: peaks 20, kernels-lt2 100 (lt2c-prep, 120-170, beside it), lt2c-dsa 60-95
#           (lt2c's DSA prefill at 8K is not measured yet), lt2c-ouro 50, e2e-ouro 80,
#           e2e-dsa 150 (its 32K eager prompt timed once, no compiled 32K row)      = about 460-500
PREP_RUNS="1024:bf16,8192:bf16,32768:bf16"
BATCHES="8,64,8@8192,64@8192"
step 25  peaks          python3 bench/bench_peaks.py
step 60  lt2c-tiny      python3 bench/bench_lt2c.py
step 200 lt2c-big       python3 bench/bench_lt2c.py --big lt2_full_gdn --runs 1024:fp32,1024:bf16,8192:bf16,8192:fp32,32768:bf16 --batches "$BATCHES"
if bg_step 300 lt2c-prep env CUDA_VISIBLE_DEVICES= python3 bench/bench_lt2c.py --prep ouro,lt2_gdn_dsa --runs "$PREP_RUNS"; then
  for m in lt2_gdn_dsa ouro; do mkdir -p "$LT2C_PREP_DIR/$m" && echo "${BG_PIDS##* }" > "$LT2C_PREP_DIR/$m/started"; done
fi
step 130 kernels-lt2    python3 bench/bench_kernels.py --set gdn_lt2
step 200 e2e-lt2        python3 bench/bench_e2e.py --model lt2_full_gdn
# The lt2c steps of call 2 come after a PyTorch step each: the background preparation (about
# 180 s on an H100 host for both models, Ouro first) is done by then (it was not, at 50 s, in
# the first run of this order's predecessor).
step 120 e2e-ouro       python3 bench/bench_e2e.py --model ouro
step 90  lt2c-ouro      python3 bench/bench_lt2c.py --big ouro --runs "$PREP_RUNS" --batches "$BATCHES"
step 200 e2e-dsa        python3 bench/bench_e2e.py --model lt2_gdn_dsa --long-iters 1 --compile-prefill 1024,8192 \
  --compile-prefill-why "to fit call 2: the DSA selection runs eagerly under torch.compile too; 32K in the sweep of 2026-11-27: compile 11.9 s, eager 12.2 s"
step 120 lt2c-dsa       python3 bench/bench_lt2c.py --big lt2_gdn_dsa --runs "$PREP_RUNS" --batches "$BATCHES"
step 170 kernels-rest   python3 bench/bench_kernels.py --set attn,dsa,gdn_qwen
# lt2c's kernels alone (one-op ONNX models, device time from LT2C_CUDA_PROFILE), beside the rows above
# (sweep.sh gives this step a GPU of its own on a 4-GPU host, and then a larger cap)
step "${BENCH_LT2C_KERNELS_CAP:-200}" lt2c-kernels   python3 bench/bench_lt2c_kernels.py
for f in "$BG_DIR"/*.pid; do  # a background step still running now is of no more use: end it (its timeout ends its command)
  [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null && echo "=== ended the background step $(basename "$f" .pid)"
done
for p in ${BG_PIDS:-}; do wait "$p"; done
rm -rf "$BG_DIR"
rm -rf "$LT2C_PREP_DIR"

python3 bench/bench_report.py --out "$BENCH_OUT" ${BENCH_MERGE:-} "$BENCH_OUT/results.jsonl" > /dev/null
echo "=== total $(( $(date +%s) - START ))s"
cat "$BENCH_OUT/RESULTS_section.md"
