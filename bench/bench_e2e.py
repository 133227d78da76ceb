"""End-to-end rows for one model and one system: prefill latency (B=1, 1K/8K/32K tokens,
logits of the last position, caches written) and decode tokens/s (B sequences, one token
each, at context 1K/8K, per-(loop, layer) caches filled with random values), PyTorch bf16
eager or ``torch.compile``. Weights: random, generated on the GPU (``gen_weights``, seed 1).

Checks written as rows (section "check") before the timings, against the fp32 model with the
PyTorch GDN recurrence on the same weights (48 tokens): the bf16 eager prefill, 8 bf16 decode
steps after a prefill (the caches), the compiled prefill and one compiled decode step.
Rows run in priority order (see ``main``); the 32K prompts last (``--long-iters``: how many timed
calls they get, e.g. 1 for GDN+DSA, whose plain-PyTorch DSA takes about 12 s per 32K call on an
H100). A row that does not fit the step's time (``BENCH_DEADLINE``) is written as dropped, with
the time that was left.

    python bench/bench_e2e.py --model lt2_full_gdn [--modes eager,compile]
"""

from __future__ import annotations

import argparse
import time

import torch

import bench_common as common
from bench_common import emit
from lt2.zoo.registry import get
from bench_model import Model, count_params, gen_weights, HAVE_FLA

NAMES = {"lt2_full_gdn": "LT2 Full+GDN 1.3B", "lt2_gdn_dsa": "LT2 GDN+DSA 1.3B", "ouro": "Ouro-1.4B-shaped"}


def floors(cfg, row, B, L):
    P = count_params(cfg)
    T, d = cfg.n_loops, cfg.d_model
    n = {k: sum(1 for m in cfg.mixers if m == k) for k in ("gdn", "attn", "dsa")}
    hq, hk, hd = cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
    hv, dk, dv = cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v
    sd, lat, vd, k, dh = cfg.dsa_score_dim, cfg.dsa_latent_dim, cfg.dsa_value_dim, cfg.dsa_top_k, cfg.dsa_heads
    es = 2
    if row == "prefill":
        mix = (n["attn"] * common.sdpa_prefill_flops(1, L, hq, hd) + n["gdn"] * common.gdn_chunk_flops(L, hv, dk, dv)
               + n["dsa"] * (common.indexer_flops(L, sd) + common.sparse_attn_flops(L, dh, lat, vd, k)))
        flops = 2 * L * T * P["layers"] + T * mix + 2 * P["head"]
        cache = T * (n["gdn"] * hv * dk * dv * 4 + n["attn"] * L * 2 * hk * hd * es + n["dsa"] * L * (sd + lat) * es)
        by = T * P["layers"] * es + P["head"] * es + T * len(cfg.mixers) * 2 * L * d * es + cache
        return flops, by
    ctx = L
    kk = min(k, ctx + 1)
    mix = (n["attn"] * common.sdpa_decode_flops(1, ctx + 1, hq, hd) + n["gdn"] * common.gdn_step_flops(1, hv, dk, dv)
           + n["dsa"] * (2 * (ctx + 1) * sd + 2 * kk * dh * (lat + vd)))
    flops = 2 * B * (T * P["layers"] + P["head"]) + T * B * mix
    per_seq = T * (n["gdn"] * hv * dk * dv * 4 * 2 + n["attn"] * (ctx + 1) * 2 * hk * hd * es
                   + n["dsa"] * ((ctx + 1) * sd * es + kk * lat * es))
    by = T * P["layers"] * es + P["head"] * es + B * per_seq
    return flops, by


def build(cfg, mode, max_pos, seed=1, dtype=torch.bfloat16, use_fla=True, dsa_block=1024):
    w = gen_weights(cfg, common.DEV, torch.bfloat16, seed)
    m = Model(cfg, w, device=common.DEV, dtype=dtype, use_fla=use_fla, compile=(mode == "compile"), max_pos=max_pos,
              dsa_block=dsa_block)
    del w
    common.DEV != "cpu" and torch.cuda.empty_cache()
    return m


