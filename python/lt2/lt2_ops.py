"""Numpy oracles of the ``lt2`` ONNX domain (version 1), as /work/shared/spec/onnx-ops.md defines it.

- ``lightning_indexer``: ``lt2::LightningIndexer``. Inputs ``q_index [B, T, Hi*Di]``,
  ``k_index [B, S, Di]``, optional ``weights [B, T, Hi]``; attributes ``num_heads`` (Hi),
  ``top_k``, ``score`` (``"mean_dot"``: ``mean_h(q[t,h] . k[s])``, no weights;
  ``"relu_weighted"``: ``sum_h w[t,h] * relu(q[t,h] . k[s])``). Output ``indices`` int64
  ``[B, T, top_k]``: for query t (absolute position ``p = t + S - T``) the positions
  ``s <= p`` with the highest scores, highest first, ties to the lower s; slots past the
  number of causal positions (``max(0, min(p + 1, S))``) hold -1.
- ``sparse_attention``: ``lt2::SparseAttention``. Inputs ``query [B, T, Hq*Dk]``,
  ``key [B, S, Hkv*Dk]``, ``value [B, S, Hkv*Dv]``, ``indices`` int64 ``[B, T, top_k]``
  (shared by all heads, -1 = skip); attributes ``q_num_heads``, ``kv_num_heads`` (Hq a
  multiple of Hkv; KV head j serves query heads ``j*g .. j*g+g-1``, as ``Attention``),
  ``scale`` (default ``Dk ** -0.5``). Output ``[B, T, Hq*Dv]``: per head, softmax over the
  selected s of ``scale * q . k_s``, applied to ``v_s``; a row with no valid index gives zeros.
  The op itself applies no causal mask: it attends to exactly the listed positions.
  A position listed twice counts twice (list semantics, as the fused kernels iterate the
  list); the spec leaves duplicates open and ``LightningIndexer`` never emits them.
  Any negative index is skipped; an index >= S is an error.

Both compute in float64 and return ``float64`` (attention output) or ``int64`` (indices);
the ``OpRun`` classes (``LightningIndexer``, ``SparseAttention``, ``op_domain = "lt2"``) plug
them into ``onnx.reference.ReferenceEvaluator(model, new_ops=LT2_OPS)`` and cast the
attention output back to the input dtype.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

DOMAIN = "lt2"
VERSION = 1


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def indexer_scores(q_index, k_index, weights=None, *, num_heads, score="mean_dot"):
    """Index scores ``[B, T, S]`` (float64) of ``LightningIndexer``, before masking/ranking."""
    q = np.asarray(q_index, np.float64)
    k = np.asarray(k_index, np.float64)
    b, t, hd = q.shape
    if hd % num_heads:
        raise ValueError(f"q_index width {hd} is not a multiple of num_heads {num_heads}")
    di = hd // num_heads
    if k.ndim != 3 or k.shape[0] != b or k.shape[2] != di:
        raise ValueError(f"k_index must be [B, S, {di}], got {k.shape}")
    dots = np.einsum("bthd,bsd->bths", q.reshape(b, t, num_heads, di), k)  # [B, T, H, S]
    score = _attr_str(score)
    if score == "mean_dot":
        if weights is not None:
            raise ValueError('score="mean_dot" takes no weights input')
        return dots.mean(axis=2)
    if score == "relu_weighted":
        if weights is None:
            raise ValueError('score="relu_weighted" needs the weights input')
        w = np.asarray(weights, np.float64).reshape(b, t, num_heads, 1)
        return (w * np.maximum(dots, 0.0)).sum(axis=2)
    raise ValueError(f"unknown score {score!r}")


def lightning_indexer(q_index, k_index, weights=None, *, num_heads, top_k, score="mean_dot"):
    """``lt2::LightningIndexer``: int64 indices ``[B, T, top_k]`` (see the module docstring)."""
    sc = indexer_scores(q_index, k_index, weights, num_heads=num_heads, score=score)
    b, t, s = sc.shape
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    pos = np.arange(t)[:, None] + (s - t)  # absolute position of query t
    causal = np.arange(s)[None, :] <= pos  # [T, S]
    keyed = np.where(causal[None], -sc, np.inf)  # sort ascending on -score; masked last
    order = np.argsort(keyed, axis=-1, kind="stable")  # stable: ties keep the lower s first
    count = np.clip(pos[:, 0] + 1, 0, s)  # causal positions per query
    out = np.full((b, t, top_k), -1, np.int64)
    n = min(top_k, s)
    out[:, :, :n] = order[:, :, :n]
    out[:, np.arange(top_k)[None, :] >= count[:, None]] = -1
    return out


def sparse_attention(query, key, value, indices, *, q_num_heads, kv_num_heads, scale=None):
    """``lt2::SparseAttention``: float64 ``[B, T, Hq*Dv]`` (see the module docstring)."""
    q = np.asarray(query, np.float64)
    k = np.asarray(key, np.float64)
    v = np.asarray(value, np.float64)
    idx = np.asarray(indices)
    if idx.dtype != np.int64:
        raise TypeError(f"indices must be int64, got {idx.dtype}")
    b, t, _ = q.shape
    s = k.shape[1]
    hq, hk = int(q_num_heads), int(kv_num_heads)
    if hq % hk:
        raise ValueError("q_num_heads must be a multiple of kv_num_heads")
    dk = q.shape[2] // hq
    dv = v.shape[2] // hk
    if k.shape[2] != hk * dk or v.shape[:2] != k.shape[:2]:
        raise ValueError(f"key/value shapes {k.shape}/{v.shape} do not match query {q.shape}")
    if idx.shape[:2] != (b, t):
        raise ValueError(f"indices must be [B, T, top_k] = [{b}, {t}, k], got {idx.shape}")
    if (idx >= s).any():
        raise ValueError(f"an index is >= S = {s}")
    sc = float(dk**-0.5 if scale is None else scale)
    grp = hq // hk
    qh = q.reshape(b, t, hq, dk)
    kh = np.repeat(k.reshape(b, s, hk, dk), grp, axis=2)  # [B, S, Hq, Dk]
    vh = np.repeat(v.reshape(b, s, hk, dv), grp, axis=2)
    valid = idx >= 0  # [B, T, K]
    safe = np.where(valid, idx, 0)
    bi = np.arange(b)[:, None, None]
    ks = kh[bi, safe]  # [B, T, K, Hq, Dk]
    vs = vh[bi, safe]  # [B, T, K, Hq, Dv]
    logits = sc * np.einsum("bthd,btkhd->bthk", qh, ks)  # [B, T, Hq, K]
    logits = np.where(valid[:, :, None, :], logits, -np.inf)
    m = logits.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(logits - m)  # exp(-inf) = 0 for skipped slots
    den = p.sum(axis=-1, keepdims=True)
    p = np.divide(p, den, out=np.zeros_like(p), where=den > 0)  # empty row -> zeros
    out = np.einsum("bthk,btkhd->bthd", p, vs)
    return out.reshape(b, t, hq * dv)


class LightningIndexer(OpRun):
    """``lt2::LightningIndexer`` for ``onnx.reference.ReferenceEvaluator``."""

    op_domain = DOMAIN

    def _run(self, q_index, k_index, weights=None, num_heads=None, top_k=None, score="mean_dot"):  # noqa: D102
        if num_heads is None or top_k is None:
            raise ValueError("LightningIndexer needs the num_heads and top_k attributes")
        return (lightning_indexer(q_index, k_index, weights, num_heads=num_heads, top_k=top_k, score=score),)


class SparseAttention(OpRun):
    """``lt2::SparseAttention`` for ``onnx.reference.ReferenceEvaluator``."""

    op_domain = DOMAIN

    def _run(self, query, key, value, indices, q_num_heads=None, kv_num_heads=None, scale=None):  # noqa: D102
        if q_num_heads is None or kv_num_heads is None:
            raise ValueError("SparseAttention needs the q_num_heads and kv_num_heads attributes")
        out = sparse_attention(query, key, value, indices, q_num_heads=q_num_heads, kv_num_heads=kv_num_heads, scale=scale)
        return (out.astype(np.asarray(query).dtype),)


LT2_OPS = [LightningIndexer, SparseAttention]
