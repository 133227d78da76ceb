"""Shared helpers of the benchmark: result records, timing, floors.

Every script appends one JSON object per row to ``$BENCH_OUT/results.jsonl`` as soon as the
row is measured (so a run cut short keeps what it had). A row::

    {"section": "e2e"|"kernel"|"check"|"lt2c"|"info", "model": ..., "system": "eager"|"compile"|
     "fla"|"sdpa"|"torch"|"lt2c", "row": "prefill"|"decode"|..., "shape": "...", "ms": median,
     "tok_s": ..., "flops": ..., "bytes": ..., "floor_ms": ..., "ratio": ms / floor_ms,
     "check": "...", "note": "..."}

Floors (METHOD.md): ``max(flops / matmul_peak, bytes / copy_bw)`` with both ceilings measured
in the same run by ``peaks.py`` (bf16 8192^3 matmul; 1 GiB device copy counting bytes read
plus written).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("BENCH_OUT", "/tmp/bench_out"))
DEV = os.environ.get("BENCH_DEVICE", "cuda")  # "cpu" only for dry runs of the scripts' logic
SHRINK = os.environ.get("BENCH_SHRINK") == "1"  # dry runs: shrink the models' widths
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))


def deadline() -> float:
    """Wall-clock time (epoch seconds) by which this script must have finished its rows."""
    return float(os.environ.get("BENCH_DEADLINE", time.time() + 1e9))


def time_left() -> float:
    return deadline() - time.time()


def emit(**row) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    row.setdefault("t", round(time.time(), 1))
    peaks = load_peaks()
    if peaks and row.get("ms") and (row.get("flops") is not None or row.get("bytes") is not None):
        fl = (row.get("flops") or 0.0) / peaks["matmul_flops_per_s"]
        by = (row.get("bytes") or 0.0) / peaks["copy_bytes_per_s"]
        row["floor_ms"] = max(fl, by) * 1e3
        row["floor_bound"] = "compute" if fl >= by else "memory"
        row["ratio"] = row["ms"] / row["floor_ms"] if row["floor_ms"] > 0 else None
    with open(OUT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k not in ("t",)}
    print("ROW", json.dumps(brief), flush=True)
    return row


_PEAKS = None


def load_peaks():
    global _PEAKS
    if _PEAKS is None:
        p = OUT / "peaks.json"
        if p.exists():
            _PEAKS = json.loads(p.read_text())
    return _PEAKS


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def cuda_time(fn, warmup: int = 1, iters: int = 3, sync_each: bool = True):
    """Median milliseconds of ``fn()`` timed with CUDA events (one event pair per call) after
    ``warmup`` untimed calls. Returns (median_ms, [times])."""
    import torch

    if DEV == "cpu":
        for _ in range(warmup):
            fn()
        ms = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3)
        return median(ms), ms
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        if sync_each:
            b.synchronize()
        times.append((a, b))
    torch.cuda.synchronize()
    ms = [a.elapsed_time(b) for a, b in times]
    return median(ms), ms


def sync():
    import torch

    if DEV != "cpu":
        torch.cuda.synchronize()


def bench_ms(fn, warmup=25, rep=200, min_reps=3):
    """Median ms: triton's do_bench on the GPU (events, L2 flushed), a host timer on the CPU.
    do_bench times ``rep`` ms worth of calls, which is a single call for slow functions: ``rep``
    grows to at least ``min_reps`` calls (from one timed call after one warm-up)."""
    if DEV == "cpu":
        return cuda_time(fn, 1, 3)[0]
    from triton.testing import do_bench

    one = cuda_time(fn, warmup=1, iters=1)[0]
    rep = max(rep, one * (min_reps + 0.5))
    return do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def shrink(cfg):
    """The same model structure at toy widths (dry runs on the CPU)."""
    import dataclasses

    if not SHRINK:
        return cfg
    return dataclasses.replace(cfg, d_model=128, vocab=512, mixers=cfg.mixers[:6], gdn_heads=2, gdn_v_heads=cfg.gdn_hv // cfg.gdn_heads * 2 if cfg.gdn_v_heads else 0,
                               gdn_k=16, gdn_v=32, attn_q_heads=2, attn_kv_heads=2, attn_head_dim=32, ffn_hidden=64, dsa_heads=2,
                               dsa_score_dim=8, dsa_value_dim=32, dsa_tail_dim=8, dsa_top_k=16)


def rel_err(a, b) -> float:
    """||a - b|| / ||b|| in float64 (NaN anywhere gives inf)."""
    import torch

    a = a.detach().double().flatten()
    b = b.detach().double().flatten()
    if not torch.isfinite(a).all() or not torch.isfinite(b).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# --------------------------------------------------------------------------- FLOP / byte models

BF16 = 2
F32 = 4
CHUNK = 64


def gdn_chunk_flops(L, hv, k, v, c=CHUNK):
    """Chunked GDN forward, per value head and token: K K^T, the WY products (W, U), W H, Q H,
    Q K^T, P Vnew and the state update: 6CK + 4CV + 6KV multiply-adds x1 (already x2 counted)."""
    return L * hv * (6 * c * k + 4 * c * v + 6 * k * v)


def gdn_chunk_bytes(b, L, h, hv, k, v, state_out=True):
    io = b * L * (2 * h * k + 2 * hv * v + 2 * hv) * BF16  # q, k, v, o, raw gate, raw beta
    return io + (b * hv * k * v * F32 if state_out else 0)


def gdn_step_flops(b, hv, k, v):
    return b * hv * 8 * k * v


def gdn_step_bytes(b, h, hv, k, v):
    return b * hv * k * v * F32 * 2 + b * (2 * h * k + 2 * hv * v) * BF16


def sdpa_prefill_flops(b, L, h, d, causal=True):
    return b * h * 4 * L * L * d * (0.5 if causal else 1.0)


def sdpa_prefill_bytes(b, L, h, hkv, d):
    return b * L * (2 * h + 2 * hkv) * d * BF16


def sdpa_decode_flops(b, ctx, h, d):
    return b * h * 4 * ctx * d


def sdpa_decode_bytes(b, ctx, h, hkv, d):
    return b * ctx * 2 * hkv * d * BF16 + b * 2 * h * d * BF16


def dsa_keff(L, topk):
    """Sum over queries t < L of min(topk, t + 1): the selected keys of a causal prefill."""
    if L <= topk:
        return L * (L + 1) // 2
    return topk * (topk + 1) // 2 + (L - topk) * topk


def sparse_attn_flops(L, heads, lat, dv, topk):
    return dsa_keff(L, topk) * heads * 2 * (lat + dv)


def sparse_attn_bytes(L, heads, lat, dv, topk):
    # q, latent, output, and the int64 indices as torch.topk writes them
    return L * (heads * lat + lat + heads * dv) * BF16 + L * min(topk, L) * 8


def indexer_flops(L, sdim):
    # mean_h(q_h . k) = (mean_h q_h) . k: one sdim-long dot per causal pair
    return L * (L + 1) // 2 * 2 * sdim


def indexer_bytes(L, heads, sdim, topk):
    return L * (heads * sdim + sdim) * BF16 + L * min(topk, L) * 8


def peak_info() -> str:
    p = load_peaks()
    if not p:
        return "peaks not measured"
    return f"matmul {p['matmul_flops_per_s'] / 1e12:.0f} TFLOP/s, copy {p['copy_bytes_per_s'] / 1e12:.2f} TB/s"
