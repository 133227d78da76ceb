#!/usr/bin/env bash
# The GPU check (issue 5): one command for the GPU machine. For the tiny example, every
# zoo model's forms (tests/models/zoo.toml) and the Hugging Face exports (tests/fixtures/hf),
# compiles the ONNX form with lt2c, runs it with
# `--device cuda` and `--device cpu` on each io file and compares the outputs; then runs greedy
# `lt2c generate` on both devices and compares the tokens and the logits behind them (prefill +
# decode). Prints and writes a markdown table ($OUT/gpu-check.md, else out/gpu-check.md).
#
#   bash scripts/gpu-check.sh                      # uses target/release/lt2c
#   LT2C=path/to/lt2c GEN_TOKENS=16 bash scripts/gpu-check.sh
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu-check.sh   # the flow without a GPU (CPU vs CPU)
#   GPU_CHECK_MODELS=hf_,lt2_tiny GPU_CHECK_DTYPES=fp32 bash scripts/gpu-check.sh   # a subset
#   LT2_RUNTIME_TESTS=path/to/lt2_runtime-<hash> bash scripts/gpu-check.sh   # also run the
#       lt2-runtime test binary's CUDA tests (op parity against the CPU) first
#   SANITIZE=1 bash scripts/gpu-check.sh           # also compute-sanitizer memcheck + racecheck
#       on a prefill + decode of a small zoo model
#   PROFILE=1 bash scripts/gpu-check.sh            # also time per op kind (LT2C_CUDA_PROFILE)
#       for a prefill + 16 decode steps of a small zoo model
#   LT2_CAPI=path/to/liblt2_capi.so bash scripts/gpu-check.sh   # also the C ABI / Python
#       binding (lt2.runtime, lt2.inference_session) on CUDA against the CPU
# Every zoo model runs in fp32, and its first form with --dtype bf16 and fp16; then a few
# imported ops the zoo does not use that way (MatMulNBits, Attention from its parts, nonpad)
# run on both devices.
#
# Needs python3 with numpy. No Rust toolchain: build here (`cargo build --release`) and carry
# the binary. Exit status 1 when any row misses the bar (relative error >= 1e-5, different
# tokens, or a failed run).
set -uo pipefail
cd "$(dirname "$0")/.."
export LT2C=${LT2C:-target/release/lt2c}
export GEN_TOKENS=${GEN_TOKENS:-16}
export REPORT_DIR=${OUT:-out}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$REPORT_DIR"
WORK=$(mktemp -d)
export WORK
export LT2C_CACHE_DIR=$WORK/kernel-cache
trap 'rm -rf "$WORK"' EXIT

{
  echo "## environment"
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2 || true
  "$LT2C" --version
} | tee "$WORK/env.txt"

status=0
if [ -n "${LT2_RUNTIME_TESTS:-}" ]; then
  echo "## lt2-runtime CUDA tests ($LT2_RUNTIME_TESTS cuda::)"
  if ! "$LT2_RUNTIME_TESTS" cuda:: --nocapture --test-threads 1 2>&1 | tee "$WORK/unit.txt"; then status=1; fi
  tail -n 3 "$WORK/unit.txt" > "$WORK/unit-summary.txt"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import numpy" 2>/dev/null && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
"$PY" - <<'PY' || status=1
import json, os, re, subprocess, sys, time
import numpy as np
try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

lt2c, work, gen_tokens = os.environ["LT2C"], os.environ["WORK"], int(os.environ["GEN_TOKENS"])
# GPU_CHECK_DEVICE=cpu runs the whole check CPU against CPU (to try the script without a GPU).
GPU = os.environ.get("GPU_CHECK_DEVICE", "cuda")
report = os.path.join(os.environ["REPORT_DIR"], "gpu-check.md")
BAR = 1e-5

def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    d = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (d if d > 0 else 1.0))

def maxrel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    s = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / (s if s > 0 else 1.0)) if a.size else 0.0

def sh(args):
    t = time.time()
    p = subprocess.run(args, capture_output=True, text=True)
    return p, time.time() - t

