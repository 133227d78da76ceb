"""PyTorch reference of the zoo's looped models (LT2 Full+GDN, GDN+DSA, sliding window, pure
looped GDN, Ouro), fp32, with the same weight names as the numpy reference and the ONNX
builders (``lt2.models.looped.make_weights``): ``LoopedModel(cfg).state_dict()`` has exactly
the keys of ``make_weights(cfg)``, so ``LoopedModel.from_weights(cfg, make_weights(cfg))``
loads a zoo model and its logits can be compared with ``lt2.reference.looped_forward``.

Written from /work/shared/spec/lt2-models.md (like ``reference.looped_forward``), not from the
ONNX graphs:

- GDN: projections ``x @ W`` (weights ``[in, out]``), depthwise causal conv (kernel 4) + SiLU,
  per-head L2 norm of q/k, ``g = -exp(A_log) * softplus(x W_a + dt_bias)``,
  ``beta = sigmoid(x W_b)``, the gated delta rule **by its token recurrence** (fp32 state),
  gated RMSNorm per head, ``W_o``. Grouped values: key head h serves value heads
  ``h*g .. h*g+g-1``.
- DSA (LT2's variant): indexer ``mean_h(q_s[t,h] . k_s[s])`` over causal s, top-k (ties to the
  lower s), then **dense masked** attention over the shared latent ``c`` (keys all of ``c``,
  values its first ``dsa_value_dim`` dims), scale ``D_lat^-1/2``.
- Attention: RoPE (interleaved pairs or rotate-half), ``torch.nn.functional.
  scaled_dot_product_attention(is_causal=True)`` (a boolean window mask for ``swa``), optional
  sigmoid output gate.

The GDN recurrence, the causal conv and the two DSA steps are ``torch.library.custom_op``s in
the ``lt2`` namespace (``lt2::gated_delta_rule``, ``lt2::causal_conv1d``,
``lt2::lightning_indexer``, ``lt2::sparse_attention``): eager they run the definitions above;
``lt2.torch_export`` translates them to ONNX ``LinearAttention``-27 / ``CausalConvWithState``-27
and ``lt2::LightningIndexer`` / ``lt2::SparseAttention`` (onnx-ops.md). With ``use_custom_ops=
False`` the model calls the same functions directly (plain torch, nothing to translate).

Everything is fp32 (the state and accumulations too); the numpy reference is float64.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.looped import LoopedConfig

# --------------------------------------------------------------------------- op definitions (plain torch)


def gated_delta_rule_ref(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, num_heads: int, scale: float) -> Tensor:
    """Gated delta rule by its token recurrence (LinearAttention-27, ``update_rule = gated_delta``,
    ``q_num_heads = kv_num_heads = num_heads``).

    ``q, k [B, T, H*K]``, ``v [B, T, H*V]``, ``g`` (log decay) and ``beta`` ``[B, T, H]``::

        S = exp(g_t) S;  u = beta_t (v_t - S^T k_t);  S = S + k_t u^T;  o_t = scale S^T q_t

    Returns ``[B, T, H*V]``; the state ``S [B, H, K, V]`` starts at 0 and is fp32.
    """
    b, t, _ = q.shape
    h = num_heads
    dk = q.shape[-1] // h
    dv = v.shape[-1] // h
    qf = q.float().reshape(b, t, h, dk)
    kf = k.float().reshape(b, t, h, dk)
    vf = v.float().reshape(b, t, h, dv)
    gf = g.float().reshape(b, t, h)
    bf = beta.float().reshape(b, t, h)
    s = torch.zeros(b, h, dk, dv, dtype=torch.float32, device=q.device)
    outs = []
    for i in range(t):
        s = s * torch.exp(gf[:, i])[:, :, None, None]
        kv = torch.einsum("bhkv,bhk->bhv", s, kf[:, i])
        u = bf[:, i, :, None] * (vf[:, i] - kv)
        s = s + kf[:, i, :, :, None] * u[:, :, None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", qf[:, i], s))
    if not outs:
        return q.new_zeros(b, 0, h * dv)
    return torch.stack(outs, dim=1).reshape(b, t, h * dv).to(q.dtype)


def causal_conv1d_ref(x: Tensor, weight: Tensor, activation: str) -> Tensor:
    """CausalConvWithState-27 without past state: ``x [B, C, L]``, depthwise ``weight [C, 1, k]``
    (cross-correlation; ``w[c, 0, k-1]`` weighs the current token), zero left padding,
    ``activation`` ``"silu"`` or ``"none"``. Returns ``[B, C, L]``."""
    c, _, kk = weight.shape
    y = F.conv1d(F.pad(x, (kk - 1, 0)), weight, groups=c)
    if activation in ("silu", "swish"):
        y = F.silu(y)
    elif activation != "none":
        raise ValueError(f"unsupported activation {activation!r}")
    return y


def lightning_indexer_ref(q_index: Tensor, k_index: Tensor, num_heads: int, top_k: int) -> Tensor:
    """``lt2::LightningIndexer`` with ``score = "mean_dot"``: ``q_index [B, T, H*D]``,
    ``k_index [B, S, D]`` -> int64 ``[B, T, top_k]``: for query t (absolute position
    ``t + S - T``) the causal positions with the highest ``mean_h(q[t,h] . k[s])``, highest
    first, ties to the lower s; slots past the number of causal positions hold -1."""
    b, t, hd = q_index.shape
    s = k_index.shape[1]
    d = hd // num_heads
    qh = q_index.float().reshape(b, t, num_heads, d)
    score = torch.einsum("bthd,bsd->bts", qh, k_index.float()) / num_heads  # mean over heads
    pos = torch.arange(t, device=q_index.device)[:, None] + (s - t)
    causal = torch.arange(s, device=q_index.device)[None, :] <= pos  # [T, S]
    keyed = torch.where(causal[None], score, torch.full_like(score, -math.inf))
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices  # stable: ties keep the lower s first
    n = min(top_k, s)
    out = torch.full((b, t, top_k), -1, dtype=torch.int64, device=q_index.device)
    out[:, :, :n] = order[:, :, :n]
    count = (pos[:, 0] + 1).clamp(0, s)  # causal positions per query
    out = torch.where(torch.arange(top_k, device=q_index.device)[None, None, :] >= count[None, :, None], -1, out)
    return out


def sparse_attention_ref(query: Tensor, key: Tensor, value: Tensor, indices: Tensor, q_num_heads: int, kv_num_heads: int, scale: float) -> Tensor:
    """``lt2::SparseAttention`` by dense masking: the selected positions (``indices [B, T, top_k]``,
    -1 = skip, shared by all heads) become a boolean ``[B, T, S]`` mask over dense scores
    ``scale * q . k``; softmax over the selected positions, applied to ``value``; a row with no
    selected position gives zeros. ``query [B, T, Hq*Dk]``, ``key [B, S, Hkv*Dk]``,
    ``value [B, S, Hkv*Dv]`` -> ``[B, T, Hq*Dv]``."""
    b, t, _ = query.shape
    s = key.shape[1]
    hq, hk = q_num_heads, kv_num_heads
    dk = query.shape[-1] // hq
    dv = value.shape[-1] // hk
    grp = hq // hk
    q = query.float().reshape(b, t, hq, dk).transpose(1, 2)  # [B, Hq, T, Dk]
    k = key.float().reshape(b, s, hk, dk).transpose(1, 2)
    v = value.float().reshape(b, s, hk, dv).transpose(1, 2)
    if grp > 1:  # KV head j serves query heads j*g .. j*g+g-1
        k = k.repeat_interleave(grp, dim=1)
        v = v.repeat_interleave(grp, dim=1)
    valid = indices >= 0
    safe = torch.where(valid, indices, torch.zeros_like(indices))
    mask = torch.zeros(b, t, s, dtype=torch.float32, device=query.device)
    mask = mask.scatter_add(2, safe, valid.float()) > 0  # [B, T, S]
    sc = scale * (q @ k.transpose(-1, -2))  # [B, Hq, T, S]
    sc = sc.masked_fill(~mask[:, None], -math.inf)
    any_sel = mask.any(dim=-1)[:, None, :, None]  # [B, 1, T, 1]
    p = torch.softmax(torch.where(any_sel, sc, torch.zeros_like(sc)), dim=-1)
    p = torch.where(any_sel, p, torch.zeros_like(p))
    o = (p @ v).transpose(1, 2).reshape(b, t, hq * dv)
    return o.to(query.dtype)


# --------------------------------------------------------------------------- custom ops (lt2 namespace)


@torch.library.custom_op("lt2::gated_delta_rule", mutates_args=())
def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, num_heads: int, scale: float) -> Tensor:
    return gated_delta_rule_ref(q, k, v, g, beta, num_heads, scale)


@gated_delta_rule.register_fake
def _(q, k, v, g, beta, num_heads, scale):
    return v.new_empty(v.shape)


@torch.library.custom_op("lt2::causal_conv1d", mutates_args=())
def causal_conv1d(x: Tensor, weight: Tensor, activation: str) -> Tensor:
    return causal_conv1d_ref(x, weight, activation)


@causal_conv1d.register_fake
def _(x, weight, activation):
    return x.new_empty(x.shape)


@torch.library.custom_op("lt2::lightning_indexer", mutates_args=())
def lightning_indexer(q_index: Tensor, k_index: Tensor, num_heads: int, top_k: int) -> Tensor:
    return lightning_indexer_ref(q_index, k_index, num_heads, top_k)


@lightning_indexer.register_fake
def _(q_index, k_index, num_heads, top_k):
    return q_index.new_empty((q_index.shape[0], q_index.shape[1], top_k), dtype=torch.int64)


@torch.library.custom_op("lt2::sparse_attention", mutates_args=())
def sparse_attention(query: Tensor, key: Tensor, value: Tensor, indices: Tensor, q_num_heads: int, kv_num_heads: int, scale: float) -> Tensor:
    return sparse_attention_ref(query, key, value, indices, q_num_heads, kv_num_heads, scale)


@sparse_attention.register_fake
def _(query, key, value, indices, q_num_heads, kv_num_heads, scale):
    dv = value.shape[-1] // kv_num_heads
    return query.new_empty((query.shape[0], query.shape[1], q_num_heads * dv))


# --------------------------------------------------------------------------- modules


class _Weight(nn.Module):
    """A module holding one ``weight`` (so parameter names read ``<path>.weight``)."""

    def __init__(self, *shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape))


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm over the last axis (``torch.nn.functional.rms_norm``)."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class GDN(nn.Module):
    def __init__(self, cfg: LoopedConfig, ops):
        super().__init__()
        self.cfg, self.ops = cfg, ops
        d, h, hv, dk, dv, kc = cfg.d_model, cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v, cfg.conv_kernel
        self.q_proj, self.k_proj, self.v_proj = _Weight(d, h * dk), _Weight(d, h * dk), _Weight(d, hv * dv)
        self.q_conv, self.k_conv, self.v_conv = _Weight(h * dk, 1, kc), _Weight(h * dk, 1, kc), _Weight(hv * dv, 1, kc)
        self.a_proj, self.b_proj = _Weight(d, hv), _Weight(d, hv)
        self.A_log = nn.Parameter(torch.zeros(hv))
        self.dt_bias = nn.Parameter(torch.zeros(hv))
        self.g_proj = _Weight(d, hv * dv)
        self.o_norm = _Weight(dv)
        self.o_proj = _Weight(hv * dv, d)

    def _proj_conv(self, x, proj, conv):
        y = x @ proj.weight
        return self.ops.causal_conv1d(y.transpose(1, 2), conv.weight, "silu").transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.cfg
        h, hv, dk, dv = cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v
        grp = hv // h

        def l2(y):
            y = y.unflatten(-1, (h, dk))
            y = y / torch.sqrt((y * y).sum(-1, keepdim=True) + cfg.qk_l2_eps)
            if grp > 1:  # key head h serves value heads h*g .. h*g+g-1
                y = y.repeat_interleave(grp, dim=2)
            return y.flatten(-2)

        q = l2(self._proj_conv(x, self.q_proj, self.q_conv))
        k = l2(self._proj_conv(x, self.k_proj, self.k_conv))
        v = self._proj_conv(x, self.v_proj, self.v_conv)
        g = -torch.exp(self.A_log) * F.softplus(x @ self.a_proj.weight + self.dt_bias)
        beta = torch.sigmoid(x @ self.b_proj.weight)
        o = self.ops.gated_delta_rule(q, k, v, g, beta, hv, cfg.gdn_scale)
        o = rms_norm(o.unflatten(-1, (hv, dv)), self.o_norm.weight, cfg.gdn_norm_eps)
        o = o * F.silu((x @ self.g_proj.weight).unflatten(-1, (hv, dv)))
        return o.flatten(-2) @ self.o_proj.weight


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, heads: int, interleaved: bool) -> Tensor:
    """RoPE on ``x [B, L, H*D]`` with ``cos, sin [L, D/2]``: pairs ``(2i, 2i+1)`` (interleaved)
    or ``(i, i + D/2)`` (rotate-half); ``(x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)``."""
    xh = x.unflatten(-1, (heads, -1))  # [B, L, H, D]
    c, s = cos[:, None, :], sin[:, None, :]  # [L, 1, D/2]
    if interleaved:
        x1, x2 = xh[..., 0::2], xh[..., 1::2]
        y = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    else:
        half = xh.shape[-1] // 2
        x1, x2 = xh[..., :half], xh[..., half:]
        y = torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)
    return y.flatten(-2)


class Attn(nn.Module):
    def __init__(self, cfg: LoopedConfig, window: int = 0):
        super().__init__()
        self.cfg, self.window = cfg, window
        d, hq, hk, hd = cfg.d_model, cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
        self.q_proj, self.k_proj, self.v_proj = _Weight(d, hq * hd), _Weight(d, hk * hd), _Weight(d, hk * hd)
        self.o_proj = _Weight(hq * hd, d)
        if cfg.attn_output_gate:
            self.gate_proj = _Weight(d, hq * hd)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cfg = self.cfg
        hq, hk = cfg.attn_q_heads, cfg.attn_kv_heads
        q = apply_rope(x @ self.q_proj.weight, cos, sin, hq, cfg.rope_interleaved)
        k = apply_rope(x @ self.k_proj.weight, cos, sin, hk, cfg.rope_interleaved)
        v = x @ self.v_proj.weight
        q, k, v = (t.unflatten(-1, (n, -1)).transpose(1, 2) for t, n in ((q, hq), (k, hk), (v, hk)))  # [B, H, L, D]
        if hq != hk:  # KV head j serves query heads j*g .. j*g+g-1
            k = k.repeat_interleave(hq // hk, dim=1)
            v = v.repeat_interleave(hq // hk, dim=1)
        if self.window:
            length = x.shape[1]
            i = torch.arange(length, device=x.device)
            keep = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).flatten(-2)
        if cfg.attn_output_gate:
            a = a * torch.sigmoid(x @ self.gate_proj.weight)
        return a @ self.o_proj.weight


class DSA(nn.Module):
    def __init__(self, cfg: LoopedConfig, ops):
        super().__init__()
        self.cfg, self.ops = cfg, ops
        d, hh = cfg.d_model, cfg.dsa_heads
        self.qs_proj = _Weight(d, hh * cfg.dsa_score_dim)
        self.ks_proj = _Weight(d, cfg.dsa_score_dim)
        self.q_proj = _Weight(d, hh * cfg.dsa_latent_dim)
        self.kv_proj = _Weight(d, cfg.dsa_latent_dim)
        self.o_proj = _Weight(hh * cfg.dsa_value_dim, d)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.cfg
        hh = cfg.dsa_heads
        idx = self.ops.lightning_indexer(x @ self.qs_proj.weight, x @ self.ks_proj.weight, hh, cfg.dsa_top_k)
        q = x @ self.q_proj.weight
        c = x @ self.kv_proj.weight  # shared latent: keys all of it, values its first dsa_value_dim dims
        o = self.ops.sparse_attention(q, c, c[:, :, : cfg.dsa_value_dim], idx, hh, 1, float(cfg.dsa_latent_dim) ** -0.5)
        return o @ self.o_proj.weight


class FFN(nn.Module):
    def __init__(self, d: int, f: int):
        super().__init__()
        self.w1, self.w3, self.w2 = _Weight(d, f), _Weight(d, f), _Weight(f, d)

    def forward(self, x: Tensor) -> Tensor:
        return (F.silu(x @ self.w1.weight) * (x @ self.w3.weight)) @ self.w2.weight


class Layer(nn.Module):
    def __init__(self, cfg: LoopedConfig, mixer: str, ops):
        super().__init__()
        self.mixer = mixer
        d = cfg.d_model
        self.mixer_norm = _Weight(d)
        if mixer == "gdn":
            self.gdn = GDN(cfg, ops)
        elif mixer in ("attn", "swa"):
            self.attn = Attn(cfg, cfg.window if mixer == "swa" else 0)
        elif mixer == "dsa":
            self.dsa = DSA(cfg, ops)
        else:
            raise ValueError(f"unknown mixer {mixer!r}")
        if cfg.sandwich_norm:
            self.mixer_post_norm = _Weight(d)
        self.ffn_norm = _Weight(d)
        self.ffn = FFN(d, cfg.ffn_hidden)
        if cfg.sandwich_norm:
            self.ffn_post_norm = _Weight(d)
        self.eps, self.sandwich = cfg.norm_eps, cfg.sandwich_norm

    def forward(self, h: Tensor, cos: Optional[Tensor], sin: Optional[Tensor]) -> Tensor:
        x = rms_norm(h, self.mixer_norm.weight, self.eps)
        if self.mixer == "gdn":
            y = self.gdn(x)
        elif self.mixer == "dsa":
            y = self.dsa(x)
        else:
            y = self.attn(x, cos, sin)
        if self.sandwich:
            y = rms_norm(y, self.mixer_post_norm.weight, self.eps)
        h = h + y
        y = self.ffn(rms_norm(h, self.ffn_norm.weight, self.eps))
        if self.sandwich:
            y = rms_norm(y, self.ffn_post_norm.weight, self.eps)
        return h + y


class _Rope(nn.Module):
    def __init__(self, max_positions: int, half: int):
        super().__init__()
        self.cos_cache = nn.Parameter(torch.zeros(max_positions, half), requires_grad=False)
        self.sin_cache = nn.Parameter(torch.zeros(max_positions, half), requires_grad=False)


class _ExitGate(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d, 1))
        self.bias = nn.Parameter(torch.zeros(1))


class _Ops:
    """The mixers' kernels: the ``lt2`` custom ops (exportable) or the plain torch functions."""

    def __init__(self, custom: bool):
        if custom:
            self.gated_delta_rule = torch.ops.lt2.gated_delta_rule
            self.causal_conv1d = torch.ops.lt2.causal_conv1d
            self.lightning_indexer = torch.ops.lt2.lightning_indexer
            self.sparse_attention = torch.ops.lt2.sparse_attention
        else:
            self.gated_delta_rule = gated_delta_rule_ref
            self.causal_conv1d = causal_conv1d_ref
            self.lightning_indexer = lightning_indexer_ref
            self.sparse_attention = sparse_attention_ref


