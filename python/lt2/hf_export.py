"""Export tiny Hugging Face causal LMs (Llama, Qwen3, Mistral with a sliding window) the way users do, with
``torch.onnx.export(dynamo=True)``, and record torch's logits for them: the fixtures behind
``python/tests/test_hf_exports.py``.

    python -m lt2.hf_export --out tests/fixtures/hf      # needs torch and transformers

What these files hold that the zoo's exports don't (transformers 5.x, torch 2.11, opset 23):

- the attention mask as an explicit bool [B, 1, S, S] input of ``Attention``-23, built by
  HF's ``sdpa_mask`` from position indices: ``GatherND`` over (batch, position) index pairs,
  ``LessOrEqual`` / ``And``; without an ``attention_mask`` input the positions also pass through
  ``CumSum`` (HF's packed-sequence detection);
- shape arithmetic used as data (``Shape`` -> ``Add`` with runtime tensors) and dims written
  ``(1 + seq) - 1``;
- ``RotaryEmbedding``-23 with cos / sin tables [1, S, R/2] shared by the batch (onnxruntime
  1.31 refuses these for batch > 1; lt2c broadcasts them);
- grouped-query attention by ``Expand`` of K / V (repeat_kv), RMSNormalization-23, for
  Qwen3 the per-head q / k norms, and for Mistral a sliding-window mask (window 4);
- ``llama_opset18``: the same Llama at torch's default opset 18, where SDPA, RMSNorm and RoPE
  are decomposed (MatMul / Softmax with the mask added, ``IsNaN`` guarding fully masked rows,
  Pow / ReduceMean / Sqrt / Reciprocal, rotate-half by Slice / Neg / Concat).

Each model is exported twice: with ``input_ids`` only (``<name>_ids.onnx``) and with
``input_ids`` + ``attention_mask`` (``<name>_mask.onnx``). ``<file>.npz`` holds cases
``ids_<i>``, ``mask_<i>`` and torch's float32 ``logits_<i>`` at (batch, seq) = (1, 5) and (3, 17);
in the masked export's (3, 17) case sequence 1 is left-padded by 4 tokens (whose logits torch
leaves undefined; the test skips those rows). ``greedy_prompt`` [P], ``greedy_tokens`` [N] and
``greedy_logits`` [N, vocab] are torch's greedy continuation (a full forward per token) and the
logits that chose each token.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHAPES = [(1, 5), (3, 17)]
GREEDY_TOKENS = 8
PAD = 4


def _model(kind: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, use_cache=False)
    if kind in ("llama", "llama_opset18"):
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    if kind == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(head_dim=8, **common)).eval()
    if kind == "mistral_sw":  # a 4-token sliding window: the (3, 17) case and greedy decode pass it
        return MistralForCausalLM(MistralConfig(sliding_window=4, **common)).eval()
    raise ValueError(kind)


def export(kind: str, out: Path) -> None:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    w = Logits(_model(kind))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    gen = torch.Generator().manual_seed(1)
    for with_mask in (False, True):
        name = out / f"{kind}_{'mask' if with_mask else 'ids'}"
        ids = torch.randint(0, 128, (2, 12), generator=gen)
        args, names, dyn = (ids,), ["input_ids"], {"input_ids": {0: batch, 1: seq}}
        if with_mask:
            args, names = (ids, torch.ones_like(ids)), names + ["attention_mask"]
            dyn["attention_mask"] = {0: batch, 1: seq}
        torch.onnx.export(w, args, str(name) + ".onnx", input_names=names, output_names=["logits"], dynamic_shapes=dyn,
                          dynamo=True, opset_version=18 if kind.endswith("_opset18") else 23, external_data=False)
        cases = {}
        for i, (b, s) in enumerate(SHAPES):
            ids = torch.randint(0, 128, (b, s), generator=gen)
            mask = torch.ones_like(ids)
            if with_mask and b > 1:
                mask[1, :PAD] = 0
            with torch.no_grad():
                logits = w(ids, mask if with_mask else None)
            cases[f"ids_{i}"], cases[f"mask_{i}"], cases[f"logits_{i}"] = ids.numpy(), mask.numpy(), logits.numpy().astype(np.float32)
        prompt = torch.randint(0, 128, (1, 7), generator=gen)
        tokens, chosen = prompt, []
        for _ in range(GREEDY_TOKENS):
            with torch.no_grad():
                last = w(tokens, torch.ones_like(tokens) if with_mask else None)[:, -1]
            chosen.append(last[0].numpy().astype(np.float32))
            tokens = torch.cat([tokens, last.argmax(-1, keepdim=True)], 1)
        cases["greedy_prompt"], cases["greedy_tokens"], cases["greedy_logits"] = prompt[0].numpy(), tokens[0, 7:].numpy(), np.stack(chosen)
        np.savez_compressed(str(name) + ".npz", **cases)
        print(f"wrote {name}.onnx, {name}.npz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="llama,qwen3,mistral_sw,llama_opset18")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for kind in a.models.split(","):
        export(kind, a.out)


if __name__ == "__main__":
    main()
