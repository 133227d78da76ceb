#!/usr/bin/env bash
# The whole benchmark (issue 6) in ONE device command: bench/run.sh's two parts side by side,
# part 1 on GPU 0 and part 2 on GPU 1 of a two-GPU host (the `nvidia-h100-x2` kind), then one
# report (table + plot) over both. With three or more GPUs (`nvidia-h100-x4`) part 1's kernel
# steps (kernels-rest, lt2c-kernels) run as a third part on GPU 2, so none of them is cut by
# part 1's time budget. Each part measures its own card's ceilings, so every row's
# floor comes from the GPU that ran it; PyTorch, flash-linear-attention and lt2c rows of a model
# always run in the same part, on the same GPU.
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
rm -rf "$PARTS" && mkdir -p "$PARTS/part1" "$PARTS/part2" "$PARTS/part3"
BUDGET=${BENCH_BUDGET_S:-560}
echo "sweep: $NGPU GPU(s); budget per part ${BUDGET}s"
if [ "$NGPU" -ge 3 ]; then
  CUDA_VISIBLE_DEVICES=0 OUT="$PARTS/part1" BENCH_ONLY="peaks lt2c-tiny lt2c-big e2e-lt2" BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part1.console" 2>&1 &
  P1=$!
  CUDA_VISIBLE_DEVICES=1 OUT="$PARTS/part2" BENCH_PART=2 BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part2.console" 2>&1 &
  P2=$!
  CUDA_VISIBLE_DEVICES=2 OUT="$PARTS/part3" BENCH_ONLY="peaks kernels-rest lt2c-kernels" BENCH_LT2C_KERNELS_CAP=$((BUDGET - 200)) BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part3.console" 2>&1 &
  P3=$!
  wait $P1; echo "part 1 (GPU 0) rc=$? after $(( $(date +%s) - START ))s"
  wait $P2; echo "part 2 (GPU 1) rc=$? after $(( $(date +%s) - START ))s"
  wait $P3; echo "part 3 (GPU 2) rc=$? after $(( $(date +%s) - START ))s"
elif [ "$NGPU" -ge 2 ]; then
  CUDA_VISIBLE_DEVICES=0 OUT="$PARTS/part1" BENCH_PART=1 BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part1.console" 2>&1 &
  P1=$!
  CUDA_VISIBLE_DEVICES=1 OUT="$PARTS/part2" BENCH_PART=2 BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part2.console" 2>&1 &
  P2=$!
  wait $P1; echo "part 1 (GPU 0) rc=$? after $(( $(date +%s) - START ))s"
  wait $P2; echo "part 2 (GPU 1) rc=$? after $(( $(date +%s) - START ))s"
else
  echo "sweep: one GPU: the parts run one after the other"
  OUT="$PARTS/part1" BENCH_PART=1 BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part1.console" 2>&1; echo "part 1 rc=$?"
  OUT="$PARTS/part2" BENCH_PART=2 BENCH_BUDGET_S=$BUDGET bash bench/run.sh > "$PARTS/part2.console" 2>&1; echo "part 2 rc=$?"
fi
RES="$PARTS/part1/results.jsonl $PARTS/part2/results.jsonl"
[ -s "$PARTS/part3/results.jsonl" ] && RES="$RES $PARTS/part3/results.jsonl"
python3 bench/bench_report.py --out "$OUTDIR" $RES > /dev/null
tar -czf "$OUTDIR/parts.tar.gz" -C "$PARTS" .
echo "=== sweep total $(( $(date +%s) - START ))s"
cat "$OUTDIR/RESULTS_section.md"
