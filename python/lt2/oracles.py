"""Run ONNX models through the independent oracles, and measure how far apart they are.

- ``run_reference``: ``onnx.reference.ReferenceEvaluator`` (onnx 1.23.2). Runs ``Loop``
  bodies with opset-27 ops. Beware: it runs zero iterations of a ``Loop`` whose condition
  is omitted, so lt2 models always pass an explicit ``true``.
- ``run_onnxruntime``: onnxruntime CPU (1.31.1). Opset 27 is only accepted with
  ``ALLOW_RELEASED_ONNX_OPSET_ONLY=0`` (set here, before onnxruntime is imported), and
  only with ``ir_version <= 13``. It runs ``CausalConvWithState`` inside a ``Loop`` body
  only when the body's inputs declare a shape (else "Could not find an implementation"),
  and needs both outputs of ``CausalConvWithState``/``LinearAttention`` present.
"""

from __future__ import annotations

import os

os.environ["ALLOW_RELEASED_ONNX_OPSET_ONLY"] = "0"

import numpy as np  # noqa: E402
import onnx  # noqa: E402


def rel_err(a, b) -> float:
    """Relative error ``||a - b|| / ||b||`` (Frobenius norms, computed in float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (nb if nb > 0 else 1.0))


def run_reference(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """All outputs of ``model`` on ``feeds`` from onnx's ReferenceEvaluator."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """All outputs of ``model`` on ``feeds`` from onnxruntime's CPU execution provider."""
    os.environ["ALLOW_RELEASED_ONNX_OPSET_ONLY"] = "0"  # read at model load
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # hide the "opset 27 is under development" warning
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def single_op_model(op_type: str, inputs: list, n_outputs: int = 1, opset: int = 27, **attrs):
    """A one-node opset-``opset`` model and its feeds, for checking one op against the oracles.

    ``inputs`` lists the op's inputs in order: numpy arrays (graph inputs ``in0``, ``in1``...
    with their exact shapes and dtypes) or None (an omitted optional input). Outputs are
    ``out0``... with unknown shape. Returns ``(model, feeds)``.
    """
    from onnx import helper

    names, vis, feeds = [], [], {}
    for i, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        a = np.asarray(a)
        name = f"in{i}"
        names.append(name)
        feeds[name] = a
        vis.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))
    while names and names[-1] == "":
        names.pop()
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, name=op_type.lower(), **attrs)
    out_vis = [helper.make_empty_tensor_value_info(o) for o in outs]
    graph = helper.make_graph([node], f"single_{op_type}", vis, out_vis)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 13
    return model, feeds
