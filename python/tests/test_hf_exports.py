"""Hugging Face models as users export them (``torch.onnx.export(dynamo=True)`` of transformers'
Llama, Qwen3 and Mistral with a sliding window, made by ``python -m lt2.hf_export``): lt2c
compiles them and its CPU backend reproduces torch's logits, recorded at export time, at two
(batch, seq) shapes, with a left-padded attention mask in the masked export; `generate`
reproduces torch's greedy tokens. onnxruntime is a second oracle where it runs the file (batch
1: it refuses the [1, S, R/2] rotary tables for batch > 1). Skipped when lt2c is not built."""

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lt2.oracles import rel_err
from test_generate import LT2C

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "hf"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
TOL = 1e-5  # float32 against torch's float32 eager forward
pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")


def _run(tmp_path: Path, bin_path: Path, feeds: dict) -> np.ndarray:
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, **feeds)
    r = subprocess.run([str(LT2C), "run", str(bin_path), "--inputs", str(inp), "--outputs", str(out), "--device", "cpu"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return np.load(out)["logits"]


@pytest.fixture(scope="module", params=MODELS)
def compiled(request, tmp_path_factory):
    name = request.param
    bin_path = tmp_path_factory.mktemp(name) / "model.bin"
    r = subprocess.run([str(LT2C), str(FIXTURES / f"{name}.onnx"), "-o", str(bin_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return name, bin_path


def test_matches_torch_logits(compiled, tmp_path):
    name, bin_path = compiled
    cases = np.load(FIXTURES / f"{name}.npz")
    n = len([k for k in cases.files if k.startswith("ids_")])
    assert n >= 2
    for i in range(n):
        feeds = {"input_ids": cases[f"ids_{i}"]}
        mask = cases[f"mask_{i}"]
        if name.endswith("_mask"):
            feeds["attention_mask"] = mask
        want = cases[f"logits_{i}"]
        got = _run(tmp_path, bin_path, feeds)
        assert got.shape == want.shape
        # torch leaves the logits of padding positions undefined; compare the real tokens.
        keep = mask.astype(bool)
        if name.endswith("_mask") and i == n - 1:
            assert not keep.all(), "the last masked case is meant to be padded"
        err = rel_err(got[keep], want[keep])
        assert err <= TOL, f"{name} case {i}: {err:.2e}"


def test_matches_onnxruntime_on_fresh_inputs(compiled, tmp_path):
    name, bin_path = compiled
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 128, size=(1, 9), dtype=np.int64)
    feeds = {"input_ids": ids}
    if name.endswith("_mask"):
        feeds["attention_mask"] = np.ones_like(ids)
    sess = ort.InferenceSession(str(FIXTURES / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(["logits"], feeds)[0]
    got = _run(tmp_path, bin_path, feeds)
    assert rel_err(got, want) <= TOL


def test_generate_matches_torch_greedy(compiled, tmp_path):
    """With ``input_ids`` only, HF's mask is computed from shapes; compile sees that it is the
    causal mask and derives decode: greedy tokens and their logits match torch's full forwards.
    With an ``attention_mask`` input the mask is data: generate refuses, naming the input."""
    name, bin_path = compiled
    cases = np.load(FIXTURES / f"{name}.npz")
    prompt, want_tokens, want_logits = cases["greedy_prompt"], cases["greedy_tokens"], cases["greedy_logits"]
    logits_out = tmp_path / "logits.npz"
    r = subprocess.run([str(LT2C), "generate", str(bin_path), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens",
                        str(len(want_tokens)), "--device", "cpu", "--json", "--logits-out", str(logits_out)], capture_output=True, text=True)
    if name.endswith("_mask"):
        assert r.returncode != 0
        assert "`attention_mask`" in r.stderr and "explicit attention mask" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tokens"] == want_tokens.tolist()
    assert rel_err(np.load(logits_out)["logits"], want_logits) <= TOL
