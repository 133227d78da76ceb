"""Per-op-kind time of lt2c on a 1.3B-shaped model (GPU machine; the carried lt2c binary).

Builds the zoo's LT2 Full+GDN (or another zoo model's) big config as ONNX with random external
weights, compiles it with lt2c at each requested --dtype, and runs `lt2c generate` twice per
dtype with LT2C_CUDA_PROFILE=1 (every op synchronised): a long prompt with one new token
(prefill) and a short prompt with many new tokens (decode). Prints the profiles and the JSON
timings; writes them to $OUT/profile_big.txt.

    python3 scripts/profile_big.py [--model lt2_full_gdn] [--dtypes fp32,bf16]
        [--cases 1024:1:1,16:33:1]   # prompt:new_tokens:profile(0|1), one generate each
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "bench"))


def weights(cfg):
    """Random weights with the zoo's names: drawn on the GPU when torch is there (fast)."""
    from lt2 import reference

    try:
        import torch
        from bench_model import gen_weights

        w = {k: v.float().cpu().numpy() for k, v in gen_weights(cfg, "cuda", torch.float32, seed=2).items()}
    except Exception as e:  # noqa: BLE001 (fall back to numpy: slower, same names)
        print(f"GPU weight generation unavailable ({e}); numpy make_weights", flush=True)
        from lt2.models import looped

        w = looped.make_weights(cfg)
    if cfg.has_rope:
        cos, sin = reference.rope_cache(cfg.max_positions, cfg.attn_head_dim, cfg.rope_theta)
        w["rope.cos_cache"], w["rope.sin_cache"] = cos.astype(np.float32), sin.astype(np.float32)
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lt2_full_gdn")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--cases", default="1024:1:0,1024:1:1,16:33:0,16:33:1")
    ap.add_argument("--lt2c", default=str(REPO / "target" / "release" / "lt2c"))
    a = ap.parse_args()
    import onnx
    from lt2.models import looped
    from lt2.zoo.registry import get

    out = Path(os.environ.get("OUT", "/tmp"))
    work = Path("/tmp/profile_big")
    work.mkdir(parents=True, exist_ok=True)
    cfg = get(a.model).big
    t0 = time.time()
    w = weights(cfg)
    looped.write_external_data(w, work / "w.bin")
    m = looped.build_model(cfg, w, unrolled=False, spelling="standard", external_data="w.bin", check=False)
    onnx.save(m, str(work / "m.onnx"))
    del w, m
    log = [f"model {a.model} (big), ONNX written in {time.time() - t0:.0f} s"]
    print(log[-1], flush=True)
    g = np.random.default_rng(1)
    for dt in a.dtypes.split(","):
        mb = work / f"m-{dt}.bin"
        t0 = time.time()
        r = subprocess.run([a.lt2c, work / "m.onnx", "-o", mb, "--dtype", dt], capture_output=True, text=True)
        log.append(f"== {dt}: compile {time.time() - t0:.0f} s rc={r.returncode} {r.stderr.strip()[-300:]}")
        print(log[-1], flush=True)
        if r.returncode:
            continue
        for case in a.cases.split(","):
            plen, new, prof = (int(x) for x in case.split(":"))
            what = "prefill" if new == 1 else "decode"
            ids = ",".join(map(str, g.integers(0, cfg.vocab, plen).tolist()))
            if True:
                env = dict(os.environ, LT2C_CUDA_PROFILE=str(prof))
                r = subprocess.run([a.lt2c, "generate", mb, "--prompt-ids", ids, "--max-new-tokens", str(new), "--json",
                                    "--device", "cuda", "--max-context", str(plen + new + 8)], capture_output=True, text=True, env=env)
                tail = r.stderr.strip() if prof else ""
                log.append(f"-- {dt} {what} (prompt {plen}, {new} new, profile={prof}) rc={r.returncode}: {r.stdout.strip()[-400:]}\n{tail[-3000:]}")
                print(log[-1], flush=True)
    (out / "profile_big.txt").write_text("\n".join(log) + "\n")


if __name__ == "__main__":
    main()
