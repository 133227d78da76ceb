"""Unit tests of lt2.reference: hand-computable cases, and single-op graphs run through
onnx's ReferenceEvaluator and onnxruntime (float32) on random non-zero inputs."""

import numpy as np
import pytest

from lt2 import oracles
from lt2 import reference as R

TOL = 1e-5  # relative norm error, float64 numpy vs float32 oracles


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def check_op(op, inputs, expected, n_outputs=1, ort=True, **attrs):
    """Run ``op`` on ``inputs`` in both oracles; compare every output with ``expected``."""
    model, feeds = oracles.single_op_model(op, inputs, n_outputs=n_outputs, **attrs)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    runs = {"reference": oracles.run_reference(model, feeds)}
    if ort:
        runs["onnxruntime"] = oracles.run_onnxruntime(model, feeds)
    for who, outs in runs.items():
        for i, (got, want) in enumerate(zip(outs, expected)):
            assert got.shape == want.shape, f"{op} {who} output {i}: shape {got.shape} vs {want.shape}"
            err = oracles.rel_err(got, want)
            assert err < TOL, f"{op} {who} output {i}: rel err {err:.2e}"


# --------------------------------------------------------------------------- RMSNormalization


def test_rms_norm_hand():
    x = np.full((2, 3, 4), 3.0)
    y = R.rms_norm(x, np.array([1.0, 2.0, 0.5, -1.0]), eps=0.0)
    np.testing.assert_allclose(y, np.broadcast_to([1.0, 2.0, 0.5, -1.0], (2, 3, 4)))
    y = R.rms_norm(np.array([[3.0, 4.0]]), np.ones(2), eps=1.0)  # mean sq 12.5, +1 -> 13.5
    np.testing.assert_allclose(y, [[3.0 / np.sqrt(13.5), 4.0 / np.sqrt(13.5)]])


@pytest.mark.parametrize("axis,shape,eps", [(-1, (2, 5, 8), 1e-6), (-1, (2, 3, 4, 6), 1e-5), (-2, (2, 3, 4, 6), 1e-3)])
def test_rms_norm_vs_oracles(axis, shape, eps):
    rng = np.random.default_rng(10)
    x = rnd(rng, *shape)
    scale = rnd(rng, *shape[axis:])
    check_op("RMSNormalization", [x, scale], R.rms_norm(x, scale, eps, axis), axis=axis, epsilon=eps)


def test_l2_norm_hand():
    np.testing.assert_allclose(R.l2_norm(np.array([3.0, 4.0]), eps=0.0), [0.6, 0.8])


# --------------------------------------------------------------------------- CausalConvWithState


def test_causal_conv_hand():
    x = np.arange(1.0, 7.0).reshape(1, 1, 6)
    ident = np.array([[[0.0, 0.0, 0.0, 1.0]]])  # last tap = current token
    y, st = R.causal_conv1d(x, ident)
    np.testing.assert_allclose(y, x)
    np.testing.assert_allclose(st, [[[4.0, 5.0, 6.0]]])
    y, _ = R.causal_conv1d(x, np.array([[[1.0, 0.0, 0.0, 0.0]]]))  # first tap = 3 tokens back
    np.testing.assert_allclose(y, [[[0, 0, 0, 1, 2, 3]]])
    y, _ = R.causal_conv1d(x, np.array([[[1.0, 0.0, 0.0, 0.0]]]), past_state=np.array([[[7.0, 8.0, 9.0]]]))
    np.testing.assert_allclose(y, [[[7, 8, 9, 1, 2, 3]]])
    y, _ = R.causal_conv1d(x, np.ones((1, 1, 4)), bias=np.array([0.5]))
    np.testing.assert_allclose(y, [[[1.5, 3.5, 6.5, 10.5, 14.5, 18.5]]])
    y, _ = R.causal_conv1d(np.array([[[-1.0, 2.0]]]), ident, activation="silu")
    np.testing.assert_allclose(y, [[[-1 / (1 + np.e), 2 / (1 + np.exp(-2))]]])


@pytest.mark.parametrize("activation", ["none", "silu"])
@pytest.mark.parametrize("with_bias,with_state", [(False, False), (True, True)])
def test_causal_conv_vs_oracles(activation, with_bias, with_state):
    rng = np.random.default_rng(11)
    b, c, length, k = 2, 6, 9, 4
    x, w = rnd(rng, b, c, length), rnd(rng, c, 1, k)
    bias = rnd(rng, c) if with_bias else None
    past = rnd(rng, b, c, k - 1) if with_state else None
    want = R.causal_conv1d(x, w, bias, past, activation)
    check_op("CausalConvWithState", [x, w, bias, past], list(want), n_outputs=2, activation=activation)


