"""lt2c rows: only where the lt2c CUDA backend runs, and only after a correctness check in
this run. For each tiny zoo model (ONNX from tests/fixtures/zoo, compiled here with the
carried lt2c binary): ``lt2c run --device cuda`` on the fixture's inputs, logits against the
PyTorch reference (fp64, bench/torch_model.py) within the fp32 tolerance 1e-4; then
``lt2c generate --device cuda --json --logits-out`` (greedy, 8 tokens), each step's logits
against the reference's full prefill of prompt + generated tokens. Timings are lt2c's own
(``prefill_ms``, ``decode_ms_per_token`` of ``--json``, host wall clock around each call),
next to PyTorch eager fp32 on the same tiny model and prompt (CUDA events).

With ``--big MODEL`` (lt2_full_gdn, lt2_gdn_dsa, ouro): the model at its 1.3B size instead,
compiled fp32 (for the check) and in each dtype of ``--runs`` (``--dtype bf16`` where the binary
has it), checked against PyTorch fp32 on the same weights, then timed at the prompts of
``--runs`` (B1) and through ``generate --batch N`` for ``--batches`` (see ``big``).
With ``--prep MODELS``: only the ONNX and the compiles, into ``$LT2C_PREP_DIR/<model>``, for a
later ``--big`` of the same models (run.sh part 2 runs it in the background beside the GPU
kernel step: CPU and disk only).

The binary: ``$LT2C`` or ``bench/.bin/lt2c`` (carried; the GPU machine builds nothing). When
it is missing or has no CUDA backend, one row says so and nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import bench_common as common
from bench_common import emit
from bench_check_tiny import golden, tiny_model

MODELS = ("lt2_full_gdn", "lt2_gdn_dsa", "ouro")
TOL = 1e-4
LDEV = os.environ.get("LT2C_DEVICE", "cuda")  # "cpu": dry run of this script without a GPU


def _env():
    return dict(os.environ, LD_LIBRARY_PATH="/usr/local/cuda/lib64:" + os.environ.get("LD_LIBRARY_PATH", ""))


def sh(args, timeout=120):
    """Run a command; a time-out comes back as exit status 124 (never raises). Never past the
    step's deadline: run.sh's `timeout` would kill this script and leave the child running."""
    timeout = max(1, min(timeout, 3600, common.time_left() - 2))
    try:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired as ex:
        return subprocess.CompletedProcess(ex.cmd, 124, stdout="", stderr=f"timed out after {timeout:.0f} s")


LIVE = []  # sh_many's running children (a --prep job ended by its time limit ends them too)


def sh_many(cmds: dict, timeout):
    """Run several commands at once (lt2c compiles are single-threaded); {key: CompletedProcess}."""
    procs = {k: subprocess.Popen([str(a) for a in c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for k, c in cmds.items()}
    LIVE[:] = list(procs.values())
    end = time.time() + max(1, min(timeout, 3600, common.time_left() - 2))
    out = {}
    for k, p in procs.items():
        try:
            so, se = p.communicate(timeout=max(1, end - time.time()))
            out[k] = subprocess.CompletedProcess(p.args, p.returncode, so, se)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            out[k] = subprocess.CompletedProcess(p.args, 124, "", f"timed out after {timeout:.0f} s")
    return out


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--big", default="", help="instead of the tiny models: this zoo model at its 1.3B size")
    ap.add_argument("--runs", default="1024:fp32,1024:bf16,8192:bf16,8192:fp32",
                    help="timed generate runs PROMPT:DTYPE, in priority order (those that do not fit the time are dropped)")
    ap.add_argument("--batches", default="8,64", help="with --big: generate --batch N rows at --batch-ctx, or N@CTX at context CTX, "
                    "after the runs ('' for none)")
    ap.add_argument("--batch-ctx", type=int, default=1024, help="prompt length of the batched rows")
    ap.add_argument("--prep", default="", help="only prepare these models (comma separated; ONNX + compiles of --runs' dtypes and "
                    "fp32, weights drawn on the CPU) into $LT2C_PREP_DIR/<model>, for a later --big step (run.sh part 2 runs it "
                    "in the background)")
    a = ap.parse_args()
    os.environ.setdefault("LT2C_CACHE_DIR", "/tmp/lt2c-kernel-cache")
    exe = Path(os.environ.get("LT2C", common.REPO / "bench" / ".bin" / "lt2c"))
    if not exe.exists():
        if not a.prep:  # (the --big steps after a --prep say it)
            emit(section="lt2c", model=a.big or "all", system="lt2c", row="status", shape="",
                 note=os.environ.get("LT2C_NOTE", f"no lt2c binary at {exe}: not carried"))
        return
    if a.prep:
        if PREP_DIR is None:
            raise SystemExit("--prep needs $LT2C_PREP_DIR")
        return prep_main(exe, [x for x in a.prep.split(",") if x], parse_runs(a.runs))
    work = Path(tempfile.mkdtemp(prefix="lt2c_"))
    dev = common.DEV
    if a.big:
        runs = parse_runs(a.runs)
        try:
            batches = [(int(x.split("@")[0]), int(x.split("@")[1]) if "@" in x else a.batch_ctx) for x in a.batches.split(",") if x]
            return big(exe, work, a.big, runs, batches)
        except Exception as ex:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            from bench_e2e import NAMES

            emit(section="lt2c", model=NAMES.get(a.big, a.big), system="lt2c", row="status", shape="",
                 note=f"failed: {type(ex).__name__}: {str(ex)[:300]}")
            return
        finally:
            import shutil

            shutil.rmtree(work, ignore_errors=True)  # GiBs of ONNX and model.bin; the GPU machine may stay warm for the next call
    for name in MODELS:
        if common.time_left() < 10:
            emit(section="lt2c", model=name, system="lt2c", row="status", shape="", note="dropped: time budget")
            continue
        onnx_path = common.REPO / "tests" / "fixtures" / "zoo" / name / "standard_loop.onnx"
        io = common.REPO / "tests" / "fixtures" / "zoo" / name / "io.npz"
        # the reference first: PyTorch fp64 on this GPU against the zoo's ONNX golden
        cfg, ref_model = tiny_model(name, dev)
        ids, gold = golden(name)
        want, _ = ref_model.prefill(torch.from_numpy(ids).to(dev), all_logits=True)
        e_gold = common.rel_err(want.cpu(), torch.from_numpy(gold))
        emit(section="check", model=f"{name} (tiny)", system="torch", row="PyTorch reference (fp64, GPU) vs ONNX golden",
             shape=f"B{ids.shape[0]} L{ids.shape[1]}", check=f"rel_err {e_gold:.1e}", ok=bool(e_gold < TOL))
        mb = work / f"{name}.bin"
        r = sh([exe, onnx_path, "-o", mb])
        if r.returncode:
            emit(section="lt2c", model=name, system="lt2c", row="compile", shape="", note=f"compile failed: {r.stderr[-300:]}")
            continue
        out = work / f"{name}_out.npz"
        r = sh([exe, "run", mb, "--inputs", io, "--outputs", out, "--device", LDEV])
        if r.returncode:
            emit(section="lt2c", model=name, system="lt2c", row="run --device cuda", shape="",
                 note=f"lt2c CUDA run failed: {(r.stderr or r.stdout).strip()[-300:]}")
            continue
        got = torch.from_numpy(np.load(out)["logits"])
        e_run = common.rel_err(got, want.cpu())
        prompt = ids[0].tolist()
        lo = work / f"{name}_gen.npz"
        gen = [exe, "generate", mb, "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", "9", "--json",
               "--device", LDEV, "--logits-out", lo, "--max-context", "64"]
        sh(gen)  # first process: NVRTC compiles land in $LT2C_CACHE_DIR
        r = sh(gen)
        if r.returncode:
            emit(section="lt2c", model=name, system="lt2c", row="generate --device cuda", shape="",
                 note=f"run check {e_run:.1e}; generate failed: {(r.stderr or r.stdout).strip()[-300:]}")
            continue
        js = json.loads(r.stdout.strip().splitlines()[-1])
        toks = js["tokens"]
        full = torch.tensor([prompt + toks[:-1]], device=dev)
        ref_all, _ = ref_model.prefill(full, all_logits=True)
        ref_steps = ref_all[0, len(prompt) - 1 :]  # logits that chose each new token
        gl = torch.from_numpy(np.load(lo)["logits"])
        e_gen = common.rel_err(gl, ref_steps.cpu())
        ok = e_run < TOL and e_gen < TOL and js.get("device", "").lower().startswith(LDEV)
        emit(section="check", model=f"{name} (tiny)", system="lt2c", row="lt2c CUDA vs PyTorch fp64",
             shape=f"run B{ids.shape[0]} L{ids.shape[1]}; generate 8", check=f"run {e_run:.1e}; generate {e_gen:.1e}; device {js.get('device')}",
             ok=bool(ok))
        if not ok:
            emit(section="lt2c", model=f"{name} (tiny)", system="lt2c", row="status", shape="",
                 note=f"correctness check failed (run {e_run:.1e}, generate {e_gen:.1e}): no timing rows")
            continue
        (common.OUT / "lt2c_tiny_ok").write_text("ok")
        emit(section="lt2c", model=f"{name} (tiny)", system="lt2c", row="prefill (lt2c generate --json)", shape=f"B1 L{len(prompt)}",
             ms=js["prefill_ms"], note="host wall clock inside lt2c")
        emit(section="lt2c", model=f"{name} (tiny)", system="lt2c", row="decode (lt2c generate --json)", shape="B1",
             ms=js["decode_ms_per_token"], tok_s=1e3 / js["decode_ms_per_token"], note="host wall clock inside lt2c")
        # the same on PyTorch eager fp32
        tm32 = tiny_model(name, dev, torch.float32)[1]
        pid = torch.tensor([prompt], device=dev)
        ms_p, _ = common.cuda_time(lambda: tm32.prefill(pid), warmup=2, iters=5)
        _, caches = tm32.prefill(pid, cache_cap=64)
        tok = torch.tensor([toks[0]], device=dev)
        ms_d, _ = common.cuda_time(lambda: tm32.decode(tok, caches, len(prompt)), warmup=2, iters=7)
        emit(section="lt2c", model=f"{name} (tiny)", system="eager fp32", row="prefill", shape=f"B1 L{len(prompt)}", ms=ms_p)
        emit(section="lt2c", model=f"{name} (tiny)", system="eager fp32", row="decode", shape="B1", ms=ms_d, tok_s=1e3 / ms_d)


# Checks of the 1.3B rows (relative L2 error of the logits vs the PyTorch fp32 model, same
# weights and tokens). fp32: 1e-4. Reduced precision (--dtype bf16): the bar is relative to the
# precision's own error. Measured on the CPU with these random 1.3B LT2 Full+GDN weights (67
# tokens): PyTorch fp32 whose weight products round their operands to bf16 exactly as lt2c's do
# (bench_model.LINEAR_ROUND) is 5.4e-2 from fp32, and 3.9e-2 from itself when every product gets
# fp32-sized noise (3e-7, which moves fp32 by 1.4e-5, as lt2c fp32 vs PyTorch does): bf16
# roundings flip and the 84 layer applications amplify them. So no bf16 implementation can be
# within 2e-2 of fp32 (or of that emulation) here; the check asks for at most twice the
# emulation's own distance from fp32 (and never more than the 0.25 of the PyTorch bf16 rows; a
# wrong layout gives about 1), and reports all three numbers.
TOL_FP32 = 1e-4
TOL_REDUCED_MIN = 2e-2
TOL_REDUCED_MAX = 0.25
NOT_BATCHED = ("not measured: the carried `lt2c generate` has no --batch (older binary); B1 only")
CHECK_PROMPT = 64
# A model prepared by `--prep` (run.sh part 2: ONNX and compiles in the background while the GPU
# runs the GDN kernel rows) lives in $LT2C_PREP_DIR/<model>: `started` (the background job's
# pid, written by run.sh), then `prep.json` when it is done; a model whose `started` exists is
# never prepared again in the foreground while that job lives.
PREP_DIR = Path(os.environ["LT2C_PREP_DIR"]) if os.environ.get("LT2C_PREP_DIR") else None


def parse_runs(s):
    return [(int(x.split(":")[0]), x.split(":")[1]) for x in s.split(",") if x]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def prepare(exe, work, name, dtypes, max_prompt, device, keep_weights=True):
    """The 1.3B model's ONNX and its lt2c compiles, in ``work``. ONNX
    (lt2.models.looped.build_model, the zoo's builder) with external data holding random weights
    drawn on ``device`` (``bench_model.gen_weights``, seed 2) and rounded to bf16-representable
    values (so ``--dtype bf16`` stores them exactly and all systems run the same weights);
    compiled once per dtype, all at once (lt2c compiles are single-threaded). The weights file
    stays (``weights`` and ``index`` of the returned info: the reference reads it back) unless
    the caller drops it. Returns ``(info, weights)``: info as written to ``work/prep.json``,
    weights the fp32 tensors (on ``device``; None without ``keep_weights``, which frees them
    before the compiles)."""
    import dataclasses

    import onnx
    import bench_model as bm
    from lt2 import reference
    from lt2.models import looped
    from lt2.zoo.registry import get

    work.mkdir(parents=True, exist_ok=True)
    cfg = common.shrink(get(name).big)
    n_pos = max(cfg.max_positions, max_prompt + 64)  # RoPE table rows in the ONNX (the zoo's 8192 < 8K prompt + new tokens)
    t0 = time.time()
    tw = bm.gen_weights(cfg, device, torch.bfloat16, seed=2)
    tw = {k: v.float() for k, v in tw.items()}  # bf16-representable fp32
    if cfg.has_rope:
        cos, sin = reference.rope_cache(n_pos, cfg.attn_head_dim, cfg.rope_theta)
        tw["rope.cos_cache"] = torch.from_numpy(cos.astype(np.float32))
        tw["rope.sin_cache"] = torch.from_numpy(sin.astype(np.float32))
    w = {k: v.cpu().numpy() for k, v in tw.items()}
    loc = f"{name}.weights"
    looped.write_external_data(w, work / loc)
    layout = looped.external_data_layout(w)
    index = {k: [layout[k][0], list(v.shape)] for k, v in w.items()}
    m = looped.build_model(dataclasses.replace(cfg, max_positions=n_pos), w, unrolled=False, spelling="standard",
                           external_data=loc, check=False)
    onnx.save(m, str(work / f"{name}.onnx"))
    del w, m
    if not keep_weights:
        tw = None  # GiBs of host memory, beside the compiles' own
    t_onnx = time.time() - t0
    t0 = time.time()
    comp = sh_many({dt: [exe, work / f"{name}.onnx", "-o", work / f"{name}_{dt}.bin"] + ([] if dt == "fp32" else ["--dtype", dt])
                    for dt in dtypes}, timeout=max(30, common.time_left() - 40))
    t_comp = time.time() - t0
    (work / f"{name}.onnx").unlink(missing_ok=True)
    info = {"model": name, "dtypes": [dt for dt in dtypes if comp[dt].returncode == 0], "max_prompt": max_prompt,
            "failed": {dt: f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}" for dt, r in comp.items() if r.returncode},
            "t_onnx": round(t_onnx, 1), "t_comp": round(t_comp, 1), "weights": loc, "index": index, "drawn_on": str(device)}
    tmp = work / "prep.json.tmp"
    tmp.write_text(json.dumps(info))
    tmp.rename(work / "prep.json")
    return info, tw


def load_weights(work, info, device):
    """The fp32 weights ``prepare`` wrote, read back from its external-data file."""
    mm = np.memmap(work / info["weights"], dtype="<f4", mode="r")
    out = {}
    for k, (off, shape) in info["index"].items():
        n = int(np.prod(shape)) if shape else 1
        out[k] = torch.from_numpy(np.array(mm[off // 4: off // 4 + n]).reshape(shape)).to(device)
    del mm
    return out


def prep_main(exe, names, runs):
    """``--prep``: ``prepare`` each model in turn into ``$LT2C_PREP_DIR/<model>`` (CPU only:
    weights drawn on the CPU, so the GPU steps running beside it are not disturbed)."""
    import signal

    def ended(signum, _frame):
        for p in LIVE:
            p.poll() is None and p.kill()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, ended)
    torch.set_num_threads(max(1, min(8, (os.cpu_count() or 2) // 2)))  # half the cores: the GPU step beside it launches kernels
    dtypes = list(dict.fromkeys(["fp32"] + [dt for _, dt in runs]))
    max_prompt = max(L for L, _ in runs)
    for name in names:
        work = PREP_DIR / name
        t0 = time.time()
        try:
            info, _ = prepare(exe, work, name, dtypes, max_prompt, "cpu", keep_weights=False)
            print(f"[prep {name}] onnx {info['t_onnx']} s, compiles {info['t_comp']} s, ok {info['dtypes']}, failed {list(info['failed'])}",
                  flush=True)
        except Exception as ex:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            (work / "prep.json").write_text(json.dumps({"model": name, "error": f"{type(ex).__name__}: {str(ex)[:300]}"}))
        print(f"[prep {name}] {time.time() - t0:.0f} s", flush=True)


def wait_prepared(name):
    """The info of a model being prepared in the background: waits for its ``prep.json`` while
    the job lives and the step has time. None when no background job owns the model; a string
    (the reason) when it owns it but gave no usable result."""
    if PREP_DIR is None or not (PREP_DIR / name / "started").exists():
        return None
    d = PREP_DIR / name
    try:
        pid = int((d / "started").read_text().split()[0])
    except (ValueError, IndexError):
        pid = -1
    t0 = time.time()
    while not (d / "prep.json").exists():
        if not _pid_alive(pid):
            time.sleep(1)  # the job may have written prep.json just before it ended
            if (d / "prep.json").exists():
                break
            return "the background preparation (ONNX + lt2c compiles) ended without a result (see lt2c-prep.log)"
        if common.time_left() < 45:
            return f"the background preparation (ONNX + lt2c compiles) was not done after waiting {time.time() - t0:.0f} s"
        time.sleep(1)
    waited = time.time() - t0
    info = json.loads((d / "prep.json").read_text())
    if "error" in info:
        return f"the background preparation failed: {info['error']}"
    info["waited"] = round(waited, 1)
    return info


def cache_need(exe, mb, cfg, batch, ctx):
    """Bytes of lt2c's decode caches for ``batch`` sequences of ``ctx`` tokens: from ``lt2c
    inspect`` (the plan's own numbers: K/V of a bf16 build in bf16), else counted from the config
    (fp32 caches)."""
    r = sh([exe, "inspect", mb], timeout=30)
    import re

    mt = re.search(r"(\d+) bytes per sequence \+ (\d+) bytes per token", r.stdout or "")
    if mt:
        return batch * (int(mt.group(1)) + int(mt.group(2)) * ctx)
    T, f = cfg.n_loops, 4
    n = {k: sum(1 for m in cfg.mixers if m == k) for k in ("gdn", "attn", "dsa")}
    c_qkv = 2 * cfg.gdn_heads * cfg.gdn_k + cfg.gdn_hv * cfg.gdn_v
    fixed = T * n["gdn"] * (cfg.gdn_hv * cfg.gdn_k * cfg.gdn_v + c_qkv * (cfg.conv_kernel - 1)) * f
    per_tok = T * (n["attn"] * 2 * cfg.attn_kv_heads * cfg.attn_head_dim + n["dsa"] * (cfg.dsa_score_dim + cfg.dsa_latent_dim)) * f
    return batch * (fixed + per_tok * ctx)


def prompt_args(work, ids):
    """`generate` arguments for a prompt: through a file (32K ids overflow a command line)."""
    p = Path(work) / "prompt.txt"
    p.write_text(",".join(map(str, ids)))
    return ["--prompt-file", p]


def steady_note(js, steps):
    """How a generate's decode time was taken: the steps after its warm-up steps (the first, and
    on CUDA the one recorded as a graph), or all of them (older binaries)."""
    if "decode_warmup_ms" in js:
        w = js["decode_warmup_ms"]
        what = "the first" if len(w) == 1 else "the first and the recorded one"
        return f"mean of the {steps - len(w)} decode steps after {what} (warm-up: {', '.join(f'{x:.0f}' for x in w)} ms; graph replay: {js.get('decode_recorded')})"
    if "decode_ms_steady" in js:
        return f"mean of the {steps - 1} steps after the first"
    return f"mean of {steps} steps"


def big(exe, work, name, runs, batches=((8, 1024), (64, 1024))):
    """The model at its 1.3B size. ``prepare`` (here, or earlier in the background by
    ``--prep``: then its result is used) gives the ONNX and the compiles: fp32 always (for the
    check), and each dtype of ``runs`` (``--dtype bf16`` where the carried binary has it).
    Checks: a 64-token prompt + 4 greedy steps (``generate --logits-out``) against the PyTorch
    fp32 reference on the same weights and tokens (all loops: lt2c runs every loop unless
    ``--exit-threshold`` is given, and so does the reference; Ouro's logits are its last loop's);
    for a reduced-precision build the bar scales with the distance from fp32 of the PyTorch fp32
    model whose weight products round their operands the same way (``bench_model.LINEAR_ROUND``;
    see ``TOL_*``). Then the timings of the dtypes of ``runs`` that passed (not of the check-only
    fp32 build), in priority order while the time lasts: B1 ``generate`` at the prompts of
    ``runs`` up to 2K tokens, ``generate --batch N`` (``batches``: (N, context)) for N <= 8 at up to
    2K context, B1 at the longer prompts, the rest of the batches. B1: 12 new tokens, one untimed
    process before the first of each
    dtype and up to 3 timed ones (2 above 2K tokens; more than one only where the later jobs keep
    about 15 s each), medians of lt2c's own ``prefill_ms`` / ``decode_ms_steady`` (the decode steps
    after the warm-up: the first, and the one recorded as a CUDA graph). Batches: one
    process, 8 new tokens; skipped with the reason where lt2c's caches (``lt2c inspect``) cannot
    fit the card."""
    import shutil

    import bench_model as bm
    from lt2.zoo.registry import get

    from bench_e2e import NAMES, floors

    label = NAMES.get(name, name)
    run_dtypes = list(dict.fromkeys(dt for _, dt in runs))
    dtypes = list(dict.fromkeys(["fp32"] + run_dtypes))
    tiny_ok = [p for p in [common.OUT / "lt2c_tiny_ok", Path(os.environ.get("LT2C_TINY_OK", "/nonexistent"))] if p.exists()]
    if not tiny_ok:
        for dt in dtypes:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="",
                 note="not tried: lt2c's CUDA backend did not pass the tiny-model checks in this run (or they did not run)")
        return
    hp = sh([exe, "--help"], timeout=30)
    has_dtype = "--dtype" in (hp.stdout + hp.stderr)
    for dt in [d for d in dtypes if d != "fp32"]:
        if not has_dtype or dt not in ("bf16", "fp16"):
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="",
                 note=f"not measured: the carried lt2c has no `--dtype {dt}` (`lt2c --help` does not list it)")
            dtypes.remove(dt)
    max_prompt = max(L for L, _ in runs)
    cfg = common.shrink(get(name).big)
    info = wait_prepared(name)
    if isinstance(info, str):
        for dt in dtypes:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="", note=f"not measured: {info}")
        return
    tw = None
    if info is not None:
        work = PREP_DIR / name
        lack = [dt for dt in dtypes if dt not in info["dtypes"] and dt not in info["failed"]]
        if lack or info["max_prompt"] < max_prompt:
            for dt in dtypes:
                emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="",
                     note=f"not measured: the background preparation does not cover this step (dtypes {info['dtypes']}, "
                          f"prompts up to {info['max_prompt']})")
            return
        where = f"in the background during the GPU kernel step, waited {info['waited']:.0f} s"
    else:
        work.mkdir(parents=True, exist_ok=True)
        info, tw = prepare(exe, work, name, dtypes, max_prompt, common.DEV)
        (work / info["weights"]).unlink(missing_ok=True)  # the reference keeps them in memory
        where = "in this step"
    t_onnx, t_comp = info["t_onnx"], info["t_comp"]
    mbs = {dt: work / f"{name}_{dt}.bin" for dt in dtypes}
    for dt, err in info["failed"].items():
        if dt in dtypes:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="compile", shape="",
                 note=f"lt2c compile of the 1.3B ONNX failed after {t_comp:.0f} s: {err}")
            dtypes.remove(dt)
    if not dtypes:
        return
    # correctness: every dtype generates from the same 64-token prompt; the reference runs on its tokens
    g = np.random.default_rng(20261127)
    prompt = g.integers(0, cfg.vocab, CHECK_PROMPT).tolist()
    got = {}
    for dt in list(dtypes):
        lo = work / f"check_{dt}.npz"
        r = sh([exe, "generate", mbs[dt], "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", "4", "--json", "--device",
                LDEV, "--logits-out", lo, "--max-context", "128"], timeout=max(30, int(common.time_left()) - 20))
        if r.returncode:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="generate --device cuda", shape="",
                 note=f"failed: {(r.stderr or r.stdout).strip()[-300:]}")
            dtypes.remove(dt)
            continue
        got[dt] = (json.loads(r.stdout.strip().splitlines()[-1])["tokens"], torch.from_numpy(np.load(lo)["logits"]))
    if "fp32" not in run_dtypes:
        mbs["fp32"].unlink(missing_ok=True)  # only the check runs the fp32 build: free its GiBs
    if not got:
        return
    if tw is None:
        tw = load_weights(work, info, common.DEV)
        (work / info["weights"]).unlink(missing_ok=True)
    ref = bm.Model(cfg, tw, device=common.DEV, dtype=torch.float32, use_fla=False,
                   rope_tables=(tw["rope.cos_cache"], tw["rope.sin_cache"]) if cfg.has_rope else None, dsa_block=64)
    del tw
    notes = [f"onnx {t_onnx:.0f} s, lt2c compiles {t_comp:.0f} s ({where})"]
    if cfg.exit_gate:
        notes.append(f"all {cfg.n_loops} loops on both sides (no --exit-threshold), logits of the last loop")
    if "dsa" in cfg.mixers and CHECK_PROMPT + 4 <= cfg.dsa_top_k:
        notes.append(f"at {CHECK_PROMPT + 4} tokens top-{cfg.dsa_top_k} keeps every causal key: the selection itself is "
                     "checked on the tiny model (top-4)")
    ok_dtypes = []
    for dt, (toks, logits) in got.items():
        full = torch.tensor([prompt + toks[:-1]], device=common.DEV)
        want, _ = ref.prefill(full, all_logits=True)
        want = want[0, len(prompt) - 1 :].cpu()
        e = common.rel_err(logits, want)
        if dt == "fp32":
            ok = e < TOL_FP32
            what = f"lt2c {LDEV.upper()} {dt} vs PyTorch fp32 (same weights)"
            res = f"rel_err {e:.1e} (bar {TOL_FP32:.0e})"
        else:
            bm.LINEAR_ROUND = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
            try:
                emu, _ = ref.prefill(full, all_logits=True)
            finally:
                bm.LINEAR_ROUND = None
            emu = emu[0, len(prompt) - 1 :].cpu()
            e_emu, e_prec = common.rel_err(logits, emu), common.rel_err(emu, want)
            bar = min(TOL_REDUCED_MAX, max(TOL_REDUCED_MIN, 2 * e_prec))
            ok = e < bar
            what = f"lt2c {LDEV.upper()} --dtype {dt} vs PyTorch fp32 (same weights)"
            res = (f"rel_err {e:.1e} (bar {bar:.1e} = 2x the {dt}-operand PyTorch model's own {e_prec:.1e} from fp32, "
                   f"within [{TOL_REDUCED_MIN:.0e}, {TOL_REDUCED_MAX}]); vs that {dt}-operand model {e_emu:.1e}")
        emit(section="check", model=label, system=f"lt2c {dt}", row=what, shape=f"prompt {CHECK_PROMPT} + 4 greedy steps",
             check=f"{res}; " + "; ".join(notes), ok=bool(ok))
        if ok:
            ok_dtypes.append(dt)
        else:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="",
                 note=f"correctness check failed ({res}): no timing rows")
    del ref
    common.DEV != "cpu" and torch.cuda.empty_cache()
    timed_dtypes = [dt for dt in ok_dtypes if dt in run_dtypes]
    gen_help = sh([exe, "generate", "--help"]).stdout
    batched = bool(batches) and gen_help.count("--batch") > 0
    # Prefill timed warm, as PyTorch's is (after warm-up), where the binary can: its first prefill
    # pays one-time costs; older binaries time the first prefill of the process.
    warm_prefills = "--warmup-prefills" in gen_help
    # timings, in priority order: B1 at the short prompts, the small batches, B1 at the long
    # prompts, the large batches (each only where it fits the time left)
    walls = {}  # dtype -> (prompt, seconds of one generate process, seconds of its prefill): the last one
    walls_at = {}  # (dtype, prompt) -> (seconds of one generate process, seconds of its prefill)
    long_from = 2048
    jobs = [("run", L, dt) for L, dt in runs if L <= long_from and dt in timed_dtypes]
    small = [b for b in batches if b[0] <= 8 and b[1] <= long_from]
    jobs += [("batch", b, dt) for b in small for dt in timed_dtypes]
    jobs += [("run", L, dt) for L, dt in runs if L > long_from and dt in timed_dtypes]
    jobs += [("batch", b, dt) for b in batches if b not in small for dt in timed_dtypes]
    if batches and not batched:
        for dt in timed_dtypes:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode", shape=", ".join(f"B{n} ctx{c}" for n, c in batches), note=NOT_BATCHED)
        jobs = [j for j in jobs if j[0] == "run"]

    def need_s(dt, L):
        """Seconds of one generate process at prompt L: fixed part + prefill scaled (x1.5: attention's L^2 part)."""
        if dt not in walls:
            return 10.0
        L0, s0, p0 = walls[dt]
        return (s0 - p0) + p0 * max(1.0, 1.5 * L / L0)

    def run_row(L, dt):
        sysname = f"lt2c {dt}"
        first = dt not in walls  # one untimed process before the first of a dtype (page cache, clocks)
        need = need_s(dt, L) * (2 if first else 1) + 5
        left = common.time_left() - 5
        if left < need:
            emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
                 note=f"dropped: time budget ({left:.0f} s left, about {need:.0f} s needed)")
            return
        ids = g.integers(0, cfg.vocab, L).tolist()
        gen = [exe, "generate", mbs[dt], *prompt_args(work, ids), "--max-new-tokens", "12", "--json", "--device", LDEV,
               "--max-context", str(L + 16)] + (["--warmup-prefills", "1"] if warm_prefills else [])
        outs, last_err = [], ""
        timed = 3 if L <= long_from else 2
        for i in range(timed + (1 if first else 0)):
            if outs or (first and i):  # another process only if it fits (after the first timed one: beside the later jobs' time)
                later = 15.0 * sum(1 for j in jobs[jobs.index(("run", L, dt)) + 1:])
                if common.time_left() - 5 - (later if outs else 0) < walls[dt][1] * 1.2:
                    break
            t1 = time.time()
            r = sh(gen, timeout=max(15, int(common.time_left()) - 5))
            wall = time.time() - t1
            if r.returncode:
                last_err = (r.stderr or r.stdout).strip()[-300:]
                break
            js = json.loads(r.stdout.strip().splitlines()[-1])
            prefills_s = (js["prefill_ms"] + js.get("prefill_cold_ms", 0.0)) / 1e3
            walls[dt] = (L, wall, prefills_s)
            walls_at[(dt, L)] = (wall, prefills_s)
            if i or not first:
                outs.append(js)
        if not outs:
            emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
                 note=f"no timed generate: {last_err or 'time budget'}")
            return
        pf = common.median([o["prefill_ms"] for o in outs])
        dc = common.median([o.get("decode_ms_steady", o["decode_ms_per_token"]) for o in outs])
        prec = "fp32 weights and activations" if dt == "fp32" else f"{dt} weight products (operands {dt}, fp32 accumulation, activations, norms, state and caches fp32)"
        warm = "after 1 untimed" if first else "no untimed one: this build ran before"
        if warm_prefills:
            cold = common.median([o["prefill_cold_ms"] for o in outs if "prefill_cold_ms" in o] or [float("nan")])
            warm += f"; a warm prefill: after one untimed prefill in the same process, whose median was {cold:.0f} ms (cold: cuBLASLt algorithm choice, kernel loading)"
        fl, by = floors(cfg, "prefill", 1, L)
        emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
             ms=pf, flops=fl, bytes=by, tok_s=L / pf * 1e3,
             note=f"lt2c's host wall clock, median of {len(outs)} processes ({warm}); {prec}; floor: bf16 weights and caches")
        fl, by = floors(cfg, "decode", 1, L)
        emit(section="lt2c", model=label, system=sysname, row="decode (lt2c generate --json)", shape=f"B1 ctx{L}", batch=1, ctx=L,
             ms=dc, tok_s=1e3 / dc, flops=fl, bytes=by,
             note=f"lt2c's host wall clock, {steady_note(outs[-1], 11)}, median of {len(outs)} processes; {prec}; floor: bf16 weights and caches")

    def batch_row(b, dt):
        """`generate --batch N` runs N copies of a prompt as one batch."""
        nb, L = b
        shape = f"B{nb} ctx{L}"
        need_b = cache_need(exe, mbs[dt], cfg, nb, L + 16)
        free = torch.cuda.mem_get_info()[0] if LDEV == "cuda" and torch.cuda.is_available() else 1 << 40
        wbytes = mbs[dt].stat().st_size
        if need_b > free - wbytes - 6 * 2**30:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=shape,
                 note=f"does not fit: lt2c's caches need {need_b / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free "
                      f"for them, the {wbytes / 2**30:.1f} GiB of weights and the activations")
            return
        # one process: its fixed part + the prefill of nb prompts (batched: about a third of nb single ones)
        s1, p1 = walls_at.get((dt, L)) or (need_s(dt, L), walls[dt][2] * L / walls[dt][0] if dt in walls else 1.0)
        need = (s1 - p1) + nb * p1 / 3 + 10
        if common.time_left() - 5 < need:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=shape,
                 note=f"dropped: time budget ({common.time_left():.0f} s left, about {need:.0f} s needed)")
            return
        ids = g.integers(0, cfg.vocab, L).tolist()
        r = sh([exe, "generate", mbs[dt], *prompt_args(work, ids), "--max-new-tokens", "8", "--batch", str(nb), "--json",
                "--device", LDEV, "--max-context", str(L + 16)], timeout=max(15, int(common.time_left()) - 5))
        if r.returncode:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=shape,
                 note=f"failed: {(r.stderr or r.stdout).strip()[-300:]}")
            return
        js = json.loads(r.stdout.strip().splitlines()[-1])
        step = js.get("decode_ms_steady", js["decode_ms_per_token"])
        fl, by = floors(cfg, "decode", nb, L)
        emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=shape, batch=nb, ctx=L,
             ms=step, tok_s=nb * 1e3 / step, flops=fl, bytes=by,
             note=f"lt2c's host wall clock, one process, {nb} copies of the prompt as one batch (prefill {js['prefill_ms']:.0f} ms), "
                  f"{steady_note(js, 7)}")

    for kind, n, dt in jobs:
        (run_row if kind == "run" else batch_row)(n, dt)
    shutil.rmtree(work, ignore_errors=True)  # GiBs of model.bin: the GPU machine may stay warm for the next call


if __name__ == "__main__":
    main()
