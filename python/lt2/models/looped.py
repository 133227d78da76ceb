"""Configurable builder of looped LT2-family and Ouro-family models as ONNX (opset 27).

One config (``LoopedConfig``), one weight generator (``make_weights``) and one graph
builder (``build_model``) cover every model of the zoo (``lt2.zoo``) and the tiny example
(``lt2.models.example``, whose fixture this builder reproduces byte for byte).

Model (lt2-models.md section 1)::

    h = Gather(embed.weight, input_ids)
    for tau in 0..T-1:                                   # Loop, or T unrolled copies
        h_in = h
        for l, mixer in enumerate(cfg.mixers):           # "gdn" | "attn" | "swa" | "dsa"
            h = h + [PostNorm](Mixer_l(RMSNorm(h)))      # PostNorm only with sandwich_norm
            h = h + [PostNorm](SwiGLU_l(RMSNorm(h)))
        h = h + Gather(rho, tau) * h_in                  # loop_residual
        h = RMSNorm_final(h); lambda_tau = Sigmoid(h W_exit + b_exit)   # Ouro: every loop
    logits = LMHead(RMSNorm_final(h))                    # LT2: final norm once (not Ouro)
    exit_probs[..., tau] = lambda_tau prod_{j<tau}(1 - lambda_j)  (tau < T-1),
                           prod_{j<T-1}(1 - lambda_j)                (tau = T-1)

Mixers: ``gdn`` (flash-linear-attention's GatedDeltaNet layer; ``gdn_v_heads`` > ``gdn_heads``
gives grouped values, q/k heads repeated ``h -> h*g .. h*g+g-1``), ``attn`` (causal RoPE
attention, optional sigmoid output gate), ``swa`` (the same with a sliding window of
``window`` tokens: the current one and ``window - 1`` predecessors), ``dsa`` (LT2's DSA:
``lt2::LightningIndexer`` + ``lt2::SparseAttention`` over a shared latent).

Spellings (``spelling=``):

- ``standard``: RMSNormalization-23, RotaryEmbedding-23, Attention-23/25 (windows through
  ``left_window_size = window - 1``, ``right_window_size = 0``), LinearAttention-27,
  CausalConvWithState-27.
- ``ms``: onnxruntime's ops: ``SimplifiedLayerNormalization`` (which onnxruntime registers
  in the *default* domain, as onnxruntime-genai writes it), ``com.microsoft``
  ``RotaryEmbedding`` (inputs: input, position_ids, cos_cache, sin_cache),
  ``GroupQueryAttention`` (windowed layers: ``do_rotary = 1``, ``local_window_size = window``),
  ``CausalConvWithState`` (``channels_last = 1``), ``GatedDeltaNet`` (rank-4 q/k/v,
  ``gate_activation = "qwen"``, ``beta_activation = "sigmoid"``, ``qk_l2_norm = 1``) and
  ``GatedRMSNorm``.
- ``decomposed``: RMSNorm as Pow/ReduceMean/Add/Sqrt/Div/Mul, RoPE as Slice/Mul/Neg/Concat
  (interleaved: Reshape to pairs, Slice, Mul, Sub/Add, Concat), attention as
  MatMul/Softmax with a causal mask built once in the main graph (``decomposed_mask``:
  ``"where"`` = Where over Range comparisons, ``"trilu"`` = additive Trilu mask); GDN keeps
  LinearAttention and CausalConvWithState.

The ``dsa`` mixer has one spelling (the ``lt2`` domain) in every form.

Loop forms: ``unrolled=False`` builds a ``Loop`` (constant trip count, explicit constant true
condition passed through ``Identity``, weights captured from the outer scope, typed body
inputs); ``unrolled=True`` writes T copies of the body into the main graph (``iter``
replaced by a Constant), reading the same initializers. With an exit gate the Loop carries
``h`` and ``survive`` ([B, L, 1]) and has two scan outputs, ``lambda_tau`` and the survival
entering loop tau (both [T, B, L, 1]); ``exit_probs`` is computed after the loop with
Mul/Slice/Concat/Transpose/Squeeze.

Weights are stored ``[in, out]``. ``external_data=`` builds initializers that point into one
raw little-endian file (``write_external_data`` writes it), so models over 2 GB work and
all forms of one model share that file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import reference

OPSET = 27
IR_VERSION = 13  # onnx 1.23 writes 14 by default; onnxruntime 1.31 refuses 14, accepts 13
MS_DOMAIN = "com.microsoft"
LT2_DOMAIN = "lt2"
SPELLINGS = ("standard", "ms", "decomposed")
MIXERS = ("gdn", "attn", "swa", "dsa")
F32_MIN = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class LoopedConfig:
    """Shape, numeric and structure parameters of a looped model (defaults: tiny LT2 Full+GDN)."""

    d_model: int = 64
    vocab: int = 256
    n_loops: int = 2
    mixers: tuple = ("gdn", "gdn", "gdn", "gdn", "attn")  # one physical layer per entry
    # GDN
    gdn_heads: int = 2  # query/key heads H
    gdn_k: int = 8
    gdn_v: int = 16
    conv_kernel: int = 4
    # attention ("attn" and "swa")
    attn_q_heads: int = 2
    attn_kv_heads: int = 2
    attn_head_dim: int = 16
    ffn_hidden: int = 32
    max_positions: int = 64
    norm_eps: float = 1e-6
    gdn_norm_eps: float = 1e-5
    qk_l2_eps: float = 1e-6
    rope_interleaved: bool = True
    rope_theta: float = 1e4
    seed: int = 0
    # --- fields beyond the example model (defaults keep the example's graph unchanged)
    gdn_v_heads: int = 0  # value (state) heads HV; 0 = gdn_heads; > gdn_heads = grouped values
    attn_output_gate: bool = False  # attn * sigmoid(x W_gate)
    window: int = 0  # "swa" layers: keys j with i - window < j <= i
    dsa_heads: int = 2
    dsa_score_dim: int = 16
    dsa_value_dim: int = 32  # values = first dsa_value_dim dims of the latent
    dsa_tail_dim: int = 16  # latent = value dims + tail dims (keys use all of it)
    dsa_top_k: int = 4
    loop_residual: bool = True  # h = h + rho[tau] * h_in
    sandwich_norm: bool = False  # Ouro: RMSNorm after the mixer and after the FFN as well
    final_norm_every_loop: bool = False  # Ouro: final RMSNorm at the end of every loop
    exit_gate: bool = False  # Ouro: lambda_tau = sigmoid(h W_exit + b_exit), exit_probs output
    tied_head: bool = True  # LM head = embed^T; else lm_head.weight [d, vocab]
    decomposed_mask: str = "where"  # decomposed spelling: "where" (Range/Greater/Where) or "trilu"
    fast_init: bool = False  # draw float32 normals directly (big sizes; different numbers)

    @property
    def gdn_scale(self) -> float:
        return float(self.gdn_k) ** -0.5

    @property
    def gdn_hv(self) -> int:
        return self.gdn_v_heads or self.gdn_heads

    @property
    def dsa_latent_dim(self) -> int:
        return self.dsa_value_dim + self.dsa_tail_dim

    @property
    def has_rope(self) -> bool:
        return any(m in ("attn", "swa") for m in self.mixers)

    def validate(self) -> None:
        bad = [m for m in self.mixers if m not in MIXERS]
        if bad:
            raise ValueError(f"unknown mixers {bad}")
        if self.gdn_hv % self.gdn_heads:
            raise ValueError("gdn_v_heads must be a multiple of gdn_heads")
        if self.attn_q_heads % self.attn_kv_heads:
            raise ValueError("attn_q_heads must be a multiple of attn_kv_heads")
        if "swa" in self.mixers and self.window < 1:
            raise ValueError("swa layers need window >= 1")
        if self.exit_gate and not self.final_norm_every_loop:
            raise ValueError("the exit gate reads the per-loop final norm (final_norm_every_loop)")
        if self.decomposed_mask not in ("where", "trilu"):
            raise ValueError(f"decomposed_mask must be 'where' or 'trilu', got {self.decomposed_mask!r}")


# --------------------------------------------------------------------------- weights


def weight_spec(cfg: LoopedConfig) -> list[tuple[str, str, tuple, tuple]]:
    """Every random weight of ``cfg`` in draw order: ``(name, kind, shape, params)``.

    Kinds: ``"normal"`` N(0, std^2) with ``params = (std,)``; ``"norm"`` (norm weights)
    1 + N(0, std^2), ``(std,)``; ``"A_log"`` log U(lo, hi), ``(lo, hi)``; ``"dt_bias"``
    softplus^-1(dt) with dt = exp U(log lo, log hi), ``(lo, hi)`` (flash-linear-attention's
    init). Scales keep activations O(1): embeddings (and an untied LM head) std 0.5,
    projections ``s = 0.1 * sqrt(64 / d_model)`` (0.1 at d = 64), conv taps 0.4, norm weights
    0.1, ``rho`` 0.1, exit gate ``s`` and its bias 0.5. The order is fixed (the example fixture
    depends on it): embed, then per layer mixer norm, mixer weights, [mixer post-norm], FFN norm,
    w1, w3, w2, [FFN post-norm], then rho, final norm, [exit gate], [LM head].

    One spec, two generators: ``make_weights`` (numpy, the zoo's fixtures) and the benchmark's
    ``bench/bench_model.py:gen_weights`` (torch on the GPU, for the big sizes).
    """
    d, f = cfg.d_model, cfg.ffn_hidden
    ps = 0.1 * math.sqrt(64 / d)
    spec: list[tuple[str, str, tuple, tuple]] = []

    def normal(name, shape, std):
        spec.append((name, "normal", tuple(shape), (std,)))

    def norm_w(name, n):
        spec.append((name, "norm", (n,), (0.1,)))

    normal("embed.weight", (cfg.vocab, d), 0.5)
    for l, mixer in enumerate(cfg.mixers):
        p = f"layers.{l}."
        norm_w(p + "mixer_norm.weight", d)
        if mixer == "gdn":
            h, hv, dk, dv, kc = cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v, cfg.conv_kernel
            g = p + "gdn."
            normal(g + "q_proj.weight", (d, h * dk), ps)
            normal(g + "k_proj.weight", (d, h * dk), ps)
            normal(g + "v_proj.weight", (d, hv * dv), ps)
            normal(g + "q_conv.weight", (h * dk, 1, kc), 0.4)
            normal(g + "k_conv.weight", (h * dk, 1, kc), 0.4)
            normal(g + "v_conv.weight", (hv * dv, 1, kc), 0.4)
            normal(g + "a_proj.weight", (d, hv), ps)
            normal(g + "b_proj.weight", (d, hv), ps)
            spec.append((g + "A_log", "A_log", (hv,), (1.0, 16.0)))
            spec.append((g + "dt_bias", "dt_bias", (hv,), (1e-3, 1e-1)))
            normal(g + "g_proj.weight", (d, hv * dv), ps)
            norm_w(g + "o_norm.weight", dv)
            normal(g + "o_proj.weight", (hv * dv, d), ps)
        elif mixer in ("attn", "swa"):
            a = p + "attn."
            hq, hk, hd = cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
            normal(a + "q_proj.weight", (d, hq * hd), ps)
            normal(a + "k_proj.weight", (d, hk * hd), ps)
            normal(a + "v_proj.weight", (d, hk * hd), ps)
            normal(a + "o_proj.weight", (hq * hd, d), ps)
            if cfg.attn_output_gate:
                normal(a + "gate_proj.weight", (d, hq * hd), ps)
        elif mixer == "dsa":
            s = p + "dsa."
            hh = cfg.dsa_heads
            normal(s + "qs_proj.weight", (d, hh * cfg.dsa_score_dim), ps)
            normal(s + "ks_proj.weight", (d, cfg.dsa_score_dim), ps)
            normal(s + "q_proj.weight", (d, hh * cfg.dsa_latent_dim), ps)
            normal(s + "kv_proj.weight", (d, cfg.dsa_latent_dim), ps)
            normal(s + "o_proj.weight", (hh * cfg.dsa_value_dim, d), ps)
        if cfg.sandwich_norm:
            norm_w(p + "mixer_post_norm.weight", d)
        norm_w(p + "ffn_norm.weight", d)
        normal(p + "ffn.w1.weight", (d, f), ps)
        normal(p + "ffn.w3.weight", (d, f), ps)
        normal(p + "ffn.w2.weight", (f, d), ps)
        if cfg.sandwich_norm:
            norm_w(p + "ffn_post_norm.weight", d)
    if cfg.loop_residual:
        normal("rho", (cfg.n_loops, d), 0.1)
    norm_w("final_norm.weight", d)
    if cfg.exit_gate:
        normal("exit_gate.weight", (d, 1), ps)
        normal("exit_gate.bias", (1,), 0.5)
    if not cfg.tied_head:
        normal("lm_head.weight", (d, cfg.vocab), 0.5)
    return spec


def make_weights(cfg: LoopedConfig | None = None) -> dict[str, np.ndarray]:
    """Fixed-seed float32 weights (``numpy.random.default_rng(cfg.seed)``), insertion-ordered:
    ``weight_spec(cfg)`` drawn in its order (names, shapes, distributions there), then the RoPE
    caches ``cos/sin(p * theta^(-2i/D))`` for p < max_positions. ``fast_init`` draws float32
    normals directly (big sizes; different numbers)."""
    cfg = cfg or LoopedConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    w: dict[str, np.ndarray] = {}
    for name, kind, shape, par in weight_spec(cfg):
        if kind == "normal":
            (std,) = par
            if cfg.fast_init:
                w[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            else:
                w[name] = (rng.standard_normal(shape) * std).astype(np.float32)
        elif kind == "norm":
            (std,) = par
            if cfg.fast_init:
                w[name] = 1.0 + rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            else:
                w[name] = (1.0 + rng.standard_normal(shape) * std).astype(np.float32)
        elif kind == "A_log":
            w[name] = np.log(rng.uniform(par[0], par[1], shape)).astype(np.float32)
        elif kind == "dt_bias":
            dt = np.exp(rng.uniform(np.log(par[0]), np.log(par[1]), shape))
            w[name] = (dt + np.log(-np.expm1(-dt))).astype(np.float32)
        else:  # pragma: no cover - weight_spec writes only the kinds above
            raise ValueError(f"unknown weight kind {kind!r}")
    if cfg.has_rope:
        cos, sin = reference.rope_cache(cfg.max_positions, cfg.attn_head_dim, cfg.rope_theta)
        w["rope.cos_cache"] = cos.astype(np.float32)
        w["rope.sin_cache"] = sin.astype(np.float32)
    return w


def n_params(weights: dict) -> int:
    """Number of scalars in ``weights`` (RoPE caches included)."""
    return int(sum(np.asarray(v).size for v in weights.values()))


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

    def node(self, op, inputs, name, n_out=1, out=None, outs=None, domain=None, **attrs) -> str | list[str]:
        full = self.prefix + name
        if full in self.used:
            raise ValueError(f"duplicate node name {full}")
        self.used.add(full)
        if outs is None:
            state = op in ("CausalConvWithState", "LinearAttention")  # second output: present_state
            outs = [out or full] + [f"{full}/present_state" if state and n_out == 2 else f"{full}/out{i}" for i in range(1, n_out)]
        extra = {} if domain is None else {"domain": domain}
        self.nodes.append(helper.make_node(op, list(inputs), list(outs), name=full, **extra, **attrs))
        return outs[0] if len(outs) == 1 else list(outs)

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


def _silu(s: _Scope, x, name):
    sig = s.node("Sigmoid", [x], f"{name}/sigmoid")
    return s.node("Mul", [x, sig], name)


def _emit_ffn(s: _Scope, x, wp, n):
    a = s.node("MatMul", [x, wp + "w1.weight"], f"{n}/w1")
    a = _silu(s, a, f"{n}/silu")
    c = s.node("MatMul", [x, wp + "w3.weight"], f"{n}/w3")
    m = s.node("Mul", [a, c], f"{n}/gate")
    return s.node("MatMul", [m, wp + "w2.weight"], f"{n}/w2")


class _Emitter:
    """Emits the layers of one model in one spelling. ``shared`` names main-graph tensors
    the layers read (position ids, GQA lengths, decomposed RoPE tables and masks)."""

    def __init__(self, cfg: LoopedConfig, spelling: str):
        if spelling not in SPELLINGS:
            raise ValueError(f"unknown spelling {spelling!r}; expected one of {SPELLINGS}")
        self.cfg = cfg
        self.spelling = spelling
        self.shared: dict[str, str] = {}

    # ------------------------------------------------------------------ norms

    def rms(self, s: _Scope, x, weight, name, eps, out=None):
        if self.spelling == "standard":
            return s.node("RMSNormalization", [x, weight], name, out=out, axis=-1, epsilon=float(eps))
        if self.spelling == "ms":
            return s.node("SimplifiedLayerNormalization", [x, weight], name, out=out, axis=-1, epsilon=float(eps))
        sq = s.node("Pow", [x, s.f32(2.0)], f"{name}/square")
        ms = s.node("ReduceMean", [sq, s.i64([-1])], f"{name}/mean_square", keepdims=1)
        ms = s.node("Add", [ms, s.f32(eps)], f"{name}/mean_square_eps")
        rms = s.node("Sqrt", [ms], f"{name}/rms")
        y = s.node("Div", [x, rms], f"{name}/normalized")
        return s.node("Mul", [y, weight], name, out=out)

    # ------------------------------------------------------------------ main-graph preamble

    def emit_shared(self, s: _Scope) -> None:
        """Position ids (any RoPE layer), GQA lengths (ms), RoPE tables and masks (decomposed)."""
        cfg = self.cfg
        dense_dsa = self.spelling == "decomposed" and "dsa" in cfg.mixers
        if not (cfg.has_rope or dense_dsa):
            return
        shp = s.node("Shape", ["input_ids"], "position_ids/shape")
        seq1d = s.node("Slice", [shp, s.i64([1]), s.i64([2])], "position_ids/seq_1d")
        seq = s.node("Squeeze", [seq1d, s.i64([0])], "position_ids/seq")
        r = s.node("Range", [s.i64(0), seq, s.i64(1)], "position_ids/range")
        ru = s.node("Unsqueeze", [r, s.i64([0])], "position_ids/unsqueeze")
        self.shared["position_ids"] = s.node("Expand", [ru, shp], "position_ids/expand", out="position_ids")
        self.shared.update(input_shape=shp, seq=seq, seq_1d=seq1d, range=r)
        if self.spelling == "ms":
            # GroupQueryAttention without past: total_sequence_length = L, seqlens_k = L - 1.
            total = s.node("Cast", [seq], "gqa/total_sequence_length", to=TensorProto.INT32)
            last = s.node("Sub", [seq, s.i64(1)], "gqa/last_position")
            last = s.node("Cast", [last], "gqa/last_position_i32", to=TensorProto.INT32)
            batch = s.node("Slice", [shp, s.i64([0]), s.i64([1])], "gqa/batch_1d")
            self.shared["gqa_seqlens_k"] = s.node("Expand", [last, batch], "gqa/seqlens_k")
            self.shared["gqa_total_len"] = total
        if self.spelling == "decomposed" and (dense_dsa or cfg.decomposed_mask == "where"):
            rows = s.node("Unsqueeze", [r, s.i64([1])], "mask/rows")  # query i, [L, 1]
            cols = s.node("Unsqueeze", [r, s.i64([0])], "mask/cols")  # key j, [1, L]
            future = s.node("Greater", [cols, rows], "mask/future")
            self.shared["mask_causal"] = s.node("Not", [future], "mask/causal")
        if self.spelling == "decomposed" and cfg.has_rope:
            pos = self.shared["position_ids"]
            cos = s.node("Gather", ["rope.cos_cache", pos], "rope/cos_gather", axis=0)  # [B, L, D/2]
            sin = s.node("Gather", ["rope.sin_cache", pos], "rope/sin_gather", axis=0)
            if cfg.rope_interleaved:  # [B, L, 1, D/2, 1]
                self.shared["rope_cos"] = s.node("Unsqueeze", [cos, s.i64([2, 4])], "rope/cos")
                self.shared["rope_sin"] = s.node("Unsqueeze", [sin, s.i64([2, 4])], "rope/sin")
            else:  # rotate-half: [B, L, 1, D] = Concat(cos, cos)
                cos = s.node("Concat", [cos, cos], "rope/cos_full", axis=-1)
                sin = s.node("Concat", [sin, sin], "rope/sin_full", axis=-1)
                self.shared["rope_cos"] = s.node("Unsqueeze", [cos, s.i64([2])], "rope/cos")
                self.shared["rope_sin"] = s.node("Unsqueeze", [sin, s.i64([2])], "rope/sin")
            if cfg.decomposed_mask == "where":
                if "swa" in cfg.mixers:
                    dist = s.node("Sub", [s.node("Unsqueeze", [r, s.i64([1])], "mask/rows_w"), s.node("Unsqueeze", [r, s.i64([0])], "mask/cols_w")], "mask/distance")
                    near = s.node("Less", [dist, s.i64(cfg.window)], "mask/in_window")
                    self.shared["mask_window"] = s.node("And", [self.shared["mask_causal"], near], "mask/window")
            else:
                ll = s.node("Concat", [seq1d, seq1d], "mask/shape", axis=0)
                big = s.node("ConstantOfShape", [ll], "mask/fill", value=numpy_helper.from_array(np.array([F32_MIN], np.float32)))
                self.shared["mask_causal_add"] = s.node("Trilu", [big, s.i64(1)], "mask/causal_add", upper=1)
                if "swa" in cfg.mixers:
                    low = s.node("Trilu", [big, s.i64(-cfg.window)], "mask/too_old_add", upper=0)
                    self.shared["mask_window_add"] = s.node("Add", [self.shared["mask_causal_add"], low], "mask/window_add")

    # ------------------------------------------------------------------ GDN

    def gdn(self, s: _Scope, x, wp, n):
        return self._gdn_ms(s, x, wp, n) if self.spelling == "ms" else self._gdn_standard(s, x, wp, n)

    def _gdn_standard(self, s: _Scope, x, wp, n):
        cfg = self.cfg
        h, hv, dk, dv = cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v
        grp = hv // h
        # Reshape targets, written as exporters write them. [B, L, H, K] and back:
        # Concat(Slice(Shape(x), 0, 2), [H, K]).
        shp = s.node("Shape", [x], f"{n}/shape")
        bl = s.node("Slice", [shp, s.i64([0]), s.i64([2])], f"{n}/shape_batch_seq")
        shape_hk = s.node("Concat", [bl, s.i64([h, dk])], f"{n}/shape_heads_k", axis=0)
        shape_qk = s.node("Concat", [bl, s.i64([hv * dk])], f"{n}/shape_packed_k", axis=0)
        # [B, L, H, V] and back: Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(.., 1)), [H, V]).
        bdim = s.node("Unsqueeze", [s.node("Gather", [shp, s.i64(0)], f"{n}/shape_batch", axis=0), s.i64([0])], f"{n}/shape_batch_1d")
        ldim = s.node("Unsqueeze", [s.node("Gather", [shp, s.i64(1)], f"{n}/shape_seq", axis=0), s.i64([0])], f"{n}/shape_seq_1d")
        shape_hv = s.node("Concat", [bdim, ldim, s.i64([hv, dv])], f"{n}/shape_heads_v", axis=0)
        shape_v = s.node("Concat", [bdim, ldim, s.i64([hv * dv])], f"{n}/shape_packed_v", axis=0)

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
            if grp > 1:  # grouped values: key head h serves value heads h*g .. h*g+g-1
                y5 = s.node("Unsqueeze", [y4, s.i64([3])], f"{n}/{tag}_heads_1")
                y4 = s.node("Expand", [y5, s.i64([1, 1, h, grp, dk])], f"{n}/{tag}_repeat_heads")
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
            q_num_heads=hv, kv_num_heads=hv, update_rule="gated_delta", scale=cfg.gdn_scale,
        )
        o = s.node("Reshape", [o, shape_hv], f"{n}/o_heads")
        o = self.rms(s, o, wp + "o_norm.weight", f"{n}/o_norm", cfg.gdn_norm_eps)
        z = s.node("MatMul", [x, wp + "g_proj.weight"], f"{n}/g_proj")
        z = s.node("Reshape", [z, shape_hv], f"{n}/g_heads")
        z = _silu(s, z, f"{n}/g_silu")
        o = s.node("Mul", [o, z], f"{n}/o_gated")
        o = s.node("Reshape", [o, shape_v], f"{n}/o_packed")
        return s.node("MatMul", [o, wp + "o_proj.weight"], f"{n}/o_proj")

    def _gdn_ms(self, s: _Scope, x, wp, n):
        """onnxruntime-genai's Qwen3.5-style GDN: channels-last conv, rank-4 GatedDeltaNet
        with the fused qwen gate, sigmoid beta and in-op q/k L2 norm, then GatedRMSNorm."""
        cfg = self.cfg
        h, hv, dk, dv = cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v

        def proj_conv(tag, heads, dim):
            y = s.node("MatMul", [x, f"{wp}{tag}_proj.weight"], f"{n}/{tag}_proj")
            y, _ = s.node(
                "CausalConvWithState", [y, f"{wp}{tag}_conv.weight"], f"{n}/{tag}_conv", n_out=2,
                domain=MS_DOMAIN, activation="silu", channels_last=1,
            )
            return s.node("Reshape", [y, s.i64([0, 0, heads, dim])], f"{n}/{tag}_heads")

        q = proj_conv("q", h, dk)
        k = proj_conv("k", h, dk)
        v = proj_conv("v", hv, dv)
        a = s.node("MatMul", [x, wp + "a_proj.weight"], f"{n}/a_proj")
        b = s.node("MatMul", [x, wp + "b_proj.weight"], f"{n}/b_proj")
        o = s.node(
            "GatedDeltaNet", [q, k, v, "", a, b, "", wp + "A_log", wp + "dt_bias"], f"{n}/gated_delta_net",
            domain=MS_DOMAIN, update_rule="gated_delta", gate_activation="qwen", beta_activation="sigmoid",
            qk_l2_norm=1, scale=0.0,
        )
        o = s.node("Reshape", [o, s.i64([0, 0, hv * dv])], f"{n}/o_packed")
        z = s.node("MatMul", [x, wp + "g_proj.weight"], f"{n}/g_proj")
        o = s.node(
            "GatedRMSNorm", [o, wp + "o_norm.weight", z], f"{n}/o_norm_gated", domain=MS_DOMAIN,
            activation="silu", epsilon=float(cfg.gdn_norm_eps),
        )
        return s.node("MatMul", [o, wp + "o_proj.weight"], f"{n}/o_proj")

    # ------------------------------------------------------------------ attention

    def attn(self, s: _Scope, x, wp, n, window: int):
        cfg = self.cfg
        if self.spelling == "standard":
            a = self._attn_standard(s, x, wp, n, window)
        elif self.spelling == "ms":
            a = self._attn_ms(s, x, wp, n, window)
        else:
            a = self._attn_decomposed(s, x, wp, n, window)
        if cfg.attn_output_gate:
            gt = s.node("MatMul", [x, wp + "gate_proj.weight"], f"{n}/gate_proj")
            gt = s.node("Sigmoid", [gt], f"{n}/gate_sigmoid")
            a = s.node("Mul", [a, gt], f"{n}/gated")
        return s.node("MatMul", [a, wp + "o_proj.weight"], f"{n}/o_proj")

    def _qkv(self, s, x, wp, n):
        q = s.node("MatMul", [x, wp + "q_proj.weight"], f"{n}/q_proj")
        k = s.node("MatMul", [x, wp + "k_proj.weight"], f"{n}/k_proj")
        v = s.node("MatMul", [x, wp + "v_proj.weight"], f"{n}/v_proj")
        return q, k, v

    def _attn_standard(self, s, x, wp, n, window):
        cfg = self.cfg
        hq, hk = cfg.attn_q_heads, cfg.attn_kv_heads
        il = 1 if cfg.rope_interleaved else 0
        q, k, v = self._qkv(s, x, wp, n)
        rope_in = ["rope.cos_cache", "rope.sin_cache", self.shared["position_ids"]]
        q = s.node("RotaryEmbedding", [q, *rope_in], f"{n}/q_rope", interleaved=il, num_heads=hq)
        k = s.node("RotaryEmbedding", [k, *rope_in], f"{n}/k_rope", interleaved=il, num_heads=hk)
        win = {} if not window else {"left_window_size": window - 1, "right_window_size": 0}
        return s.node("Attention", [q, k, v], f"{n}/attention", is_causal=1, q_num_heads=hq, kv_num_heads=hk, **win)

    def _attn_ms(self, s, x, wp, n, window):
        cfg = self.cfg
        hq, hk = cfg.attn_q_heads, cfg.attn_kv_heads
        il = 1 if cfg.rope_interleaved else 0
        q, k, v = self._qkv(s, x, wp, n)
        lens = [self.shared["gqa_seqlens_k"], self.shared["gqa_total_len"]]
        if window:  # fused rotary + local window, as onnxruntime-genai writes windowed layers
            return s.node(
                "GroupQueryAttention", [q, k, v, "", "", *lens, "rope.cos_cache", "rope.sin_cache"], f"{n}/group_query_attention",
                domain=MS_DOMAIN, num_heads=hq, kv_num_heads=hk, do_rotary=1, rotary_interleaved=il, local_window_size=window,
            )
        pos = self.shared["position_ids"]
        q = s.node("RotaryEmbedding", [q, pos, "rope.cos_cache", "rope.sin_cache"], f"{n}/q_rope", domain=MS_DOMAIN, interleaved=il, num_heads=hq)
        k = s.node("RotaryEmbedding", [k, pos, "rope.cos_cache", "rope.sin_cache"], f"{n}/k_rope", domain=MS_DOMAIN, interleaved=il, num_heads=hk)
        return s.node("GroupQueryAttention", [q, k, v, "", "", *lens], f"{n}/group_query_attention", domain=MS_DOMAIN, num_heads=hq, kv_num_heads=hk)

    def _rope_decomposed(self, s, x4, heads, n, tag):
        cfg = self.cfg
        d = cfg.attn_head_dim
        cos, sin = self.shared["rope_cos"], self.shared["rope_sin"]
        if cfg.rope_interleaved:  # pairs (2i, 2i+1)
            x5 = s.node("Reshape", [x4, s.i64([0, 0, heads, d // 2, 2])], f"{n}/{tag}_pairs")
            x1 = s.node("Slice", [x5, s.i64([0]), s.i64([1]), s.i64([4])], f"{n}/{tag}_even")
            x2 = s.node("Slice", [x5, s.i64([1]), s.i64([2]), s.i64([4])], f"{n}/{tag}_odd")
            nx2 = s.node("Neg", [x2], f"{n}/{tag}_odd_neg")
            re = s.node("Add", [s.node("Mul", [x1, cos], f"{n}/{tag}_even_cos"), s.node("Mul", [nx2, sin], f"{n}/{tag}_odd_neg_sin")], f"{n}/{tag}_rot_even")
            im = s.node("Add", [s.node("Mul", [x1, sin], f"{n}/{tag}_even_sin"), s.node("Mul", [x2, cos], f"{n}/{tag}_odd_cos")], f"{n}/{tag}_rot_odd")
            y5 = s.node("Concat", [re, im], f"{n}/{tag}_rot_pairs", axis=4)
            return s.node("Reshape", [y5, s.i64([0, 0, heads, d])], f"{n}/{tag}_rope")
        x1 = s.node("Slice", [x4, s.i64([0]), s.i64([d // 2]), s.i64([3])], f"{n}/{tag}_first_half")
        x2 = s.node("Slice", [x4, s.i64([d // 2]), s.i64([d]), s.i64([3])], f"{n}/{tag}_second_half")
        rot = s.node("Concat", [s.node("Neg", [x2], f"{n}/{tag}_second_half_neg"), x1], f"{n}/{tag}_rotate_half", axis=-1)
        return s.node("Add", [s.node("Mul", [x4, cos], f"{n}/{tag}_cos"), s.node("Mul", [rot, sin], f"{n}/{tag}_sin")], f"{n}/{tag}_rope")

    def _attn_decomposed(self, s, x, wp, n, window):
        cfg = self.cfg
        hq, hk, d = cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
        grp = hq // hk
        q, k, v = self._qkv(s, x, wp, n)
        q = self._rope_decomposed(s, s.node("Reshape", [q, s.i64([0, 0, hq, d])], f"{n}/q_heads"), hq, n, "q")
        k = self._rope_decomposed(s, s.node("Reshape", [k, s.i64([0, 0, hk, d])], f"{n}/k_heads"), hk, n, "k")
        v = s.node("Reshape", [v, s.i64([0, 0, hk, d])], f"{n}/v_heads")
        q = s.node("Transpose", [q], f"{n}/q_bhld", perm=[0, 2, 1, 3])
        k = s.node("Transpose", [k], f"{n}/k_bhdl", perm=[0, 2, 3, 1])
        v = s.node("Transpose", [v], f"{n}/v_bhld", perm=[0, 2, 1, 3])
        if grp > 1:  # KV head j serves query heads j*g .. j*g+g-1
            k = s.node("Unsqueeze", [k, s.i64([2])], f"{n}/k_group_axis")
            k = s.node("Expand", [k, s.i64([1, 1, grp, 1, 1])], f"{n}/k_repeat")
            k = s.node("Reshape", [k, s.i64([0, hq, d, -1])], f"{n}/k_repeated")
            v = s.node("Unsqueeze", [v, s.i64([2])], f"{n}/v_group_axis")
            v = s.node("Expand", [v, s.i64([1, 1, grp, 1, 1])], f"{n}/v_repeat")
            v = s.node("Reshape", [v, s.i64([0, hq, -1, d])], f"{n}/v_repeated")
        sc = s.node("MatMul", [q, k], f"{n}/scores")
        sc = s.node("Mul", [sc, s.f32(d**-0.5)], f"{n}/scores_scaled")
        if cfg.decomposed_mask == "where":
            m = self.shared["mask_window" if window else "mask_causal"]
            sc = s.node("Where", [m, sc, s.f32(F32_MIN)], f"{n}/scores_masked")
        else:
            m = self.shared["mask_window_add" if window else "mask_causal_add"]
            sc = s.node("Add", [sc, m], f"{n}/scores_masked")
        p = s.node("Softmax", [sc], f"{n}/probs", axis=-1)
        o = s.node("MatMul", [p, v], f"{n}/context")
        o = s.node("Transpose", [o], f"{n}/context_blhd", perm=[0, 2, 1, 3])
        return s.node("Reshape", [o, s.i64([0, 0, hq * d])], f"{n}/context_packed")

    # ------------------------------------------------------------------ DSA (lt2 domain)

    def dsa(self, s: _Scope, x, wp, n):
        if self.spelling == "decomposed":
            return self._dsa_dense(s, x, wp, n)
        cfg = self.cfg
        hh, dl = cfg.dsa_heads, cfg.dsa_latent_dim
        qs = s.node("MatMul", [x, wp + "qs_proj.weight"], f"{n}/qs_proj")
        ks = s.node("MatMul", [x, wp + "ks_proj.weight"], f"{n}/ks_proj")
        idx = s.node("LightningIndexer", [qs, ks], f"{n}/indexer", domain=LT2_DOMAIN, num_heads=hh, top_k=cfg.dsa_top_k, score="mean_dot")
        q = s.node("MatMul", [x, wp + "q_proj.weight"], f"{n}/q_proj")
        c = s.node("MatMul", [x, wp + "kv_proj.weight"], f"{n}/kv_proj")
        cv = s.node("Slice", [c, s.i64([0]), s.i64([cfg.dsa_value_dim]), s.i64([2])], f"{n}/latent_values")
        o = s.node(
            "SparseAttention", [q, c, cv, idx], f"{n}/sparse_attention", domain=LT2_DOMAIN,
            q_num_heads=hh, kv_num_heads=1, scale=float(dl) ** -0.5,
        )
        return s.node("MatMul", [o, wp + "o_proj.weight"], f"{n}/o_proj")

    def _dsa_dense(self, s: _Scope, x, wp, n):
        """The same DSA layer without the lt2 domain, as an exporter without sparse kernels
        writes it (the TileLang reference's form): TopK over causally masked mean scores,
        the selection scattered into a [B, L, L] mask (Equal against Range, ReduceMax),
        then dense masked softmax attention over the shared latent. O(L^2), same function."""
        cfg = self.cfg
        hh, sd, dl, dv = cfg.dsa_heads, cfg.dsa_score_dim, cfg.dsa_latent_dim, cfg.dsa_value_dim
        causal = self.shared["mask_causal"]
        qs = s.node("MatMul", [x, wp + "qs_proj.weight"], f"{n}/qs_proj")
        qs = s.node("Reshape", [qs, s.i64([0, 0, hh, sd])], f"{n}/qs_heads")
        qs = s.node("Transpose", [qs], f"{n}/qs_bhls", perm=[0, 2, 1, 3])
        ks = s.node("MatMul", [x, wp + "ks_proj.weight"], f"{n}/ks_proj")
        ks = s.node("Transpose", [ks], f"{n}/ks_bsl", perm=[0, 2, 1])
        ks = s.node("Unsqueeze", [ks, s.i64([1])], f"{n}/ks_b1sl")
        dots = s.node("MatMul", [qs, ks], f"{n}/index_dots")  # [B, H, L, L]
        score = s.node("ReduceMean", [dots, s.i64([1])], f"{n}/index_score", keepdims=0)  # [B, L, L]
        score = s.node("Where", [causal, score, s.f32(F32_MIN)], f"{n}/index_score_causal")
        kk = s.node("Min", [s.i64([cfg.dsa_top_k]), self.shared["seq_1d"]], f"{n}/top_k")
        _, idx = s.node("TopK", [score, kk], f"{n}/topk", n_out=2, axis=-1, largest=1, sorted=1)  # (values, indices)
        hit = s.node("Equal", [s.node("Unsqueeze", [idx, s.i64([3])], f"{n}/topk_indices_1"), self.shared["range"]], f"{n}/selected_hit")
        hit = s.node("Cast", [hit], f"{n}/selected_hit_f", to=TensorProto.FLOAT)
        sel = s.node("ReduceMax", [hit, s.i64([2])], f"{n}/selected_any", keepdims=0)
        sel = s.node("Cast", [sel], f"{n}/selected", to=TensorProto.BOOL)
        sel = s.node("And", [sel, causal], f"{n}/selected_causal")
        sel = s.node("Unsqueeze", [sel, s.i64([1])], f"{n}/selected_b1ll")
        q = s.node("MatMul", [x, wp + "q_proj.weight"], f"{n}/q_proj")
        q = s.node("Reshape", [q, s.i64([0, 0, hh, dl])], f"{n}/q_heads")
        q = s.node("Transpose", [q], f"{n}/q_bhld", perm=[0, 2, 1, 3])
        c = s.node("MatMul", [x, wp + "kv_proj.weight"], f"{n}/kv_proj")  # [B, L, D_lat]
        ct = s.node("Unsqueeze", [s.node("Transpose", [c], f"{n}/latent_bdl", perm=[0, 2, 1]), s.i64([1])], f"{n}/latent_b1dl")
        sc = s.node("MatMul", [q, ct], f"{n}/scores")
        sc = s.node("Mul", [sc, s.f32(float(dl) ** -0.5)], f"{n}/scores_scaled")
        sc = s.node("Where", [sel, sc, s.f32(F32_MIN)], f"{n}/scores_masked")
        p = s.node("Softmax", [sc], f"{n}/probs", axis=-1)
        cv = s.node("Slice", [c, s.i64([0]), s.i64([dv]), s.i64([2])], f"{n}/latent_values")
        cv = s.node("Unsqueeze", [cv, s.i64([1])], f"{n}/latent_values_b1lv")
        o = s.node("MatMul", [p, cv], f"{n}/context")  # [B, H, L, D_v]
        o = s.node("Transpose", [o], f"{n}/context_blhv", perm=[0, 2, 1, 3])
        o = s.node("Reshape", [o, s.i64([0, 0, hh * dv])], f"{n}/context_packed")
        return s.node("MatMul", [o, wp + "o_proj.weight"], f"{n}/o_proj")

    # ------------------------------------------------------------------ one loop iteration

    def body(self, s: _Scope, h_in, iter_name, out):
        """N layers, the loop residual and (Ouro) the per-loop final norm; returns h."""
        cfg = self.cfg
        h = h_in
        for l, mixer in enumerate(cfg.mixers):
            wp, n = f"layers.{l}.", f"layers.{l}"
            x = self.rms(s, h, wp + "mixer_norm.weight", f"{n}/mixer_norm", cfg.norm_eps)
            if mixer == "gdn":
                y = self.gdn(s, x, wp + "gdn.", f"{n}/gdn")
            elif mixer == "attn":
                y = self.attn(s, x, wp + "attn.", f"{n}/attn", 0)
            elif mixer == "swa":
                y = self.attn(s, x, wp + "attn.", f"{n}/attn", cfg.window)
            else:
                y = self.dsa(s, x, wp + "dsa.", f"{n}/dsa")
            if cfg.sandwich_norm:
                y = self.rms(s, y, wp + "mixer_post_norm.weight", f"{n}/mixer_post_norm", cfg.norm_eps)
            h = s.node("Add", [h, y], f"{n}/mixer_residual")
            x = self.rms(s, h, wp + "ffn_norm.weight", f"{n}/ffn_norm", cfg.norm_eps)
            y = _emit_ffn(s, x, wp + "ffn.", f"{n}/ffn")
            if cfg.sandwich_norm:
                y = self.rms(s, y, wp + "ffn_post_norm.weight", f"{n}/ffn_post_norm", cfg.norm_eps)
            h = s.node("Add", [h, y], f"{n}/ffn_residual")
        last = not cfg.final_norm_every_loop
        if cfg.loop_residual:
            r = s.node("Gather", ["rho", iter_name], "loop_residual/rho", axis=0)
            r = s.node("Mul", [r, h_in], "loop_residual/scaled")
            h = s.node("Add", [h, r], "loop_residual/add", out=out if last else None)
        if cfg.final_norm_every_loop:
            h = self.rms(s, h, "final_norm.weight", "loop_final_norm", cfg.norm_eps, out=out)
        elif not cfg.loop_residual:
            h = s.node("Identity", [h], "loop_out_identity", out=out)
        return h

    def exit_gate(self, s: _Scope, h, survive_in, lam_out=None, survive_out=None):
        """``lambda = Sigmoid(h W + b)``, ``survive' = survive * (1 - lambda)``."""
        z = s.node("MatMul", [h, "exit_gate.weight"], "exit_gate/matmul")
        z = s.node("Add", [z, "exit_gate.bias"], "exit_gate/add")
        lam = s.node("Sigmoid", [z], "exit_gate/lambda", out=lam_out)
        stay = s.node("Sub", [s.f32(1.0), lam], "exit_gate/stay")
        srv = s.node("Mul", [survive_in, stay], "exit_gate/survive", out=survive_out)
        return lam, srv


def build_model(
    cfg: LoopedConfig | None = None,
    weights: dict | None = None,
    unrolled: bool = False,
    *,
    spelling: str = "standard",
    graph_name: str | None = None,
    producer_name: str = "lt2.models.looped",
    doc_string: str | None = None,
    external_data: str | None = None,
    check: bool = True,
) -> onnx.ModelProto:
    """One model form: ``Loop`` (default) or unrolled, in one spelling (see the module doc).

    ``external_data``: file name (relative to the model) the initializers point into,
    laid out by ``external_data_layout`` (write it with ``write_external_data``). ``check``
    runs ``onnx.checker.check_model(full_check=True)`` (skipped for the ``ms`` spelling,
    whose ``SimplifiedLayerNormalization`` the onnx checker does not know, and for
    external data, where the caller checks the saved file).
    """
    cfg = cfg or LoopedConfig()
    cfg.validate()
    weights = make_weights(cfg) if weights is None else weights
    em = _Emitter(cfg, spelling)
    d = cfg.d_model
    used: set = set()
    main = _Scope("", used)
    fl, i64, b = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    hid_shape = ["batch", "seq", d]
    gate_shape = ["batch", "seq", 1]

    em.emit_shared(main)
    h = main.node("Gather", ["embed.weight", "input_ids"], "embed", axis=0)
    survive = None
    if cfg.exit_gate:
        shp = em.shared.get("input_shape") or main.node("Shape", ["input_ids"], "exit/input_shape")
        gshape = main.node("Concat", [shp, main.i64([1])], "exit/gate_shape", axis=0)
        survive = main.node("ConstantOfShape", [gshape], "exit/survive_init", value=numpy_helper.from_array(np.array([1.0], np.float32)))
    if unrolled:
        lams, survs = [], []
        for tau in range(cfg.n_loops):
            s = _Scope(f"loop{tau}/", used)
            s.nodes = main.nodes  # copies live in the main graph
            it = s.i64(tau)
            h = em.body(s, h, it, out=f"loop{tau}/h_out")
            if cfg.exit_gate:
                lam, srv = em.exit_gate(s, h, survive)
                lams.append(s.node("Unsqueeze", [lam, s.i64([0])], "exit_gate/lambda_1"))
                survs.append(s.node("Unsqueeze", [survive, s.i64([0])], "exit_gate/survive_before_1"))
                survive = srv
        if cfg.exit_gate:
            lam_scan = main.node("Concat", lams, "exit/lambdas", axis=0)
            surv_scan = main.node("Concat", survs, "exit/survive_before", axis=0)
    else:
        s = _Scope("loop/", used)
        cond_out = s.node("Identity", ["loop/cond_in"], "cond_passthrough", out="loop/cond_out")
        h_out = em.body(s, "loop/h_in", "loop/iter", out="loop/h_out")
        body_in = [
            helper.make_tensor_value_info("loop/iter", i64, []),
            helper.make_tensor_value_info("loop/cond_in", b, []),
            helper.make_tensor_value_info("loop/h_in", fl, hid_shape),
        ]
        body_out = [helper.make_tensor_value_info(cond_out, b, []), helper.make_tensor_value_info(h_out, fl, hid_shape)]
        loop_in = [h]
        loop_outs = ["loop_out"]
        if cfg.exit_gate:
            lam, srv = em.exit_gate(s, h_out, "loop/survive_in", lam_out="loop/lambda", survive_out="loop/survive_out")
            sb = s.node("Identity", ["loop/survive_in"], "exit_gate/survive_before", out="loop/survive_before")
            body_in.append(helper.make_tensor_value_info("loop/survive_in", fl, gate_shape))
            body_out += [
                helper.make_tensor_value_info(srv, fl, gate_shape),
                helper.make_tensor_value_info(lam, fl, gate_shape),  # scan output 0
                helper.make_tensor_value_info(sb, fl, gate_shape),  # scan output 1
            ]
            loop_in.append(survive)
            loop_outs += ["loop_survive_out", "loop_lambdas", "loop_survive_before"]
        body = helper.make_graph(s.nodes, "loop_body", body_in, body_out)
        trip = main.node("Constant", [], "loop_trip_count", value=numpy_helper.from_array(np.array(cfg.n_loops, np.int64)))
        cond = main.node("Constant", [], "loop_cond", value=numpy_helper.from_array(np.array(True)))
        res = main.node("Loop", [trip, cond, *loop_in], "loop", outs=loop_outs, body=body)
        h = res if isinstance(res, str) else res[0]
        if cfg.exit_gate:
            lam_scan, surv_scan = res[2], res[3]
    outputs = []
    if cfg.final_norm_every_loop:
        hn = h
    else:
        hn = em.rms(main, h, "final_norm.weight", "final_norm", cfg.norm_eps)
    if cfg.tied_head:
        et = main.node("Transpose", ["embed.weight"], "lm_head/embed_transposed", perm=[1, 0])
        main.node("MatMul", [hn, et], "lm_head", out="logits")
    else:
        main.node("MatMul", [hn, "lm_head.weight"], "lm_head", out="logits")
    outputs.append(helper.make_tensor_value_info("logits", fl, ["batch", "seq", cfg.vocab]))
    if cfg.exit_gate:
        t = cfg.n_loops
        p = main.node("Mul", [lam_scan, surv_scan], "exit/p_continue")  # lambda_tau * prod_{j<tau}(1 - lambda_j)
        p = main.node("Slice", [p, main.i64([0]), main.i64([t - 1]), main.i64([0])], "exit/p_first")
        last = main.node("Slice", [surv_scan, main.i64([t - 1]), main.i64([t]), main.i64([0])], "exit/p_last")
        p = main.node("Concat", [p, last], "exit/p_tbl1", axis=0)  # [T, B, L, 1]
        p = main.node("Transpose", [p], "exit/p_blt1", perm=[1, 2, 0, 3])
        main.node("Squeeze", [p, main.i64([3])], "exit/squeeze", out="exit_probs")
        outputs.append(helper.make_tensor_value_info("exit_probs", fl, ["batch", "seq", t]))

    if external_data is None:
        inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    else:
        inits = _external_initializers(weights, external_data)
    graph = helper.make_graph(
        main.nodes,
        graph_name or ("looped_unrolled" if unrolled else "looped"),
        [helper.make_tensor_value_info("input_ids", i64, ["batch", "seq"])],
        outputs,
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if "dsa" in cfg.mixers:
        opsets.append(helper.make_opsetid(LT2_DOMAIN, 1))
    if spelling == "ms":
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=producer_name,
        producer_version="0.1",
        doc_string=doc_string or "Looped LT2-family model for lt2c tests (lt2.models.looped).",
    )
    model.ir_version = IR_VERSION
    if check and spelling != "ms" and external_data is None:
        onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------- external data


def external_data_layout(weights: dict) -> dict[str, tuple[int, int]]:
    """``name -> (offset, length)`` of each weight in the raw file ``write_external_data``
    writes: float32 little-endian, in ``weights`` order, each start aligned to 64 bytes."""
    out, off = {}, 0
    for k, v in weights.items():
        n = int(np.asarray(v).size) * 4
        out[k] = (off, n)
        off += (n + 63) // 64 * 64
    return out


def write_external_data(weights: dict, path) -> int:
    """Write the raw weight file of ``external_data_layout``; returns its size in bytes."""
    layout = external_data_layout(weights)
    with open(path, "wb") as fh:
        for k, v in weights.items():
            off, n = layout[k]
            fh.seek(off)
            fh.write(np.ascontiguousarray(v, dtype="<f4").tobytes())
        end = max((o + n for o, n in layout.values()), default=0)
        fh.truncate(end)
    return Path(path).stat().st_size


def _external_initializers(weights: dict, location: str) -> list[TensorProto]:
    layout = external_data_layout(weights)
    inits = []
    for k, v in weights.items():
        t = TensorProto()
        t.name = k
        t.data_type = TensorProto.FLOAT
        t.dims.extend(np.asarray(v).shape)
        t.data_location = TensorProto.EXTERNAL
        off, n = layout[k]
        for key, val in (("location", location), ("offset", str(off)), ("length", str(n))):
            e = t.external_data.add()
            e.key, e.value = key, val
        inits.append(t)
    return inits
