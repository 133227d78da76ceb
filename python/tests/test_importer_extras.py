"""Import paths that real exports use but no onnx node test covers, checked against the onnx
reference evaluator through `lt2c compile` + `lt2c run --device cpu`: GatherND as PyTorch's
`weight[ids]`, and a Slice with a symbolic end (`cache[:seq]`)."""

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

ROOT = Path(__file__).resolve().parents[2]
LT2C = ROOT / "target" / "release" / "lt2c"


def run_both(model, feeds, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    want = ReferenceEvaluator(model).run(None, feeds)
    np.savez(tmp_path / "in.npz", **feeds)
    subprocess.run([str(LT2C), str(path), "-o", str(tmp_path / "m.bin")], check=True, capture_output=True)
    subprocess.run([str(LT2C), "run", str(tmp_path / "m.bin"), "--inputs", str(tmp_path / "in.npz"),
                    "--outputs", str(tmp_path / "out.npz"), "--device", "cpu"], check=True, capture_output=True)
    got = np.load(tmp_path / "out.npz")
    return want, [got[o.name] for o in model.graph.output]


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
def test_gathernd_embedding_and_symbolic_slice(tmp_path):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((10, 4)).astype(np.float32)
    cache = rng.standard_normal((16, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Unsqueeze", ["ids", "axis_last"], ["ids3"]),
        helper.make_node("GatherND", ["table", "ids3"], ["emb"]),
        helper.make_node("Shape", ["ids"], ["seq"], start=1, end=2),
        helper.make_node("Slice", ["cache", "zero", "seq", "zero"], ["rows"]),  # cache[:seq]
        helper.make_node("Add", ["emb", "rows"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "extras",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(cache, "cache"),
         numpy_helper.from_array(np.array([-1], np.int64), "axis_last"), numpy_helper.from_array(np.array([0], np.int64), "zero")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    ids = rng.integers(0, 10, (2, 5)).astype(np.int64)
    want, got = run_both(model, {"ids": ids}, tmp_path)
    assert got[0].shape == want[0].shape
    assert np.linalg.norm(got[0] - want[0]) / np.linalg.norm(want[0]) < 1e-6


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
def test_external_data_gives_the_same_model(tmp_path):
    """Weights in one external data file (how >2 GB exports are stored) import like inline ones."""
    from lt2.models import example

    m = example.build_model()
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=256)
    assert (tmp_path / "ext.data").stat().st_size > 100_000
    fixture = ROOT / "tests" / "fixtures" / "lt2_tiny"
    outs = []
    for src in [tmp_path / "ext.onnx", fixture / "model.onnx"]:
        binp = tmp_path / (src.stem + ".bin")
        subprocess.run([str(LT2C), str(src), "-o", str(binp)], check=True, capture_output=True)
        subprocess.run([str(LT2C), "run", str(binp), "--inputs", str(fixture / "io.npz"), "--outputs",
                        str(tmp_path / "o.npz"), "--device", "cpu"], check=True, capture_output=True)
        outs.append(np.load(tmp_path / "o.npz")["logits"])
    assert np.array_equal(outs[0], outs[1])