def new_tokens(bin_, n_prompt):
    """GEN_TOKENS, or fewer where the model's RoPE table ends first (the tiny zoo models hold 64
    positions): found by a one-token CPU generate that runs into the table's end."""
    p, _ = sh([lt2c, "generate", bin_, "--prompt-ids", ",".join(["1"] * n_prompt), "--max-new-tokens", str(gen_tokens), "--device", "cpu"])
    # The standard forms name their RoPE table; the decomposed ones gather from it like any
    # other table ("index 64 is out of range for an axis of size 64").
    m = re.search(r"cos/sin cache of ([0-9]+) positions", p.stderr) or re.search(r"out of range for (?:an axis|axis [0-9]+) of size ([0-9]+)", p.stderr)
    return min(gen_tokens, int(m.group(1)) - n_prompt) if m else gen_tokens
def run(bin_, io, dev, out):
    p, wall = sh([lt2c, "run", bin_, "--inputs", io, "--outputs", out, "--device", dev, "--repeat", "3"])
    m = re.search(r"in ([0-9.]+) ms", p.stderr)
    return p, (float(m.group(1)) if m else None)

models = []  # (name, dir, forms, io files, outputs)
models.append(("lt2_tiny", "tests/fixtures/lt2_tiny", ["model.onnx", "model_unrolled.onnx"], ["io.npz", "io_b1_l7.npz"], ["logits"]))
if tomllib:
    with open("tests/models/zoo.toml", "rb") as f:
        zoo = tomllib.load(f)
    for m in zoo["model"]:
        models.append((m["name"], m["dir"], [f["file"] for f in m["form"]], m["io"], m["outputs"]))
else:
    print("warning: no tomllib (Python < 3.11): only the tiny example is checked", file=sys.stderr)
# Hugging Face exports (tests/fixtures/hf, python -m lt2.hf_export): their recorded cases as io
# files (the golden column includes the padded rows torch leaves undefined).
for onnx_file in sorted(f for f in os.listdir("tests/fixtures/hf") if f.endswith(".onnx")):
    name = onnx_file[:-5]
    cases = np.load(f"tests/fixtures/hf/{name}.npz")
    ios = []
    for i in range(len([k for k in cases.files if k.startswith("ids_")])):
        feeds = {"input_ids": cases[f"ids_{i}"], "logits": cases[f"logits_{i}"]}
        if name.endswith("_mask"):
            feeds["attention_mask"] = cases[f"mask_{i}"]
        ios.append(os.path.join(work, f"hf-{name}-{i}.npz"))
        np.savez(ios[-1], **feeds)
    models.append((f"hf_{name}", "tests/fixtures/hf", [onnx_file], ios, ["logits"]))

# GPU_CHECK_MODELS=a,b: only the models whose names start with one of these.
only = [m for m in os.environ.get("GPU_CHECK_MODELS", "").split(",") if m]
if only:
    models = [m for m in models if any(m[0].startswith(o) for o in only)]
