"""lt2c kernel rows, beside bench_kernels.py's fla / SDPA / PyTorch rows, for the same shape
families (``--set``: gdn_lt2, gdn_qwen, attn, dsa), prefill lengths and decode batches.

lt2c compiles whole ONNX models, so each kernel becomes a model of one op (symbolic batch and
length: one compile per op form), fed fresh seeded random inputs from an .npz:

- GDN: ``LinearAttention``-27 (``update_rule = gated_delta``; q/k L2-normalised per head,
  decay in log space ``g = -exp(A_log) softplus(a + dt_bias)`` and ``beta = sigmoid(b)`` drawn
  as bench_kernels draws fla's gate inputs). Prefill: B = 1, no state. Decode: T = 1 with a
  ``past_state``. Qwen-style: LinearAttention has no key-head grouping, so q/k come repeated to
  the 32 value heads (as the zoo's exports feed it); the floors stay bench_kernels' (16 heads).
- attention: ``Attention``-23, 3-D packed, 16 x 128. Prefill causal, B = 1. Decode: one query
  with ``past_key`` / ``past_value`` of ``ctx - 1`` positions (plus the new one: ``ctx`` keys, as
  SDPA's decode rows). The caches are built in the graph (``Mul`` of a ``[1, H, P, D]`` input
  by per-sequence scales ``[B, 1, 1, 1]``) so the npz stays small; only Attention is timed.
- DSA: the ``lt2`` domain's ``LightningIndexer`` (mean_dot, top-k) feeding ``SparseAttention``
  over the shared latent (value = its first 512 dims, given as its own input); both ops timed
  for the full row, the indexer alone for the "indexer + top-k only" row.

Each model is compiled fp32 (``lt2c model.onnx -o model.bin``): lt2c computes GDN, attention
and DSA in fp32, so these rows read and write fp32 while their floors stay bf16's, as the other
rows of the table. Attention prefill also runs a ``--dtype bf16`` build (system "lt2c bf16":
q, k, v rounded to bf16 in the op, tensor cores), as lt2c's bf16 models run it. Timing
(``--device cuda``): ``LT2C_CUDA_PROFILE=1 lt2c run --repeat N`` prints the device time of every
op kind (CUDA events, each op alone on the device); a row's time is its ops' time per run,
(time of 1 + R runs - time of 1 run) / R from two processes, so the first run's one-time set-up
is not in it. ``--device cpu`` (dry runs): the ``lt2c run`` wall clock of the whole one-op
model, fastest of 5, marked so.

Checks (rows of section "check", before any timing row of the same shape and build): lt2c's
outputs against an independent float64 reference in the same run (torch on the device; numpy
from ``lt2.reference`` / ``lt2.lt2_ops`` where torch is missing): GDN output and final state
by the token recurrence; attention prefill on every query row up to 2048, else on 320 (first,
last, random); decode over the whole cache (numpy: the cache's per-sequence scales factor out);
DSA on 128 query rows: the sparse attention over lt2c's own indices, and those indices against
fp64 index scores (a valid top-k up to fp32 ties). Bar: rel L2 error 1e-4 (2e-2 for the bf16
build). A shape whose check fails gets no timing row; one lt2c cannot compile or run, a row
with lt2c's reason. Shapes whose npz would pass ``--max-npz-gb`` are not run; those with more
than 0.5 GB of inputs run last, so a short time budget (``--budget-s``, ``$BENCH_DEADLINE``)
drops them first ("dropped: time budget" rows).

    python3 bench/bench_lt2c_kernels.py [--set gdn_lt2,gdn_qwen,attn,dsa] [--lt2c PATH]
        [--device cuda|cpu] [--quick] [--budget-s S]

Writes rows into ``$BENCH_OUT/results.jsonl`` (floors from ``$BENCH_OUT/peaks.json``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import bench_common as common
from bench_common import emit

try:
    import torch
except ImportError:  # the CPU machine: numpy inputs and references
    torch = None

TOL = 1e-4
SYS = "lt2c"
GDN = {"gdn_lt2": ("GDN LT2 H16 K96 V192", 16, 16, 96, 192), "gdn_qwen": ("GDN Qwen-style H16 HV32 K=V=128", 16, 32, 128, 128)}
ATTN = ("attention 16x128", 16, 128)
DSA = ("DSA H16 lat576 top2048", 16, 64, 576, 512, 2048)  # heads, index dim, latent, value dims, top-k
QUICK_DIMS = {"gdn_lt2": (2, 2, 16, 32), "gdn_qwen": (2, 4, 16, 16), "attn": (2, 16), "dsa": (2, 16, 48, 32, 16)}
CHECK_ROWS = 2048  # attention: every query row up to this length, else a sample
MAX_NPZ_GB = 2.0
BIG_NPZ = 0.5e9  # inputs of more bytes: run after all the others
SIZES = {"lens": ("1024,8192,32768", "64,200"), "batches": ("1,8,64", "1,3"), "ctx": ("1024,8192", "40,100"),
         "dsa_lens": ("8192,32768", "60,150")}  # bench_kernels' (with --quick: toy ones)


# --------------------------------------------------------------------------- models


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def write_model(path, nodes, inputs, outputs, lt2_domain=False):
    """An opset-27 model of ``nodes`` (the repo's single-op conventions, ``lt2.oracles``)."""
    opsets = [helper.make_opsetid("", 27)] + ([helper.make_opsetid("lt2", 1)] if lt2_domain else [])
    graph = helper.make_graph(nodes, path.stem, inputs, outputs)
    model = helper.make_model(graph, opset_imports=opsets, producer_name="bench_lt2c_kernels")
    model.ir_version = 13
    onnx.save(model, path)


def gdn_model(path, hv, k, v, with_state):
    ins = [vi("q", ["B", "T", hv * k]), vi("k", ["B", "T", hv * k]), vi("v", ["B", "T", hv * v]),
           vi("decay", ["B", "T", hv]), vi("beta", ["B", "T", hv])]
    if with_state:
        ins.append(vi("past_state", ["B", hv, k, v]))
    node = helper.make_node("LinearAttention", ["q", "k", "v", "past_state" if with_state else "", "decay", "beta"],
                            ["o", "present_state"], q_num_heads=hv, kv_num_heads=hv, update_rule="gated_delta", scale=k ** -0.5)
    write_model(path, [node], ins, [vi("o", ["B", "T", hv * v]), vi("present_state", ["B", hv, k, v])])


def attn_model(path, h, d, decode):
    ins = [vi(n, ["B", "T", h * d]) for n in ("q", "k", "v")]
    nodes, extra = [], []
    if decode:  # the caches [B, H, P, D] made in the graph from [1, H, P, D] and per-sequence scales
        ins += [vi("k_base", [1, h, "P", d]), vi("k_scale", ["B", 1, 1, 1]), vi("v_base", [1, h, "P", d]), vi("v_shift", ["B", 1, 1, 1])]
        nodes += [helper.make_node("Mul", ["k_base", "k_scale"], ["past_key"]),
                  helper.make_node("Add", ["v_base", "v_shift"], ["past_value"])]
        extra = ["", "past_key", "past_value"]
    nodes.append(helper.make_node("Attention", ["q", "k", "v", *extra], ["y"], is_causal=0 if decode else 1, q_num_heads=h, kv_num_heads=h))
    write_model(path, nodes, ins, [vi("y", ["B", "T", h * d])])


def dsa_model(path, heads, sd, lat, dv, topk):
    ins = [vi("q_index", ["B", "T", heads * sd]), vi("k_index", ["B", "T", sd]), vi("q", ["B", "T", heads * lat]),
           vi("latent", ["B", "T", lat]), vi("latent_v", ["B", "T", dv])]
    nodes = [helper.make_node("LightningIndexer", ["q_index", "k_index"], ["indices"], domain="lt2", num_heads=heads, top_k=topk,
                              score="mean_dot"),
             helper.make_node("SparseAttention", ["q", "latent", "latent_v", "indices"], ["o"], domain="lt2",
                              q_num_heads=heads, kv_num_heads=1, scale=float(lat) ** -0.5)]
    write_model(path, nodes, ins, [vi("o", ["B", "T", heads * dv]), vi("indices", ["B", "T", topk], TensorProto.INT64)], lt2_domain=True)


# --------------------------------------------------------------------------- random inputs (float32 numpy)


class Rand:
    """Seeded float32 draws: torch on the benchmark's device when torch is there, else numpy."""

    def __init__(self, seed):
        if torch is not None:
            self.g = torch.Generator(device=common.DEV).manual_seed(seed)
        else:
            self.rng = np.random.default_rng(seed)

    def normal(self, *shape, std=1.0):
        if torch is not None:
            return (torch.randn(shape, device=common.DEV, generator=self.g) * std).cpu().numpy()
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def uniform(self, *shape):
        if torch is not None:
            return torch.rand(shape, device=common.DEV, generator=self.g).cpu().numpy()
        return self.rng.random(shape, dtype=np.float32)


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def l2n(x, heads):
    xh = x.reshape(*x.shape[:-1], heads, -1)
    return (xh / np.sqrt((xh * xh).sum(-1, keepdims=True) + 1e-6)).reshape(x.shape)


def gdn_inputs(r, b, t, h, hv, k, v, with_state):
    """q/k L2-normalised per key head (repeated to the value heads), log decay and beta as
    bench_kernels' ``gdn_inputs`` gives them to fla (A_log, dt_bias, raw gate a and b)."""
    def qk():
        x = l2n(r.normal(b, t, h * k), h).reshape(b, t, h, 1, k)
        return np.ascontiguousarray(np.broadcast_to(x, (b, t, h, hv // h, k)).reshape(b, t, hv * k))

    q, kk = qk(), qk()
    vv = r.normal(b, t, hv * v)
    a, braw = r.normal(b, t, hv), r.normal(b, t, hv)
    a_log = np.log(r.uniform(hv) * 15 + 1)
    dt = np.exp(r.uniform(hv) * (np.log(1e-1) - np.log(1e-3)) + np.log(1e-3))
    dt_bias = dt + np.log(-np.expm1(-dt))
    decay = (-np.exp(a_log) * np.logaddexp(0, a + dt_bias)).astype(np.float32)
    beta = (1 / (1 + np.exp(-braw))).astype(np.float32)
    x = {"q": q, "k": kk, "v": vv, "decay": decay, "beta": beta}
    if with_state:
        x["past_state"] = r.normal(b, hv, k, v, std=0.05)
    return x


def attn_inputs(r, b, t, h, d, ctx):
    x = {n: r.normal(b, t, h * d) for n in ("q", "k", "v")}
    if ctx:
        x.update(k_base=r.normal(1, h, ctx - 1, d), k_scale=(0.5 + r.uniform(b, 1, 1, 1)), v_base=r.normal(1, h, ctx - 1, d),
                 v_shift=r.normal(b, 1, 1, 1))
    return x


def dsa_inputs(r, t, heads, sd, lat, dv):
    lv = r.normal(1, t, lat)
    return {"q_index": r.normal(1, t, heads * sd, std=0.3), "k_index": r.normal(1, t, sd), "q": r.normal(1, t, heads * lat),
            "latent": lv, "latent_v": np.ascontiguousarray(lv[:, :, :dv])}


# --------------------------------------------------------------------------- references


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def dev64(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64, device=common.DEV)


def gdn_ref(x, hv):
    """(output, final state) of the gated delta rule by its token recurrence, float64."""
    if torch is None:
        from lt2 import reference as R

        return R.linear_attention(x["q"], x["k"], x["v"], x.get("past_state"), x["decay"], x["beta"],
                                  q_num_heads=hv, kv_num_heads=hv, update_rule="gated_delta")
    q, k, v, g, beta = (dev64(x[n]) for n in ("q", "k", "v", "decay", "beta"))
    b, t, _ = q.shape
    dk, dv = q.shape[2] // hv, v.shape[2] // hv
    q, k, v = q.view(b, t, hv, 1, dk), k.view(b, t, hv, 1, dk), v.view(b, t, hv, 1, dv)  # rows for batched matmuls
    s = dev64(x["past_state"]) if "past_state" in x else torch.zeros(b, hv, dk, dv, dtype=torch.float64, device=common.DEV)
    out = torch.empty(b, t, hv, 1, dv, dtype=torch.float64, device=common.DEV)
    eg, beta = g.exp()[..., None, None], beta[..., None, None]
    for i in range(t):  # S = exp(g) S;  u = beta (v - S^T k);  S += k u^T;  o = S^T q
        s.mul_(eg[:, i])
        u = (v[:, i] - k[:, i] @ s) * beta[:, i]
        s.add_(k[:, i].transpose(-1, -2) @ u)
        out[:, i] = q[:, i] @ s
    return (out * dk ** -0.5).reshape(b, t, hv * dv).cpu().numpy(), s.cpu().numpy()


def check_rows(t, n=320):
    """Query rows an attention check covers: all up to CHECK_ROWS, else first, last and random."""
    if t <= CHECK_ROWS:
        return np.arange(t)
    rnd = np.random.default_rng(t).choice(t, n - 64, replace=False)
    return np.unique(np.concatenate([np.arange(32), np.arange(t - 32, t), rnd]))


def attn_ref(x, h, rows):
    """Causal attention output at query ``rows`` [1, len(rows), H*D], float64 (query i sees
    keys 0..i)."""
    q, k, v = x["q"], x["k"], x["v"]
    b, t, hd = q.shape
    d = hd // h
    if torch is None:
        from lt2 import reference as R

        return R.attention(q, k, v, q_num_heads=h, kv_num_heads=h, is_causal=True)[:, rows]
    qh = dev64(q[:, rows]).view(b, len(rows), h, d).transpose(1, 2)
    kh, vh = (dev64(a).view(b, t, h, d).transpose(1, 2) for a in (k, v))
    sc = qh @ kh.transpose(-1, -2) * d ** -0.5
    pos = torch.as_tensor(rows, device=common.DEV)[:, None]
    sc = sc.masked_fill(torch.arange(t, device=common.DEV)[None, :] > pos, float("-inf"))
    return (sc.softmax(-1) @ vh).transpose(1, 2).reshape(b, len(rows), hd).cpu().numpy()


def attn_decode_ref(x, h):
    """Decode attention [B, 1, H*D], float64, of the one query over the in-graph cache
    (k_base * k_scale[b], v_base + v_shift[b]) and the new key: the scales factor out of the
    products, so the [B, H, P, D] caches are never built (numpy, also on the GPU machine)."""
    f = lambda n: np.asarray(x[n], np.float64)  # noqa: E731
    b, _, hd = x["q"].shape
    d = hd // h
    q, k, v = (f(n).reshape(b, h, d).transpose(1, 0, 2) for n in ("q", "k", "v"))  # [H, B, D]
    kb, vb = f("k_base")[0], f("v_base")[0]  # [H, P, D]
    ks, vs = f("k_scale").reshape(1, b, 1), f("v_shift").reshape(1, b, 1)
    s_past = (q @ kb.transpose(0, 2, 1)) * ks * d ** -0.5  # [H, B, P]
    s_new = (q * k).sum(-1, keepdims=True) * d ** -0.5  # [H, B, 1]
    m = np.maximum(s_past.max(-1, keepdims=True), s_new)
    p_past, p_new = np.exp(s_past - m), np.exp(s_new - m)
    z = p_past.sum(-1, keepdims=True)
    o = (p_past @ vb + vs * z + p_new * v) / (z + p_new)  # [H, B, D]
    return o.transpose(1, 0, 2).reshape(b, 1, hd)


def dsa_ref(x, idx, heads, lat, rows):
    """(index scores [rows, S] float64, sparse attention [rows, H*Dv] over ``idx``'s rows)."""
    qi, ki = x["q_index"][0, rows], x["k_index"][0]
    q, c, cv = x["q"][0, rows], x["latent"][0], x["latent_v"][0]
    sel = idx[0, rows]
    if torch is None:
        from lt2 import lt2_ops

        sc = lt2_ops.indexer_scores(qi[None], ki[None], num_heads=heads)[0]
        o = lt2_ops.sparse_attention(q[None], c[None], cv[None], sel[None], q_num_heads=heads, kv_num_heads=1, scale=lat ** -0.5)[0]
        return sc, o
    sc = (dev64(qi).view(len(rows), heads, -1) @ dev64(ki).T).mean(1)
    qd, cd, cvd = dev64(q).view(len(rows), heads, lat), dev64(c), dev64(cv)
    out = []
    for i in range(len(rows)):  # one query row at a time: [top_k, latent] gathered
        s = torch.as_tensor(sel[i], device=common.DEV)
        ok = s >= 0
        ks = cd[s.clamp_min(0)]
        lg = (qd[i] @ ks.T * lat ** -0.5).masked_fill(~ok[None], float("-inf"))
        out.append((lg.softmax(-1) @ cvd[s.clamp_min(0)]).reshape(-1))
    return sc.cpu().numpy(), torch.stack(out).cpu().numpy()


def topk_check(sc, sel, rows, topk):
    """How lt2c's indices of ``rows`` compare with the fp64 scores: (rows that are not a valid
    top-k even allowing fp32 ties, rows whose set differs from the fp64 top-k)."""
    bad = differ = 0
    for i, t in enumerate(rows):
        n = min(topk, t + 1)
        s = sc[i, : t + 1]
        got = sel[i]
        if (got[n:] != -1).any() or len(set(got[:n].tolist())) != n or (got[:n] < 0).any() or (got[:n] > t).any():
            bad += 1
            continue
        kth = np.sort(s)[::-1][n - 1]
        tol = 1e-5 * max(np.abs(s).max(), 1e-30)
        if s[got[:n]].min() < kth - tol:
            bad += 1
        differ += set(got[:n].tolist()) != set(np.argsort(-s, kind="stable")[:n].tolist())
    return bad, differ


# --------------------------------------------------------------------------- running lt2c


def env():
    e = dict(os.environ, LD_LIBRARY_PATH="/usr/local/cuda/lib64:" + os.environ.get("LD_LIBRARY_PATH", ""))
    e.pop("LT2C_CUDA_PROFILE", None)
    return e


def sh(args, timeout=300, **extra):
    """Run a command; a time-out comes back as exit status 124 (never past the deadline)."""
    timeout = max(1, min(timeout, common.time_left() - 2))
    try:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=dict(env(), **extra))
    except subprocess.TimeoutExpired as ex:
        return subprocess.CompletedProcess(ex.cmd, 124, stdout="", stderr=f"timed out after {timeout:.0f} s")


PROF = re.compile(r"^\s+(\w+)\s+(\d+) calls\s+([\d.]+) ms\s+([\d.]+) us/call", re.M)


def run_lt2c(exe, binp, npz, outp, device, repeat):
    """(per op kind {kind: (calls, ms)} from the CUDA profile, fastest run's wall ms, error)."""
    extra = {"LT2C_CUDA_PROFILE": "1"} if device == "cuda" else {}
    p = sh([exe, "run", binp, "--inputs", npz, "--outputs", outp, "--device", device, "--repeat", repeat], **extra)
    if p.returncode != 0:
        return None, None, first_error(p.stderr)
    prof = {m[1]: (int(m[2]), float(m[3])) for m in PROF.finditer(p.stderr)}
    wall = re.search(r"^ran on .* in ([\d.]+) ms", p.stderr, re.M)
    return prof, float(wall[1]) if wall else None, None


def first_error(text):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    err = [ln for ln in lines if "error" in ln.lower() or "not supported" in ln.lower()]
    return (err[0] if err else (lines[-1] if lines else "no output"))[:300]


class Compiled:
    """One compile per op form and dtype (symbolic batch and length): model.bin or the error."""

    def __init__(self, exe, work):
        self.exe, self.work, self.done = exe, work, {}

    def get(self, form, build, dtype="fp32"):
        if (form, dtype) not in self.done:
            onnx_path = self.work / f"{form}.onnx"
            if not onnx_path.exists():
                build(onnx_path)
            binp = self.work / f"{form}_{dtype}.bin"
            p = sh([self.exe, onnx_path, "-o", binp] + (["--dtype", dtype] if dtype != "fp32" else []), timeout=120)
            self.done[form, dtype] = binp if p.returncode == 0 else RuntimeError(f"lt2c compile: {first_error(p.stderr)}")
        return self.done[form, dtype]


# --------------------------------------------------------------------------- one row


class Variant:
    """How lt2c builds the model: its system name in the rows, ``--dtype``, the note, the bar."""

    def __init__(self, system, dtype, how, tol):
        self.system, self.dtype, self.how, self.tol = system, dtype, how, tol

    def row(self, text):
        return text if self.dtype == "fp32" else text[:-1] + f", --dtype {self.dtype})"


FP32 = Variant(SYS, "fp32", "fp32 in and out (lt2c computes this op in fp32)", TOL)
BF16_ATTN = Variant(f"{SYS} bf16", "bf16", "--dtype bf16: q, k, v (and, on the GPU, the softmax probabilities) enter the products "
                    "as bf16, tensor cores for prefill, fp32 accumulation and softmax; fp32 in and out", 2e-2)


class Case:
    """A kernel at one shape: its model form, inputs, ops timed, check and floor terms; the
    builds it runs in (``variants``) and rows timed from the same runs (``subrows``)."""

    def __init__(self, model, kernel, row, shape, form, build, inputs, ops, check, flops, nbytes, npz_floats=0, subrows=(),
                 variants=(FP32,)):
        self.model, self.kernel, self.row, self.shape, self.form, self.build = model, kernel, row, shape, form, build
        self.inputs, self.ops, self.check, self.flops, self.bytes = inputs, ops, check, flops, nbytes
        self.npz_bytes, self.subrows, self.variants = 4 * npz_floats, list(subrows), list(variants)

    def emit(self, v, **kw):
        return emit(section="kernel", model=self.model, system=v.system, kernel=self.kernel, row=v.row(self.row), shape=self.shape, **kw)

    def emit_all(self, v, note):
        for case in [self] + [sub for sub, _ in self.subrows]:
            case.emit(v, note=note)


def est_seconds(nbytes, device):
    """A row's wall time before it runs: two lt2c processes, the npz, the reference."""
    return (2.5 if device == "cuda" else 0.5) + nbytes / 2.5e8


def repeats(first_ms, nbytes):
    """Timed runs after the first: about 100 ms of op time, at least 3, at most 300; every run
    uploads the inputs again, so at most about 4 GB of them."""
    r = int(100.0 / max(first_ms, 0.02))
    return max(3, min(300, r, int(4e9 / max(nbytes, 1))))


def free_device_memory():
    if torch is not None and common.DEV != "cpu":
        torch.cuda.empty_cache()  # lt2c runs in another process


def run_case(c, comp, work, device):
    npz, x = work / "in.npz", None
    try:
        for v in c.variants:
            binp = comp.get(c.form, c.build, v.dtype)
            if isinstance(binp, Exception):
                c.emit_all(v, f"not supported by lt2c: {binp}")
                continue
            if x is None:  # one draw of the inputs for every build
                x = c.inputs()
                np.savez(npz, **x)
                free_device_memory()
            run_variant(c, v, binp, x, npz, comp.exe, work, device)
    finally:
        npz.unlink(missing_ok=True)


def run_variant(c, v, binp, x, npz, exe, work, device):
    outp = work / "out.npz"
    prof1, prof2, r, wall, err = time_runs(exe, binp, npz, outp, device, c.ops, c.npz_bytes)
    if err and "timed out" in err and common.time_left() < 5:  # cut at the step's deadline, not a failure of lt2c
        c.emit_all(v, f"dropped: time budget (the run reached the step's deadline: {err})")
        return
    if err:
        c.emit_all(v, f"lt2c run failed: {err}")
        return
    with np.load(outp) as f:
        out = {k: f[k] for k in f.files}
    outp.unlink()
    errs, e, ok, what = c.check(x, out)
    ok = ok and e < v.tol
    emit(section="check", model=c.model, system=v.system, row=f"lt2c {what}", shape=c.shape, ok=bool(ok),
         check="; ".join(f"{k} {w:.1e}" if isinstance(w, float) else f"{k} {w}" for k, w in errs.items()) + f" (bar {v.tol:.0e})")
    free_device_memory()
    if not ok:
        c.emit_all(v, "not timed: its check failed (see the check rows)")
        return
    for case, ops in [(c, c.ops)] + c.subrows:
        ms, note = op_time(ops, prof1, prof2, r, wall, device, v, case is not c)
        case.emit(v, ms=ms, flops=case.flops, bytes=case.bytes, note=note)


def time_runs(exe, binp, npz, outp, device, ops, nbytes):
    """(profile of 1 run, profile of 1 + r runs, r, fastest run's wall ms, error): two processes
    on the GPU (the first only sizes r; the second writes the outputs), one on the CPU."""
    if device != "cuda":
        _, wall, err = run_lt2c(exe, binp, npz, outp, device, 5)
        return {}, {}, 5, wall, err
    prof1, _, err = run_lt2c(exe, binp, npz, os.devnull, device, 1)
    missing = [op for op in ops if op not in (prof1 or {})]
    if err or missing:
        return None, None, 0, None, err or f"lt2c's CUDA profile has no {' + '.join(missing)} (it has: {', '.join(prof1) or 'nothing'})"
    r = repeats(sum(prof1[op][1] for op in ops), nbytes)
    prof2, wall, err = run_lt2c(exe, binp, npz, outp, device, 1 + r)
    return prof1, prof2, r, wall, err


def op_time(ops, prof1, prof2, r, wall, device, v, sub):
    """(ms per run of the ops ``ops``, the note saying how it was timed)."""
    if device != "cuda":
        if sub:
            return None, "CPU dry run: no time of single ops without the device profile"
        return wall, f"CPU dry run: lt2c run wall clock of the whole one-op model, fastest of {r} (no device profile)"
    t1 = sum(prof1.get(op, (0, 0.0))[1] for op in ops)
    t2 = sum(prof2.get(op, (0, 0.0))[1] for op in ops)
    others = sorted(set(prof2) - set(ops))
    how = (f"{v.how}; device time of {' + '.join(ops)} (LT2C_CUDA_PROFILE: CUDA events, each op alone on the device), mean of "
           f"{r} runs after the first" + (f"; not counted: {', '.join(others)}" if others else ""))
    ms = (t2 - t1) / r
    if ms <= 0:  # noise larger than the runs: the mean of all of them, the first included
        ms = t2 / (r + 1)
        how += " (difference not positive: mean incl. the first run)"
    return ms, how


# --------------------------------------------------------------------------- the sets


def gdn_cases(key, lens, batches, quick):
    label, h, hv, k, v = GDN[key]
    if quick:
        h, hv, k, v = QUICK_DIMS[key]
        label += f" [quick: H{h} HV{hv} K{k} V{v}]"
    cases = []

    def check(x, out):
        o, s = gdn_ref(x, hv)
        e = {"out": rel(out["o"], o), "state": rel(out["present_state"], s)}
        return e, max(e.values()), True, "Gdn vs fp64 token recurrence"

    for L in lens:
        cases.append(Case(label, "GDN chunk prefill", "GDN chunk prefill (lt2c LinearAttention-27 -> Gdn op)", f"B1 L{L}",
                          f"{key}_prefill", lambda p: gdn_model(p, hv, k, v, False),
                          lambda L=L: gdn_inputs(Rand(seed_of(key, L)), 1, L, h, hv, k, v, False), ["Gdn"], check,
                          common.gdn_chunk_flops(L, hv, k, v), common.gdn_chunk_bytes(1, L, h, hv, k, v), L * hv * (2 * k + v + 2)))
    for B in batches:
        cases.append(Case(label, "GDN decode step", "GDN decode step (lt2c Gdn op, T = 1 with past_state)", f"B{B}",
                          f"{key}_decode", lambda p: gdn_model(p, hv, k, v, True),
                          lambda B=B: gdn_inputs(Rand(seed_of(key, "dec", B)), B, 1, h, hv, k, v, True), ["Gdn"], check,
                          common.gdn_step_flops(B, hv, k, v), common.gdn_step_bytes(B, h, hv, k, v), B * hv * (2 * k + v + 2 + k * v)))
    return cases


def attn_cases(lens, batches, ctxs, quick, bf16):
    label, h, d = ATTN
    if quick:
        h, d = QUICK_DIMS["attn"]
        label += f" [quick: H{h} D{d}]"
    cases = []

    def check(x, out):
        if "k_base" in x:
            e = rel(out["y"], attn_decode_ref(x, h))
            return {"out": e}, e, True, "Attention (past_key/past_value) vs fp64 softmax(q k^T) v"
        rows = check_rows(x["q"].shape[1])
        e = rel(out["y"][:, rows], attn_ref(x, h, rows))
        what = "Attention vs fp64 softmax(q k^T) v" + ("" if len(rows) == x["q"].shape[1] else f" ({len(rows)} query rows)")
        return {"out": e}, e, True, what

    for L in lens:
        cases.append(Case(label, "attention prefill, causal", "attention prefill, causal (lt2c Attention op)", f"B1 L{L}",
                          "attn_prefill", lambda p: attn_model(p, h, d, False),
                          lambda L=L: attn_inputs(Rand(seed_of("attn", L)), 1, L, h, d, 0), ["Attention"], check,
                          common.sdpa_prefill_flops(1, L, h, d), common.sdpa_prefill_bytes(1, L, h, h, d), 3 * L * h * d,
                          variants=(FP32, BF16_ATTN) if bf16 else (FP32,)))
    for ctx in ctxs:
        for B in batches:
            cases.append(Case(label, "attention decode", "attention decode (lt2c Attention op, past_key/past_value)",
                              f"B{B} ctx{ctx}", "attn_decode", lambda p: attn_model(p, h, d, True),
                              lambda B=B, ctx=ctx: attn_inputs(Rand(seed_of("attn", B, ctx)), B, 1, h, d, ctx), ["Attention"], check,
                              common.sdpa_decode_flops(B, ctx, h, d), common.sdpa_decode_bytes(B, ctx, h, h, d),
                              3 * B * h * d + 2 * h * (ctx - 1) * d + 2 * B))
    return cases


def dsa_cases(lens, quick):
    label, heads, sd, lat, dv, topk = DSA
    if quick:
        heads, sd, lat, dv, topk = QUICK_DIMS["dsa"]
        label += f" [quick: H{heads} lat{lat} top{topk}]"
    cases = []

    def check(x, out):
        t = x["q"].shape[1]
        rows = check_rows(t, 128) if t > 128 else np.arange(t)
        sc, o = dsa_ref(x, out["indices"], heads, lat, rows)
        bad, differ = topk_check(sc, out["indices"][0, rows], rows, topk)
        e = {"out": rel(out["o"][0, rows], o), "indices not a top-k": f"{bad}/{len(rows)} rows",
             "sets differing from fp64's (ties)": f"{differ}/{len(rows)}"}
        return e, e["out"], bad == 0, f"LightningIndexer + SparseAttention vs fp64 ({len(rows)} query rows)"

    for L in lens:
        fl_i, by_i = common.indexer_flops(L, sd), common.indexer_bytes(L, heads, sd, topk)
        idx_only = Case(label, "DSA prefill: indexer + top-k only", "DSA prefill: indexer + top-k only (lt2c LightningIndexer)",
                        f"B1 L{L}", None, None, None, ["LightningIndexer"], None, fl_i, by_i)
        cases.append(Case(label, "DSA prefill: indexer + top-k + sparse attention",
                          "DSA prefill: indexer + top-k + sparse attention (lt2c LightningIndexer + SparseAttention)", f"B1 L{L}",
                          "dsa", lambda p: dsa_model(p, heads, sd, lat, dv, topk),
                          lambda L=L: dsa_inputs(Rand(seed_of("dsa", L)), L, heads, sd, lat, dv), ["LightningIndexer", "SparseAttention"],
                          check, fl_i + common.sparse_attn_flops(L, heads, lat, dv, topk),
                          by_i + common.sparse_attn_bytes(L, heads, lat, dv, topk), L * (heads * sd + sd + heads * lat + lat + dv),
                          subrows=[(idx_only, ["LightningIndexer"])]))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default="gdn_lt2,attn,dsa,gdn_qwen")
    for name in SIZES:
        ap.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"default {SIZES[name][0]} ({SIZES[name][1]} with --quick)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="toy widths and lengths (CPU dry runs)")
    ap.add_argument("--lt2c", default=os.environ.get("LT2C", str(common.REPO / "bench" / ".bin" / "lt2c")))
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting rows after this many seconds (also: $BENCH_DEADLINE)")
    ap.add_argument("--max-npz-gb", type=float, default=MAX_NPZ_GB, help="skip shapes whose inputs are larger (disk time would dominate)")
    ap.add_argument("--no-attn-bf16", action="store_true", help="attention prefill in the fp32 build only (not also --dtype bf16)")
    a = ap.parse_args()
    if a.budget_s:
        os.environ["BENCH_DEADLINE"] = str(min(common.deadline(), time.time() + a.budget_s))
    for name, sizes in SIZES.items():
        if getattr(a, name) is None:
            setattr(a, name, sizes[a.quick])
    if a.device == "cpu":
        common.DEV = "cpu"
    exe = Path(a.lt2c)
    if not exe.exists():
        emit(section="kernel", model="all", system=SYS, row="status", shape="", note=f"no lt2c binary at {exe}")
        return
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="lt2c_kernels_"))
    comp = Compiled(exe, work)
    cases = []
    for s in a.set.split(","):
        if s in GDN:
            cases += gdn_cases(s, ints(a.lens), ints(a.batches), a.quick)
        elif s == "attn":
            cases += attn_cases(ints(a.lens), ints(a.batches), ints(a.ctx), a.quick, not a.no_attn_bf16)
        elif s == "dsa":
            cases += dsa_cases(ints(a.dsa_lens), a.quick)
        else:
            raise SystemExit(f"unknown set {s}")
    try:  # the shapes with big inputs last: a short budget drops them first
        for c in sorted(cases, key=lambda c: c.npz_bytes > BIG_NPZ):
            run_guarded(c, comp, work, a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_guarded(c, comp, work, a):
    """``run_case`` unless the inputs are too big or the time left too short (a row says which)."""
    npz_gb = c.npz_bytes / 1e9
    why = None
    if npz_gb > a.max_npz_gb:
        why = f"not run: {npz_gb:.1f} GB of fp32 inputs in the npz (over --max-npz-gb {a.max_npz_gb}: disk time would dominate)"
    elif common.time_left() < est_seconds(c.npz_bytes, a.device) * len(c.variants):
        why = f"dropped: time budget ({common.time_left():.0f} s left)"
    if why:
        for v in c.variants:
            c.emit_all(v, why)
        return
    t0 = time.time()
    try:
        run_case(c, comp, work, a.device)
        print(f"--- {c.model} {c.row} {c.shape}: {time.time() - t0:.1f} s ({common.time_left():.0f} s left)", file=sys.stderr, flush=True)
    except Exception as ex:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        c.emit_all(c.variants[0], f"failed: {type(ex).__name__}: {str(ex)[:300]}")


if __name__ == "__main__":
    main()
