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


def _stacking_loop():
    """onnx 1.23.2's reference ``Loop`` joins scan outputs with ``np.vstack``: per-iteration
    values of rank >= 2 are *concatenated* along axis 0 (T iterations of ``[B, L, 1]`` give
    ``[T*B, L, 1]``, not ``[T, B, L, 1]``). The ONNX spec (and onnxruntime) stack them on a new
    leading axis. This subclass stacks; everything else is onnx's implementation."""
    from onnx.reference.ops.op_loop import Loop as _OnnxLoop

    class Loop(_OnnxLoop):
        op_domain = ""

        def _run(self, M, cond, *args, context=None, body=None, attributes=None, bindings=None):  # noqa: D102
            body = self.body
            names_in, names_out = body.input_names, body.output_names
            inputs = dict.fromkeys(names_in)
            for name, val in zip(names_in[2:], args):  # loop-carried initial values
                inputs[name] = val
            if context is not None:
                inputs.update({a: context[a] for a in context})
            scans = [[] for _ in range(self.K)]
            it, outputs = 0, None
            while cond and (M is None or it < M):
                if names_in and names_in[0] is not None:
                    inputs[names_in[0]] = np.array(it, dtype=None if M is None else M.dtype)
                if len(names_in) > 1 and names_in[1] is not None:
                    inputs[names_in[1]] = cond
                outputs = self._run_body(inputs, attributes=attributes, bindings=bindings)
                for k in range(self.K):
                    scans[k].append(outputs[-self.K + k])
                cond = outputs[self.output_index[names_out[0]]]
                if cond is None:
                    raise RuntimeError(f"Condition {names_out[0]!r} returned by the subgraph cannot be None.")
                for i, o in zip(names_in[2:], names_out[1:]):
                    inputs[i] = outputs[self.output_index[o]]
                it += 1
            res = [inputs[i] for i in names_in[2:]] if it == 0 else list(outputs[1 : 1 + self.N])
            res.extend(np.stack([np.asarray(x) for x in s], axis=0) for s in scans)
            return self._check_and_fix_outputs(tuple(res))

    return Loop


def reference_ops() -> list:
    """The custom ``OpRun`` classes ``run_reference`` registers: the ``lt2`` domain
    (``lt2.lt2_ops``), the onnxruntime contrib ops of the ``ms`` spelling (``lt2.ms_ops``),
    and a ``Loop`` that stacks scan outputs as the spec says (see ``_stacking_loop``)."""
    from .lt2_ops import LT2_OPS
    from .ms_ops import MS_OPS

    return [*LT2_OPS, *MS_OPS, _stacking_loop()]


def run_reference(model, feeds: dict) -> list[np.ndarray]:
    """All outputs of ``model`` (a ModelProto or a path) on ``feeds`` from onnx's
    ReferenceEvaluator, with the ``lt2`` and ``com.microsoft`` oracles of ``reference_ops``."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=reference_ops()).run(None, feeds)


def run_onnxruntime(model, feeds: dict) -> list[np.ndarray]:
    """All outputs of ``model`` (a ModelProto or a path) on ``feeds`` from onnxruntime's
    CPU execution provider."""
    os.environ["ALLOW_RELEASED_ONNX_OPSET_ONLY"] = "0"  # read at model load
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # hide the "opset 27 is under development" warning
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
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