CHECK_L = 48
LONG = 32768  # prompts this long run after every other row of the model
BF16_TOL = 0.25  # whole-model bf16 vs fp32 (bf16 residual stream through T*N = 84-96 layers); a wrong layout gives ~1


def check_ids(cfg):
    g = torch.Generator(device=common.DEV)
    g.manual_seed(7)
    return torch.randint(0, cfg.vocab, (1, CHECK_L), generator=g, device=common.DEV)


def fp32_reference(cfg, max_pos, ids):
    """fp32 model (same weights, PyTorch GDN recurrence): logits of ids + [ids[-1]] at every
    position: [:, :L] is the prefill reference, [:, L] the reference of one decode step."""
    m32 = build(cfg, "eager", max_pos, dtype=torch.float32, use_fla=False, dsa_block=16)
    ref, _ = m32.prefill(torch.cat((ids, ids[:, -1:]), 1), all_logits=True)
    del m32
    common.DEV != "cpu" and torch.cuda.empty_cache()
    return ref


def run_checks_eager(name, cfg, m, ref):
    ids = check_ids(cfg)
    L = CHECK_L
    got, _ = m.prefill(ids, all_logits=True)
    e = common.rel_err(got, ref[:, :L])
    # decode vs prefill (bf16, fla chunk for the prompt, fused_recurrent for the steps)
    p = L - 8
    lg, caches = m.prefill(ids[:, :p], cache_cap=L + 1)
    outs = [lg[:, -1]]
    for t in range(p, L - 1):
        outs.append(m.decode(ids[:, t], caches, t))
    dec = torch.stack(outs, 1)
    e3 = common.rel_err(dec, got[:, p - 1 : L - 1])
    e4 = common.rel_err(dec, ref[:, p - 1 : L - 1])
    emit(section="check", model=NAMES[name], system="eager", row="bf16 model vs fp32 reference (same weights)", shape=f"B1 L{L}",
         check=f"prefill vs fp32 {e:.1e}; 8 decode steps vs fp32 {e4:.1e}, vs own prefill {e3:.1e}",
         ok=bool(max(e, e3, e4) < BF16_TOL))


