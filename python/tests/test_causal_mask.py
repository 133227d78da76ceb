"""Explicit attention masks computed from shapes (codegen/src/causal_mask.rs): a causal mask is
recognised, also where a loop body reads it from the outer graph (compile says so, generate
derives decode and matches the full forward); a sliding window is recognised with its width,
also one that only differs from causal beyond 8 tokens (the check at 2C + 3 tokens for the
largest constant C sees it); a mask that is neither stays explicit. Skipped when lt2c is not built."""

import json
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lt2.oracles import rel_err
from test_generate import LT2C

pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
VOCAB, D, HEADS = 32, 8, 2


def _model(window: int | None, loop: bool = False) -> onnx.ModelProto:
    """ids -> embedding -> Attention(x, x, x, mask) -> logits, with mask[q, k] = k <= q (and
    k > q - window) built from Range over the sequence length. With `loop`, x + attention runs
    twice in an ONNX Loop whose body reads the mask from the outer graph."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.standard_normal((VOCAB, D)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.standard_normal((D, VOCAB)).astype(np.float32), "head"),
        numpy_helper.from_array(np.array([1], np.int64), "one_1d"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array(window or 0, np.int64), "window"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["x"]),
        helper.make_node("Shape", ["input_ids"], ["shape"], start=1, end=2),
        helper.make_node("Squeeze", ["shape"], ["seq"]),
        helper.make_node("Range", ["zero", "seq", "one"], ["pos"]),
        helper.make_node("Unsqueeze", ["pos", "ax1"], ["q_pos"]),
        helper.make_node("Unsqueeze", ["pos", "ax0"], ["k_pos"]),
        helper.make_node("LessOrEqual", ["k_pos", "q_pos"], ["causal"]),
    ]
    mask = "causal"
    if window is not None:
        nodes += [
            helper.make_node("Sub", ["q_pos", "window"], ["lo"]),
            helper.make_node("Greater", ["k_pos", "lo"], ["recent"]),
            helper.make_node("And", ["causal", "recent"], ["windowed"]),
        ]
        mask = "windowed"
    if loop:
        body = helper.make_graph(
            [helper.make_node("Attention", ["x_in", "x_in", "x_in", mask], ["a"], q_num_heads=HEADS, kv_num_heads=HEADS),
             helper.make_node("Add", ["x_in", "a"], ["x_out"]),
             helper.make_node("Identity", ["cond_in"], ["cond_out"])],
            "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None)])
        inits += [numpy_helper.from_array(np.array(2, np.int64), "trips"), numpy_helper.from_array(np.array(True), "true")]
        nodes += [helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body)]
    else:
        nodes += [helper.make_node("Attention", ["x", "x", "x", mask], ["y"], q_num_heads=HEADS, kv_num_heads=HEADS)]
    nodes += [helper.make_node("MatMul", ["y", "head"], ["logits"])]
    g = helper.make_graph(nodes, "mask", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])


def _compile(tmp_path, window, loop=False):
    path = tmp_path / "m.onnx"
    onnx.save(_model(window, loop), path)
    r = subprocess.run([str(LT2C), str(path), "-o", str(tmp_path / "m.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return tmp_path / "m.bin", r.stderr


def _generate(bin_path, prompt, n, logits_out):
    return subprocess.run([str(LT2C), "generate", str(bin_path), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n),
                           "--device", "cpu", "--json", "--logits-out", str(logits_out)], capture_output=True, text=True)


def _decodes_like_the_forward(tmp_path, bin_path, prompt, n):
    """generate's tokens and logits against the full forward (`run`) of prompt + tokens, whose
    logits at positions P-1.. chose them."""
    r = _generate(bin_path, prompt, n, tmp_path / "l.npz")
    assert r.returncode == 0, r.stderr
    tokens = json.loads(r.stdout)["tokens"]
    np.savez(tmp_path / "in.npz", input_ids=np.array([prompt + tokens], np.int64))
    r = subprocess.run([str(LT2C), "run", str(bin_path), "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
                        "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    full = np.load(tmp_path / "out.npz")["logits"][0, len(prompt) - 1:-1]
    assert rel_err(np.load(tmp_path / "l.npz")["logits"], full) <= 1e-5
    assert full.argmax(-1).tolist() == tokens


@pytest.mark.parametrize("loop", [False, True])
def test_causal_mask_is_recognised_and_decodes_like_the_forward(tmp_path, loop):
    bin_path, log = _compile(tmp_path, None, loop)
    assert "is the causal mask" in log
    _decodes_like_the_forward(tmp_path, bin_path, [3, 1, 4, 1, 5], 6)


@pytest.mark.parametrize("window,loop", [(3, False), (100, False), (100, True)])
def test_sliding_window_mask_is_recognised_with_its_width(tmp_path, window, loop):
    # A 100-token window looks causal at every length up to 100: only the check at 2C + 3 sees it.
    bin_path, log = _compile(tmp_path, window, loop)
    assert f"causal mask of a {window}-token sliding window" in log, log
    _decodes_like_the_forward(tmp_path, bin_path, list(range(1, 9)), 6)


def test_a_window_too_wide_to_check_stays_explicit(tmp_path):
    bin_path, log = _compile(tmp_path, 5000)
    assert "stays explicit: checking it would take sequences of 10003 tokens" in log, log
    r = _generate(bin_path, [1, 2, 3], 2, tmp_path / "l.npz")
    assert r.returncode != 0 and "explicit attention mask" in r.stderr


def test_a_mask_that_is_no_band_stays_explicit(tmp_path):
    # Each query also sees the next key: not causal, so not decodable.
    path = tmp_path / "m.onnx"
    m = _model(None)
    for n in m.graph.node:
        if n.op_type == "LessOrEqual":
            n.input[1] = "q_next"
    m.graph.node.insert(7, helper.make_node("Add", ["q_pos", "one"], ["q_next"]))
    onnx.save(m, path)
    r = subprocess.run([str(LT2C), str(path), "-o", str(tmp_path / "m.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "causal mask" not in r.stderr
    r = _generate(tmp_path / "m.bin", [1, 2, 3], 2, tmp_path / "l.npz")
    assert r.returncode != 0 and "explicit attention mask" in r.stderr