rows, failures = [], 0
# Precisions: fp32 for every form; the others (--dtype) for each model's first form, with the
# issue's bar (relative error < 2e-2 against the CPU backend running the same model.bin).
DTYPES = os.environ.get("GPU_CHECK_DTYPES", "fp32 bf16 fp16").split()
BARS = {"fp32": BAR, "bf16": 2e-2, "fp16": 2e-2}
cases = [(m, form, dt) for m in models for form in m[2] for dt in DTYPES if dt == "fp32" or form == m[2][0]]
for (name, d, forms, ios, outputs), form0, dt in cases:
        bar = BARS[dt]
        form = form0 if dt == "fp32" else f"{form0} --dtype {dt}"
        bin_ = os.path.join(work, f"{name}-{form0}-{dt}.bin")
        p, _ = sh([lt2c, os.path.join(d, form0), "-o", bin_, "--dtype", dt])
        if p.returncode != 0:
            rows.append((name, form, "-", "compile failed: " + p.stderr.strip().splitlines()[-1][:120], "", "", "", "", ""))
            failures += 1
            continue
        for io in ios:
            iop = os.path.join(d, io)
            pc, tc = run(bin_, iop, "cpu", os.path.join(work, "cpu.npz"))
            pg, tg = run(bin_, iop, GPU, os.path.join(work, "cuda.npz"))
            if pc.returncode != 0 or pg.returncode != 0:
                why = (pg.stderr if pg.returncode else pc.stderr).strip().splitlines()[-1][:160]
                rows.append((name, form, io, "run failed: " + why, "", "", "", "", ""))
                failures += 1
                continue
            cpu, gpu, gold = np.load(os.path.join(work, "cpu.npz")), np.load(os.path.join(work, "cuda.npz")), np.load(iop)
            errs = {o: rel(gpu[o], cpu[o]) for o in outputs}
            mx = {o: maxrel(gpu[o], cpu[o]) for o in outputs}
            golden = max((rel(gpu[o], gold[o]) for o in outputs if o in gold.files), default=float("nan"))
            ok = all(e < bar for e in errs.values())
            failures += not ok
            rows.append((name, form, io,
                         ", ".join(f"{o} {errs[o]:.1e}" for o in outputs) + ("" if ok else " **FAIL**"),
                         ", ".join(f"{mx[o]:.1e}" for o in outputs), f"{golden:.1e}",
                         f"{tc:.2f}" if tc is not None else "?", f"{tg:.2f}" if tg is not None else "?", ""))
        # Greedy generation on both devices from the first io file's first row.
        ids = np.load(os.path.join(d, ios[0]))["input_ids"][0][:8]
        prompt = ",".join(str(int(x)) for x in ids)
        gen = {}
        n_new = new_tokens(bin_, len(ids))
        for dev in ("cpu", "cuda"):
            lo = os.path.join(work, f"gen-{dev}.npz")
            p, _ = sh([lt2c, "generate", bin_, "--prompt-ids", prompt, "--max-new-tokens", str(n_new), "--device", GPU if dev == "cuda" else dev, "--json", "--logits-out", lo])
            if p.returncode != 0:
                gen[dev] = (None, p.stderr.strip().splitlines()[-1][:160] if p.stderr.strip() else "failed")
            else:
                gen[dev] = (json.loads(p.stdout.strip().splitlines()[-1]), np.load(lo)["logits"])
        if gen["cpu"][0] is None or gen["cuda"][0] is None:
            why = gen["cuda"][1] if gen["cuda"][0] is None else gen["cpu"][1]
            decodable = "derive decode" not in why and "no token-ids input" not in why
            rows.append((name, form, f"generate {len(ids)}+{n_new}", ("generate failed: " if decodable else "not decodable: ") + why, "", "", "", "", ""))
            failures += decodable
            continue
        (jc, lc), (jg, lg) = gen["cpu"], gen["cuda"]
        same = jc["tokens"] == jg["tokens"]
        # Logits are comparable up to (and including) the first step whose tokens differ.
        upto = next((i for i, (a, b) in enumerate(zip(jc["tokens"], jg["tokens"])) if a != b), len(jc["tokens"]) - 1) + 1
        e = rel(lg[:upto], lc[:upto])
        # Greedy tokens must match in fp32; in reduced precision a near-tie may flip (reported).
        ok = (same or dt != "fp32") and e < bar
        failures += not ok
        rows.append((name, form, f"generate {len(ids)}+{n_new}",
                     f"logits {e:.1e}" + ("" if ok else " **FAIL**"), f"{maxrel(lg, lc):.1e}", "",
                     f"{jc['prefill_ms']:.2f} / {jc['decode_ms_per_token']:.2f}", f"{jg['prefill_ms']:.2f} / {jg['decode_ms_per_token']:.2f}",
                     f"{'same' if same else 'DIFFERENT'} ({' '.join(map(str, jg['tokens']))})"))

# Ouro's early exit (issue 4): a threshold that skips loops, CUDA against CPU.
# Both exports: the unrolled one computes its gates after the copies (reroll-loops and
# sink-into-loop put them back into the loop).
for (name, d, forms, ios, outputs), form in [(m, f) for m in models if m[0] == "ouro" for f in ("standard_loop.onnx", "standard_unrolled.onnx")]:
    bin_ = os.path.join(work, "ouro-exit.bin")
    sh([lt2c, os.path.join(d, form), "-o", bin_])
    prompt = ",".join(str(int(x)) for x in np.load(os.path.join(d, ios[0]))["input_ids"][0][:8])
    gen = {}
    for dev in ("cpu", GPU):
        lo = os.path.join(work, f"exit-{dev}.npz")
        p, _ = sh([lt2c, "generate", bin_, "--prompt-ids", prompt, "--max-new-tokens", str(new_tokens(bin_, 8)), "--device", dev, "--json", "--logits-out", lo, "--exit-threshold", "0.6"])
        gen[dev] = (json.loads(p.stdout.strip().splitlines()[-1]), np.load(lo)["logits"]) if p.returncode == 0 else (None, p.stderr.strip()[-160:])
    if gen["cpu"][0] is None or gen[GPU][0] is None:
        rows.append((name, f"{form} --exit-threshold 0.6", "generate", "failed: " + str(gen[GPU][1] if gen[GPU][0] is None else gen["cpu"][1]), "", "", "", "", ""))
        failures += 1
    else:
        (jc, lc), (jg, lg) = gen["cpu"], gen[GPU]
        same, e = jc["tokens"] == jg["tokens"], rel(lg, lc)
        ok = same and e < BAR and jg.get("loop_iterations_skipped", 0) > 0
        failures += not ok
        rows.append((name, f"{form} --exit-threshold 0.6", f"generate 8+{len(jg['tokens'])}", f"logits {e:.1e}" + ("" if ok else " **FAIL**"), f"{maxrel(lg, lc):.1e}", "",
                     f"{jc['prefill_ms']:.2f} / {jc['decode_ms_per_token']:.2f}", f"{jg['prefill_ms']:.2f} / {jg['decode_ms_per_token']:.2f}",
                     f"{'same' if same else 'DIFFERENT'}; loops run {jg.get('loop_iterations_run')}, skipped {jg.get('loop_iterations_skipped')}"))