# --------------------------------------------------------------------------- LinearAttention


def test_gated_delta_hand():
    # One head, K = 2, V = 3, two tokens; hand-unrolled recurrence with S_0 = 0.
    q = np.array([[[1.0, 2.0], [0.5, -1.0]]])
    k = np.array([[[1.0, 0.0], [0.6, 0.8]]])
    v = np.array([[[1.0, 2.0, 3.0], [-1.0, 0.0, 2.0]]])
    g = np.log(np.array([[[0.5], [0.25]]]))
    beta = np.array([[[0.5], [0.8]]])
    o, s = R.gated_delta_rule(q, k, v, g, beta, num_heads=1, scale=0.5)
    s1 = np.outer(k[0, 0], 0.5 * v[0, 0])  # decayed zero state, u = beta v
    o1 = 0.5 * s1.T @ q[0, 0]
    s2 = 0.25 * s1
    u2 = 0.8 * (v[0, 1] - s2.T @ k[0, 1])
    s2 = s2 + np.outer(k[0, 1], u2)
    o2 = 0.5 * s2.T @ q[0, 1]
    np.testing.assert_allclose(o[0], np.stack([o1, o2]))
    np.testing.assert_allclose(s[0, 0], s2)
    np.testing.assert_allclose(o1, 0.5 * 0.5 * (q[0, 0] @ k[0, 0]) * v[0, 0])  # first token: scale*beta*(q.k) v


def test_linear_attention_rules_hand():
    # K = 1 so every rule is scalar arithmetic: S = a S + b (v - S k) k...
    q, k, v = np.ones((1, 2, 1)), np.full((1, 2, 1), 2.0), np.array([[[3.0], [5.0]]])
    o, _ = R.linear_attention(q, k, v, q_num_heads=1, kv_num_heads=1, scale=1.0, update_rule="linear")
    np.testing.assert_allclose(o.ravel(), [6.0, 16.0])
    o, _ = R.linear_attention(q, k, v, decay=np.log(np.full((1, 2, 1), 0.5)), q_num_heads=1, kv_num_heads=1, scale=1.0, update_rule="gated")
    np.testing.assert_allclose(o.ravel(), [6.0, 13.0])
    o, _ = R.linear_attention(q, k, v, beta=np.full((1, 2, 1), 0.5), q_num_heads=1, kv_num_heads=1, scale=1.0, update_rule="delta")
    # S1 = 2 * 0.5 * 3 = 3; S2 = 3 + 2 * 0.5 * (5 - 3*2) = 2
    np.testing.assert_allclose(o.ravel(), [3.0, 2.0])


LA_CASES = [
    # update_rule, q_heads, kv_heads, decay per key dim, past state, beta width 1, onnxruntime
    ("gated_delta", 2, 2, False, False, False, True),
    ("gated_delta", 2, 2, False, True, False, True),
    ("gated_delta", 4, 2, False, False, False, True),
    ("gated_delta", 2, 2, True, False, True, True),
    ("gated", 2, 2, False, False, False, True),
    ("delta", 2, 1, False, False, False, True),
    ("linear", 2, 2, False, True, False, True),
]


@pytest.mark.parametrize("rule,hq,hk,per_key,with_state,beta1,ort", LA_CASES)
def test_linear_attention_vs_oracles(rule, hq, hk, per_key, with_state, beta1, ort):
    rng = np.random.default_rng(12)
    b, t, dk, dv = 2, 7, 8, 16
    q, k, v = rnd(rng, b, t, hq * dk), rnd(rng, b, t, hk * dk, scale=0.3), rnd(rng, b, t, hk * dv)
    decay = beta = None
    if rule in ("gated", "gated_delta"):
        decay = -np.abs(rnd(rng, b, t, hk * dk if per_key else hk, scale=0.5))
    if rule in ("delta", "gated_delta"):
        beta = R.sigmoid(rnd(rng, b, t, 1 if beta1 else hk)).astype(np.float32)
    past = rnd(rng, b, hk, dk, dv, scale=0.2) if with_state else None
    want = R.linear_attention(q, k, v, past, decay, beta, q_num_heads=hq, kv_num_heads=hk, scale=0.3, update_rule=rule)
    check_op(
        "LinearAttention", [q, k, v, past, decay, beta], list(want), n_outputs=2, ort=ort,
        q_num_heads=hq, kv_num_heads=hk, scale=0.3, update_rule=rule,
    )


