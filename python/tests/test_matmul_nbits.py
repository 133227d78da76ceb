"""com.microsoft MatMulNBits (the int4 / int8 block-quantized linear of onnxruntime-genai
exports): lt2c dequantizes the weight at compile time; its outputs match onnxruntime's (CPU,
accuracy_level 0: fp32 compute) on fresh random inputs, with and without zero points and bias,
for 4 and 8 bits and a K that is not a multiple of the block size."""

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lt2.oracles import rel_err

ROOT = Path(__file__).resolve().parents[2]
LT2C = ROOT / "target" / "release" / "lt2c"
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built (cargo build --release)")


def pack(vals, bits):
    """Values of `bits` bits packed little-endian into bytes (low bits first)."""
    out = np.zeros((len(vals) * bits + 7) // 8, np.uint8)
    for i, v in enumerate(vals):
        bit = i * bits
        out[bit // 8] |= (int(v) << (bit % 8)) & 0xFF
        if bit % 8 + bits > 8:
            out[bit // 8 + 1] |= int(v) >> (8 - bit % 8)
    return out


def model(path, g, k, n, bits, block, zp_kind, bias):
    blocks = -(-k // block)
    q = g.integers(0, 1 << bits, (n, blocks * block))
    b = np.stack([np.stack([pack(q[c, j * block:(j + 1) * block], bits) for j in range(blocks)]) for c in range(n)])
    scales = (g.random((n * blocks,)) * 0.1 + 0.01).astype(np.float32)
    inits = [numpy_helper.from_array(b.astype(np.uint8), "B"), numpy_helper.from_array(scales, "scales")]
    ins = ["A", "B", "scales"]
    if zp_kind == "uint8":
        zp = g.integers(0, 1 << bits, (n, blocks))
        inits.append(numpy_helper.from_array(np.stack([pack(zp[c], bits) for c in range(n)]).reshape(-1).astype(np.uint8), "zp"))
        ins.append("zp")
    elif zp_kind == "float":
        inits.append(numpy_helper.from_array((g.random(n * blocks) * (1 << bits)).astype(np.float32), "zp"))
        ins.append("zp")
    if bias:
        ins += [""] * (4 - len(ins)) + ["", "bias"]
        inits.append(numpy_helper.from_array(g.standard_normal(n).astype(np.float32), "bias"))
    node = helper.make_node("MatMulNBits", ins, ["Y"], domain="com.microsoft", K=k, N=n, bits=bits, block_size=block, accuracy_level=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["b", "s", k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["b", "s", n])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)], ir_version=10)
    onnx.save(m, path)


@pytest.mark.parametrize("bits,block,k,zp_kind,bias", [
    (4, 32, 96, "none", False),
    (4, 32, 80, "uint8", True),   # K not a multiple of the block: a part-used last block
    (4, 64, 128, "float", False),
    (8, 16, 48, "uint8", True),
])
def test_matches_onnxruntime(tmp_path, bits, block, k, zp_kind, bias):
    g = np.random.default_rng(bits * 1000 + k)
    n = 40
    model(tmp_path / "m.onnx", g, k, n, bits, block, zp_kind, bias)
    a = g.standard_normal((2, 5, k)).astype(np.float32)
    want = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    r = subprocess.run([str(LT2C), str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.bin"), "--no-kernels"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.savez(tmp_path / "in.npz", A=a)
    np.savez(tmp_path / "out.npz", Y=np.full(1, np.nan, np.float32))  # poison: must be overwritten
    subprocess.run([str(LT2C), "run", str(tmp_path / "m.bin"), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
                    "--device", "cpu"], check=True, capture_output=True)
    got = np.load(tmp_path / "out.npz")["Y"]
    assert got.shape == want.shape and rel_err(got, want) < 1e-5


def test_act_order_is_refused(tmp_path):
    g = np.random.default_rng(0)
    model(tmp_path / "m.onnx", g, 32, 8, 4, 32, "none", False)
    m = onnx.load(tmp_path / "m.onnx")
    m.graph.node[0].input.extend(["", "g_idx"])
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(32, np.int32), "g_idx"))
    onnx.save(m, tmp_path / "m.onnx")
    r = subprocess.run([str(LT2C), str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.bin"), "--no-kernels"], capture_output=True, text=True)
    assert r.returncode != 0 and "g_idx" in r.stderr and "panicked" not in r.stderr
