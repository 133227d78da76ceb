"""Correctness of the PyTorch reference (bench/torch_model.py) on the tiny zoo models: the
zoo's own weights (``lt2.models.looped.make_weights``) and inputs, logits compared with the
ONNX goldens in ``tests/fixtures/zoo/<model>/io.npz`` (the ReferenceEvaluator's, confirmed by
the float64 numpy reference). Also checks prefill + token-by-token decode against the full
prefill (the per-(loop, layer) caches). Runs on the CPU or the GPU, float64.

    python bench/check_tiny.py [--device cpu|cuda] [--models a,b]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import bench_common as common
from lt2.zoo.registry import get
from lt2.models.looped import make_weights
from bench_model import Model

MODELS = ("lt2_full_gdn", "lt2_full_gdn_gva", "lt2_full_gdn_keqv_gate", "lt2_gdn_dsa", "looped_gdn", "ouro")


def tiny_model(name, device, dtype=torch.float64):
    zm = get(name)
    cfg = zm.tiny
    w = {k: torch.from_numpy(np.asarray(v)) for k, v in make_weights(cfg).items()}
    tables = (w["rope.cos_cache"], w["rope.sin_cache"]) if cfg.has_rope else None
    return cfg, Model(cfg, w, device=device, dtype=dtype, use_fla=False, rope_tables=tables, dsa_block=5)


def golden(name, which="io.npz"):
    d = np.load(common.REPO / "tests" / "fixtures" / "zoo" / name / which)
    return d["input_ids"], d["logits"]


def check(name, device, emit=True):
    cfg, m = tiny_model(name, device)
    ids, want = golden(name)
    ids_t = torch.from_numpy(ids).to(device)
    got, _ = m.prefill(ids_t, all_logits=True)
    want = torch.from_numpy(want).to(device)
    err = common.rel_err(got, want)
    # decode: prefill all but the last 4 tokens, then decode them one by one
    B, L = ids.shape
    p = L - 4
    lg, caches = m.prefill(ids_t[:, :p], cache_cap=L)
    outs = [lg[:, -1]]
    for t in range(p, L - 1):
        outs.append(m.decode(ids_t[:, t], caches, t))
    dec = torch.stack(outs, 1)  # logits at positions p-1 .. L-2
    derr = common.rel_err(dec, want[:, p - 1 : L - 1])
    ok = err < 1e-4 and derr < 1e-4
    if emit:
        common.emit(section="check", model=name, system="torch", row="tiny vs ONNX golden",
                    shape=f"B{B} L{L} fp64", check=f"prefill rel_err {err:.1e}, decode rel_err {derr:.1e}",
                    ok=bool(ok))
    return err, derr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    bad = 0
    for n in a.models.split(","):
        e, de = check(n, a.device)
        print(f"{n:24s} prefill {e:.2e}  decode {de:.2e}", flush=True)
        bad += not (e < 1e-4 and de < 1e-4)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
