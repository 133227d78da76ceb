"""onnxruntime's InferenceSession shape over lt2c (`lt2.inference_session`): every zoo form that
onnxruntime runs gives, through lt2c's session, onnxruntime's outputs on the same feeds (the
golden inputs and fresh random ids of another length); the signature reads like onnxruntime's;
a compiled model is cached; bad feeds and providers fail as onnxruntime's do, naming the cause.
Skipped when the library or lt2c is not built."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from lt2 import runtime
from lt2.inference_session import InferenceSession
from lt2.oracles import rel_err, run_onnxruntime
from test_generate import LT2C

ROOT = Path(__file__).resolve().parents[2]
ZOO = tomllib.loads((ROOT / "tests" / "models" / "zoo.toml").read_text())
FORMS = [(m, f) for m in ZOO["model"] for f in m["form"] if f.get("onnxruntime") == "runs"]
# fp32 against onnxruntime's fp32: both sum in f32 in different orders (measured ~1e-6).
TOL_FP32 = 1e-5

pytestmark = pytest.mark.skipif(not (runtime._library_path().exists() and LT2C.exists()), reason="liblt2_capi.so or lt2c not built (cargo build --release)")


@pytest.mark.parametrize("model,form", FORMS, ids=[f"{m['name']}-{f['file']}" for m, f in FORMS])
def test_forms_match_onnxruntime(tmp_path, model, form):
    onnx_path = ROOT / model["dir"] / form["file"]
    sess = InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"], cache_dir=tmp_path)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert [i.name for i in sess.get_inputs()] == model["inputs"]
    assert [o.name for o in sess.get_outputs()] == model["outputs"]
    golden = np.load(ROOT / model["dir"] / model["io"][0])
    rng = np.random.default_rng(7)
    for ids in [golden["input_ids"], rng.integers(0, model["config"]["vocab"], size=(1, 7), dtype=np.int64)]:
        want = run_onnxruntime(onnx_path, {"input_ids": ids})
        got = sess.run(None, {"input_ids": ids})
        assert len(got) == len(want)
        for name, g, w in zip(model["outputs"], got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, name
            assert rel_err(g, w) < TOL_FP32, (name, rel_err(g, w))


@pytest.fixture(scope="module")
def ouro(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return InferenceSession(str(ROOT / "tests/fixtures/zoo/ouro/standard_unrolled.onnx"), providers=["CPUExecutionProvider"], cache_dir=cache), cache


def test_signature_reads_like_onnxruntime(ouro):
    sess, _ = ouro
    (ids,) = sess.get_inputs()
    assert (ids.name, ids.type) == ("input_ids", "tensor(int64)")
    assert ids.shape == ["batch", "seq"]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("logits", "tensor(float)"), ("exit_probs", "tensor(float)")]
    assert sess.get_outputs()[0].shape[-1] == 256


def test_outputs_by_name_and_order(ouro):
    sess, _ = ouro
    ids = np.array([[5, 17, 200]], dtype=np.int64)
    logits, probs = sess.run(None, {"input_ids": ids})
    (probs2,) = sess.run(["exit_probs"], {"input_ids": ids})
    assert logits.shape == (1, 3, 256) and probs.shape == (1, 3, 3)
    np.testing.assert_array_equal(probs, probs2)
    assert logits.flags.writeable


def test_compiled_once_and_cached(ouro, tmp_path):
    sess, cache = ouro
    before = sess.model_path.stat().st_mtime_ns
    again = InferenceSession(str(ROOT / "tests/fixtures/zoo/ouro/standard_unrolled.onnx"), providers=["CPUExecutionProvider"], cache_dir=cache)
    assert again.model_path == sess.model_path and again.model_path.stat().st_mtime_ns == before
    # Other compile arguments are another model.bin; the model's bytes work as a path does.
    other = InferenceSession((ROOT / "tests/fixtures/zoo/ouro/standard_unrolled.onnx").read_bytes(), compile_args=["--no-opt"], cache_dir=cache)
    assert other.model_path != sess.model_path
    # A compiled model.bin opens directly.
    direct = InferenceSession(str(sess.model_path), providers=["CPUExecutionProvider"])
    ids = np.array([[1, 2, 3, 4]], dtype=np.int64)
    np.testing.assert_array_equal(direct.run(None, {"input_ids": ids})[0], sess.run(None, {"input_ids": ids})[0])


def test_bad_feeds_and_providers_name_the_cause(ouro, tmp_path):
    sess, _ = ouro
    with pytest.raises(TypeError, match="float64.*int64"):
        sess.run(None, {"input_ids": np.array([[1.0, 2.0]])})
    with pytest.raises(ValueError, match="invalid input name `ids`"):
        sess.run(None, {"ids": np.array([[1, 2]], dtype=np.int64)})
    with pytest.raises(ValueError, match="invalid output names"):
        sess.run(["nope"], {"input_ids": np.array([[1, 2]], dtype=np.int64)})
    with pytest.raises(runtime.Lt2Error, match="input_ids"):
        sess.run(None, {})
    with pytest.raises(ValueError, match="unknown providers"):
        InferenceSession(str(sess.model_path), providers=["ROCMExecutionProvider"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(runtime.Lt2Error, match="not a valid ONNX"):
        InferenceSession(str(bad), cache_dir=tmp_path)
