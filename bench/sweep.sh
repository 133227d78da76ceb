#!/usr/bin/env bash
# The whole benchmark (issue 6) in ONE device command: bench/run.sh's steps in parts side by
# side, one part per GPU, then one report (table + plot) over all. Two GPUs (`nvidia-h100-x2`):
# run.sh's two parts. Three: part 1's kernel steps (kernels-rest, lt2c-kernels) move to a third
# part. Four (`nvidia-h100-x4`): also the GDN+DSA model's steps (e2e-dsa, lt2c-dsa) get a part of
# their own, so no part needs more than its time budget. Each part measures its own card's
# ceilings, so every row's floor comes from the GPU that ran it; PyTorch, flash-linear-attention
# and lt2c rows of a model always run in the same part, on the same GPU.
#
#   bash bench/sweep.sh          # on the GPU machine, repo root; carry .whl and bench/.bin
#
# bench/.bin/lt2c (or bench/.bin/lt2c.xz, unpacked here) is the lt2c built on the CPU machine.
# With one GPU the parts run one after the other (about 17 minutes: more than one device call
# allows; use run.sh's BENCH_PART=1 / BENCH_PART=2 calls instead). Writes into $OUT (or
# /tmp/bench_out): RESULTS_section.md, decode_tokens_per_s.png, sweep.log and parts.tar.gz (each
# part's log, results.jsonl, peaks.json, command.txt, step logs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-/tmp/bench_out}"
mkdir -p "$OUTDIR"
exec > >(tee -a "$OUTDIR/sweep.log") 2>&1
START=$(date +%s)
if [ ! -x bench/.bin/lt2c ] && [ -f bench/.bin/lt2c.xz ]; then
  python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('bench/.bin/lt2c.xz'), open('bench/.bin/lt2c', 'wb'))" && chmod +x bench/.bin/lt2c
fi
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
PARTS=/tmp/bench_parts
rm -rf "$PARTS" && mkdir -p "$PARTS"
BUDGET=${BENCH_BUDGET_S:-560}
# The steps of each part, one part per GPU. Four GPUs: part 2's GDN+DSA steps get a GPU of their
# own (part 2 ran 506 of its 560 s with them); three: the kernel steps do; two: run.sh's parts.
KERNELS="peaks kernels-rest lt2c-kernels"
if [ "$NGPU" -ge 4 ]; then
  LISTS=("peaks lt2c-tiny lt2c-big e2e-lt2" "peaks lt2c-prep kernels-lt2 e2e-ouro lt2c-ouro" "$KERNELS" "peaks lt2c-tiny e2e-dsa lt2c-dsa")
elif [ "$NGPU" -ge 3 ]; then
  LISTS=("peaks lt2c-tiny lt2c-big e2e-lt2" "peaks lt2c-prep kernels-lt2 e2e-ouro lt2c-ouro e2e-dsa lt2c-dsa" "$KERNELS")
else
  LISTS=("peaks lt2c-tiny lt2c-big e2e-lt2 kernels-rest lt2c-kernels" "peaks lt2c-prep kernels-lt2 e2e-ouro lt2c-ouro e2e-dsa lt2c-dsa")
fi
echo "sweep: $NGPU GPU(s); ${#LISTS[@]} parts; budget per part ${BUDGET}s"
PIDS=()
for i in "${!LISTS[@]}"; do
  n=$((i + 1)) only="${LISTS[$i]}"
  mkdir -p "$PARTS/part$n"
  # A part of its own for the kernel steps: lt2c-kernels gets what peaks and kernels-rest (130 s
  # at 48ad75d) leave. The GDN+DSA part of four (326 of its 560 s at 48ad75d, two rows dropped
  # by the caps of its steps): caps raised by 40%.
  cap=""; [ "$only" = "$KERNELS" ] && cap=$((BUDGET - 150))
  pct=100; [ "$NGPU" -ge 4 ] && [ "$n" = 4 ] && pct=140
  if [ "$NGPU" -ge 2 ]; then
    CUDA_VISIBLE_DEVICES=$i OUT="$PARTS/part$n" BENCH_ONLY="$only" BENCH_LT2C_KERNELS_CAP=${cap:-200} BENCH_CAP_PERCENT=$pct BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part$n.console" 2>&1 &
    PIDS+=($!)
  else
    echo "sweep: one GPU: part $n after the others"
    OUT="$PARTS/part$n" BENCH_ONLY="$only" BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part$n.console" 2>&1
    echo "part $n rc=$?"
  fi
done
for i in "${!PIDS[@]}"; do
  wait "${PIDS[$i]}"; echo "part $((i + 1)) (GPU $i) rc=$? after $(( $(date +%s) - START ))s"
done
RES=""
for f in "$PARTS"/part*/results.jsonl; do [ -s "$f" ] && RES="$RES $f"; done
python3 bench/bench_report.py --out "$OUTDIR" $RES > /dev/null
tar -czf "$OUTDIR/parts.tar.gz" -C "$PARTS" .
echo "=== sweep total $(( $(date +%s) - START ))s"
cat "$OUTDIR/RESULTS_section.md"
