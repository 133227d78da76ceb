"""Models exported in float16 or bfloat16 (`model.half()` / `.to(torch.bfloat16)` before export):
lt2c reads half initializers and constants exactly, computes in float32 with `--dtype fp32` (a
Cast between float types is the identity) and takes float32 for half inputs. Checked by converting zoo models to
half types and comparing with the same model in float32 whose weights were rounded to the same
half values: the outputs must agree to float32 rounding. Skipped when lt2c is not built."""

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from lt2.oracles import rel_err
from test_generate import LT2C

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")


def _round(a: np.ndarray, half: int) -> np.ndarray:
    """float32 values rounded to float16 / bfloat16 (round to nearest even), as float32."""
    if half == TensorProto.FLOAT16:
        return a.astype(np.float16).astype(np.float32)
    bits = a.astype(np.float32).view(np.uint32)
    top = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32)
    return (top << 16).view(np.float32)


def _half_tensor(t: TensorProto, half: int, keep_f32: bool) -> TensorProto:
    a = _round(numpy_helper.to_array(t), half)
    if keep_f32:
        return numpy_helper.from_array(a, t.name)
    if half == TensorProto.FLOAT16:
        return numpy_helper.from_array(a.astype(np.float16), t.name)
    out = TensorProto(name=t.name, data_type=TensorProto.BFLOAT16, dims=t.dims)
    out.raw_data = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return out


def _convert(g: onnx.GraphProto, half: int, keep_f32: bool):
    """Float initializers and constants to `half` values; unless keep_f32, also their type, the
    graph's float inputs and outputs, and casts to float."""
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(_half_tensor(t, half, keep_f32))
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(_half_tensor(a.t, half, keep_f32))
            if a.type == onnx.AttributeProto.GRAPH:
                _convert(a.g, half, keep_f32)
            if not keep_f32 and n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = half
    if not keep_f32:
        for v in list(g.input) + list(g.output) + list(g.value_info):
            if v.type.tensor_type.elem_type == TensorProto.FLOAT:
                v.type.tensor_type.elem_type = half


@pytest.mark.parametrize("half", [TensorProto.FLOAT16, TensorProto.BFLOAT16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("model", ["ouro/standard_loop.onnx", "lt2_full_gdn/standard_unrolled.onnx"])
def test_half_exports_compute_as_their_float32_twin(tmp_path, half, model):
    src = ROOT / "tests" / "fixtures" / "zoo" / model
    outs = {}
    for keep in (False, True):
        m = onnx.load(src)
        _convert(m.graph, half, keep)
        path, out = tmp_path / f"m{keep}.onnx", tmp_path / f"m{keep}.bin"
        onnx.save(m, path)
        # --dtype fp32: without it a half export's products default to its half type
        # (test_half_defaults.py)
        p = subprocess.run([str(LT2C), str(path), "-o", str(out), "--no-kernels", "--dtype", "fp32"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        io = src.parent / "io.npz"
        subprocess.run([str(LT2C), "run", str(out), "--inputs", str(io), "--outputs", str(tmp_path / f"o{keep}.npz"), "--device", "cpu"], check=True, capture_output=True)
        outs[keep] = np.load(tmp_path / f"o{keep}.npz")
    golden = np.load(src.parent / "io.npz")
    for name in outs[True].files:
        assert outs[False][name].dtype == np.float32
        assert rel_err(outs[False][name], outs[True][name]) < 1e-6, name
        # Rounding the weights moves the outputs, a little.
        e = rel_err(outs[True][name], golden[name])
        assert 0 < e < 5e-2, (name, e)


def test_inference_session_takes_float16_inputs(tmp_path):
    """A float16 export's float inputs arrive as float16 arrays (as onnxruntime wants them)."""
    from onnx import helper

    from lt2.inference_session import InferenceSession

    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float16)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 4])], [numpy_helper.from_array(w, "W")])
    path = tmp_path / "h.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    sess = InferenceSession(str(path), providers=["CPUExecutionProvider"], cache_dir=tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float16)
    (y,) = sess.run(None, {"x": x})
    want = x.astype(np.float32) @ w.astype(np.float32)
    assert y.dtype == np.float32 and rel_err(y, want) < 1e-6
