"""The LT2 model zoo (lt2.zoo): the oracles agree on every model, every form of a model
computes the same outputs, the committed fixtures and manifest are what the generator makes,
and the models exercise what they claim (sparse vs dense DSA, the window, the exit gate)."""

import dataclasses
import tomllib

import numpy as np
import onnx
import pytest

from lt2 import oracles
from lt2 import reference as R
from lt2.fixtures import load_npz
from lt2.models import looped as L
from lt2.zoo import ZOO, get
from lt2.zoo import gen


@pytest.fixture(scope="module")
def built():
    return gen.build_all("tiny", verbose=False)


def _all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)


def test_oracles_and_forms_agree(built):
    _, reports = built
    assert sorted(reports) == sorted(z.name for z in ZOO)
    for zm in ZOO:
        errs = reports[zm.name]["errors"]
        outs = gen.output_names(zm.tiny)
        for io, *_ in gen.INPUTS:
            for k in outs:
                assert f"{io}: reference(standard_loop.onnx) vs numpy [{k}]" in errs
                for f in zm.forms:
                    if f.file != gen.GOLDEN_FORM:
                        assert f"{io}: reference({f.file}) vs reference(standard_loop.onnx) [{k}]" in errs
                    if reports[zm.name]["onnxruntime"][f.file][0] != "fails":
                        assert f"{io}: onnxruntime({f.file}) vs numpy [{k}]" in errs
        bad = {k: v for k, v in errs.items() if not v < gen.TOL}
        assert not bad, f"{zm.name}: {bad}"


def test_onnxruntime_coverage(built):
    _, reports = built
    status = {(m, f): st for m, r in reports.items() for f, (st, _) in r["onnxruntime"].items()}
    for (m, f), st in status.items():
        if f.startswith("ms_"):
            assert st == "runs_substituted", (m, f)
        elif (m, f.split("_")[0]) in {("lt2_gdn_dsa", "standard"), ("lt2_swa", "standard")}:
            assert st == "fails", (m, f)
        else:
            assert st == "runs", (m, f)


def test_committed_fixtures_are_current(built):
    files, reports = built
    problems = gen.check(files, gen.DEFAULT_OUT)
    assert not problems, "regenerate with `PYTHONPATH=python .venv/bin/python -m lt2.zoo.gen`: " + "; ".join(problems)
    assert gen.MANIFEST.read_text() == gen.manifest_text(reports), "tests/models/zoo.toml is stale: regenerate"
    on_disk = {str(p.relative_to(gen.DEFAULT_OUT)) for p in gen.DEFAULT_OUT.rglob("*") if p.is_file()}
    assert on_disk == set(files)
    for name in files:
        if name.endswith(".onnx"):
            assert (gen.DEFAULT_OUT / name).stat().st_size < 450_000, name


def test_manifest_is_iterable():
    man = tomllib.loads(gen.MANIFEST.read_text())
    assert man["version"] == 1 and man["tolerance_fp32"] == 1e-4
    names = [m["name"] for m in man["model"]]
    assert names == [z.name for z in ZOO]
    root = gen.REPO_ROOT
    for m in man["model"]:
        zm = get(m["name"])
        assert m["family"] == zm.family
        assert [f["file"] for f in m["form"]] == [f.file for f in zm.forms]
        for io in m["io"]:
            arrays = load_npz(root / m["dir"] / io)
            assert list(arrays) == ["input_ids", *m["outputs"]]
        for f in m["form"]:
            model = onnx.load(str(root / m["dir"] / f["file"]))
            assert f["ops"] == gen.ops_of(model)
            assert f["opset_imports"] == gen.opsets_of(model)
            assert f["onnxruntime"] in ("runs", "runs_substituted", "fails")
            assert (f["onnxruntime"] == "runs") == ("onnxruntime_note" not in f)
        assert m["config"]["mixers"] == list(zm.tiny.mixers)


def test_fixture_goldens_match_numpy():
    """The committed goldens against the float64 forward, independent of the generator's run."""
    for zm in ZOO:
        w = L.make_weights(zm.tiny)
        for io, *_ in gen.INPUTS:
            arrays = load_npz(gen.DEFAULT_OUT / zm.name / io)
            fwd = R.looped_forward(w, arrays["input_ids"], zm.tiny)
            for k in gen.output_names(zm.tiny):
                assert arrays[k].dtype == np.float32
                assert oracles.rel_err(arrays[k], fwd[k]) < 1e-5, (zm.name, io, k)


