"""The com.microsoft oracles (lt2.ms_ops) against onnxruntime 1.31.1 CPU op by op, the
GatedDeltaNet oracle against a brute-force recurrence and (through the rewrite that the zoo
generator uses) against onnxruntime, and the scan-stacking Loop of lt2.oracles."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lt2 import ms_ops, oracles
from lt2 import reference as R


def _model(op, domain, inputs, n_out=1, **attrs):
    """One-node model (default domain 27 + com.microsoft 1); ``inputs`` arrays or None."""
    names, vis, feeds = [], [], {}
    for i, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        a = np.asarray(a)
        names.append(f"in{i}")
        feeds[f"in{i}"] = a
        vis.append(helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))
    while names and names[-1] == "":
        names.pop()
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, domain=domain, **attrs)
    g = helper.make_graph([node], "g", vis, [helper.make_empty_tensor_value_info(o) for o in outs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 27), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 13
    return m, feeds


def _both(m, feeds, n=1):
    ref = oracles.run_reference(m, feeds)[:n]
    ort = oracles.run_onnxruntime(m, feeds)[:n]
    return ref, ort


RNG = np.random.default_rng(0)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_simplified_layer_norm_vs_onnxruntime():
    m, feeds = _model("SimplifiedLayerNormalization", "", [f32(2, 5, 16), f32(16)], axis=-1, epsilon=1e-6)
    (r,), (o,) = _both(m, feeds)
    assert oracles.rel_err(r, o) < 1e-6


@pytest.mark.parametrize("interleaved", [0, 1])
def test_ms_rotary_embedding_vs_onnxruntime(interleaved):
    b, s, h, d = 2, 5, 3, 8
    cos, sin = R.rope_cache(16, d, 1e4)
    pos = np.array([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]], np.int64)
    m, feeds = _model("RotaryEmbedding", "com.microsoft", [f32(b, s, h * d), pos, cos.astype(np.float32), sin.astype(np.float32)],
                      interleaved=interleaved, num_heads=h)
    (r,), (o,) = _both(m, feeds)
    assert oracles.rel_err(r, o) < 1e-6


@pytest.mark.parametrize("hq,hk,window,rotary,interleaved", [
    (2, 2, -1, 0, 0), (4, 2, -1, 0, 0), (2, 2, 3, 0, 0), (4, 1, 4, 0, 0), (2, 2, 4, 1, 1), (4, 2, -1, 1, 0),
])
def test_group_query_attention_vs_onnxruntime(hq, hk, window, rotary, interleaved):
    b, s, d = 2, 9, 16  # onnxruntime's do_rotary wants head_size % 16 == 0
    ins = [f32(b, s, hq * d), f32(b, s, hk * d), f32(b, s, hk * d), None, None,
           np.full([b], s - 1, np.int32), np.array(s, np.int32)]
    if rotary:
        cos, sin = R.rope_cache(16, d, 1e4)
        ins += [cos.astype(np.float32), sin.astype(np.float32)]
    m, feeds = _model("GroupQueryAttention", "com.microsoft", ins, num_heads=hq, kv_num_heads=hk, local_window_size=window,
                      do_rotary=rotary, rotary_interleaved=interleaved)
    (r,), (o,) = _both(m, feeds)
    assert oracles.rel_err(r, o) < 1e-6


def test_group_query_attention_window_keeps_w_keys():
    """local_window_size = w: query i sees keys i-w+1 .. i (w keys), like Attention-25 with
    left_window_size = w - 1; checked on onnxruntime directly."""
    b, s, h, d, w = 1, 8, 2, 8, 4
    q, k, v = f32(b, s, h * d), f32(b, s, h * d), f32(b, s, h * d)
    m, feeds = _model("GroupQueryAttention", "com.microsoft", [q, k, v, None, None, np.full([b], s - 1, np.int32), np.array(s, np.int32)],
                      num_heads=h, kv_num_heads=h, local_window_size=w)
    (o,) = oracles.run_onnxruntime(m, feeds)
    want = R.attention(q, k, v, q_num_heads=h, kv_num_heads=h, is_causal=True, window=w)
    assert oracles.rel_err(o, want) < 1e-6
    m2, feeds2 = oracles.single_op_model("Attention", [q, k, v], 1, is_causal=1, q_num_heads=h, kv_num_heads=h,
                                         left_window_size=w - 1, right_window_size=0)
    assert oracles.rel_err(oracles.run_reference(m2, feeds2)[0], want) < 1e-6


@pytest.mark.parametrize("activation", ["silu", "sigmoid"])
def test_gated_rms_norm_vs_onnxruntime(activation):
    m, feeds = _model("GatedRMSNorm", "com.microsoft", [f32(2, 5, 3 * 8), 1 + f32(8), f32(2, 5, 3 * 8)], activation=activation,
                      epsilon=1e-5)
    (r,), (o,) = _both(m, feeds)
    assert oracles.rel_err(r, o) < 1e-6


@pytest.mark.parametrize("channels_last", [0, 1])
def test_ms_causal_conv_vs_onnxruntime(channels_last):
    x = f32(2, 7, 6) if channels_last else f32(2, 6, 7)
    m, feeds = _model("CausalConvWithState", "com.microsoft", [x, f32(6, 1, 4)], n_out=2, activation="silu",
                      channels_last=channels_last)
    r, o = _both(m, feeds, 2)
    assert oracles.rel_err(r[0], o[0]) < 1e-6 and oracles.rel_err(r[1], o[1]) < 1e-6


def brute_gdn(q, k, v, a, b, a_log, dt_bias, scale, eps=1e-6):
    """GatedDeltaNet (qwen gate, sigmoid beta, qk_l2_norm) by plain loops, V-major state."""
    q, k, v, a, b, a_log, dt_bias = (np.asarray(x, np.float64) for x in (q, k, v, a, b, a_log, dt_bias))
    bs, s, hq, dk = q.shape
    hv, dv = v.shape[2], v.shape[3]
    out = np.zeros((bs, s, hv, dv))
    fin = np.zeros((bs, hv, dv, dk))
    for bi in range(bs):
        for j in range(hv):
            h = j // (hv // hq)
            st = np.zeros((dv, dk))  # V-major
            for t in range(s):
                qt = q[bi, t, h].astype(np.float64)
                kt = k[bi, t, h].astype(np.float64)
                qt, kt = qt / np.sqrt(qt @ qt + eps), kt / np.sqrt(kt @ kt + eps)
                g = -np.exp(a_log[j]) * np.log1p(np.exp(a[bi, t, j] + dt_bias[j]))
                beta = 1 / (1 + np.exp(-b[bi, t, j]))
                st = np.exp(g) * st
                st = st + beta * np.outer(v[bi, t, j] - st @ kt, kt)
                out[bi, t, j] = scale * st @ qt
            fin[bi, j] = st
    return out, fin


@pytest.mark.parametrize("hq,hv", [(2, 2), (2, 4)])
def test_gated_delta_net_vs_brute_and_onnxruntime(hq, hv):
    b, s, dk, dv = 2, 6, 8, 4
    q, k, v = f32(b, s, hq, dk), f32(b, s, hq, dk), f32(b, s, hv, dv)
    a, bb = f32(b, s, hv), f32(b, s, hv)
    a_log = np.log(RNG.uniform(1, 16, hv)).astype(np.float32)
    dt = f32(hv) * 0.1
    attrs = dict(update_rule="gated_delta", gate_activation="qwen", beta_activation="sigmoid", qk_l2_norm=1, scale=0.0)
    o, fin = ms_ops.gated_delta_net(q, k, v, a, bb, None, a_log, dt, **attrs)
    wo, wf = brute_gdn(q, k, v, a, bb, a_log, dt, dk**-0.5)
    np.testing.assert_allclose(o, wo, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fin, wf, rtol=1e-10, atol=1e-12)
    # As a model: packed inputs, Reshape to heads (as the zoo's ms spelling), GatedDeltaNet.
    f = TensorProto.FLOAT
    consts = {"qs": [0, 0, hq, dk], "vs": [0, 0, hv, dv]}
    nodes = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(np.array(v_, np.int64))) for n, v_ in consts.items()]
    nodes += [helper.make_node("Reshape", ["qp", "qs"], ["q4"]), helper.make_node("Reshape", ["kp", "qs"], ["k4"]),
              helper.make_node("Reshape", ["vp", "vs"], ["v4"]),
              helper.make_node("GatedDeltaNet", ["q4", "k4", "v4", "", "a", "b", "", "a_log", "dt"], ["o"], name="gdn",
                               domain="com.microsoft", **attrs)]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, f, sh) for n, sh in
         (("qp", [b, s, hq * dk]), ("kp", [b, s, hq * dk]), ("vp", [b, s, hv * dv]), ("a", [b, s, hv]), ("b", [b, s, hv]))],
        [helper.make_tensor_value_info("o", f, [b, s, hv, dv])],
        initializer=[numpy_helper.from_array(a_log, "a_log"), numpy_helper.from_array(dt, "dt")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 27), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 13
    feeds = {"qp": q.reshape(b, s, -1), "kp": k.reshape(b, s, -1), "vp": v.reshape(b, s, -1), "a": a, "b": bb}
    (ref,) = oracles.run_reference(m, feeds)
    assert oracles.rel_err(ref, wo) < 1e-6
    with pytest.raises(Exception, match="GatedDeltaNet"):
        oracles.run_onnxruntime(m, feeds)  # no CPU kernel in onnxruntime 1.31.1
    (ort,) = oracles.run_onnxruntime(ms_ops.substitute_gated_delta_net(m), feeds)
    assert oracles.rel_err(ort, wo) < 1e-6


def test_loop_scan_outputs_are_stacked():
    """Scan outputs get a new leading axis [T, ...] (ONNX spec, onnxruntime); onnx 1.23.2's own
    reference Loop concatenates them (np.vstack), which lt2.oracles replaces."""
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Add", ["x", "one"], ["x_out"]),
         helper.make_node("Identity", ["x_out"], ["scan"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", f, [2, 3])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", f, [2, 3]),
         helper.make_tensor_value_info("scan", f, [2, 3])],
    )
    g = helper.make_graph(
        [helper.make_node("Loop", ["m", "cond", "x0"], ["x_final", "scans"], body=body)], "g",
        [helper.make_tensor_value_info("x0", f, [2, 3])],
        [helper.make_tensor_value_info("x_final", f, [2, 3]), helper.make_tensor_value_info("scans", f, None)],
        initializer=[numpy_helper.from_array(np.array(4, np.int64), "m"), numpy_helper.from_array(np.array(True), "cond"),
                     numpy_helper.from_array(np.ones((2, 3), np.float32), "one")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 27)])
    m.ir_version = 13
    x0 = np.zeros((2, 3), np.float32)
    _, ref = oracles.run_reference(m, {"x0": x0})
    _, ort = oracles.run_onnxruntime(m, {"x0": x0})
    assert ref.shape == ort.shape == (4, 2, 3)
    np.testing.assert_array_equal(ref, ort)
    from onnx.reference import ReferenceEvaluator

    plain = ReferenceEvaluator(m).run(None, {"x0": x0})[1]
    assert plain.shape == (8, 3), "onnx's reference Loop stacks scan outputs now: drop lt2.oracles._stacking_loop"
