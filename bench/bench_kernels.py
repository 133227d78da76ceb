"""Kernel rows: GDN chunked prefill (fla ``chunk_gated_delta_rule``) and GDN decode (fla
``fused_recurrent_gated_delta_rule``) for LT2's (H16, K96, V192) and Qwen-style (H16 q/k
heads, 32 value heads, K = V = 128) shapes; attention prefill and decode (SDPA, 16 x 128);
LT2's DSA (PyTorch: indexer, top-k 2048, sparse attention over the 576-dim latent) at 8K/32K,
next to dense causal SDPA at the same lengths. bf16, B = 1 for prefill.

fla is called as its 0.6.0 GatedDeltaNet layer calls it (q/k L2 norm, gate and beta sigmoid
in the kernel, V-first state). Timing: ``triton.testing.do_bench`` (CUDA events, L2 flushed
before each run), median. Checks (rows of section "check"): fla against the fp32 PyTorch
recurrence on the same bf16 inputs; SDPA against fp32 math; DSA bf16 against fp32.

    python bench/kernels.py --set gdn_lt2,gdn_qwen,attn,dsa
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import bench_common as common
from bench_common import emit
from bench_model import HAVE_FLA, dsa_select_attend, gdn_kernel, gdn_naive

GDN_SHAPES = {"gdn_lt2": ("GDN LT2 H16 K96 V192", 16, 16, 96, 192), "gdn_qwen": ("GDN Qwen-style H16 HV32 K=V=128", 16, 32, 128, 128)}


def bench(fn, rep=200):
    return common.bench_ms(fn, warmup=25, rep=rep)


def gdn_inputs(B, L, h, hv, k, v, g, with_state):
    dev, bf = common.DEV, torch.bfloat16
    q = torch.randn(B, L, h, k, device=dev, dtype=bf, generator=g)
    kk = torch.randn(B, L, h, k, device=dev, dtype=bf, generator=g)
    vv = torch.randn(B, L, hv, v, device=dev, dtype=bf, generator=g)
    a = torch.randn(B, L, hv, device=dev, dtype=bf, generator=g)
    b = torch.randn(B, L, hv, device=dev, dtype=bf, generator=g)
    A_log = torch.log(torch.rand(hv, device=dev, generator=g) * 15 + 1)
    dt = torch.exp(torch.rand(hv, device=dev, generator=g) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    S = torch.randn(B, hv, v, k, device=dev, generator=g) * 0.05 if with_state else None
    return q, kk, vv, a, b, A_log, dt_bias, S


def gdn_rows(key, lens, batches):
    label, h, hv, k, v = GDN_SHAPES[key]
    g = torch.Generator(device=common.DEV)
    g.manual_seed(5)
    scale = k ** -0.5
    if not HAVE_FLA:
        emit(section="kernel", model=label, system="fla", row="GDN", shape="", note="flash-linear-attention not importable")
        return
    # checks
    q, kk, vv, a, b, A_log, dt_bias, _ = gdn_inputs(1, 300, h, hv, k, v, g, False)
    o, S = gdn_kernel(q, kk, vv, a, b, A_log, dt_bias, scale, None, "chunk", True)
    o_ref, S_ref = gdn_naive(q, kk, vv, a, b, A_log, dt_bias, scale, None)
    e1, e1s = common.rel_err(o, o_ref), common.rel_err(S, S_ref)
    q, kk, vv, a, b, A_log, dt_bias, S0 = gdn_inputs(8, 1, h, hv, k, v, g, True)
    o, S = gdn_kernel(q, kk, vv, a, b, A_log, dt_bias, scale, S0, "recurrent", True)
    o_ref, S_ref = gdn_naive(q, kk, vv, a, b, A_log, dt_bias, scale, S0)
    e2, e2s = common.rel_err(o, o_ref), common.rel_err(S, S_ref)
    emit(section="check", model=label, system="fla", row="fla vs fp32 recurrence", shape="chunk B1 L300; recurrent B8",
         check=f"chunk out {e1:.1e} state {e1s:.1e}; recurrent out {e2:.1e} state {e2s:.1e}",
         ok=bool(max(e1, e1s, e2, e2s) < 1e-2))
    for L in lens:
        if common.time_left() < 10:
            emit(section="kernel", model=label, system="fla", row="GDN chunk prefill", shape=f"B1 L{L}", note="dropped: time budget")
            continue
        q, kk, vv, a, b, A_log, dt_bias, _ = gdn_inputs(1, L, h, hv, k, v, g, False)
        fn = lambda: gdn_kernel(q, kk, vv, a, b, A_log, dt_bias, scale, None, "chunk", True)  # noqa: E731
        ms = bench(fn)
        emit(section="kernel", model=label, system="fla", row="GDN chunk prefill (chunk_gated_delta_rule)", shape=f"B1 L{L}",
             ms=ms, flops=common.gdn_chunk_flops(L, hv, k, v), bytes=common.gdn_chunk_bytes(1, L, h, hv, k, v))
    for B in batches:
        q, kk, vv, a, b, A_log, dt_bias, S0 = gdn_inputs(B, 1, h, hv, k, v, g, True)
        fn = lambda: gdn_kernel(q, kk, vv, a, b, A_log, dt_bias, scale, S0, "recurrent", True)  # noqa: E731
        ms = bench(fn, rep=100)
        emit(section="kernel", model=label, system="fla", row="GDN decode step (fused_recurrent_gated_delta_rule)", shape=f"B{B}",
             ms=ms, flops=common.gdn_step_flops(B, hv, k, v), bytes=common.gdn_step_bytes(B, h, hv, k, v))


def attn_rows(lens, batches, ctxs):
    H, D = 16, 128
    g = torch.Generator(device=common.DEV)
    g.manual_seed(6)
    bf = torch.bfloat16
    q, k, v = (torch.randn(1, H, 1024, D, device=common.DEV, dtype=bf, generator=g) for _ in range(3))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    e = common.rel_err(o, ref)
    emit(section="check", model="attention 16x128", system="sdpa", row="SDPA vs fp64 math", shape="B1 L1024 causal",
         check=f"rel_err {e:.1e}", ok=bool(e < 1e-2))
    torch.backends.cuda.enable_cudnn_sdp(True)
    for L in lens:
        q, k, v = (torch.randn(1, H, L, D, device=common.DEV, dtype=bf, generator=g) for _ in range(3))
        ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        emit(section="kernel", model="attention 16x128", system="sdpa", row="attention prefill, causal (SDPA)", shape=f"B1 L{L}",
             ms=ms, flops=common.sdpa_prefill_flops(1, L, H, D), bytes=common.sdpa_prefill_bytes(1, L, H, H, D))
    torch.backends.cuda.enable_cudnn_sdp(False)
    for ctx in ctxs:
        for B in batches:
            q = torch.randn(B, H, 1, D, device=common.DEV, dtype=bf, generator=g)
            k, v = (torch.randn(B, H, ctx, D, device=common.DEV, dtype=bf, generator=g) for _ in range(2))
            ms = bench(lambda: F.scaled_dot_product_attention(q, k, v), rep=100)
            emit(section="kernel", model="attention 16x128", system="sdpa", row="attention decode (SDPA, cuDNN off)",
                 shape=f"B{B} ctx{ctx}", ms=ms, flops=common.sdpa_decode_flops(B, ctx, H, D),
                 bytes=common.sdpa_decode_bytes(B, ctx, H, H, D))
            k = v = None
    torch.backends.cuda.enable_cudnn_sdp(True)


def indexer_topk(qbar, ks, topk, blk):
    """The selection part of ``dsa_select_attend`` alone (indices of every query block)."""
    B, T, _ = qbar.shape
    out = []
    for s0 in range(0, T, blk):
        s1 = min(T, s0 + blk)
        sc = torch.matmul(qbar[:, s0:s1], ks[:, :s1].float().transpose(1, 2))
        pos = torch.arange(s0, s1, device=qbar.device)[:, None]
        sc.masked_fill_((torch.arange(s1, device=qbar.device)[None, :] > pos)[None], float("-inf"))
        out.append(sc.topk(min(topk, s1), dim=-1, sorted=False).indices)
    return out


def dsa_rows(lens, blk=1024):
    heads, sd, lat, dv, topk = 16, 64, 576, 512, 2048  # the zoo's lt2_gdn_dsa at 1.3B
    check_len = 3000
    if common.SHRINK:  # CPU dry runs
        heads, sd, lat, dv, topk, check_len, blk = 2, 16, 48, 32, 16, 100, 32
    g = torch.Generator(device=common.DEV)
    g.manual_seed(8)
    bf = torch.bfloat16

    def inputs(L):
        qbar = torch.randn(1, L, sd, device=common.DEV, generator=g) * 0.3
        ks = torch.randn(1, L, sd, device=common.DEV, dtype=bf, generator=g)
        q = torch.randn(1, L, heads * lat, device=common.DEV, dtype=bf, generator=g)
        c = torch.randn(1, L, lat, device=common.DEV, dtype=bf, generator=g)
        return qbar, ks, q, c

    qbar, ks, q, c = inputs(check_len)
    o = dsa_select_attend(qbar, ks, q, c, heads, dv, topk, lat ** -0.5, 0, blk)
    o32 = dsa_select_attend(qbar, ks.float(), q.float(), c.float(), heads, dv, topk, lat ** -0.5, 0, blk)
    e = common.rel_err(o, o32)
    emit(section="check", model="DSA H16 lat576 top2048", system="torch", row="DSA bf16 vs fp32", shape=f"B1 L{check_len}",
         check=f"rel_err {e:.1e}", ok=bool(e < 2e-2))
    for L in lens:
        if common.time_left() < 15:
            emit(section="kernel", model="DSA H16 lat576 top2048", system="torch", row="DSA prefill", shape=f"B1 L{L}",
                 note="dropped: time budget")
            continue
        qbar, ks, q, c = inputs(L)
        ms = bench(lambda: dsa_select_attend(qbar, ks, q, c, heads, dv, topk, lat ** -0.5, 0, blk), rep=300)
        emit(section="kernel", model="DSA H16 lat576 top2048", system="torch",
             row="DSA prefill: indexer + top-k + sparse attention (PyTorch)", shape=f"B1 L{L}", ms=ms,
             flops=common.indexer_flops(L, sd) + common.sparse_attn_flops(L, heads, lat, dv, topk),
             bytes=common.indexer_bytes(L, heads, sd, topk) + common.sparse_attn_bytes(L, heads, lat, dv, topk))
        ms2 = bench(lambda: indexer_topk(qbar, ks, topk, blk), rep=300)
        emit(section="kernel", model="DSA H16 lat576 top2048", system="torch", row="DSA prefill: indexer + top-k only (PyTorch)",
             shape=f"B1 L{L}", ms=ms2, flops=common.indexer_flops(L, sd), bytes=common.indexer_bytes(L, heads, sd, topk))
        qbar = ks = q = c = None
        common.DEV != "cpu" and torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="gdn_lt2,attn,dsa,gdn_qwen")
    ap.add_argument("--lens", default="1024,8192,32768")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--ctx", default="1024,8192")
    ap.add_argument("--dsa-lens", default="8192,32768")
    a = ap.parse_args()
    lens = [int(x) for x in a.lens.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    ctxs = [int(x) for x in a.ctx.split(",")]
    for s in a.set.split(","):
        if common.time_left() < 10:
            emit(section="kernel", model=s, system="", row="(all rows of this set)", shape="", note="dropped: time budget")
            continue
        try:
            if s in GDN_SHAPES:
                gdn_rows(s, lens, batches)
            elif s == "attn":
                attn_rows(lens, batches, ctxs)
            elif s == "dsa":
                dsa_rows([int(x) for x in a.dsa_lens.split(",")])
        except Exception as ex:  # noqa: BLE001
            emit(section="kernel", model=s, system="?", row="FAILED", shape="", note=f"{type(ex).__name__}: {str(ex)[:300]}")
            import traceback

            traceback.print_exc()


if __name__ == "__main__":
    main()
