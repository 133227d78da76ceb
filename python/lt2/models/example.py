"""Tiny LT2-hybrid example model as ONNX (opset 27), in ``Loop`` and unrolled forms.

A thin layer over the general builder ``lt2.models.looped`` (``ExampleConfig`` is a
``LoopedConfig`` with the example's defaults); ``tests/fixtures/lt2_tiny`` stays
byte-identical to what this module built before that builder existed.

Defaults: d = 64, vocab 256, T = 2 loops over N = 2 physical layers (layer 0: GDN mixer,
layer 1: full attention; each followed by a SwiGLU FFN), GDN H = 2, K = 16, V = 32,
attention 2 heads x 32 (GQA allowed through ``attn_kv_heads``), FFN hidden 128, RoPE
interleaved with theta 1e4 over 512 positions, norm eps 1e-6, GDN output-norm eps 1e-5.

Graph signature: ``input_ids`` int64 ``[batch, seq]`` -> ``logits`` float32
``[batch, seq, vocab]``.

Loop form (``build_model(unrolled=False)``)::

    h = Gather(embed.weight, input_ids)
    h = Loop(M = 2, cond = true, h) { body(iter, cond, h) -> (Identity(cond), h') }
    logits = MatMul(RMSNormalization(h), Transpose(embed.weight))

The body reads every weight (and ``position_ids``) from the main graph by outer-scope
capture, so all loops share weights; it ends with ``h' = h_body + Gather(rho, iter) * h``.
The unrolled form (``unrolled=True``) has T copies of the body in the main graph, each
with ``iter`` replaced by a Constant (what ``torch.onnx.export`` makes of a Python loop).
onnxruntime 1.31 runs both forms; in the Loop form only because the body's carried input
declares its shape (``[batch, seq, d]``): with an untyped body input it reports "Could not
find an implementation for CausalConvWithState(27)" (see python/NOTES.md).

Names: initializers are ``embed.weight``, ``rho``, ``final_norm.weight``,
``rope.cos_cache``, ``rope.sin_cache`` and ``layers.{l}.*`` (see ``make_weights``);
projection weights are ``[in, out]``. Nodes are named ``<scope>/<what>`` with scope
``loop/`` inside the Loop body and ``loop{tau}/`` in the unrolled copies; node names are
unique across the whole model (body included). A node's output tensor carries the node's
name (second outputs get a ``/present_state`` suffix), except the interface tensors
``position_ids``, ``loop_out``, ``loop/cond_out``, ``loop/h_out`` (``loop{tau}/h_out``)
and ``logits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from .looped import IR_VERSION, OPSET, LoopedConfig, _Scope  # noqa: F401  (re-exported)
from . import looped


@dataclass(frozen=True)
class ExampleConfig(LoopedConfig):
    """Shape and numeric parameters of the example model (defaults: the tiny fixture)."""

    d_model: int = 64
    vocab: int = 256
    n_loops: int = 2
    mixers: tuple = ("gdn", "attn")  # one physical layer per entry: "gdn" or "attn"
    gdn_heads: int = 2
    gdn_k: int = 16
    gdn_v: int = 32
    conv_kernel: int = 4
    attn_q_heads: int = 2
    attn_kv_heads: int = 2
    attn_head_dim: int = 32
    ffn_hidden: int = 128
    max_positions: int = 512
    norm_eps: float = 1e-6
    gdn_norm_eps: float = 1e-5
    qk_l2_eps: float = 1e-6
    rope_interleaved: bool = True
    rope_theta: float = 1e4
    seed: int = 0


def make_weights(cfg: ExampleConfig | None = None):
    """Fixed-seed float32 weights of the example (``lt2.models.looped.make_weights``)."""
    return looped.make_weights(cfg or ExampleConfig())


def build_model(cfg: ExampleConfig | None = None, weights: dict | None = None, unrolled: bool = False) -> onnx.ModelProto:
    """The example model, ``Loop`` form (default) or unrolled; checked with onnx.checker."""
    cfg = cfg or ExampleConfig()
    return looped.build_model(
        cfg,
        weights,
        unrolled,
        graph_name="lt2_tiny_unrolled" if unrolled else "lt2_tiny",
        producer_name="lt2.models.example",
        doc_string="Tiny LT2-hybrid (GDN + full attention, looped) example for lt2c tests.",
    )


def build_loop_model(cfg: ExampleConfig | None = None, weights: dict | None = None) -> onnx.ModelProto:
    """``build_model(cfg, weights, unrolled=False)``."""
    return build_model(cfg, weights, unrolled=False)


def build_unrolled_model(cfg: ExampleConfig | None = None, weights: dict | None = None) -> onnx.ModelProto:
    """``build_model(cfg, weights, unrolled=True)``."""
    return build_model(cfg, weights, unrolled=True)