head = ("| model | form | io | rel. L2 error cuda vs cpu | max abs err / max abs | cuda vs golden | cpu ms | cuda ms | greedy tokens |\n"
        "|---|---|---|---|---|---|---|---|---|")
lines = [head] + ["| " + " | ".join(r) + " |" for r in rows]
env = open(os.path.join(work, "env.txt")).read().strip()
unit = ""
if os.path.exists(os.path.join(work, "unit-summary.txt")):
    unit = "\nlt2-runtime CUDA tests:\n```\n" + open(os.path.join(work, "unit-summary.txt")).read().strip() + "\n```\n"
text = (f"# lt2c GPU check\n\n```\n{env}\n```\n{unit}\n"
        f"Times: `lt2c run --repeat 3` (fastest run: upload, all steps, download); generate: prefill ms / decode ms per token.\n"
        f"Bar: relative L2 error < {BAR:g} for every output and for the logits behind every generated token; same greedy tokens.\n\n"
        + "\n".join(lines) + f"\n\n{len(rows)} rows, {failures} below the bar.\n")
with open(report, "w") as f:
    f.write(text)
print(text)
sys.exit(1 if failures else 0)
PY
if [ "${PROFILE:-0}" = 1 ]; then
  m=tests/fixtures/zoo/lt2_full_gdn/standard_loop.onnx
  "$LT2C" "$m" -o "$WORK/prof.bin" 2>/dev/null
  {
    echo
    echo "Time per op kind, \`LT2C_CUDA_PROFILE=1 lt2c generate\` ($m, prompt 8 tokens, 16 new; every op synchronised):"
    echo '```'
    LT2C_CUDA_PROFILE=1 "$LT2C" generate "$WORK/prof.bin" --prompt-ids 1,2,3,4,5,6,7,8 --max-new-tokens 16 --device cuda 2>&1 | grep -v '^caches'
    echo '```'
  } | tee -a "$REPORT_DIR/gpu-check.md"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  m=tests/fixtures/zoo/lt2_full_gdn/standard_loop.onnx
  "$LT2C" "$m" -o "$WORK/san.bin" 2>/dev/null
  {
    echo
    echo "compute-sanitizer on \`lt2c generate\` ($m, prompt 20 tokens, 4 new: prefill + decode), fp32 and --dtype bf16:"
    echo '```'
    "$LT2C" "$m" -o "$WORK/san-bf16.bin" --dtype bf16 2>/dev/null
    for tool in memcheck racecheck; do
      for mb in san san-bf16; do
      out=$("$san" --tool "$tool" --error-exitcode 9 "$LT2C" generate "$WORK/$mb.bin" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20 --max-new-tokens 4 --device cuda 2>&1)
      rc=$?
      [ $rc -eq 0 ] || status=1
      echo "$tool $mb: exit $rc; $(echo "$out" | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | tr '\n' ' ')"
      [ $rc -eq 0 ] || echo "$out" | grep -v '^=========     ' | head -40
      done
    done
    # DSA's decode steps (indexer and sparse attention over fixed-capacity caches, replayed).
    m=tests/fixtures/zoo/lt2_gdn_dsa/standard_loop.onnx
    "$LT2C" "$m" -o "$WORK/san-dsa.bin" 2>/dev/null
    for tool in memcheck racecheck; do
      out=$("$san" --tool "$tool" --error-exitcode 9 "$LT2C" generate "$WORK/san-dsa.bin" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20 --max-new-tokens 6 --device cuda 2>&1)
      rc=$?
      [ $rc -eq 0 ] || status=1
      echo "$tool lt2_gdn_dsa: exit $rc; $(echo "$out" | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|decode steps' | tr '\n' ' ')"
      [ $rc -eq 0 ] || echo "$out" | grep -v '^=========     ' | head -40
    done
    echo '```'
    if [ -n "${LT2_RUNTIME_TESTS:-}" ]; then
      # The kernels that tiny-model generate runs do not reach (chunked GDN from 64 tokens,
      # tensor-core attention over long prompts, DSA's tiled sparse attention, indexer and top-k):
      # their parity cases under the sanitizer.
      f="gdn prefill,(tensor cores),attention tiled,rms_norm,causal_conv,split decode,sparse attention 20 heads,rows with no index,indexer relu_weighted top_k 1,indexer mean_dot,indexer decode 300"
      echo "compute-sanitizer on the CUDA parity cases matching \`$f\`:"
      echo '```'
      for tool in memcheck racecheck; do
        out=$(LT2_PARITY_FILTER="$f" "$san" --tool "$tool" --error-exitcode 9 "$LT2_RUNTIME_TESTS" cuda::parity --test-threads 1 --nocapture 2>&1)
        rc=$?
        [ $rc -eq 0 ] || status=1
        echo "$tool: exit $rc; $(echo "$out" | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|op cases' | tr '\n' ' ')"
        [ $rc -eq 0 ] || echo "$out" | grep -v '^=========     ' | head -40
      done
      echo '```'
    fi
  } | tee -a "$REPORT_DIR/gpu-check.md"