@pytest.mark.parametrize("zm", ZOO, ids=lambda z: z.name)
def test_form_structure(zm):
    w = L.make_weights(zm.tiny)
    forms = gen.build_forms(zm, "tiny", w)
    for name, m in forms.items():
        assert m.ir_version == 13
        assert [i.name for i in m.graph.initializer] == list(w)
        assert [i.name for i in m.graph.input] == ["input_ids"]
        assert [o.name for o in m.graph.output] == gen.output_names(zm.tiny)
        nodes = list(_all_nodes(m.graph))
        names = [n.name for n in nodes]
        assert all(names) and len(names) == len(set(names)), name
        loops = [n for n in m.graph.node if n.op_type == "Loop"]
        if name.endswith("_unrolled.onnx"):
            assert not loops
            continue
        (loop,) = loops
        consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"}
        assert consts[loop.input[0]].dtype == np.int64 and int(consts[loop.input[0]]) == zm.tiny.n_loops
        assert consts[loop.input[1]].dtype == np.bool_ and bool(consts[loop.input[1]])
        body = loop.attribute[0].g
        assert len(body.initializer) == 0
        assert all(i.type.tensor_type.HasField("shape") for i in body.input)  # typed (onnxruntime needs it)
        n_scan = len(body.output) - len(body.input) + 1
        assert n_scan == (2 if zm.tiny.exit_gate else 0)


def test_ms_spelling_ops_and_attributes():
    """What the Rust importer must accept from the ms spelling, exactly."""
    m = onnx.load(str(gen.DEFAULT_OUT / "lt2_full_gdn" / "ms_loop.onnx"))
    body = next(n for n in m.graph.node if n.op_type == "Loop").attribute[0].g
    by = {}
    for n in body.node:
        by.setdefault((n.domain, n.op_type), n)
    gdn = by[("com.microsoft", "GatedDeltaNet")]
    assert list(gdn.input) == [
        "loop/layers.0/gdn/q_heads", "loop/layers.0/gdn/k_heads", "loop/layers.0/gdn/v_heads", "",
        "loop/layers.0/gdn/a_proj", "loop/layers.0/gdn/b_proj", "", "layers.0.gdn.A_log", "layers.0.gdn.dt_bias",
    ]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gdn.attribute}
    assert attrs == {"update_rule": b"gated_delta", "gate_activation": b"qwen", "beta_activation": b"sigmoid", "qk_l2_norm": 1,
                     "scale": 0.0}
    conv = by[("com.microsoft", "CausalConvWithState")]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute} == {"activation": b"silu", "channels_last": 1}
    assert len(conv.output) == 2
    rope = by[("com.microsoft", "RotaryEmbedding")]
    assert list(rope.input)[1:] == ["position_ids", "rope.cos_cache", "rope.sin_cache"]
    gqa = by[("com.microsoft", "GroupQueryAttention")]
    assert list(gqa.input)[3:] == ["", "", "gqa/seqlens_k", "gqa/total_sequence_length"]
    assert ("", "SimplifiedLayerNormalization") in by and ("com.microsoft", "GatedRMSNorm") in by


def _variant(zm, **kw):
    cfg = dataclasses.replace(zm.tiny, **kw)
    return cfg


def test_dsa_is_sparse_at_12_and_dense_at_3():
    zm = get("lt2_gdn_dsa")
    w = L.make_weights(zm.tiny)
    dense = _variant(zm, dsa_top_k=64)  # every causal position
    for io, *_ in gen.INPUTS:
        ids = load_npz(gen.DEFAULT_OUT / zm.name / io)["input_ids"]
        a = R.looped_forward(w, ids, zm.tiny)["logits"]
        b = R.looped_forward(w, ids, dense)["logits"]
        if ids.shape[1] <= zm.tiny.dsa_top_k:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        else:
            assert oracles.rel_err(a, b) > 1e-3


def test_window_matters_only_past_w():
    zm = get("lt2_swa")
    w = L.make_weights(zm.tiny)
    wide = _variant(zm, window=64)
    for io, *_ in gen.INPUTS:
        ids = load_npz(gen.DEFAULT_OUT / zm.name / io)["input_ids"]
        a = R.looped_forward(w, ids, zm.tiny)["logits"]
        b = R.looped_forward(w, ids, wide)["logits"]
        if ids.shape[1] <= zm.tiny.window:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        else:
            assert oracles.rel_err(a, b) > 1e-3


def test_ouro_exit_probs():
    zm = get("ouro")
    io = load_npz(gen.DEFAULT_OUT / "ouro" / "io.npz")
    p = io["exit_probs"]
    assert p.shape == (2, 12, zm.tiny.n_loops)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    assert (p > 0.01).all() and (p < 0.99).all()
    lam = np.array([0.2, 0.5, 0.9])
    np.testing.assert_allclose(R.exit_distribution(lam), [0.2, 0.8 * 0.5, 0.8 * 0.5])


