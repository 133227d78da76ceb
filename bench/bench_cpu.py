"""lt2c's CPU backend against onnxruntime's CPU execution provider, same ONNX files, same process,
same machine: prefill latency (one sequence) of mid-size random-weight models, medians after
warm-up, and every lt2c row checked against onnxruntime's logits (relative error < 1e-4). Decode:
lt2c's session (caches derived by the compiler) against what an onnxruntime pipeline does with
a cache-less export, running the whole sequence again for each new token; both greedy from the
same prompt, tokens compared.

    PYTHONPATH=python .venv/bin/python bench/bench_cpu.py [--lengths 128,512] [--repeat 5]

Models (standard Loop spelling, fp32, weights drawn with fast_init): LT2 Full+GDN d512 (5 layers,
T 2) and Ouro d512 (4 attention layers, T 3), vocab 8192. Prints a markdown table."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from lt2.models.looped import LoopedConfig, build_model, make_weights  # noqa: E402
from lt2.oracles import rel_err  # noqa: E402
from lt2.runtime import Model  # noqa: E402
from lt2.zoo.registry import get  # noqa: E402

MID = dict(d_model=512, vocab=8192, ffn_hidden=1408, max_positions=1024, fast_init=True)


def configs() -> dict[str, LoopedConfig]:
    r = dataclasses.replace
    return {
        "LT2 Full+GDN d512": r(get("lt2_full_gdn").tiny, **MID, gdn_heads=4, gdn_k=64, gdn_v=128, attn_q_heads=8, attn_kv_heads=8, attn_head_dim=64),
        "Ouro d512": r(get("ouro").tiny, **MID, mixers=("attn",) * 4, attn_q_heads=8, attn_kv_heads=8, attn_head_dim=64),
    }


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="128,512")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--decode", default="128:16", help="prompt:new tokens for the decode rows ('' skips them)")
    ap.add_argument("--lt2c", default=str(ROOT / "target" / "release" / "lt2c"))
    a = ap.parse_args()
    os.environ["ALLOW_RELEASED_ONNX_OPSET_ONLY"] = "0"
    import onnxruntime as ort

    cores = os.cpu_count()
    rows, decode_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in configs().items():
            w = make_weights(cfg)
            m = build_model(cfg, w, check=False)
            src = Path(tmp) / "m.onnx"
            onnx.save(m, src)
            out = Path(tmp) / "m.bin"
            subprocess.run([a.lt2c, str(src), "-o", str(out), "--no-kernels"], check=True, capture_output=True)
            params = sum(v.size for v in w.values())
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = cores
            sess = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            lt = Model(out, "cpu")
            rng = np.random.default_rng(0)
            for n in [int(x) for x in a.lengths.split(",")]:
                ids = rng.integers(0, cfg.vocab, size=(1, n), dtype=np.int64)
                want = sess.run(["logits"], {"input_ids": ids})[0]
                got = lt.run({"input_ids": ids})["logits"]
                err = rel_err(got, want)
                assert err < 1e-4, f"{name} L{n}: lt2c vs onnxruntime {err:.1e}"
                t_ort = median_ms(lambda: sess.run(["logits"], {"input_ids": ids}), a.repeat)
                t_lt2c = median_ms(lambda: lt.run({"input_ids": ids}), a.repeat)
                rows.append((name, params, n, t_lt2c, t_ort, err))
                print(f"{name} L{n}: lt2c {t_lt2c:.1f} ms, onnxruntime {t_ort:.1f} ms, rel err {err:.1e}", file=sys.stderr)
            if a.decode:
                p_len, new = (int(x) for x in a.decode.split(":"))
                prompt = [int(x) for x in rng.integers(0, cfg.vocab, size=p_len)]
                s = lt.session(p_len + new)
                logits = s.prefill([prompt])[0]
                t_pre = time.perf_counter()
                toks = []
                for i in range(new):
                    toks.append(int(np.argmax(logits)))
                    if i + 1 < new:
                        logits = s.decode([toks[-1]])[0]
                lt_tps = (new - 1) / (time.perf_counter() - t_pre)
                ids = list(prompt)
                ort_toks = []
                for i in range(new):
                    out = sess.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})[0]
                    ort_toks.append(int(np.argmax(out[0, -1])))
                    ids.append(ort_toks[-1])
                    if i == 0:
                        t = time.perf_counter()  # the first token is the prefill
                ort_tps = (new - 1) / (time.perf_counter() - t)
                assert toks == ort_toks, f"{name}: greedy tokens differ: {toks} vs {ort_toks}"
                decode_rows.append((name, p_len, new, lt_tps, ort_tps))
                print(f"{name} decode after {p_len}: lt2c {lt_tps:.1f} tok/s, onnxruntime (full rerun) {ort_tps:.1f} tok/s", file=sys.stderr)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    print(f"CPU: {cpu}, {cores} cores; onnxruntime {ort.__version__} (intra-op threads {cores}); "
          f"medians of {a.repeat} after one warm-up; command `PYTHONPATH=python .venv/bin/python bench/bench_cpu.py --lengths {a.lengths} --repeat {a.repeat} --decode {a.decode}`\n")
    print("| model | params | prefill tokens | lt2c CPU (ms) | onnxruntime CPU (ms) | lt2c / ort | logits rel err |")
    print("|---|---|---|---|---|---|---|")
    for name, params, n, t1, t2, err in rows:
        print(f"| {name} | {params / 1e6:.1f}M | {n} | {t1:.1f} | {t2:.1f} | {t1 / t2:.2f} | {err:.1e} |")
    if decode_rows:
        print("\n| model | prompt | new tokens | lt2c session decode (tok/s) | onnxruntime, whole sequence per token (tok/s) | greedy tokens |")
        print("|---|---|---|---|---|---|")
        for name, p_len, new, t1, t2 in decode_rows:
            print(f"| {name} | {p_len} | {new} | {t1:.1f} | {t2:.1f} | same |")


if __name__ == "__main__":
    main()