fi
# Imports that lower to ops the zoo models do not use in that form: MatMulNBits (weights
# dequantized at compile time), Attention from its parts (softcap, qk_matmul_output, a past of
# another length) and nonpad_kv_seqlen's per-batch mask; `lt2c run` on the GPU against the CPU.
{
  echo "## Imported extras, CUDA vs CPU (lt2c run)"
  echo '```'
  PYTHONPATH=python:python/tests "$PY" - <<'PY'
import os, subprocess
import numpy as np
import onnx
from onnx import TensorProto as T, helper as h, numpy_helper as nh
import test_matmul_nbits as nb

work, dev = os.environ["WORK"], os.environ.get("GPU_CHECK_DEVICE", "cuda")
lt2c, g, fails = os.environ["LT2C"], np.random.default_rng(5), 0
rel = lambda a, b: float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
nb.model(os.path.join(work, "nbits.onnx"), g, 96, 40, 4, 32, "uint8", True)
feeds = {"nbits": {"A": g.standard_normal((2, 5, 96)).astype(np.float32)}}
# Attention, 4-D, 4 query heads over 2 KV heads: causal softcap with the post-softmax scores out;
# a past of 7 keys before 3 new ones with 5 queries; 3-D with nonpad_kv_seqlen (a static cache).
vi = lambda n, s, t=T.FLOAT: h.make_tensor_value_info(n, t, s)
att = lambda name, node, ins, outs, opset: onnx.save(h.make_model(h.make_graph([node], name, ins, outs), opset_imports=[h.make_opsetid("", opset)], ir_version=10), os.path.join(work, name + ".onnx"))
att("softcap", h.make_node("Attention", ["q", "k", "v"], ["y", "", "", "qk"], is_causal=1, softcap=3.0, qk_matmul_output_mode=3),
    [vi("q", [2, 4, 6, 16]), vi("k", [2, 2, 6, 16]), vi("v", [2, 2, 6, 8])], [vi("y", [2, 4, 6, 8]), vi("qk", [2, 4, 6, 6])], 23)
att("past", h.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "ck", "cv"], is_causal=1),
    [vi("q", [1, 4, 5, 16]), vi("k", [1, 2, 3, 16]), vi("v", [1, 2, 3, 16]), vi("pk", [1, 2, 7, 16]), vi("pv", [1, 2, 7, 16])],
    [vi("y", [1, 4, 5, 16]), vi("ck", [1, 2, 10, 16]), vi("cv", [1, 2, 10, 16])], 23)
att("nonpad", h.make_node("Attention", ["q", "k", "v", "", "", "", "n"], ["y"], is_causal=1, q_num_heads=4, kv_num_heads=2),
    [vi("q", [2, 3, 64]), vi("k", [2, 12, 32]), vi("v", [2, 12, 32]), vi("n", [2], T.INT64)], [vi("y", [2, 3, 64])], 24)