def run_checks_compile(name, cfg, m, ref):
    ids = check_ids(cfg)
    L = CHECK_L
    t0 = time.time()
    got, caches = m.prefill(ids, cache_cap=L + 1, all_logits=True)
    d_got = m.decode(ids[:, -1], caches, L)
    comp_s = time.time() - t0
    e1, e2 = common.rel_err(got, ref[:, :L]), common.rel_err(d_got, ref[:, L])
    emit(section="check", model=NAMES[name], system="compile", row="compiled bf16 vs fp32 reference (same weights)",
         shape=f"B1 L{L}", check=f"prefill {e1:.1e}, decode step {e2:.1e}; first compile {comp_s:.0f} s",
         ok=bool(e1 < BF16_TOL and e2 < BF16_TOL))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=list(NAMES))
    ap.add_argument("--modes", default="eager,compile", help="eager, compile or both (one weight generation)")
    ap.add_argument("--prefill", default="1024,8192,32768")
    ap.add_argument("--compile-prefill", default=None, help="prefill lengths under torch.compile (default: --prefill)")
    ap.add_argument("--compile-prefill-why", default="", help="the reason written for the --prefill lengths --compile-prefill leaves out")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--ctx", default="1024,8192")
    ap.add_argument("--decode-iters", type=int, default=7)
    ap.add_argument("--prefill-iters", type=int, default=3)
    ap.add_argument("--long-iters", type=int, default=None,
                    help="timed calls of the prompts of at least --long tokens (default: --prefill-iters)")
    ap.add_argument("--no-checks", action="store_true")
    ap.add_argument("--long", type=int, default=LONG, help="prompts at least this long run after every other row")
    a = ap.parse_args()
    for knob in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 256)
    torch.backends.cuda.matmul.allow_tf32 = False
    name = a.model
    modes = a.modes.split(",")
    cfg = common.shrink(get(name).big)
    lens = [int(x) for x in a.prefill.split(",") if x]
    clens = lens if a.compile_prefill is None else [int(x) for x in a.compile_prefill.split(",") if x]
    ctxs = [int(x) for x in a.ctx.split(",") if x]
    batches = [int(x) for x in a.batches.split(",") if x]
    max_pos = max(lens + clens + [c + 1 for c in ctxs]) + 64
    t0 = time.time()
    m = build(cfg, "eager", max_pos)
    eager_fns = dict(m.f)
    print(f"[{name}] built in {time.time() - t0:.1f} s; fla={HAVE_FLA}", flush=True)
    g = torch.Generator(device=common.DEV)
    g.manual_seed(3)
    label = NAMES[name]

    est = {}  # system -> (L, median ms) of its longest prompt measured so far
    est_len = {}  # (system, L) -> median ms
    long_iters = a.prefill_iters if a.long_iters is None else a.long_iters

    def prefill_row(sysname, L):
        shape = f"B1 L{L}"
        left = common.time_left()
        need = 20.0
        same = [ms for (_, l), ms in est_len.items() if l == L]
        if same:  # this length ran on another system: first call + one timed call of about its time
            need = max(need, 2 * 1.2 * max(same) / 1e3 + 5)
        elif sysname in est:  # first call + one timed call, from the longest prompt so far (x1.5: attention's L^2 part)
            L0, ms0 = est[sysname]
            need = max(need, 2 * 1.5 * ms0 / 1e3 * L / L0 + 10)
        if left < need:
            emit(section="e2e", model=label, system=sysname, row="prefill", shape=shape,
                 note=f"dropped: time budget ({left:.0f} s left in the step, about {need:.0f} s needed)")
            return
        torch.backends.cuda.enable_cudnn_sdp(True)
        ids = torch.randint(0, cfg.vocab, (1, L), generator=g, device=common.DEV)
        try:
            t1 = time.time()
            m.prefill(ids)
            common.sync()
            first = time.time() - t1
            fit = int((common.time_left() - 10) / max(first, 1e-3))
            if fit < 1:
                emit(section="e2e", model=label, system=sysname, row="prefill", shape=shape,
                     note=f"dropped: time budget after the untimed first call ({first:.1f} s)")
                return
            iters = min(long_iters if L >= a.long else a.prefill_iters, fit)
            warm = 1 if first < 2.0 else 0  # a second untimed call where it is cheap (late recompiles, clocks)
            ms, all_ms = common.cuda_time(lambda: m.prefill(ids), warmup=warm, iters=iters)
            est[sysname] = (L, ms)
            est_len[(sysname, L)] = ms
            fl, by = floors(cfg, "prefill", 1, L)
            emit(section="e2e", model=label, system=sysname, row="prefill", shape=shape, ms=ms, flops=fl, bytes=by,
                 tok_s=L / ms * 1e3, note=f"first call {first:.1f} s; {len(all_ms)} timed: {[round(x, 1) for x in all_ms]}")
        except Exception as ex:  # noqa: BLE001  (OOM from torch, cuBLAS or Triton)
            emit(section="e2e", model=label, system=sysname, row="prefill", shape=shape,
                 note=f"failed: {type(ex).__name__}: {str(ex)[:160]}")
        ids = None
        common.DEV != "cpu" and torch.cuda.empty_cache()

    def decode_rows(sysname, which):
        """Decode rows for (ctx, B) in ``which`` order."""
        torch.backends.cuda.enable_cudnn_sdp(False)  # TOOLCHAIN.md: cuDNN SDPA re-plans every decode step
        for ctx, B in which:
            shape = f"B{B} ctx{ctx}"
            if common.time_left() < 15:
                emit(section="e2e", model=label, system=sysname, row="decode", shape=shape, note="dropped: time budget")
                continue
            need = m.cache_bytes(B, ctx + 1)
            free = torch.cuda.mem_get_info()[0] if common.DEV != "cpu" else 1 << 40
            if need > free - 6 * 2**30:
                emit(section="e2e", model=label, system=sysname, row="decode", shape=shape,
                     note=f"does not fit: caches need {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
                continue
            caches = None
            try:
                caches = m.random_cache(B, ctx)
                tok = torch.randint(0, cfg.vocab, (B,), generator=g, device=common.DEV)
                t1 = time.time()
                m.decode(tok, caches, ctx)
                common.sync()
                first = time.time() - t1
                ms, all_ms = common.cuda_time(lambda: m.decode(tok, caches, ctx), warmup=2, iters=a.decode_iters)
                fl, by = floors(cfg, "decode", B, ctx)
                emit(section="e2e", model=label, system=sysname, row="decode", shape=shape, batch=B, ctx=ctx, ms=ms,
                     tok_s=B / ms * 1e3, flops=fl, bytes=by,
                     note=f"caches {need / 2**30:.1f} GiB; first call {first:.1f} s; median of {len(all_ms)}")
            except Exception as ex:  # noqa: BLE001
                emit(section="e2e", model=label, system=sysname, row="decode", shape=shape,
                     note=f"failed: {type(ex).__name__}: {str(ex)[:160]}")
            caches = None
            common.DEV != "cpu" and torch.cuda.empty_cache()
        torch.backends.cuda.enable_cudnn_sdp(True)

    refs = {}

    def checks(sysname):
        if a.no_checks:
            return
        try:
            if "ref" not in refs:
                refs["ref"] = fp32_reference(cfg, max_pos, check_ids(cfg))
            if sysname == "eager":
                run_checks_eager(name, cfg, m, refs["ref"])
            else:
                run_checks_compile(name, cfg, m, refs["ref"])
        except Exception as ex:  # noqa: BLE001
            emit(section="check", model=label, system=sysname, row="checks", shape="", ok=False,
                 check=f"FAILED {type(ex).__name__}: {str(ex)[:300]}")

    # Order = priority (rows that do not fit the step's time are written as dropped, the rest
    # stays): eager rows, then the compiled prefill (its graph is the check's: no recompile),
    # compiled decode at B1 (the check's graph), at B > 1 (one recompile: dynamic=True
    # specialises size 1), and the 32K prompts last.
    grid = [(ctx, B) for ctx in ctxs for B in batches]
    short = [L for L in lens if L < a.long]
    cshort = [L for L in clens if L < a.long]
    comp_fns = None
    if "eager" in modes:
        checks("eager")
        for L in short:
            prefill_row("eager", L)
        decode_rows("eager", grid)
    if "compile" in modes:
        comp_fns = {k: torch.compile(v, dynamic=True) for k, v in eager_fns.items()}
        m.f = comp_fns
        checks("compile")
        for L in cshort:
            prefill_row("compile", L)
        decode_rows("compile", [x for x in grid if x[1] == 1] + [x for x in grid if x[1] != 1])
    if "compile" in modes:
        for L in [L for L in lens if L not in clens]:
            emit(section="e2e", model=label, system="compile", row="prefill", shape=f"B1 L{L}",
                 note="not run: left out of this step's compiled prefill lengths" + (f" ({a.compile_prefill_why})" if a.compile_prefill_why else ""))
    long = [("eager", L) for L in lens if L >= a.long and "eager" in modes]
    long += [("compile", L) for L in clens if L >= a.long and "compile" in modes]
    for sysname, L in long:  # the longest prompts last: first to go when time runs out
        m.f = eager_fns if sysname == "eager" else comp_fns
        prefill_row(sysname, L)


if __name__ == "__main__":
    main()