@pytest.mark.parametrize("zm", ZOO, ids=lambda z: z.name)
def test_not_degenerate(zm):
    io = load_npz(gen.DEFAULT_OUT / zm.name / "io.npz")
    logits = io["logits"]
    assert np.isfinite(logits).all()
    assert 0.3 < logits.std() < 30.0
    assert len(np.unique(logits.argmax(-1))) > 5
    # Causality: position t does not depend on later tokens.
    w = L.make_weights(zm.tiny)
    ids = io["input_ids"].copy()
    ids[:, 8:] = (ids[:, 8:] + 1) % zm.tiny.vocab
    a = R.looped_forward(w, io["input_ids"], zm.tiny)["logits"]
    b = R.looped_forward(w, ids, zm.tiny)["logits"]
    np.testing.assert_allclose(a[:, :8], b[:, :8], rtol=1e-10, atol=1e-10)


def test_variants_matter():
    """The zoo's distinguishing features change the outputs (so a compiler that ignores them fails)."""
    ids = load_npz(gen.DEFAULT_OUT / "lt2_full_gdn_keqv_gate" / "io.npz")["input_ids"]
    zm = get("lt2_full_gdn_keqv_gate")
    w = L.make_weights(zm.tiny)
    base = R.looped_forward(w, ids, zm.tiny)["logits"]
    assert oracles.rel_err(R.looped_forward(w, ids, _variant(zm, attn_output_gate=False))["logits"], base) > 1e-2
    zm = get("ouro")
    w = L.make_weights(zm.tiny)
    base = R.looped_forward(w, ids, zm.tiny)["logits"]
    w2 = dict(w, **{k: np.ones_like(v) for k, v in w.items() if "post_norm" in k})
    assert oracles.rel_err(R.looped_forward(w2, ids, zm.tiny)["logits"], base) > 1e-3
    zm = get("lt2_full_gdn")
    w = L.make_weights(zm.tiny)
    base = R.looped_forward(w, ids, zm.tiny)["logits"]
    assert oracles.rel_err(R.looped_forward(dict(w, rho=0 * w["rho"]), ids, zm.tiny)["logits"], base) > 1e-2


def test_external_data_round_trip(tmp_path):
    zm = get("lt2_full_gdn")
    w = L.make_weights(zm.tiny)
    L.write_external_data(w, tmp_path / "w.weights")
    m = L.build_model(zm.tiny, w, False, external_data="w.weights")
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    path = tmp_path / "model.onnx"
    onnx.save_model(m, str(path))
    assert path.stat().st_size < 100_000
    onnx.checker.check_model(str(path), full_check=True)
    io = load_npz(gen.DEFAULT_OUT / zm.name / "io_short.npz")
    feeds = {"input_ids": io["input_ids"]}
    assert oracles.rel_err(oracles.run_reference(str(path), feeds)[0], io["logits"]) < 1e-6
    assert oracles.rel_err(oracles.run_onnxruntime(str(path), feeds)[0], io["logits"]) < 1e-5


def test_big_configs_match_the_paper_shapes():
    big = get("lt2_full_gdn").big
    assert (big.d_model, len(big.mixers), big.n_loops, big.vocab, big.ffn_hidden) == (2048, 21, 4, 128256, 5632)
    assert big.mixers.count("attn") == 4 and [i for i, m in enumerate(big.mixers) if m == "attn"] == [4, 9, 14, 19]
    assert (big.gdn_heads, big.gdn_k, big.gdn_v, big.attn_q_heads, big.attn_head_dim) == (16, 96, 192, 16, 128)
    ouro = get("ouro").big
    assert (ouro.d_model, len(ouro.mixers), ouro.n_loops, ouro.vocab, ouro.attn_q_heads) == (2048, 24, 4, 49152, 16)
    dsa = get("lt2_gdn_dsa").big
    assert dsa.mixers.count("dsa") == 10 and dsa.dsa_latent_dim == 576 and dsa.dsa_top_k == 2048
    # Parameter count of LT2 Full+GDN 1.3B (1.49B with its 128K vocab, TOOLCHAIN.md), without drawing weights.
    d, f = big.d_model, big.ffn_hidden
    gdn = 2 * d * big.gdn_heads * big.gdn_k + 3 * d * big.gdn_hv * big.gdn_v  # q, k; v, g, o
    attn = 4 * d * big.attn_q_heads * big.attn_head_dim
    total = big.vocab * d + 17 * (gdn + 3 * d * f) + 4 * (attn + 3 * d * f)
    assert 1.45e9 < total < 1.52e9
