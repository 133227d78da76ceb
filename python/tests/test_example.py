"""The tiny LT2-hybrid example model: oracles agree, the committed fixture is current, the
graph has the agreed signature and op set, and the model is not degenerate."""

import dataclasses

import numpy as np
import onnx
import pytest

from lt2 import oracles
from lt2 import reference as R
from lt2.examples import gen_example as gen
from lt2.fixtures import load_npz
from lt2.models import example as ex

ALLOWED_OPS = {
    "Gather", "RMSNormalization", "MatMul", "Add", "Mul", "Sigmoid", "Softplus", "Exp", "Neg",
    "Reshape", "Transpose", "LinearAttention", "CausalConvWithState", "Attention",
    "RotaryEmbedding", "Loop", "Shape", "Slice", "Squeeze", "Unsqueeze", "Range", "Concat",
    "Constant", "ReduceSum", "Sqrt", "Div", "Identity", "Expand",
}


@pytest.fixture(scope="module")
def built():
    return gen.build_all(verbose=False)


def _all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)


def test_oracles_agree(built, tmp_path):
    files, errors = built
    assert len(errors) == 2 * 5
    for what, err in errors.items():
        assert err < 1e-5, f"{what}: {err:.2e}"
    gen.write(files, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["io.npz", "io_b1_l7.npz", "model.onnx", "model_unrolled.onnx"]
    # The written files reload and still agree with the numpy forward.
    model = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    io = load_npz(tmp_path / "io_b1_l7.npz")
    got = oracles.run_reference(model, {"input_ids": io["input_ids"]})[0]
    want = R.lt2_forward(ex.make_weights(), io["input_ids"], ex.ExampleConfig())
    assert oracles.rel_err(got, want) < 1e-5


def test_committed_fixture_is_current(built):
    files, _ = built
    problems = gen.check(files, gen.DEFAULT_OUT)
    assert not problems, "regenerate with `PYTHONPATH=python .venv/bin/python -m lt2.examples.gen_example`: " + "; ".join(problems)
    total = sum((gen.DEFAULT_OUT / n).stat().st_size for n in files)
    assert total < 1 << 20, f"fixture is {total} bytes"


def test_build_is_deterministic():
    a = ex.build_model().SerializeToString()
    b = ex.build_model().SerializeToString()
    assert a == b
    assert ex.build_model(unrolled=True).SerializeToString() == ex.build_model(unrolled=True).SerializeToString()


def test_fixture_inputs():
    io = load_npz(gen.DEFAULT_OUT / "io.npz")
    assert sorted(io) == ["input_ids", "logits"]
    assert io["input_ids"].dtype == np.int64 and io["input_ids"].shape == (2, 12)
    assert io["logits"].dtype == np.float32 and io["logits"].shape == (2, 12, 256)
    io = load_npz(gen.DEFAULT_OUT / "io_b1_l7.npz")
    assert io["input_ids"].shape == (1, 7) and io["logits"].shape == (1, 7, 256)


@pytest.mark.parametrize("unrolled", [False, True])
def test_graph_signature_and_ops(unrolled):
    cfg = ex.ExampleConfig()
    m = ex.build_model(cfg, unrolled=unrolled)
    assert m.ir_version == 13
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 27)]
    (inp,) = m.graph.input
    (out,) = m.graph.output
    assert inp.name == "input_ids" and inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in inp.type.tensor_type.shape.dim] == ["batch", "seq"]
    assert out.name == "logits" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = out.type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_param, dims[2].dim_value) == ("batch", "seq", 256)
    nodes = list(_all_nodes(m.graph))
    assert {n.op_type for n in nodes} <= ALLOWED_OPS
    names = [n.name for n in nodes]
    assert all(names) and len(names) == len(set(names)), "node names must be unique and non-empty"
    assert sorted(i.name for i in m.graph.initializer) == sorted(ex.make_weights(cfg))
    counts = {op: sum(n.op_type == op for n in nodes) for op in ("LinearAttention", "CausalConvWithState", "Attention", "RotaryEmbedding")}
    per_loop = {"LinearAttention": 1, "CausalConvWithState": 3, "Attention": 1, "RotaryEmbedding": 2}
    assert counts == {op: c * (cfg.n_loops if unrolled else 1) for op, c in per_loop.items()}
    loops = [n for n in m.graph.node if n.op_type == "Loop"]
    if unrolled:
        assert not loops
        return
    (loop,) = loops
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"}
    assert consts[loop.input[0]].dtype == np.int64 and int(consts[loop.input[0]]) == cfg.n_loops
    assert consts[loop.input[1]].dtype == np.bool_ and bool(consts[loop.input[1]]) is True  # explicit cond
    body = loop.attribute[0].g
    assert len(body.initializer) == 0  # weights come from the outer scope
    assert [i.name for i in body.input] == ["loop/iter", "loop/cond_in", "loop/h_in"]
    assert body.node[0].op_type == "Identity" and body.node[0].input[0] == "loop/cond_in"


