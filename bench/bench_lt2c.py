"""lt2c rows: only where the lt2c CUDA backend runs, and only after a correctness check in
this run. For each tiny zoo model (ONNX from tests/fixtures/zoo, compiled here with the
carried lt2c binary): ``lt2c run --device cuda`` on the fixture's inputs, logits against the
PyTorch reference (fp64, bench/torch_model.py) within the fp32 tolerance 1e-4; then
``lt2c generate --device cuda --json --logits-out`` (greedy, 8 tokens), each step's logits
against the reference's full prefill of prompt + generated tokens. Timings are lt2c's own
(``prefill_ms``, ``decode_ms_per_token`` of ``--json``, host wall clock around each call),
next to PyTorch eager fp32 on the same tiny model and prompt (CUDA events).

The binary: ``$LT2C`` or ``bench/.bin/lt2c`` (carried; the GPU machine builds nothing). When
it is missing or has no CUDA backend, one row says so and nothing is timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

import bench_common as common
from bench_common import emit
from bench_check_tiny import golden, tiny_model

MODELS = ("lt2_full_gdn", "lt2_gdn_dsa", "ouro")
TOL = 1e-4
LDEV = os.environ.get("LT2C_DEVICE", "cuda")  # "cpu": dry run of this script without a GPU


def sh(args, timeout=120):
    timeout = min(timeout, 3600)
    env = dict(os.environ, LD_LIBRARY_PATH="/usr/local/cuda/lib64:" + os.environ.get("LD_LIBRARY_PATH", ""))
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--big", default="", help="also (or only, with --no-tiny) this zoo model at its 1.3B size")
    ap.add_argument("--no-tiny", action="store_true")
    ap.add_argument("--prompt", type=int, default=1024)
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
        return big(exe, work, a.big, a.prompt)
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


def big(exe, work, name, prompt_len):
    """The model at its 1.3B size, fp32: ONNX (lt2.models.looped.build_model, the zoo's builder)
    with external data holding random weights drawn here, compiled by lt2c on this machine
    (nothing carried but the binary); correctness on a
    64-token prompt + 4 greedy steps against the PyTorch fp32 reference on the same weights;
    then one timed ``generate`` at ``prompt_len`` tokens (after one untimed)."""
    import time

    import onnx
    from lt2 import reference
    from lt2.models import looped
    from lt2.zoo.registry import get
    from bench_model import Model, gen_weights

    from bench_e2e import NAMES, floors

    label = NAMES.get(name, name)
    if not (common.OUT / "lt2c_tiny_ok").exists():
        emit(section="lt2c", model=label, system="lt2c fp32", row="status", shape="",
             note="not tried: lt2c's CUDA backend did not pass the tiny-model checks in this run")
        return
    cfg = common.shrink(get(name).big)
    t0 = time.time()
    # weights: drawn on the GPU in fp32 (gen_weights: the zoo's names and distributions; numpy's
    # make_weights takes about a minute for 1.5B values), written as the ONNX external data
    tw = gen_weights(cfg, common.DEV, torch.float32, seed=2)
    if cfg.has_rope:
        cos, sin = reference.rope_cache(cfg.max_positions, cfg.attn_head_dim, cfg.rope_theta)
        tw["rope.cos_cache"] = torch.from_numpy(cos.astype(np.float32))
        tw["rope.sin_cache"] = torch.from_numpy(sin.astype(np.float32))
    w = {k: v.cpu().numpy() for k, v in tw.items()}
    loc = f"{name}.weights"
    looped.write_external_data(w, work / loc)
    m = looped.build_model(cfg, w, unrolled=False, spelling="standard", external_data=loc, check=False)
    onnx.save(m, str(work / f"{name}.onnx"))
    del w, m
    t_onnx = time.time() - t0
    mb = work / f"{name}.bin"
    t0 = time.time()
    r = sh([exe, work / f"{name}.onnx", "-o", mb], timeout=max(30, int(common.time_left()) - 30))
    t_comp = time.time() - t0
    (work / loc).unlink(missing_ok=True)
    if r.returncode:
        emit(section="lt2c", model=label, system="lt2c fp32", row="compile", shape="",
             note=f"lt2c compile of the 1.3B ONNX failed after {t_comp:.0f} s: {(r.stderr or r.stdout).strip()[-300:]}")
        return
    g = np.random.default_rng(20261127)
    prompt = g.integers(0, cfg.vocab, 64).tolist()
    lo = work / "big_check.npz"
    r = sh([exe, "generate", mb, "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", "4", "--json", "--device",
            LDEV, "--logits-out", lo, "--max-context", str(prompt_len + 16)], timeout=max(30, int(common.time_left()) - 20))
    if r.returncode:
        emit(section="lt2c", model=label, system="lt2c fp32", row="generate --device cuda", shape="",
             note=f"failed: {(r.stderr or r.stdout).strip()[-300:]}")
        return
    toks = json.loads(r.stdout.strip().splitlines()[-1])["tokens"]
    ref = Model(cfg, tw, device=common.DEV, dtype=torch.float32, use_fla=False,
                rope_tables=(tw["rope.cos_cache"], tw["rope.sin_cache"]) if cfg.has_rope else None, dsa_block=64)
    del tw
    full = torch.tensor([prompt + toks[:-1]], device=common.DEV)
    want, _ = ref.prefill(full, all_logits=True)
    del ref
    common.DEV != "cpu" and torch.cuda.empty_cache()
    got = torch.from_numpy(np.load(lo)["logits"])
    e = common.rel_err(got, want[0, len(prompt) - 1 :].cpu())
    ok = e < TOL
    emit(section="check", model=label, system="lt2c fp32", row="lt2c CUDA vs PyTorch fp32 (same weights)",
         shape="prompt 64 + 4 greedy steps", check=f"rel_err {e:.1e} (onnx {t_onnx:.0f} s, lt2c compile {t_comp:.0f} s)", ok=bool(ok))
    if not ok:
        emit(section="lt2c", model=label, system="lt2c fp32", row="status", shape="", note=f"correctness check failed ({e:.1e}): no timing rows")
        return
    prompt = g.integers(0, cfg.vocab, prompt_len).tolist()
    gen = [exe, "generate", mb, "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", "9", "--json", "--device", LDEV,
           "--max-context", str(prompt_len + 16)]
    runs = []
    for _ in range(2):
        if common.time_left() < 15:
            break
        r = sh(gen, timeout=max(15, int(common.time_left()) - 5))
        if r.returncode == 0:
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    if not runs:
        emit(section="lt2c", model=label, system="lt2c fp32", row="status", shape="", note="timed generate did not finish")
        return
    js = runs[-1]
    fl, by = floors(cfg, "prefill", 1, prompt_len)
    emit(section="lt2c", model=label, system="lt2c fp32", row="prefill (lt2c generate --json)", shape=f"B1 L{prompt_len}",
         ms=js["prefill_ms"], flops=fl, bytes=by, note=f"host wall clock; run {len(runs)} of 2; floor is the bf16 one")
    fl, by = floors(cfg, "decode", 1, prompt_len)
    emit(section="lt2c", model=label, system="lt2c fp32", row="decode (lt2c generate --json)", shape=f"B1 ctx{prompt_len}",
         ms=js["decode_ms_per_token"], tok_s=1e3 / js["decode_ms_per_token"], flops=fl, bytes=by,
         note="host wall clock, mean of 8 steps; floor is the bf16 one")


if __name__ == "__main__":
    main()
