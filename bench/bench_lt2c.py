"""lt2c rows: only where the lt2c CUDA backend runs, and only after a correctness check in
this run. For each tiny zoo model (ONNX from tests/fixtures/zoo, compiled here with the
carried lt2c binary): ``lt2c run --device cuda`` on the fixture's inputs, logits against the
PyTorch reference (fp64, bench/torch_model.py) within the fp32 tolerance 1e-4; then
``lt2c generate --device cuda --json --logits-out`` (greedy, 8 tokens), each step's logits
against the reference's full prefill of prompt + generated tokens. Timings are lt2c's own
(``prefill_ms``, ``decode_ms_per_token`` of ``--json``, host wall clock around each call),
next to PyTorch eager fp32 on the same tiny model and prompt (CUDA events).

With ``--big MODEL``: the model at its 1.3B size instead, fp32 and ``--dtype bf16`` (where the
binary has it), checked against PyTorch fp32 on the same weights, then timed at the prompts of
``--runs`` (see ``big``). ``lt2c generate`` takes one prompt, so lt2c has B = 1 rows only.

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


def sh_many(cmds: dict, timeout):
    """Run several commands at once (lt2c compiles are single-threaded); {key: CompletedProcess}."""
    procs = {k: subprocess.Popen([str(a) for a in c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for k, c in cmds.items()}
    end = time.time() + max(1, min(timeout, common.time_left() - 2))
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
    a = ap.parse_args()
    os.environ.setdefault("LT2C_CACHE_DIR", "/tmp/lt2c-kernel-cache")
    exe = Path(os.environ.get("LT2C", common.REPO / "bench" / ".bin" / "lt2c"))
    if not exe.exists():
        emit(section="lt2c", model="all", system="lt2c", row="status", shape="",
             note=os.environ.get("LT2C_NOTE", f"no lt2c binary at {exe}: not carried"))
        return
    work = Path(tempfile.mkdtemp(prefix="lt2c_"))
    dev = common.DEV
    if a.big:
        runs = [(int(x.split(":")[0]), x.split(":")[1]) for x in a.runs.split(",") if x]
        try:
            return big(exe, work, a.big, runs)
        except Exception as ex:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            emit(section="lt2c", model=a.big, system="lt2c", row="status", shape="", note=f"failed: {type(ex).__name__}: {str(ex)[:300]}")
            return
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


def big(exe, work, name, runs):
    """The model at its 1.3B size. ONNX (lt2.models.looped.build_model, the zoo's builder) with
    external data holding random weights drawn here on the GPU, rounded to bf16-representable
    values (so ``--dtype bf16`` stores them exactly and all systems run the same weights);
    compiled on this machine once per dtype (fp32, and ``--dtype bf16`` where the carried binary
    has it, both at once). Checks: a 64-token prompt + 4 greedy steps (``generate
    --logits-out``) against the PyTorch fp32 reference on the same weights and tokens; for a
    reduced-precision build the bar scales with the distance from fp32 of the PyTorch fp32 model
    whose weight products round their operands the same way (``bench_model.LINEAR_ROUND``; see
    ``TOL_*``). Then, for each ``(prompt, dtype)`` of
    ``runs`` that passed and fits the time: ``generate`` with 9 new tokens, one untimed process
    and up to 3 timed ones (2 above 2K tokens), medians of lt2c's own ``prefill_ms`` / ``decode_ms_per_token``."""
    import dataclasses

    import onnx
    import bench_model as bm
    from lt2 import reference
    from lt2.models import looped
    from lt2.zoo.registry import get

    from bench_e2e import NAMES, floors

    label = NAMES.get(name, name)
    dtypes = list(dict.fromkeys(dt for _, dt in runs))
    if "fp32" not in dtypes:
        dtypes.insert(0, "fp32")
    if not (common.OUT / "lt2c_tiny_ok").exists():
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
    n_pos = max(cfg.max_positions, max_prompt + 64)  # RoPE table rows in the ONNX (the zoo's 8192 < 8K prompt + new tokens)
    t0 = time.time()
    tw = bm.gen_weights(cfg, common.DEV, torch.bfloat16, seed=2)
    tw = {k: v.float() for k, v in tw.items()}  # bf16-representable fp32
    if cfg.has_rope:
        cos, sin = reference.rope_cache(n_pos, cfg.attn_head_dim, cfg.rope_theta)
        tw["rope.cos_cache"] = torch.from_numpy(cos.astype(np.float32))
        tw["rope.sin_cache"] = torch.from_numpy(sin.astype(np.float32))
    w = {k: v.cpu().numpy() for k, v in tw.items()}
    loc = f"{name}.weights"
    looped.write_external_data(w, work / loc)
    m = looped.build_model(dataclasses.replace(cfg, max_positions=n_pos), w, unrolled=False, spelling="standard",
                           external_data=loc, check=False)
    onnx.save(m, str(work / f"{name}.onnx"))
    del w, m
    t_onnx = time.time() - t0
    mbs = {dt: work / f"{name}_{dt}.bin" for dt in dtypes}
    t0 = time.time()
    comp = sh_many({dt: [exe, work / f"{name}.onnx", "-o", mbs[dt]] + ([] if dt == "fp32" else ["--dtype", dt]) for dt in dtypes},
                   timeout=max(30, common.time_left() - 40))
    t_comp = time.time() - t0
    (work / loc).unlink(missing_ok=True)
    for dt, r in comp.items():
        if r.returncode:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="compile", shape="",
                 note=f"lt2c compile of the 1.3B ONNX failed after {t_comp:.0f} s: {(r.stderr or r.stdout).strip()[-300:]}")
            dtypes.remove(dt)
    if not dtypes:
        return
    # correctness: every dtype generates from the same 64-token prompt; the reference runs on its tokens
    g = np.random.default_rng(20261127)
    prompt = g.integers(0, cfg.vocab, 64).tolist()
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
    if not got:
        return
    ref = bm.Model(cfg, tw, device=common.DEV, dtype=torch.float32, use_fla=False,
                   rope_tables=(tw["rope.cos_cache"], tw["rope.sin_cache"]) if cfg.has_rope else None, dsa_block=64)
    del tw
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
        emit(section="check", model=label, system=f"lt2c {dt}", row=what, shape="prompt 64 + 4 greedy steps",
             check=f"{res}; onnx {t_onnx:.0f} s, lt2c compiles {t_comp:.0f} s", ok=bool(ok))
        if ok:
            ok_dtypes.append(dt)
        else:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="status", shape="",
                 note=f"correctness check failed ({res}): no timing rows")
    del ref
    common.DEV != "cpu" and torch.cuda.empty_cache()
    # timings
    walls = {}  # dtype -> (prompt, seconds of one generate process, seconds of its prefill)
    for L, dt in runs:
        sysname = f"lt2c {dt}"
        if dt not in ok_dtypes:
            continue
        left = common.time_left() - 5
        need = 20.0
        if dt in walls:  # one untimed + one timed process: fixed part + prefill scaled (x1.5: attention's L^2 part)
            L0, s0, p0 = walls[dt]
            need = 2 * ((s0 - p0) + p0 * max(1.0, 1.5 * L / L0))
        if left < need:
            emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
                 note=f"dropped: time budget ({left:.0f} s left, about {need:.0f} s needed)")
            continue
        ids = g.integers(0, cfg.vocab, L).tolist()
        gen = [exe, "generate", mbs[dt], "--prompt-ids", ",".join(map(str, ids)), "--max-new-tokens", "9", "--json", "--device", LDEV,
               "--max-context", str(L + 16)]
        outs, last_err = [], ""
        timed = 3 if L <= 2048 else 2
        for i in range(timed + 1):  # the first process is untimed (kernel cache, clocks)
            if i and common.time_left() - 5 < walls[dt][1] * 1.2:
                break
            t1 = time.time()
            r = sh(gen, timeout=max(15, int(common.time_left()) - 5))
            wall = time.time() - t1
            if r.returncode:
                last_err = (r.stderr or r.stdout).strip()[-300:]
                break
            js = json.loads(r.stdout.strip().splitlines()[-1])
            walls[dt] = (L, wall, js["prefill_ms"] / 1e3)
            if i:
                outs.append(js)
        if not outs:
            emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
                 note=f"no timed generate: {last_err or 'time budget'}")
            continue
        pf = common.median([o["prefill_ms"] for o in outs])
        # steady state: the mean of the 7 decode steps after the first (which pays one-time GEMM
        # plan set-up); older binaries only report the mean of all 8
        steady = all("decode_ms_steady" in o for o in outs)
        dc = common.median([o.get("decode_ms_steady", o["decode_ms_per_token"]) for o in outs])
        prec = "fp32 weights and activations" if dt == "fp32" else f"{dt} weight products (operands {dt}, fp32 accumulation, activations, norms, state and caches fp32)"
        fl, by = floors(cfg, "prefill", 1, L)
        emit(section="lt2c", model=label, system=sysname, row="prefill (lt2c generate --json)", shape=f"B1 L{L}",
             ms=pf, flops=fl, bytes=by, tok_s=L / pf * 1e3,
             note=f"lt2c's host wall clock, median of {len(outs)} processes (after 1 untimed); {prec}; floor: bf16 weights and caches")
        fl, by = floors(cfg, "decode", 1, L)
        emit(section="lt2c", model=label, system=sysname, row="decode (lt2c generate --json)", shape=f"B1 ctx{L}", batch=1, ctx=L,
             ms=dc, tok_s=1e3 / dc, flops=fl, bytes=by,
             note=f"lt2c's host wall clock, {'mean of the 7 steps after the first' if steady else 'mean of 8 steps'}, median of {len(outs)} processes; {prec}; floor: bf16 weights and caches")
    # batched decode: `generate --batch N` runs N copies of a 1K prompt as one batch
    batched = sh([exe, "generate", "--help"]).stdout.count("--batch") > 0
    for dt in ok_dtypes:
        if not batched:
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode", shape="B8, B64", note=NOT_BATCHED)
            continue
        for nb in (8, 64):
            L = 1024
            if common.time_left() < 60:
                emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=f"B{nb} ctx{L}",
                     note=f"dropped: time budget ({common.time_left():.0f} s left)")
                continue
            ids = g.integers(0, cfg.vocab, L).tolist()
            r = sh([exe, "generate", mbs[dt], "--prompt-ids", ",".join(map(str, ids)), "--max-new-tokens", "6", "--batch", str(nb), "--json",
                    "--device", LDEV, "--max-context", str(L + 16)], timeout=max(15, int(common.time_left()) - 5))
            if r.returncode:
                emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=f"B{nb} ctx{L}",
                     note=f"failed: {(r.stderr or r.stdout).strip()[-300:]}")
                continue
            js = json.loads(r.stdout.strip().splitlines()[-1])
            step = js.get("decode_ms_steady", js["decode_ms_per_token"])
            fl, by = floors(cfg, "decode", nb, L)
            emit(section="lt2c", model=label, system=f"lt2c {dt}", row="decode (lt2c generate --batch)", shape=f"B{nb} ctx{L}", batch=nb, ctx=L,
                 ms=step, tok_s=nb * 1e3 / step, flops=fl, bytes=by,
                 note=f"lt2c's host wall clock, one process, {nb} copies of the prompt as one batch, mean of the 4 decode steps after the first")

if __name__ == "__main__":
    main()
