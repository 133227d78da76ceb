"""PyTorch reference of the zoo's looped models (lt2.models.looped), for the benchmark.

Same weights and names as ``lt2.models.looped.make_weights`` (``[in, out]`` matrices), same
function as ``lt2.reference.looped_forward``: LT2-hybrid (GDN / full attention / DSA layers,
per-loop residual rho, final norm once, tied head) and Ouro (sandwich norms, final norm every
loop, exit gate, untied head). Two uses:

- bf16 on the GPU for the baselines: GDN through flash-linear-attention's
  ``chunk_gated_delta_rule`` (prefill) and ``fused_recurrent_gated_delta_rule`` (decode),
  called exactly as fla 0.6.0's ``GatedDeltaNet`` layer calls them (q/k L2 norm, gate and
  beta sigmoid in the kernel, V-first state); attention through
  ``torch.nn.functional.scaled_dot_product_attention``; LT2's DSA in plain PyTorch (indexer
  scores, ``torch.topk``, gather of the selected latents, attention over them), in blocks of
  queries at prefill.
- fp32/fp64 with ``use_fla=False`` (a token-by-token GDN recurrence in PyTorch) as the
  correctness reference: for the tiny zoo models against their ONNX goldens, and for the
  big shapes against the bf16 path.

Projections of one layer are fused into one matmul (q|k|v|g|a|b for GDN, q|k|v[|gate] for
attention, qs|ks|q|kv for DSA, w1|w3 for the FFN); the three depthwise convs of GDN run as
one. The decode caches are one per (loop tau, layer l), index ``tau * N + l``
(lt2-models.md section 3): GDN state fp32 ``[B, HV, V, K]`` (fla's V-first layout) plus the
conv tail ``[B, C, 3]``; K/V ``[B, H, cap, D]``; DSA index keys ``[B, cap, S]`` and
latents ``[B, cap, D_lat]``.

``compile=True`` wraps the per-layer dense parts (norms, projections, conv, RoPE, gated norm,
FFN, residuals) in ``torch.compile(dynamic=True)``; the fla kernels, SDPA and the DSA
selection run eagerly between them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

try:  # flash-linear-attention 0.6.0 (carried as wheels to the GPU machine)
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    HAVE_FLA = True
    FLA_ERROR = ""
except Exception as _ex:  # noqa: BLE001
    HAVE_FLA = False
    FLA_ERROR = f"{type(_ex).__name__}: {_ex}"


# --------------------------------------------------------------------------- weights


def gen_weights(cfg, device="cuda", dtype=torch.bfloat16, seed=0) -> dict:
    """Random weights of ``cfg`` drawn on ``device``: ``lt2.models.looped.weight_spec`` (the
    names, shapes, distributions and draw order of the zoo's ``make_weights``), drawn with a
    seeded torch generator (not make_weights' numbers; numpy takes about a minute for 1.5B
    values). Matrices and norm weights in ``dtype``, ``A_log``/``dt_bias`` fp32. RoPE caches are
    left out (``Model`` builds its own tables for the lengths it runs)."""
    from lt2.models.looped import weight_spec

    g = torch.Generator(device=device)
    g.manual_seed(seed)
    w = {}

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g, device=device, dtype=torch.float32) * (hi - lo) + lo

    for name, kind, shape, par in weight_spec(cfg):
        if kind == "normal":
            w[name] = torch.randn(shape, generator=g, device=device, dtype=dtype).mul_(par[0])
        elif kind == "norm":
            w[name] = torch.randn(shape, generator=g, device=device, dtype=torch.float32).mul_(par[0]).add_(1.0).to(dtype)
        elif kind == "A_log":
            w[name] = torch.log(uniform(shape, par[0], par[1]))
        elif kind == "dt_bias":
            dt = torch.exp(uniform(shape, math.log(par[0]), math.log(par[1])))
            w[name] = dt + torch.log(-torch.expm1(-dt))
        else:
            raise ValueError(f"unknown weight kind {kind!r}")
    return w


def count_params(cfg) -> dict:
    """Matmul parameters per layer kind and head, for the FLOP/byte floors."""
    d, f = cfg.d_model, cfg.ffn_hidden
    h, hv, dk, dv = cfg.gdn_heads, cfg.gdn_hv, cfg.gdn_k, cfg.gdn_v
    gdn = d * (2 * h * dk + 2 * hv * dv + 2 * hv) + hv * dv * d
    hq, hk, hd = cfg.attn_q_heads, cfg.attn_kv_heads, cfg.attn_head_dim
    attn = d * (hq + 2 * hk) * hd + hq * hd * d + (d * hq * hd if cfg.attn_output_gate else 0)
    dl = cfg.dsa_latent_dim
    dsa = d * (cfg.dsa_heads * cfg.dsa_score_dim + cfg.dsa_score_dim + cfg.dsa_heads * dl + dl) + cfg.dsa_heads * cfg.dsa_value_dim * d
    ffn = 3 * d * f
    per = {"gdn": gdn, "attn": attn, "swa": attn, "dsa": dsa}
    layers = sum(per[m] + ffn for m in cfg.mixers)
    return {"layers": layers, "head": d * cfg.vocab, "embed": d * cfg.vocab, "gdn": gdn, "attn": attn, "dsa": dsa, "ffn": ffn}


# --------------------------------------------------------------------------- small ops

# Emulation of ``lt2c --dtype bf16|fp16`` in an fp32 model (the reference of lt2c's reduced-
# precision rows): every product with a weight rounds its activation operand and its weight to
# this dtype and multiplies in fp32. None (the default) leaves products alone.
LINEAR_ROUND = None


def lin(x, w):
    if LINEAR_ROUND is not None:
        x = x.to(LINEAR_ROUND).to(x.dtype)
        w = w.to(LINEAR_ROUND).to(w.dtype)
    return x @ w



def rms(x, w, eps):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w.float()).to(x.dtype)


def rope(x, cos, sin, interleaved):
    """x [B, L, H, D]; cos/sin [L, D/2] fp32 (already gathered at the positions)."""
    xf = x.float()
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    if interleaved:
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
        y = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    else:
        half = xf.shape[-1] // 2
        x1, x2 = xf[..., :half], xf[..., half:]
        y = torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
    return y.to(x.dtype)


def gdn_naive(q, k, v, a, b, A_log, dt_bias, scale, state=None, l2_eps=1e-6):
    """The GDN token recurrence (lt2-models.md section 2) in the inputs' precision, promoted
    to at least fp32, with fla's calling convention: raw gate ``a`` and beta logits ``b``
    ``[B, L, HV]``, q/k before their L2 norm ``[B, L, H, K]``, v ``[B, L, HV, V]``, state
    ``[B, HV, V, K]`` (V-first). Returns ``(o [B, L, HV, V] in v.dtype, state)``."""
    ct = torch.promote_types(q.dtype, torch.float32)
    B, L, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    qf, kf, vf = q.to(ct), k.to(ct), v.to(ct)
    qf = qf / torch.sqrt((qf * qf).sum(-1, keepdim=True) + l2_eps)
    kf = kf / torch.sqrt((kf * kf).sum(-1, keepdim=True) + l2_eps)
    if HV != H:
        qf = qf.repeat_interleave(HV // H, dim=2)
        kf = kf.repeat_interleave(HV // H, dim=2)
    g = -torch.exp(A_log.to(ct)) * F.softplus(a.to(ct) + dt_bias.to(ct))
    alpha = torch.exp(g)
    beta = torch.sigmoid(b.to(ct))
    S = torch.zeros(B, HV, V, K, dtype=ct, device=q.device) if state is None else state.to(ct).clone()
    out = torch.empty(B, L, HV, V, dtype=ct, device=q.device)
    for t in range(L):
        S = S * alpha[:, t, :, None, None]
        kt = kf[:, t]  # [B, HV, K]
        kv = torch.einsum("bhvk,bhk->bhv", S, kt)
        u = beta[:, t, :, None] * (vf[:, t] - kv)
        S = S + u[..., :, None] * kt[..., None, :]
        out[:, t] = torch.einsum("bhvk,bhk->bhv", S, qf[:, t] * scale)
    return out.to(v.dtype), S.to(torch.float32)


def gdn_kernel(q, k, v, a, b, A_log, dt_bias, scale, state, mode, use_fla):
    if use_fla:
        fn = chunk_gated_delta_rule if mode == "chunk" else fused_recurrent_gated_delta_rule
        return fn(
            q=q, k=k, v=v, g=a, beta=b, scale=scale, initial_state=state, output_final_state=True,
            use_qk_l2norm_in_kernel=True, use_beta_sigmoid_in_kernel=True, state_v_first=True,
            use_gate_in_kernel=True, A_log=A_log, dt_bias=dt_bias,
        )
    return gdn_naive(q, k, v, a, b, A_log, dt_bias, scale, state)


def dsa_select_attend(qbar, ks, q, c, heads, dv, topk, scale, q_start, blk):
    """LT2's DSA for queries ``q_start ..`` over keys ``0 .. S-1`` (causal, absolute
    positions): indexer score ``(mean_h qs) . ks`` (fp32), top-min(k, t+1) per query,
    attention over the selected latents. qbar [B, T, S_dim] fp32, ks [B, S, S_dim],
    q [B, T, H*D_lat], c [B, S, D_lat]. Queries in blocks of ``blk``. Returns [B, T, H*dv]."""
    B, T, _ = q.shape
    dl = c.shape[-1]
    out = torch.empty(B, T, heads, dv, dtype=q.dtype, device=q.device)
    bidx = torch.arange(B, device=q.device)[:, None, None]
    for s0 in range(0, T, blk):
        s1 = min(T, s0 + blk)
        n_keys = q_start + s1  # keys visible to the last query of the block
        sc = torch.matmul(qbar[:, s0:s1], ks[:, :n_keys].float().transpose(1, 2))  # [B, n, S]
        pos = torch.arange(q_start + s0, q_start + s1, device=q.device)[:, None]
        col = torch.arange(n_keys, device=q.device)[None, :]
        future = col > pos
        sc.masked_fill_(future[None], float("-inf"))
        kk = min(topk, n_keys)
        idx = sc.topk(kk, dim=-1, sorted=False).indices  # [B, n, kk]
        valid = idx <= pos[None]  # rows with fewer than kk causal keys picked some future ones
        cg = c[bidx, idx]  # [B, n, kk, D_lat]
        qb = q[:, s0:s1].reshape(B, s1 - s0, heads, dl)
        logit = torch.matmul(qb, cg.transpose(-1, -2)).float() * scale  # [B, n, H, kk]
        logit.masked_fill_(~valid[:, :, None, :], float("-inf"))
        p = torch.softmax(logit, dim=-1).to(q.dtype)
        out[:, s0:s1] = torch.matmul(p, cg[..., :dv])  # [B, n, H, dv]
    return out.reshape(B, T, heads * dv)


# --------------------------------------------------------------------------- dense layer parts
# (plain functions so torch.compile can wrap them; every argument a tensor or a constant)


def _gdn_pre_prefill(h, norm_w, w_in, conv_w, eps, c_qkv):
    x = rms(h, norm_w, eps)
    z = lin(x, w_in)
    qkv = z[..., :c_qkv]
    L = qkv.shape[1]
    xt = F.pad(qkv.transpose(1, 2), (conv_w.shape[-1] - 1, 0))
    y = F.silu(F.conv1d(xt, conv_w[:, None, :], groups=c_qkv)).transpose(1, 2)
    tail = xt[..., xt.shape[-1] - (conv_w.shape[-1] - 1):].clone()  # last 3 conv inputs (zeros if L < 3)
    del L
    return y, z[..., c_qkv:], tail


def _gdn_pre_decode(h, norm_w, w_in, conv_w, conv_tail, eps, c_qkv):
    x = rms(h, norm_w, eps)
    z = lin(x, w_in)  # [B, 1, N]
    win = torch.cat((conv_tail, z[:, 0, :c_qkv, None]), dim=-1)  # [B, C, 4]
    y = F.silu((win.float() * conv_w.float()).sum(-1)).to(h.dtype)[:, None, :]
    return y, z[..., c_qkv:], win[..., 1:]


def _gdn_post(h, o, gz, onorm_w, w_o, ffn_norm_w, w13, w2, eps, gdn_eps, post_w, ffn_post_w):
    B, L, HV, V = o.shape
    y = rms(o, onorm_w, gdn_eps) * F.silu(gz.reshape(B, L, HV, V))
    y = lin(y.reshape(B, L, HV * V), w_o)
    if post_w is not None:
        y = rms(y, post_w, eps)
    h = h + y
    return _ffn(h, ffn_norm_w, w13, w2, eps, ffn_post_w)


def _ffn(h, ffn_norm_w, w13, w2, eps, ffn_post_w):
    x = rms(h, ffn_norm_w, eps)
    u = lin(x, w13)
    f = u.shape[-1] // 2
    y = lin(F.silu(u[..., :f]) * u[..., f:], w2)
    if ffn_post_w is not None:
        y = rms(y, ffn_post_w, eps)
    return h + y


def _attn_pre(h, norm_w, w_qkv, cos, sin, eps, hq, hk, hd, interleaved):
    x = rms(h, norm_w, eps)
    z = lin(x, w_qkv)
    B, L, _ = z.shape
    q = rope(z[..., : hq * hd].reshape(B, L, hq, hd), cos, sin, interleaved)
    k = rope(z[..., hq * hd : (hq + hk) * hd].reshape(B, L, hk, hd), cos, sin, interleaved)
    v = z[..., (hq + hk) * hd : (hq + 2 * hk) * hd].reshape(B, L, hk, hd)
    gate = z[..., (hq + 2 * hk) * hd :]  # empty without the output gate
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), gate


def _attn_post(h, o, gate, w_o, ffn_norm_w, w13, w2, eps, post_w, ffn_post_w):
    B, H, L, D = o.shape
    y = o.transpose(1, 2).reshape(B, L, H * D)
    if gate.shape[-1]:
        y = y * torch.sigmoid(gate)
    y = lin(y, w_o)
    if post_w is not None:
        y = rms(y, post_w, eps)
    h = h + y
    return _ffn(h, ffn_norm_w, w13, w2, eps, ffn_post_w)


def _dsa_pre(h, norm_w, w_in, eps, heads, sdim, dl):
    x = rms(h, norm_w, eps)
    z = lin(x, w_in)
    B, L, _ = z.shape
    qs = z[..., : heads * sdim]
    ks = z[..., heads * sdim : heads * sdim + sdim]
    q = z[..., heads * sdim + sdim : heads * sdim + sdim + heads * dl]
    c = z[..., heads * sdim + sdim + heads * dl :]
    qbar = qs.reshape(B, L, heads, sdim).float().mean(2)
    return qbar, ks, q, c


def _dsa_post(h, o, w_o, ffn_norm_w, w13, w2, eps, post_w, ffn_post_w):
    y = lin(o, w_o)
    if post_w is not None:
        y = rms(y, post_w, eps)
    h = h + y
    return _ffn(h, ffn_norm_w, w13, w2, eps, ffn_post_w)


def _loop_end(h, h_in, rho_t, final_w, eps, norm_every, exit_w, exit_b):
    if rho_t is not None:
        h = h + rho_t * h_in
    lam = None
    if norm_every:
        h = rms(h, final_w, eps)
    if exit_w is not None:
        lam = torch.sigmoid(lin(h, exit_w).float() + exit_b.float())
    return h, lam


# --------------------------------------------------------------------------- the model


class Model:
    def __init__(self, cfg, weights: dict, *, device="cuda", dtype=torch.bfloat16, use_fla=True, compile=False,
                 max_pos=8192, rope_tables=None, dsa_block=512):
        self.cfg = cfg
        self.dtype = dtype
        self.device = device
        self.use_fla = use_fla and HAVE_FLA
        self.dsa_block = dsa_block
        c = cfg
        W = lambda n: weights[n].to(device=device, dtype=dtype)  # noqa: E731
        F32 = lambda n: weights[n].to(device=device, dtype=torch.float32)  # noqa: E731
        self.embed = W("embed.weight")
        self.layers = []
        for l, m in enumerate(c.mixers):
            p = f"layers.{l}."
            L = {"kind": m, "norm": W(p + "mixer_norm.weight"), "ffn_norm": W(p + "ffn_norm.weight"),
                 "w13": torch.cat((W(p + "ffn.w1.weight"), W(p + "ffn.w3.weight")), 1), "w2": W(p + "ffn.w2.weight"),
                 "post": W(p + "mixer_post_norm.weight") if c.sandwich_norm else None,
                 "ffn_post": W(p + "ffn_post_norm.weight") if c.sandwich_norm else None}
            if m == "gdn":
                q = p + "gdn."
                L["w_in"] = torch.cat([W(q + n + "_proj.weight") for n in ("q", "k", "v", "g", "a", "b")], 1)
                L["conv"] = torch.cat([W(q + n + "_conv.weight")[:, 0, :] for n in ("q", "k", "v")], 0)
                L["A_log"], L["dt_bias"] = F32(q + "A_log"), F32(q + "dt_bias")
                L["onorm"], L["w_o"] = W(q + "o_norm.weight"), W(q + "o_proj.weight")
            elif m in ("attn", "swa"):
                if m == "swa":
                    raise NotImplementedError("sliding-window layers are not part of the benchmark")
                a = p + "attn."
                parts = [W(a + "q_proj.weight"), W(a + "k_proj.weight"), W(a + "v_proj.weight")]
                if c.attn_output_gate:
                    parts.append(W(a + "gate_proj.weight"))
                L["w_qkv"], L["w_o"] = torch.cat(parts, 1), W(a + "o_proj.weight")
            elif m == "dsa":
                s = p + "dsa."
                L["w_in"] = torch.cat([W(s + n + "_proj.weight") for n in ("qs", "ks", "q", "kv")], 1)
                L["w_o"] = W(s + "o_proj.weight")
            self.layers.append(L)
        self.rho = W("rho") if c.loop_residual else None
        self.final = W("final_norm.weight")
        self.exit_w = W("exit_gate.weight") if c.exit_gate else None
        self.exit_b = W("exit_gate.bias") if c.exit_gate else None
        self.head = self.embed.t() if c.tied_head else W("lm_head.weight")
        self.h, self.hv, self.dk, self.dv = c.gdn_heads, c.gdn_hv, c.gdn_k, c.gdn_v
        self.c_qkv = 2 * self.h * self.dk + self.hv * self.dv
        self.gdn_scale = self.dk ** -0.5
        if rope_tables is not None:
            self.cos = rope_tables[0].to(device=device, dtype=torch.float32)
            self.sin = rope_tables[1].to(device=device, dtype=torch.float32)
        elif c.has_rope:
            inv = float(c.rope_theta) ** (-torch.arange(0, c.attn_head_dim, 2, dtype=torch.float64) / c.attn_head_dim)
            ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv[None, :]
            self.cos, self.sin = torch.cos(ang).float().to(device), torch.sin(ang).float().to(device)
        fns = dict(gdn_pre_prefill=_gdn_pre_prefill, gdn_pre_decode=_gdn_pre_decode, gdn_post=_gdn_post,
                   attn_pre=_attn_pre, attn_post=_attn_post, dsa_pre=_dsa_pre, dsa_post=_dsa_post, loop_end=_loop_end)
        if compile:
            fns = {k: torch.compile(v, dynamic=True) for k, v in fns.items()}
        self.f = fns

    # ---------------------------------------------------------------- caches

    def cache_bytes(self, batch, cap):
        """Bytes of the per-(loop, layer) decode caches for ``batch`` sequences of ``cap`` tokens."""
        c, b, n = self.cfg, 0, 0
        es = torch.finfo(self.dtype).bits // 8
        for L in self.layers:
            if L["kind"] == "gdn":
                b += batch * (self.hv * self.dv * self.dk * 4 + self.c_qkv * 3 * es)
            elif L["kind"] == "attn":
                b += batch * cap * 2 * c.attn_kv_heads * c.attn_head_dim * es
            elif L["kind"] == "dsa":
                b += batch * cap * (c.dsa_score_dim + c.dsa_latent_dim) * es
            n += 1
        return b * c.n_loops

    def random_cache(self, batch, ctx, cap=None, seed=0):
        """Caches as after a prefill of ``ctx`` tokens, filled with random values (the decode
        time does not depend on them): GDN states ~ N(0, 0.05^2), K/V/latents ~ N(0, 1)."""
        c = self.cfg
        cap = cap or ctx + 1
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        dev, dt = self.device, self.dtype
        caches = []
        for _ in range(c.n_loops):
            for L in self.layers:
                if L["kind"] == "gdn":
                    caches.append({"S": torch.randn(batch, self.hv, self.dv, self.dk, generator=g, device=dev).mul_(0.05),
                                   "conv": torch.randn(batch, self.c_qkv, 3, generator=g, device=dev, dtype=dt)})
                elif L["kind"] == "attn":
                    shape = (batch, c.attn_kv_heads, cap, c.attn_head_dim)
                    caches.append({"k": torch.randn(shape, generator=g, device=dev, dtype=dt),
                                   "v": torch.randn(shape, generator=g, device=dev, dtype=dt)})
                else:
                    caches.append({"ks": torch.randn(batch, cap, c.dsa_score_dim, generator=g, device=dev, dtype=dt),
                                   "c": torch.randn(batch, cap, c.dsa_latent_dim, generator=g, device=dev, dtype=dt)})
        return caches

    # ---------------------------------------------------------------- forward

    @torch.no_grad()
    def prefill(self, ids, cache_cap=None, all_logits=False):
        """Run the prompt ``ids [B, L]``. Returns (logits [B, L or 1, vocab] fp32, caches).
        With ``cache_cap`` the K/V and DSA caches get that capacity (for decode after it),
        else they hold the prefill's own tensors."""
        c, f = self.cfg, self.f
        B, Lq = ids.shape
        eps = c.norm_eps
        h = self.embed[ids]
        cos = self.cos[:Lq] if c.has_rope else None
        sin = self.sin[:Lq] if c.has_rope else None
        caches = []
        for tau in range(c.n_loops):
            h_in = h
            for L in self.layers:
                if L["kind"] == "gdn":
                    y, rest, tail = f["gdn_pre_prefill"](h, L["norm"], L["w_in"], L["conv"], eps, self.c_qkv)
                    hk, hv, dk, dv = self.h, self.hv, self.dk, self.dv
                    q = y[..., : hk * dk].reshape(B, Lq, hk, dk)
                    k = y[..., hk * dk : 2 * hk * dk].reshape(B, Lq, hk, dk)
                    v = y[..., 2 * hk * dk :].reshape(B, Lq, hv, dv)
                    gz = rest[..., : hv * dv]
                    a = rest[..., hv * dv : hv * dv + hv]
                    b = rest[..., hv * dv + hv :]
                    o, S = gdn_kernel(q, k, v, a, b, L["A_log"], L["dt_bias"], self.gdn_scale, None, "chunk", self.use_fla)
                    h = f["gdn_post"](h, o, gz, L["onorm"], L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, c.gdn_norm_eps,
                                      L["post"], L["ffn_post"])
                    caches.append({"S": S, "conv": tail})
                elif L["kind"] == "attn":
                    q, k, v, gate = f["attn_pre"](h, L["norm"], L["w_qkv"], cos, sin, eps, c.attn_q_heads, c.attn_kv_heads,
                                                  c.attn_head_dim, c.rope_interleaved)
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=c.attn_q_heads != c.attn_kv_heads)
                    h = f["attn_post"](h, o, gate, L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, L["post"], L["ffn_post"])
                    if cache_cap:
                        kc = k.new_empty(B, c.attn_kv_heads, cache_cap, c.attn_head_dim)
                        vc = torch.empty_like(kc)
                        kc[:, :, :Lq], vc[:, :, :Lq] = k, v
                        caches.append({"k": kc, "v": vc})
                    else:
                        caches.append({"k": k, "v": v})
                else:
                    qbar, ks, q, cl = f["dsa_pre"](h, L["norm"], L["w_in"], eps, c.dsa_heads, c.dsa_score_dim, c.dsa_latent_dim)
                    o = dsa_select_attend(qbar, ks, q, cl, c.dsa_heads, c.dsa_value_dim, c.dsa_top_k,
                                          c.dsa_latent_dim ** -0.5, 0, self.dsa_block)
                    h = f["dsa_post"](h, o, L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, L["post"], L["ffn_post"])
                    if cache_cap:
                        ksc = ks.new_empty(B, cache_cap, c.dsa_score_dim)
                        cc = cl.new_empty(B, cache_cap, c.dsa_latent_dim)
                        ksc[:, :Lq], cc[:, :Lq] = ks, cl
                        caches.append({"ks": ksc, "c": cc})
                    else:  # copies: slices of the fused projection would keep all of it alive
                        caches.append({"ks": ks.contiguous(), "c": cl.contiguous()})
            h, _ = f["loop_end"](h, h_in, self.rho[tau] if self.rho is not None else None, self.final, eps,
                                 c.final_norm_every_loop, self.exit_w, self.exit_b)
        hs = h if all_logits else h[:, -1:]
        if not c.final_norm_every_loop:
            hs = rms(hs, self.final, eps)
        return lin(hs, self.head).float(), caches

    @torch.no_grad()
    def decode(self, tok, caches, pos: int):
        """One token per sequence (``tok [B]``) at position ``pos`` (all sequences at the same
        position; caches hold positions < pos). Updates ``caches``; returns logits [B, vocab]."""
        c, f = self.cfg, self.f
        B = tok.shape[0]
        eps = c.norm_eps
        h = self.embed[tok][:, None, :]
        cos = self.cos[pos : pos + 1] if c.has_rope else None
        sin = self.sin[pos : pos + 1] if c.has_rope else None
        i = 0
        for tau in range(c.n_loops):
            h_in = h
            for L in self.layers:
                cache = caches[i]
                i += 1
                if L["kind"] == "gdn":
                    y, rest, tail = f["gdn_pre_decode"](h, L["norm"], L["w_in"], L["conv"], cache["conv"], eps, self.c_qkv)
                    hk, hv, dk, dv = self.h, self.hv, self.dk, self.dv
                    q = y[..., : hk * dk].reshape(B, 1, hk, dk)
                    k = y[..., hk * dk : 2 * hk * dk].reshape(B, 1, hk, dk)
                    v = y[..., 2 * hk * dk :].reshape(B, 1, hv, dv)
                    gz = rest[..., : hv * dv]
                    a = rest[..., hv * dv : hv * dv + hv]
                    b = rest[..., hv * dv + hv :]
                    o, S = gdn_kernel(q, k, v, a, b, L["A_log"], L["dt_bias"], self.gdn_scale, cache["S"], "recurrent",
                                      self.use_fla)
                    cache["S"], cache["conv"] = S, tail
                    h = f["gdn_post"](h, o, gz, L["onorm"], L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, c.gdn_norm_eps,
                                      L["post"], L["ffn_post"])
                elif L["kind"] == "attn":
                    q, k, v, gate = f["attn_pre"](h, L["norm"], L["w_qkv"], cos, sin, eps, c.attn_q_heads, c.attn_kv_heads,
                                                  c.attn_head_dim, c.rope_interleaved)
                    cache["k"][:, :, pos : pos + 1] = k
                    cache["v"][:, :, pos : pos + 1] = v
                    o = F.scaled_dot_product_attention(q, cache["k"][:, :, : pos + 1], cache["v"][:, :, : pos + 1],
                                                       enable_gqa=c.attn_q_heads != c.attn_kv_heads)
                    h = f["attn_post"](h, o, gate, L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, L["post"], L["ffn_post"])
                else:
                    qbar, ks, q, cl = f["dsa_pre"](h, L["norm"], L["w_in"], eps, c.dsa_heads, c.dsa_score_dim, c.dsa_latent_dim)
                    cache["ks"][:, pos : pos + 1] = ks
                    cache["c"][:, pos : pos + 1] = cl
                    o = dsa_select_attend(qbar, cache["ks"][:, : pos + 1], q, cache["c"][:, : pos + 1], c.dsa_heads,
                                          c.dsa_value_dim, c.dsa_top_k, c.dsa_latent_dim ** -0.5, pos, 1)
                    h = f["dsa_post"](h, o, L["w_o"], L["ffn_norm"], L["w13"], L["w2"], eps, L["post"], L["ffn_post"])
            h, _ = f["loop_end"](h, h_in, self.rho[tau] if self.rho is not None else None, self.final, eps,
                                 c.final_norm_every_loop, self.exit_w, self.exit_b)
        if not c.final_norm_every_loop:
            h = rms(h, self.final, eps)
        return lin(h[:, 0], self.head).float()