def test_not_degenerate_and_loop_matters():
    cfg = ex.ExampleConfig()
    w = ex.make_weights(cfg)
    io = load_npz(gen.DEFAULT_OUT / "io.npz")
    ids, logits = io["input_ids"], io["logits"]
    assert np.isfinite(logits).all()
    assert 1.0 < logits.std() < 20.0
    assert len(np.unique(logits.argmax(-1))) > 5
    full = R.lt2_forward(w, ids, cfg)
    w0 = dict(w, rho=np.zeros_like(w["rho"]))
    assert oracles.rel_err(R.lt2_forward(w0, ids, cfg), full) > 1e-2, "rho must matter"
    w1 = dict(w, rho=w["rho"][:1])
    assert oracles.rel_err(R.lt2_forward(w1, ids, dataclasses.replace(cfg, n_loops=1)), full) > 1e-1, "the second loop must matter"
    # Causality: logits at position t do not depend on later tokens.
    ids2 = ids.copy()
    ids2[:, 8:] = (ids2[:, 8:] + 1) % cfg.vocab
    out2 = R.lt2_forward(w, ids2, cfg)
    np.testing.assert_allclose(out2[:, :8], full[:, :8], rtol=1e-12, atol=1e-12)
    assert not np.allclose(out2[:, 8:], full[:, 8:])


def test_rope_cache_matches_formula():
    w = ex.make_weights()
    cos, sin = w["rope.cos_cache"], w["rope.sin_cache"]
    assert cos.shape == sin.shape == (512, 16)
    p, i = 100, 5
    np.testing.assert_allclose(cos[p, i], np.cos(p * 1e4 ** (-2 * i / 32)), rtol=1e-6)
    np.testing.assert_allclose(sin[p, i], np.sin(p * 1e4 ** (-2 * i / 32)), rtol=1e-6)


def test_other_config_oracles_agree():
    """GQA attention, rotate-half RoPE, three layers, three loops: builder and numpy agree."""
    cfg = ex.ExampleConfig(
        mixers=("gdn", "attn", "gdn"), n_loops=3, attn_q_heads=4, attn_kv_heads=2, attn_head_dim=16,
        rope_interleaved=False, gdn_heads=4, gdn_k=8, gdn_v=16, seed=3,
    )
    w = ex.make_weights(cfg)
    ids = gen.input_ids(5, 2, 9, cfg.vocab)
    loop = ex.build_model(cfg, w)
    unrolled = ex.build_model(cfg, w, unrolled=True)
    ref = oracles.run_reference(loop, {"input_ids": ids})[0]
    ort_u = oracles.run_onnxruntime(unrolled, {"input_ids": ids})[0]
    ort_l = oracles.run_onnxruntime(loop, {"input_ids": ids})[0]
    fwd = R.lt2_forward(w, ids, cfg)
    assert oracles.rel_err(ref, fwd) < 1e-5
    assert oracles.rel_err(ort_u, fwd) < 1e-5
    assert oracles.rel_err(ort_l, fwd) < 1e-5