def test_linear_attention_default_scale():
    rng = np.random.default_rng(13)
    q, k, v = rnd(rng, 1, 3, 16), rnd(rng, 1, 3, 16), rnd(rng, 1, 3, 8)
    a, _ = R.linear_attention(q, k, v, q_num_heads=1, kv_num_heads=1, update_rule="linear")
    b, _ = R.linear_attention(q, k, v, q_num_heads=1, kv_num_heads=1, scale=0.25, update_rule="linear")
    np.testing.assert_allclose(a, b)


# --------------------------------------------------------------------------- RotaryEmbedding


def test_rotary_hand():
    cos, sin = R.rope_cache(16, 4, theta=100.0)
    np.testing.assert_allclose(cos[3], np.cos([3.0, 0.3]))
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    pos0 = np.zeros((1, 1), np.int64)
    np.testing.assert_allclose(R.rotary_embedding(x, cos, sin, pos0, interleaved=True, num_heads=1), x)
    p = np.array([[3]])
    c, s = np.cos([3.0, 0.3]), np.sin([3.0, 0.3])
    want_il = [1 * c[0] - 2 * s[0], 1 * s[0] + 2 * c[0], 3 * c[1] - 4 * s[1], 3 * s[1] + 4 * c[1]]
    want_rh = [1 * c[0] - 3 * s[0], 2 * c[1] - 4 * s[1], 1 * s[0] + 3 * c[0], 2 * s[1] + 4 * c[1]]
    np.testing.assert_allclose(R.rotary_embedding(x, cos, sin, p, interleaved=True, num_heads=1)[0, 0], want_il)
    np.testing.assert_allclose(R.rotary_embedding(x, cos, sin, p, interleaved=False, num_heads=1)[0, 0], want_rh)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rank,rot_dim", [(3, 0), (4, 0), (3, 8)])
def test_rotary_vs_oracles(interleaved, rank, rot_dim):
    rng = np.random.default_rng(14)
    b, length, h, d = 2, 5, 3, 16
    cos, sin = (a.astype(np.float32) for a in R.rope_cache(64, rot_dim or d, 1e4))
    pos = rng.integers(0, 64, (b, length)).astype(np.int64)  # not just 0..L-1
    x = rnd(rng, b, length, h * d) if rank == 3 else rnd(rng, b, h, length, d)
    attrs = dict(interleaved=interleaved, rotary_embedding_dim=rot_dim)
    if rank == 3:
        attrs["num_heads"] = h
    want = R.rotary_embedding(x, cos, sin, pos, **attrs)
    np.testing.assert_allclose(np.linalg.norm(want), np.linalg.norm(x.astype(np.float64)), rtol=1e-6)  # a rotation
    check_op("RotaryEmbedding", [x, cos, sin, pos], want, **attrs)


# --------------------------------------------------------------------------- Attention


def test_attention_hand():
    rng = np.random.default_rng(15)
    q, k, v = rnd(rng, 1, 4, 8), rnd(rng, 1, 4, 8), rnd(rng, 1, 4, 8)
    y = R.attention(q, k, v, q_num_heads=2, kv_num_heads=2, is_causal=True)
    np.testing.assert_allclose(y[0, 0], v[0, 0], rtol=1e-6)  # first token sees only itself
    kk = np.zeros_like(k)  # equal scores: causal mean of the values
    y = R.attention(q, kk, v, q_num_heads=2, kv_num_heads=2, is_causal=True)
    np.testing.assert_allclose(y[0], np.cumsum(v[0], axis=0) / np.arange(1, 5)[:, None], rtol=1e-6)


ATTN_CASES = [
    # rank, q_heads, kv_heads, causal, scale
    (3, 2, 2, 1, None),
    (3, 4, 2, 1, None),
    (3, 4, 1, 0, 0.2),
    (4, 2, 2, 1, None),
]


@pytest.mark.parametrize("rank,hq,hk,causal,scale", ATTN_CASES)
def test_attention_vs_oracles(rank, hq, hk, causal, scale):
    rng = np.random.default_rng(16)
    b, length, d = 2, 6, 8
    if rank == 3:
        q, k, v = rnd(rng, b, length, hq * d), rnd(rng, b, length, hk * d), rnd(rng, b, length, hk * d)
        attrs = dict(q_num_heads=hq, kv_num_heads=hk)
    else:
        q, k, v = rnd(rng, b, hq, length, d), rnd(rng, b, hk, length, d), rnd(rng, b, hk, length, d)
        attrs = {}
    attrs["is_causal"] = causal
    if scale is not None:
        attrs["scale"] = scale
    want = R.attention(q, k, v, **attrs)
    check_op("Attention", [q, k, v], want, **attrs)
