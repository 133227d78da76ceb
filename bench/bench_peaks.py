"""Measure the two ceilings of the floors, on this card, in this run: bf16 matmul rate
(8192^3, random data) and device copy bandwidth (1 GiB, bytes read + written). Writes
``$BENCH_OUT/peaks.json`` and an ``info`` row with the versions."""

from __future__ import annotations

import json
import platform

import torch
import triton
from triton.testing import do_bench

import bench_common as common


def main():
    dev = torch.cuda.get_device_properties(0)
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    mm_ms = do_bench(lambda: a @ b, warmup=100, rep=400, return_mode="median")
    src = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(src)
    cp_ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    import importlib.metadata as md

    try:
        fla_v = md.version("fla-core")
    except md.PackageNotFoundError:
        fla_v = "not installed"
    from bench_model import FLA_ERROR, HAVE_FLA

    if not HAVE_FLA:
        fla_v += f" (import failed: {FLA_ERROR[:200]})"
    peaks = {
        "card": dev.name,
        "sms": dev.multi_processor_count,
        "mem_gib": round(dev.total_memory / 2**30, 1),
        "matmul_ms_8192": mm_ms,
        "matmul_flops_per_s": 2 * n**3 / (mm_ms * 1e-3),
        "copy_ms_1gib": cp_ms,
        "copy_bytes_per_s": 2 * src.numel() * 2 / (cp_ms * 1e-3),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "fla": fla_v,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    common.OUT.mkdir(parents=True, exist_ok=True)
    (common.OUT / "peaks.json").write_text(json.dumps(peaks, indent=1))
    print("PEAKS", json.dumps(peaks), flush=True)


if __name__ == "__main__":
    main()
