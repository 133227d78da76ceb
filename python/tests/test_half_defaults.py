"""Half-precision exports by default: an ONNX whose weights are bf16 compiles with its matrix
products in bf16 by default (weights stored in half the bytes, and a line says so); an fp16 one
gets a hint to pass `--dtype fp16`; `--dtype fp32` overrides; `lt2c run` takes float16 .npz
inputs (exactly, as float32)."""

import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
LT2C = ROOT / "target" / "release" / "lt2c"
K, N = 64, 48

pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built (cargo build --release)")


def bf16_round(x):
    """float32 -> nearest bfloat16 (ties to even), as float32."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


def half_model(path, kind, w):
    """Y = Relu(X @ W) with X [B, K] and W [K, N] of `kind` (fp16 or bf16)."""
    if kind == "fp16":
        elem, init = TensorProto.FLOAT16, numpy_helper.from_array(w.astype(np.float16), "W")
    else:
        bits = (bf16_round(w).view(np.uint32) >> 16).astype(np.uint16)
        elem = TensorProto.BFLOAT16
        init = helper.make_tensor("W", elem, w.shape, bits.tobytes(), raw=True)
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["H"]), helper.make_node("Relu", ["H"], ["Y"])], "g",
                          [helper.make_tensor_value_info("X", elem, ["B", K])], [helper.make_tensor_value_info("Y", elem, ["B", N])], [init])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), path)


def compile_(src, out, *extra):
    r = subprocess.run([str(LT2C), str(src), "-o", str(out), "--no-kernels", *extra], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = subprocess.run([str(LT2C), "inspect", str(out)], capture_output=True, text=True, check=True).stdout
    return r.stderr, int(re.search(r"weights:\s+\d+ tensors, (\d+) bytes", info).group(1))


def run(model, x, tmp_path):
    np.savez(tmp_path / "in.npz", X=x)
    out = tmp_path / "out.npz"
    np.savez(out, Y=np.full((1,), np.nan, np.float32))  # poison: must be overwritten
    subprocess.run([str(LT2C), "run", str(model), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(out), "--device", "cpu"],
                   check=True, capture_output=True)
    return np.load(out)["Y"]


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("kind", ["fp16", "bf16"])
def test_half_weights_pick_the_products_type(kind, tmp_path):
    g = np.random.default_rng(7)
    w = g.standard_normal((K, N)).astype(np.float32) * 0.2
    half_model(tmp_path / "m.onnx", kind, w)
    if kind == "bf16":
        err, half_bytes = compile_(tmp_path / "m.onnx", tmp_path / "m.bin")
        assert "matrix products in bf16 (--dtype bf16)" in err
    else:  # fp16: a hint, fp32 products unless asked (fp16 GEMMs have not run on a GPU yet)
        err, nbytes = compile_(tmp_path / "m.onnx", tmp_path / "m.bin")
        assert "--dtype fp16 stores them in half the bytes" in err and nbytes == K * N * 4
        _, half_bytes = compile_(tmp_path / "m.onnx", tmp_path / "m.bin", "--dtype", "fp16")
    _, fp32_bytes = compile_(tmp_path / "m.onnx", tmp_path / "m32.bin", "--dtype", "fp32")
    assert (half_bytes, fp32_bytes) == (K * N * 2, K * N * 4)

    x = g.standard_normal((3, K)).astype(np.float32)
    if kind == "fp16":
        x = x.astype(np.float16)  # an fp16 model's input, fed as float16
        w_exact = w.astype(np.float16).astype(np.float64)
        x_prod = x.astype(np.float64)  # already fp16: the products' rounding keeps it
    else:
        w_exact = bf16_round(w).astype(np.float64)
        x_prod = bf16_round(x).astype(np.float64)  # bf16 products round the activation
    want = np.maximum(x_prod @ w_exact, 0)
    got = run(tmp_path / "m.bin", x, tmp_path)
    assert got.dtype == np.float32 and got.shape == (3, N)
    assert rel(got, want) < 1e-6
    # fp32 products over the same (exact) weights: the activation is not rounded.
    want32 = np.maximum(x.astype(np.float64) @ w_exact, 0)
    assert rel(run(tmp_path / "m32.bin", x, tmp_path), want32) < 1e-6


def test_float_weights_keep_fp32(tmp_path):
    w = np.random.default_rng(3).standard_normal((K, N)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", N])], [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), tmp_path / "f.onnx")
    err, nbytes = compile_(tmp_path / "f.onnx", tmp_path / "f.bin")
    assert "matrix products in" not in err and nbytes == K * N * 4
