"""The lt2-domain oracles (lt2.lt2_ops) against brute-force loops written from
/work/shared/spec/onnx-ops.md, and through onnx's ReferenceEvaluator as custom ops."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from lt2 import oracles
from lt2.lt2_ops import lightning_indexer, sparse_attention

# --------------------------------------------------------------------------- brute force


def brute_indexer(q, k, w, num_heads, top_k, score):
    b, t, hd = q.shape
    s = k.shape[1]
    di = hd // num_heads
    out = np.full((b, t, top_k), -1, np.int64)
    for bi in range(b):
        for ti in range(t):
            p = ti + s - t
            cand = []
            for si in range(s):
                if si > p:
                    continue
                dots = [float(np.dot(q[bi, ti, h * di:(h + 1) * di].astype(np.float64), k[bi, si].astype(np.float64)))
                        for h in range(num_heads)]
                if score == "mean_dot":
                    sc = sum(dots) / num_heads
                else:
                    sc = sum(float(w[bi, ti, h]) * max(dots[h], 0.0) for h in range(num_heads))
                cand.append((-sc, si))
            cand.sort()  # highest score first, ties: lower s first
            for r, (_, si) in enumerate(cand[:top_k]):
                out[bi, ti, r] = si
    return out


def brute_sparse(q, k, v, idx, hq, hk, scale):
    b, t, _ = q.shape
    dk = q.shape[2] // hq
    dv = v.shape[2] // hk
    g = hq // hk
    out = np.zeros((b, t, hq * dv))
    for bi in range(b):
        for ti in range(t):
            sel = [int(s) for s in idx[bi, ti] if s >= 0]
            for h in range(hq):
                j = h // g
                if not sel:
                    continue
                qh = q[bi, ti, h * dk:(h + 1) * dk].astype(np.float64)
                logits = np.array([scale * np.dot(qh, k[bi, s, j * dk:(j + 1) * dk]) for s in sel])
                p = np.exp(logits - logits.max())
                p /= p.sum()
                out[bi, ti, h * dv:(h + 1) * dv] = sum(pi * v[bi, s, j * dv:(j + 1) * dv] for pi, s in zip(p, sel))
    return out


# --------------------------------------------------------------------------- LightningIndexer


@pytest.mark.parametrize("t,s", [(7, 7), (3, 9), (1, 5), (5, 5)])
@pytest.mark.parametrize("top_k", [1, 3, 4, 12])
def test_indexer_mean_dot_vs_brute(t, s, top_k):
    rng = np.random.default_rng(t * 100 + s * 10 + top_k)
    q = rng.standard_normal((2, t, 3 * 4)).astype(np.float32)
    k = rng.standard_normal((2, s, 4)).astype(np.float32)
    got = lightning_indexer(q, k, num_heads=3, top_k=top_k)
    assert got.dtype == np.int64 and got.shape == (2, t, top_k)
    np.testing.assert_array_equal(got, brute_indexer(q, k, None, 3, top_k, "mean_dot"))


def test_indexer_relu_weighted_vs_brute():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 6, 2 * 8)).astype(np.float32)
    k = rng.standard_normal((2, 6, 8)).astype(np.float32)
    w = rng.standard_normal((2, 6, 2)).astype(np.float32)
    got = lightning_indexer(q, k, w, num_heads=2, top_k=3, score="relu_weighted")
    np.testing.assert_array_equal(got, brute_indexer(q, k, w, 2, 3, "relu_weighted"))


def test_indexer_ties_go_to_the_lower_index():
    # Integer-valued vectors: many exactly equal scores.
    rng = np.random.default_rng(0)
    q = rng.integers(-1, 2, (1, 8, 2 * 2)).astype(np.float32)
    k = rng.integers(-1, 2, (1, 8, 2)).astype(np.float32)
    got = lightning_indexer(q, k, num_heads=2, top_k=4)
    np.testing.assert_array_equal(got, brute_indexer(q, k, None, 2, 4, "mean_dot"))
    # All scores equal: the selection is 0, 1, 2, ... in order.
    z = np.zeros((1, 6, 4), np.float32)
    got = lightning_indexer(z, np.zeros((1, 6, 2), np.float32), num_heads=2, top_k=3)
    want = np.array([[[0, -1, -1], [0, 1, -1], [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]]])
    np.testing.assert_array_equal(got, want)
    # relu_weighted: every negative dot gives score 0, a tie among them.
    got = lightning_indexer(-np.ones((1, 4, 2), np.float32), np.ones((1, 4, 2), np.float32), np.ones((1, 4, 1), np.float32),
                            num_heads=1, top_k=2, score="relu_weighted")
    np.testing.assert_array_equal(got[0, 3], [0, 1])


def test_indexer_t_below_top_k_is_dense_with_minus_one_padding():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 3, 4)).astype(np.float32)
    k = rng.standard_normal((1, 3, 4)).astype(np.float32)
    got = lightning_indexer(q, k, num_heads=1, top_k=4)
    for t in range(3):
        assert sorted(got[0, t, : t + 1].tolist()) == list(range(t + 1))  # every causal position
        assert (got[0, t, t + 1 :] == -1).all()


def test_indexer_query_offset_and_no_causal_position():
    # T > S: query t sits at absolute position t + S - T, negative for the first ones.
    q = np.ones((1, 4, 2), np.float32)
    k = np.arange(2, dtype=np.float32).reshape(1, 2, 1).repeat(2, axis=2)
    got = lightning_indexer(q, k, num_heads=1, top_k=2)
    np.testing.assert_array_equal(got[0], [[-1, -1], [-1, -1], [0, -1], [1, 0]])
    np.testing.assert_array_equal(got, brute_indexer(q, k, None, 1, 2, "mean_dot"))


def test_indexer_rejects_bad_inputs():
    q, k = np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError):
        lightning_indexer(q, k, np.zeros((1, 2, 1), np.float32), num_heads=1, top_k=1)  # mean_dot takes no weights
    with pytest.raises(ValueError):
        lightning_indexer(q, k, num_heads=1, top_k=1, score="relu_weighted")  # needs weights
    with pytest.raises(ValueError):
        lightning_indexer(q, k, num_heads=3, top_k=1)


# --------------------------------------------------------------------------- SparseAttention


@pytest.mark.parametrize("hq,hk", [(2, 1), (4, 2), (3, 3)])
def test_sparse_attention_vs_brute(hq, hk):
    rng = np.random.default_rng(hq * 10 + hk)
    b, t, s, dk, dv, top_k = 2, 5, 7, 6, 4, 3
    q = rng.standard_normal((b, t, hq * dk)).astype(np.float32)
    k = rng.standard_normal((b, s, hk * dk)).astype(np.float32)
    v = rng.standard_normal((b, s, hk * dv)).astype(np.float32)
    idx = rng.integers(-1, s, (b, t, top_k)).astype(np.int64)
    idx[0, 0] = -1  # a row with no valid index
    got = sparse_attention(q, k, v, idx, q_num_heads=hq, kv_num_heads=hk)
    want = brute_sparse(q, k, v, idx, hq, hk, dk**-0.5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (got[0, 0] == 0).all()
    got = sparse_attention(q, k, v, idx, q_num_heads=hq, kv_num_heads=hk, scale=0.3)
    np.testing.assert_allclose(got, brute_sparse(q, k, v, idx, hq, hk, 0.3), rtol=1e-12, atol=1e-12)


def test_sparse_attention_duplicates_count_twice_and_order_does_not_matter():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 1, 4)).astype(np.float32)
    k = rng.standard_normal((1, 3, 4)).astype(np.float32)
    v = rng.standard_normal((1, 3, 2)).astype(np.float32)
    a = sparse_attention(q, k, v, np.array([[[2, 0, -1]]]), q_num_heads=1, kv_num_heads=1)
    b = sparse_attention(q, k, v, np.array([[[-1, 0, 2]]]), q_num_heads=1, kv_num_heads=1)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    dup = sparse_attention(q, k, v, np.array([[[0, 0, 2]]]), q_num_heads=1, kv_num_heads=1)
    np.testing.assert_allclose(dup, brute_sparse(q, k, v, np.array([[[0, 0, 2]]]), 1, 1, 0.5), rtol=1e-12)


def test_sparse_attention_with_all_causal_indices_is_causal_attention():
    from lt2 import reference as R

    rng = np.random.default_rng(4)
    t, d = 5, 8
    q = rng.standard_normal((1, t, 2 * d)).astype(np.float32)
    c = rng.standard_normal((1, t, d)).astype(np.float32)
    idx = lightning_indexer(np.zeros((1, t, 2), np.float32), np.zeros((1, t, 1), np.float32), num_heads=2, top_k=t)
    got = sparse_attention(q, c, c[:, :, :4], idx, q_num_heads=2, kv_num_heads=1)
    want = R.attention(q, c, c[:, :, :4], q_num_heads=2, kv_num_heads=1, is_causal=True, scale=d**-0.5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sparse_attention_rejects_out_of_range_index():
    z = np.zeros((1, 1, 2), np.float32)
    with pytest.raises(ValueError):
        sparse_attention(z, z, z, np.array([[[1]]]), q_num_heads=1, kv_num_heads=1)
    with pytest.raises(TypeError):
        sparse_attention(z, z, z, np.array([[[0]]], np.int32), q_num_heads=1, kv_num_heads=1)


# --------------------------------------------------------------------------- as ONNX custom ops


def test_reference_evaluator_runs_the_lt2_ops():
    rng = np.random.default_rng(9)
    b, t, h, sd, dl, dv, top_k = 2, 6, 2, 4, 6, 4, 3
    qs = rng.standard_normal((b, t, h * sd)).astype(np.float32)
    ks = rng.standard_normal((b, t, sd)).astype(np.float32)
    q = rng.standard_normal((b, t, h * dl)).astype(np.float32)
    c = rng.standard_normal((b, t, dl)).astype(np.float32)
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("LightningIndexer", ["qs", "ks"], ["idx"], domain="lt2", num_heads=h, top_k=top_k, score="mean_dot"),
        helper.make_node("Slice", ["c", "zero", "dv", "two"], ["cv"]),
        helper.make_node("SparseAttention", ["q", "c", "cv", "idx"], ["o"], domain="lt2", q_num_heads=h, kv_num_heads=1,
                         scale=dl**-0.5),
    ]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("zero", 0), ("dv", dv), ("two", 2))]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, f, list(a.shape)) for n, a in (("qs", qs), ("ks", ks), ("q", q), ("c", c))],
        [helper.make_tensor_value_info("o", f, [b, t, h * dv]), helper.make_tensor_value_info("idx", TensorProto.INT64, [b, t, top_k])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 27), helper.make_opsetid("lt2", 1)])
    m.ir_version = 13
    o, idx = oracles.run_reference(m, {"qs": qs, "ks": ks, "q": q, "c": c})
    assert o.dtype == np.float32 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, brute_indexer(qs, ks, None, h, top_k, "mean_dot"))
    np.testing.assert_allclose(o, brute_sparse(q, c, c[:, :, :dv], idx, h, 1, dl**-0.5), rtol=1e-5, atol=1e-6)
