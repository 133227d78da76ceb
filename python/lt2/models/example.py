"""Tiny LT2-hybrid example model as ONNX (opset 27), in ``Loop`` and unrolled forms.

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

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import reference

OPSET = 27
IR_VERSION = 13  # onnx 1.23 writes 14 by default; onnxruntime 1.31 refuses 14, accepts 13


@dataclass(frozen=True)
class ExampleConfig:
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

    @property
    def gdn_scale(self) -> float:
        return float(self.gdn_k) ** -0.5


# --------------------------------------------------------------------------- weights


def make_weights(cfg: ExampleConfig | None = None) -> dict[str, np.ndarray]:
    """Fixed-seed float32 weights (``numpy.random.default_rng(cfg.seed)``), insertion-ordered.

    Scales keep activations O(1) and logits spread: embeddings N(0, 0.5^2), projections
    N(0, 0.1^2) (so ``x @ W`` has std ~0.8 for d = 64), conv taps N(0, 0.4^2), norm weights
    1 + N(0, 0.1^2), ``A_log = log U(1, 16)``, ``dt_bias = softplus^-1(dt)`` with
    ``dt = exp U(log 1e-3, log 1e-1)`` (flash-linear-attention's init: decays exp(g) mostly
    in 0.5..1), ``rho`` N(0, 0.1^2) (nonzero, so the loop residual matters), RoPE caches
    ``cos/sin(p * theta^(-2i/D))`` for p < max_positions.
    """
    cfg = cfg or ExampleConfig()
    rng = np.random.default_rng(cfg.seed)
    d, f = cfg.d_model, cfg.ffn_hidden
    w: dict[str, np.ndarray] = {}

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm_w(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    w["embed.weight"] = normal((cfg.vocab, d), 0.5)
    for l, mixer in enumerate(cfg.mixers):
        p = f"layers.{l}."
        w[p + "mixer_norm.weight"] = norm_w(d)
        if mixer == "gdn":
            h, dk, dv, kc = cfg.gdn_heads, cfg.gdn_k, cfg.gdn_v, cfg.conv_kernel
            g = p + "gdn."
            w[g + "q_proj.weight"] = normal((d, h * dk), 0.1)
            w[g + "k_proj.weight"] = normal((d, h * dk), 0.1)
            w[g + "v_proj.weight"] = normal((d, h * dv), 0.1)
            w[g + "q_conv.weight"] = normal((h * dk, 1, kc), 0.4)
            w[g + "k_conv.weight"] = normal((h * dk, 1, kc), 0.4)
            w[g + "v_conv.weight"] = normal((h * dv, 1, kc), 0.4)
            w[g + "a_proj.weight"] = normal((d, h), 0.1)
            w[g + "b_proj.weight"] = normal((d, h), 0.1)
            w[g + "A_log"] = np.log(rng.uniform(1.0, 16.0, h)).astype(np.float32)
            dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), h))
            w[g + "dt_bias"] = (dt + np.log(-np.expm1(-dt))).astype(np.float32)
            w[g + "g_proj.weight"] = normal((d, h * dv), 0.1)
            w[g + "o_norm.weight"] = norm_w(dv)
            w[g + "o_proj.weight"] = normal((h * dv, d), 0.1)
        elif mixer == "attn":
            a = p + "attn."
            hq, hk, hd = cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
            w[a + "q_proj.weight"] = normal((d, hq * hd), 0.1)
            w[a + "k_proj.weight"] = normal((d, hk * hd), 0.1)
            w[a + "v_proj.weight"] = normal((d, hk * hd), 0.1)
            w[a + "o_proj.weight"] = normal((hq * hd, d), 0.1)
        else:
            raise ValueError(f"unknown mixer {mixer!r}")
        w[p + "ffn_norm.weight"] = norm_w(d)
        w[p + "ffn.w1.weight"] = normal((d, f), 0.1)
        w[p + "ffn.w3.weight"] = normal((d, f), 0.1)
        w[p + "ffn.w2.weight"] = normal((f, d), 0.1)
    w["rho"] = normal((cfg.n_loops, d), 0.1)
    w["final_norm.weight"] = norm_w(d)
    if "attn" in cfg.mixers:
        cos, sin = reference.rope_cache(cfg.max_positions, cfg.attn_head_dim, cfg.rope_theta)
        w["rope.cos_cache"] = cos.astype(np.float32)
        w["rope.sin_cache"] = sin.astype(np.float32)
    return w


# --------------------------------------------------------------------------- graph building


class _Scope:
    """Appends named nodes to one graph; every output tensor is named after its node.

    ``prefix`` scopes names (``loop/``, ``loop0/``...); ``used`` is shared by all scopes
    of one model so node names stay unique model-wide. Constants are created once per
    scope and value (readable names such as ``loop/const/i64=[0,2]``).
    """

    def __init__(self, prefix: str, used: set):
        self.prefix = prefix
        self.used = used
        self.nodes: list[onnx.NodeProto] = []
        self._consts: dict = {}

    def node(self, op, inputs, name, n_out=1, out=None, **attrs) -> str | list[str]:
        full = self.prefix + name
        if full in self.used:
            raise ValueError(f"duplicate node name {full}")
        self.used.add(full)
        outs = [out or full] + [f"{full}/present_state" if n_out == 2 else f"{full}/out{i}" for i in range(1, n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=full, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            tag = {np.dtype(np.int64): "i64", np.dtype(np.float32): "f32", np.dtype(np.bool_): "bool"}[arr.dtype]
            vals = ",".join(format(v, "g") if isinstance(v, float) else str(v) for v in arr.reshape(-1).tolist())
            name = f"const/{tag}={vals}" if arr.ndim == 0 else f"const/{tag}=[{vals}]"
            self._consts[key] = self.node("Constant", [], name, value=numpy_helper.from_array(arr))
        return self._consts[key]

    def i64(self, value) -> str:
        return self.const(value, np.int64)

    def f32(self, value) -> str:
        return self.const(value, np.float32)


def _rms(s: _Scope, x, weight, name, eps):
    return s.node("RMSNormalization", [x, weight], name, axis=-1, epsilon=float(eps))


def _silu(s: _Scope, x, name):
    sig = s.node("Sigmoid", [x], f"{name}/sigmoid")
    return s.node("Mul", [x, sig], name)


def _emit_ffn(s: _Scope, x, wp, n):
    a = s.node("MatMul", [x, wp + "w1.weight"], f"{n}/w1")
    a = _silu(s, a, f"{n}/silu")
    c = s.node("MatMul", [x, wp + "w3.weight"], f"{n}/w3")
    m = s.node("Mul", [a, c], f"{n}/gate")
    return s.node("MatMul", [m, wp + "w2.weight"], f"{n}/w2")


def _emit_gdn(s: _Scope, cfg: ExampleConfig, x, wp, n):
    h, dk, dv = cfg.gdn_heads, cfg.gdn_k, cfg.gdn_v
    # Reshape targets, written as exporters write them. [B, L, H, K] and back:
    # Concat(Slice(Shape(x), 0, 2), [H, K]).
    shp = s.node("Shape", [x], f"{n}/shape")
    bl = s.node("Slice", [shp, s.i64([0]), s.i64([2])], f"{n}/shape_batch_seq")
    shape_hk = s.node("Concat", [bl, s.i64([h, dk])], f"{n}/shape_heads_k", axis=0)
    shape_qk = s.node("Concat", [bl, s.i64([h * dk])], f"{n}/shape_packed_k", axis=0)
    # [B, L, H, V] and back: Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(.., 1)), [H, V]).
    bdim = s.node("Unsqueeze", [s.node("Gather", [shp, s.i64(0)], f"{n}/shape_batch", axis=0), s.i64([0])], f"{n}/shape_batch_1d")
    ldim = s.node("Unsqueeze", [s.node("Gather", [shp, s.i64(1)], f"{n}/shape_seq", axis=0), s.i64([0])], f"{n}/shape_seq_1d")
    shape_hv = s.node("Concat", [bdim, ldim, s.i64([h, dv])], f"{n}/shape_heads_v", axis=0)
    shape_v = s.node("Concat", [bdim, ldim, s.i64([h * dv])], f"{n}/shape_packed_v", axis=0)

    def proj_conv(tag):
        y = s.node("MatMul", [x, f"{wp}{tag}_proj.weight"], f"{n}/{tag}_proj")
        y = s.node("Transpose", [y], f"{n}/{tag}_to_channels", perm=[0, 2, 1])
        y, _ = s.node("CausalConvWithState", [y, f"{wp}{tag}_conv.weight"], f"{n}/{tag}_conv", n_out=2, activation="silu")
        return s.node("Transpose", [y], f"{n}/{tag}_from_channels", perm=[0, 2, 1])

    def l2(tag, y):
        y4 = s.node("Reshape", [y, shape_hk], f"{n}/{tag}_heads")
        sq = s.node("Mul", [y4, y4], f"{n}/{tag}_square")
        ss = s.node("ReduceSum", [sq, s.i64([-1])], f"{n}/{tag}_sum_square", keepdims=1)
        se = s.node("Add", [ss, s.f32(cfg.qk_l2_eps)], f"{n}/{tag}_sum_square_eps")
        nr = s.node("Sqrt", [se], f"{n}/{tag}_l2")
        y4 = s.node("Div", [y4, nr], f"{n}/{tag}_l2_normalized")
        return s.node("Reshape", [y4, shape_qk], f"{n}/{tag}_packed")

    q = l2("q", proj_conv("q"))
    k = l2("k", proj_conv("k"))
    v = proj_conv("v")
    a = s.node("MatMul", [x, wp + "a_proj.weight"], f"{n}/a_proj")
    a = s.node("Add", [a, wp + "dt_bias"], f"{n}/a_plus_dt_bias")
    a = s.node("Softplus", [a], f"{n}/softplus")
    neg_a = s.node("Neg", [s.node("Exp", [wp + "A_log"], f"{n}/exp_A_log")], f"{n}/neg_A")
    g = s.node("Mul", [neg_a, a], f"{n}/g")
    beta = s.node("Sigmoid", [s.node("MatMul", [x, wp + "b_proj.weight"], f"{n}/b_proj")], f"{n}/beta")
    o, _ = s.node(
        "LinearAttention", [q, k, v, "", g, beta], f"{n}/linear_attention", n_out=2,
        q_num_heads=h, kv_num_heads=h, update_rule="gated_delta", scale=cfg.gdn_scale,
    )
    o = s.node("Reshape", [o, shape_hv], f"{n}/o_heads")
    o = _rms(s, o, wp + "o_norm.weight", f"{n}/o_norm", cfg.gdn_norm_eps)
    z = s.node("MatMul", [x, wp + "g_proj.weight"], f"{n}/g_proj")
    z = s.node("Reshape", [z, shape_hv], f"{n}/g_heads")
    z = _silu(s, z, f"{n}/g_silu")
    o = s.node("Mul", [o, z], f"{n}/o_gated")
    o = s.node("Reshape", [o, shape_v], f"{n}/o_packed")
    return s.node("MatMul", [o, wp + "o_proj.weight"], f"{n}/o_proj")


def _emit_attn(s: _Scope, cfg: ExampleConfig, x, wp, n, position_ids):
    hq, hk = cfg.attn_q_heads, cfg.attn_kv_heads
    il = 1 if cfg.rope_interleaved else 0
    q = s.node("MatMul", [x, wp + "q_proj.weight"], f"{n}/q_proj")
    k = s.node("MatMul", [x, wp + "k_proj.weight"], f"{n}/k_proj")
    v = s.node("MatMul", [x, wp + "v_proj.weight"], f"{n}/v_proj")
    rope_in = ["rope.cos_cache", "rope.sin_cache", position_ids]
    q = s.node("RotaryEmbedding", [q, *rope_in], f"{n}/q_rope", interleaved=il, num_heads=hq)
    k = s.node("RotaryEmbedding", [k, *rope_in], f"{n}/k_rope", interleaved=il, num_heads=hk)
    a = s.node("Attention", [q, k, v], f"{n}/attention", is_causal=1, q_num_heads=hq, kv_num_heads=hk)
    return s.node("MatMul", [a, wp + "o_proj.weight"], f"{n}/o_proj")


def _emit_body(s: _Scope, cfg: ExampleConfig, h_in, iter_name, position_ids, out):
    """One loop iteration: N pre-norm layers, then ``h + Gather(rho, iter) * h_in``."""
    h = h_in
    for l, mixer in enumerate(cfg.mixers):
        wp, n = f"layers.{l}.", f"layers.{l}"
        x = _rms(s, h, wp + "mixer_norm.weight", f"{n}/mixer_norm", cfg.norm_eps)
        if mixer == "gdn":
            y = _emit_gdn(s, cfg, x, wp + "gdn.", f"{n}/gdn")
        else:
            y = _emit_attn(s, cfg, x, wp + "attn.", f"{n}/attn", position_ids)
        h = s.node("Add", [h, y], f"{n}/mixer_residual")
        x = _rms(s, h, wp + "ffn_norm.weight", f"{n}/ffn_norm", cfg.norm_eps)
        y = _emit_ffn(s, x, wp + "ffn.", f"{n}/ffn")
        h = s.node("Add", [h, y], f"{n}/ffn_residual")
    r = s.node("Gather", ["rho", iter_name], "loop_residual/rho", axis=0)
    r = s.node("Mul", [r, h_in], "loop_residual/scaled")
    return s.node("Add", [h, r], "loop_residual/add", out=out)


def _emit_position_ids(s: _Scope) -> str:
    """``position_ids [B, L]`` = Expand(Unsqueeze(Range(0, seq, 1), [0]), Shape(input_ids))."""
    shp = s.node("Shape", ["input_ids"], "position_ids/shape")
    seq = s.node("Slice", [shp, s.i64([1]), s.i64([2])], "position_ids/seq_1d")
    seq = s.node("Squeeze", [seq, s.i64([0])], "position_ids/seq")
    r = s.node("Range", [s.i64(0), seq, s.i64(1)], "position_ids/range")
    r = s.node("Unsqueeze", [r, s.i64([0])], "position_ids/unsqueeze")
    return s.node("Expand", [r, shp], "position_ids/expand", out="position_ids")


def build_model(cfg: ExampleConfig | None = None, weights: dict | None = None, unrolled: bool = False) -> onnx.ModelProto:
    """The example model, ``Loop`` form (default) or unrolled; checked with onnx.checker."""
    cfg = cfg or ExampleConfig()
    weights = make_weights(cfg) if weights is None else weights
    d = cfg.d_model
    used: set = set()
    main = _Scope("", used)
    fl, i64, b = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    hid_shape = ["batch", "seq", d]

    pos = _emit_position_ids(main) if "attn" in cfg.mixers else None
    h = main.node("Gather", ["embed.weight", "input_ids"], "embed", axis=0)
    if unrolled:
        for tau in range(cfg.n_loops):
            s = _Scope(f"loop{tau}/", used)
            s.nodes = main.nodes  # copies live in the main graph
            it = s.i64(tau)
            h = _emit_body(s, cfg, h, it, pos, out=f"loop{tau}/h_out")
    else:
        s = _Scope("loop/", used)
        cond_out = s.node("Identity", ["loop/cond_in"], "cond_passthrough", out="loop/cond_out")
        h_out = _emit_body(s, cfg, "loop/h_in", "loop/iter", pos, out="loop/h_out")
        body = helper.make_graph(
            s.nodes,
            "loop_body",
            [
                helper.make_tensor_value_info("loop/iter", i64, []),
                helper.make_tensor_value_info("loop/cond_in", b, []),
                helper.make_tensor_value_info("loop/h_in", fl, hid_shape),
            ],
            [
                helper.make_tensor_value_info(cond_out, b, []),
                helper.make_tensor_value_info(h_out, fl, hid_shape),
            ],
        )
        trip = main.node("Constant", [], "loop_trip_count", value=numpy_helper.from_array(np.array(cfg.n_loops, np.int64)))
        cond = main.node("Constant", [], "loop_cond", value=numpy_helper.from_array(np.array(True)))
        h = main.node("Loop", [trip, cond, h], "loop", out="loop_out", body=body)
    h = _rms(main, h, "final_norm.weight", "final_norm", cfg.norm_eps)
    et = main.node("Transpose", ["embed.weight"], "lm_head/embed_transposed", perm=[1, 0])
    main.node("MatMul", [h, et], "lm_head", out="logits")

    graph = helper.make_graph(
        main.nodes,
        "lt2_tiny_unrolled" if unrolled else "lt2_tiny",
        [helper.make_tensor_value_info("input_ids", i64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", fl, ["batch", "seq", cfg.vocab])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lt2.models.example",
        producer_version="0.1",
        doc_string="Tiny LT2-hybrid (GDN + full attention, looped) example for lt2c tests.",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build_loop_model(cfg: ExampleConfig | None = None, weights: dict | None = None) -> onnx.ModelProto:
    """``build_model(cfg, weights, unrolled=False)``."""
    return build_model(cfg, weights, unrolled=False)


def build_unrolled_model(cfg: ExampleConfig | None = None, weights: dict | None = None) -> onnx.ModelProto:
    """``build_model(cfg, weights, unrolled=True)``."""
    return build_model(cfg, weights, unrolled=True)
