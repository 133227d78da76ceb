"""Ops exporters emit around a projection, as lt2c imports them: Gemm over an initializer with
transB (torch's Linear on 2-D input) is one `lt2.linear` reading the weight transposed, Split
(fused projections, torch.chunk) is one `lt2.slice` per piece, LayerNormalization is
`lt2.rms_norm` of the centred input, and the runtime RoPE tables of a dynamic export (Sin, Cos
of positions times frequencies) compute on the CPU backend as onnxruntime does. The op-level
semantics are the ONNX node tests' (test_conformance)."""

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lt2.oracles import rel_err, run_onnxruntime
from test_generate import LT2C

pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")


def _model(tmp_path):
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.standard_normal((24, 8)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(24).astype(np.float32), "Bb"),
        numpy_helper.from_array(np.array([8, 8, 8], dtype=np.int64), "S"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "g"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "beta"),
        numpy_helper.from_array((1e4 ** (-np.arange(4) / 4)).astype(np.float32).reshape(1, 4), "inv_freq"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W", "Bb"], ["y"], transB=1),
        helper.make_node("Split", ["y", "S"], ["q", "k", "v"], axis=1),
        helper.make_node("LayerNormalization", ["v", "g", "beta"], ["vn"], axis=-1, epsilon=1e-5),
        # RoPE tables at run time: angles = positions x inv_freq, then sin / cos.
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["pos"]),
        helper.make_node("Cast", ["pos"], ["posf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["posf", "ax1"], ["pos2"]),
        helper.make_node("MatMul", ["pos2", "inv_freq"], ["ang"]),
        helper.make_node("Sin", ["ang"], ["sin"]),
        helper.make_node("Cos", ["ang"], ["cos"]),
        helper.make_node("Concat", ["sin", "cos"], ["sc"], axis=1),
        helper.make_node("Mul", ["q", "sc"], ["qr"]),
        helper.make_node("Add", ["qr", "k"], ["out"]),
    ]
    inits += [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"), numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
              numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ["out", "vn"]], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return path


def test_exporter_ops_lower_to_fused_lt2_ops(tmp_path):
    path = _model(tmp_path)
    ir = subprocess.run([str(LT2C), str(path), "--emit", "mlir"], check=True, capture_output=True, text=True).stdout
    # The Gemm's weight [24, 8] read transposed (the RoPE angles' MatMul is a linear too).
    linear = [ln for ln in ir.splitlines() if '"lt2.linear"' in ln and "tensor<24x8xf32>" in ln]
    assert len(linear) == 1 and "transpose_w = true" in linear[0], ir
    assert ir.count('"lt2.slice"') == 3 and ir.count('"lt2.rms_norm"') == 1, ir
    assert '"lt2.sin"' in ir and '"lt2.cos"' in ir, ir


def test_exporter_ops_match_onnxruntime(tmp_path):
    path = _model(tmp_path)
    out = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(path), "-o", str(out), "--no-kernels"], check=True, capture_output=True)
    for n in (5, 37):
        x = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
        np.savez(tmp_path / "in.npz", x=x)
        subprocess.run([str(LT2C), "run", str(out), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "o.npz"), "--device", "cpu"],
                       check=True, capture_output=True)
        got = np.load(tmp_path / "o.npz")
        want = run_onnxruntime(path, {"x": x})
        for name, w in zip(["out", "vn"], want):
            assert rel_err(got[name], w) < 1e-5, (name, n, rel_err(got[name], w))


def test_erf_and_gelu_match_math_erf(tmp_path):
    """Erf and Gelu (opset 20, both `approximate` forms), spelled with other ops, against
    Python's math.erf in float64 over [-6, 6], random values and the branch edge |x| = 0.5."""
    import math

    x = np.concatenate([np.linspace(-6, 6, 2001), np.random.default_rng(0).standard_normal(1000) * 3,
                        [0.0, 1e-6, -1e-6, 1e-3, 0.4999, 0.5, 0.5001, -0.5]]).astype(np.float32).reshape(1, -1)
    nodes = [helper.make_node("Erf", ["x"], ["erf"]), helper.make_node("Gelu", ["x"], ["g"]),
             helper.make_node("Gelu", ["x"], ["gt"], approximate="tanh")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, x.shape[1]])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ["erf", "g", "gt"]])
    path, out = tmp_path / "m.onnx", tmp_path / "m.bin"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10), path)
    subprocess.run([str(LT2C), str(path), "-o", str(out), "--no-kernels"], check=True, capture_output=True)
    np.savez(tmp_path / "in.npz", x=x)
    subprocess.run([str(LT2C), "run", str(out), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "o.npz"), "--device", "cpu"],
                   check=True, capture_output=True)
    got = np.load(tmp_path / "o.npz")
    xd = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    want = {"erf": erf(xd), "g": 0.5 * xd * (1 + erf(xd / math.sqrt(2))),
            "gt": 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))}
    for name, w in want.items():
        err = np.abs(got[name].astype(np.float64) - w)
        assert err.max() < 1e-6 and rel_err(got[name], w) < 1e-6, (name, err.max(), rel_err(got[name], w))
        if name == "erf":  # (Gelu's 1 + erf / 1 + tanh cancels for x << 0 in any float32 formula)
            assert (err / np.maximum(np.abs(w), 1e-3)).max() < 1e-5, name
    # an approximate value that is not one of the two is an error naming it
    bad = helper.make_model(helper.make_graph([helper.make_node("Gelu", ["x"], ["y"], approximate="fast")], "b",
                                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
                            opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.save(bad, tmp_path / "bad.onnx")
    r = subprocess.run([str(LT2C), str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "bad.bin")], capture_output=True, text=True)
    assert r.returncode != 0 and "approximate = `fast`" in r.stderr, r.stderr