r = lambda *s: g.standard_normal(s).astype(np.float32)
feeds["softcap"] = {"q": r(2, 4, 6, 16), "k": r(2, 2, 6, 16), "v": r(2, 2, 6, 8)}
feeds["past"] = {"q": r(1, 4, 5, 16), "k": r(1, 2, 3, 16), "v": r(1, 2, 3, 16), "pk": r(1, 2, 7, 16), "pv": r(1, 2, 7, 16)}
feeds["nonpad"] = {"q": r(2, 3, 64), "k": r(2, 12, 32), "v": r(2, 12, 32), "n": np.array([5, 12], np.int64)}
for name, feed in feeds.items():
    src, b = os.path.join(work, name + ".onnx"), os.path.join(work, name + ".bin")
    np.savez(os.path.join(work, name + "-in.npz"), **feed)
    p = subprocess.run([lt2c, src, "-o", b], capture_output=True, text=True)
    outs = {}
    for d in ("cpu", dev):
        o = os.path.join(work, f"{name}-{d}.npz")
        q = subprocess.run([lt2c, "run", b, "--inputs", os.path.join(work, name + "-in.npz"), "--outputs", o, "--device", d], capture_output=True, text=True) if p.returncode == 0 else p
        outs[d] = dict(np.load(o)) if q.returncode == 0 else q.stderr.strip()[-200:]
    if isinstance(outs["cpu"], str) or isinstance(outs[dev], str):
        print(f"{name}: failed: {outs[dev] if isinstance(outs[dev], str) else outs['cpu']}")
        fails += 1
        continue
    errs = {k: rel(outs[dev][k], outs["cpu"][k]) for k in outs["cpu"]}
    ok = all(e < 1e-5 for e in errs.values())
    fails += not ok
    print(f"{name}: " + ", ".join(f"{k} {e:.1e}" for k, e in errs.items()) + ("" if ok else " FAIL"))
raise SystemExit(1 if fails else 0)
PY
  rc=$?
  echo '```'
  exit $rc
} | tee -a "$REPORT_DIR/gpu-check.md"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ -n "${LT2_CAPI:-}" ]; then
  # The C ABI and the Python binding (liblt2_capi.so carried): greedy tokens and prefill logits
  # of a session on CUDA against the CPU, and onnxruntime's InferenceSession shape on CUDA.
  echo "## C ABI / Python binding on CUDA ($LT2_CAPI)"
  LT2C_CAPI="$LT2_CAPI" PYTHONPATH=python "$PY" - <<'PY' || status=1
import os, sys
import numpy as np
from lt2.runtime import Model
from lt2.inference_session import InferenceSession

work, fails = os.environ["WORK"], 0
dev = os.environ.get("GPU_CHECK_DEVICE", "cuda")
gpu_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev == "cuda" else ["CPUExecutionProvider"]
src = "tests/fixtures/zoo/ouro/standard_unrolled.onnx"
rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
cpu_s = InferenceSession(src, providers=["CPUExecutionProvider"], cache_dir=work)
gpu_s = InferenceSession(src, providers=gpu_providers, cache_dir=work)
ids = np.load("tests/fixtures/zoo/ouro/io.npz")["input_ids"]
e = max(rel(g, c) for g, c in zip(gpu_s.run(None, {"input_ids": ids}), cpu_s.run(None, {"input_ids": ids})))
ok = gpu_s.get_providers()[0] == gpu_providers[0] and e < 1e-5
fails += not ok
print(f"InferenceSession {gpu_s.get_providers()}: outputs vs CPU {e:.1e}{'' if ok else ' FAIL'}")
m_gpu, m_cpu = Model(gpu_s.model_path, dev), Model(gpu_s.model_path, "cpu")
prompt = [int(x) for x in ids[0][:8]]
tg, tc = m_gpu.generate(prompt, 16), m_cpu.generate(prompt, 16)
lg, lc = m_gpu.session(64).prefill([prompt]), m_cpu.session(64).prefill([prompt])
ok = tg == tc and rel(lg, lc) < 1e-5 and m_gpu.device.startswith(dev)
fails += not ok
print(f"Model.generate on {m_gpu.device}: tokens {'same' if tg == tc else 'DIFFERENT'}, prefill logits vs CPU {rel(lg, lc):.1e}{'' if ok else ' FAIL'}")
sys.exit(1 if fails else 0)
PY
fi
exit $status