class LoopedModel(nn.Module):
    """One looped model of ``lt2.models.looped`` (any zoo family). ``forward(input_ids [B, L])``
    returns ``logits [B, L, vocab]``, or ``(logits, exit_probs [B, L, T])`` with an exit gate.
    Parameter names equal ``make_weights(cfg)``'s keys (the RoPE caches are frozen parameters).
    ``rope_lookup``: how the RoPE tables are read for positions ``0..L-1``: ``"gather"``
    (``F.embedding(arange(L), cache)``, exports as Range + Gather) or ``"slice"``
    (``cache[:L]``, exports as a Slice whose end is the symbolic sequence length)."""

    def __init__(self, cfg: LoopedConfig, use_custom_ops: bool = True, rope_lookup: str = "gather"):
        super().__init__()
        cfg.validate()
        if rope_lookup not in ("gather", "slice"):
            raise ValueError(f"rope_lookup must be 'gather' or 'slice', got {rope_lookup!r}")
        self.cfg = cfg
        self.rope_lookup = rope_lookup
        ops = _Ops(use_custom_ops)
        d = cfg.d_model
        self.embed = _Weight(cfg.vocab, d)
        self.layers = nn.ModuleList([Layer(cfg, m, ops) for m in cfg.mixers])
        if cfg.loop_residual:
            self.rho = nn.Parameter(torch.zeros(cfg.n_loops, d))
        self.final_norm = _Weight(d)
        if cfg.exit_gate:
            self.exit_gate = _ExitGate(d)
        if not cfg.tied_head:
            self.lm_head = _Weight(d, cfg.vocab)
        if cfg.has_rope:
            self.rope = _Rope(cfg.max_positions, cfg.attn_head_dim // 2)

    @classmethod
    def from_weights(cls, cfg: LoopedConfig, weights: dict, use_custom_ops: bool = True, rope_lookup: str = "gather") -> "LoopedModel":
        """A model holding ``weights`` (numpy arrays keyed as ``make_weights`` writes them), fp32."""
        m = cls(cfg, use_custom_ops, rope_lookup)
        sd = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise KeyError(f"weight layout mismatch: missing {missing}, unexpected {unexpected}")
        return m.eval()

    def forward(self, input_ids: Tensor):
        cfg = self.cfg
        h = F.embedding(input_ids, self.embed.weight)  # Gather (weight[ids] would export as GatherND)
        cos = sin = None
        if cfg.has_rope:
            length = input_ids.shape[1]
            if self.rope_lookup == "gather":  # Gather(cache, Range(0, L)): positions as ids
                pos = torch.arange(length, device=input_ids.device)
                cos, sin = F.embedding(pos, self.rope.cos_cache), F.embedding(pos, self.rope.sin_cache)
            else:  # Slice(cache, 0, L) with a symbolic end, as HF-style `cos_cached[:seq_len]` exports
                cos, sin = self.rope.cos_cache[:length], self.rope.sin_cache[:length]
        lams = []
        for tau in range(cfg.n_loops):  # unrolled: T copies reading the same weights
            h_in = h
            for layer in self.layers:
                h = layer(h, cos, sin)
            if cfg.loop_residual:
                h = h + self.rho[tau] * h_in
            if cfg.final_norm_every_loop:
                h = rms_norm(h, self.final_norm.weight, cfg.norm_eps)
            if cfg.exit_gate:
                lams.append(torch.sigmoid(h @ self.exit_gate.weight + self.exit_gate.bias)[..., 0])
        if not cfg.final_norm_every_loop:
            h = rms_norm(h, self.final_norm.weight, cfg.norm_eps)
        head = self.embed.weight.t() if cfg.tied_head else self.lm_head.weight
        logits = h @ head
        if not cfg.exit_gate:
            return logits
        # p_tau = lambda_tau prod_{j<tau}(1 - lambda_j) (tau < T-1), p_{T-1} = prod_{j<T-1}(1 - lambda_j)
        probs, survive = [], torch.ones_like(lams[0])
        for tau in range(cfg.n_loops - 1):
            probs.append(lams[tau] * survive)
            survive = survive * (1.0 - lams[tau])
        probs.append(survive)
        return logits, torch.stack(probs, dim=-1)


def zoo_model(name: str, use_custom_ops: bool = True, size: str = "tiny", rope_lookup: str = "gather"):
    """``(cfg, weights, LoopedModel)`` of a zoo model (``lt2.zoo.registry``), weights from
    ``lt2.models.looped.make_weights`` (the zoo's own generator)."""
    from .models.looped import make_weights
    from .zoo import registry

    cfg = registry.get(name).config(size)
    weights = make_weights(cfg)
    return cfg, weights, LoopedModel.from_weights(cfg, weights, use_custom_ops, rope_lookup)


def outputs_dict(cfg: LoopedConfig, out) -> dict[str, np.ndarray]:
    """A model's forward result as ``{"logits": ..., ["exit_probs": ...]}`` numpy arrays."""
    if cfg.exit_gate:
        return {"logits": out[0].detach().cpu().numpy(), "exit_probs": out[1].detach().cpu().numpy()}
    return {"logits": out.detach().cpu().numpy()}
