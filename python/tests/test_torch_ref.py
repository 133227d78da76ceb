"""The PyTorch reference (lt2.torch_ref) against the numpy oracle, and the torch export path
(lt2.torch_export). torch is not installed in CI: these tests skip there and run where torch is
(the GPU machine, or a local venv with torch 2.11 + onnxscript 0.7)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lt2 import reference  # noqa: E402
from lt2.oracles import rel_err  # noqa: E402
from lt2.torch_ref import LoopedModel, outputs_dict, zoo_model  # noqa: E402
from lt2.zoo import registry  # noqa: E402


@pytest.mark.parametrize("name", [m.name for m in registry.ZOO])
def test_torch_reference_matches_numpy(name):
    cfg, weights, model = zoo_model(name)
    assert set(model.state_dict()) == set(weights)  # the same weight layout as the builders
    ids = np.random.default_rng(3).integers(0, cfg.vocab, (2, 9))
    with torch.no_grad():
        out = outputs_dict(cfg, model(torch.from_numpy(ids)))
    ref = reference.looped_forward(weights, ids, cfg)
    for k in ref:
        assert rel_err(out[k], ref[k]) < 1e-5, k


def test_custom_ops_equal_plain_functions():
    cfg, weights, model = zoo_model("lt2_gdn_dsa")
    plain = LoopedModel.from_weights(cfg, weights, use_custom_ops=False)
    ids = torch.from_numpy(np.random.default_rng(4).integers(0, cfg.vocab, (1, 11)))
    with torch.no_grad():
        assert torch.equal(model(ids), plain(ids))


def test_export_emits_contract_ops(tmp_path):
    pytest.importorskip("onnxscript")
    from lt2.torch_export import describe, export

    cfg, _, model = zoo_model("lt2_gdn_dsa")
    path = tmp_path / "m.onnx"
    export(model, cfg, path)
    ops = describe(path)["ops"]
    for op in ("ai.onnx::LinearAttention", "ai.onnx::CausalConvWithState", "lt2::LightningIndexer", "lt2::SparseAttention"):
        assert ops.get(op), op
