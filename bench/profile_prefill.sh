#!/usr/bin/env bash
# Where lt2c's prefill time goes, per op kind, on the 1.3B-shaped models: prepares each model
# as the benchmark does (bench_lt2c.py --prep: random weights drawn on the CPU, the zoo's ONNX,
# lt2c compiles), then per prompt length: the wall clock of the process's first (cold) prefill
# and of a warm one (`generate --warmup-prefills 2 --json`), and one prefill with
# LT2C_CUDA_PROFILE=1 (each op timed alone with CUDA events; the process's first prefill, so one-time
# costs such as cuBLASLt's algorithm choice count in the op that pays them): lt2c's per-op-kind table.
#
#   PROFILE_MODELS=ouro,lt2_full_gdn PROFILE_LENS=1024,8192 [PROFILE_BATCH=8] bash bench/profile_prefill.sh
#
# On the GPU machine, repo root; carry bench/.bin (lt2c or lt2c.xz). Output: $OUT/profile_*.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-/tmp/profile_out}"
mkdir -p "$OUTDIR"
if [ ! -x bench/.bin/lt2c ] && [ -f bench/.bin/lt2c.xz ]; then
  python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('bench/.bin/lt2c.xz'), open('bench/.bin/lt2c', 'wb'))" && chmod +x bench/.bin/lt2c
fi
MODELS=${PROFILE_MODELS:-ouro,lt2_full_gdn}
LENS=${PROFILE_LENS:-1024,8192}
DTYPE=${PROFILE_DTYPE:-bf16}
export PYTHONPATH="$PWD/python" LT2C_PREP_DIR=$(mktemp -d /tmp/lt2c_profile.XXXXXX)
MAXLEN=$(echo "$LENS" | tr , '\n' | sort -n | tail -1)
t0=$(date +%s)
python3 bench/bench_lt2c.py --prep "$MODELS" --runs "$MAXLEN:$DTYPE" || { echo "preparing the models failed"; exit 1; }
echo "prepared in $(( $(date +%s) - t0 )) s"
for m in ${MODELS//,/ }; do
  bin="$LT2C_PREP_DIR/$m/${m}_$DTYPE.bin"
  [ -f "$bin" ] || { echo "$m: no $bin (see the prep output above)"; continue; }
  for n in ${LENS//,/ }; do
    python3 -c "import random; random.seed(0); print(' '.join(str(random.randrange(1, 1000)) for _ in range($n)))" > /tmp/prompt_$n.txt
    echo "=== $m $DTYPE prefill $n tokens" | tee "$OUTDIR/profile_${m}_$n.txt"
    # Wall clock first: the first prefill of a process (cold) and a warm one after it.
    # Then 24 decode steps (decode_ms_steady: the recorded steps' mean), and with PROFILE_BATCH=B
    # also B copies of the prompt as one batch.
    bench/.bin/lt2c generate "$bin" --device cuda --prompt-file /tmp/prompt_$n.txt --max-new-tokens 24 --max-context $((n + 64)) --warmup-prefills 2 --json 2>&1 | tail -1 | tee -a "$OUTDIR/profile_${m}_$n.txt"
    if [ -n "${PROFILE_BATCH:-}" ]; then
      bench/.bin/lt2c generate "$bin" --device cuda --prompt-file /tmp/prompt_$n.txt --max-new-tokens 16 --max-context $((n + 64)) --batch "$PROFILE_BATCH" --json 2>&1 | tail -1 | tee -a "$OUTDIR/profile_${m}_$n.txt"
    fi
    LT2C_CUDA_PROFILE=1 bench/.bin/lt2c generate "$bin" --device cuda --prompt-file /tmp/prompt_$n.txt --max-new-tokens 1 --max-context $((n + 64)) 2>&1 | tail -60 | tee -a "$OUTDIR/profile_${m}_$n.txt"
  done
done
rm -rf "$LT2C_PREP_DIR"
