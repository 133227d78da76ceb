"""Numpy reference of the ops lt2c compiles, with ONNX semantics.

Precision: every function casts its floating-point inputs to **float64**, computes in
float64, and returns float64 arrays (integer inputs such as position ids stay integer).
The ONNX oracles (onnx.reference, onnxruntime) compute in float32, so comparisons against
them use a relative tolerance (lt2 uses ``||a - b|| / ||b||``, see ``lt2.oracles.rel_err``).

Layouts follow the ONNX ops they mirror:

- ``rms_norm``          RMSNormalization-23 (normalises over axes ``axis..rank-1``).
- ``causal_conv1d``     CausalConvWithState-27: input ``[B, C, L]`` (channels first),
                        depthwise weight ``[C, 1, k]``, optional bias ``[C]`` and
                        past state ``[B, C, k-1]``; returns ``(output, present_state)``.
- ``linear_attention``  LinearAttention-27: q, k, v packed ``[B, T, H*D]``, decay
                        ``[B, T, H_kv]`` or ``[B, T, H_kv*D_k]`` (log space), beta
                        ``[B, T, H_kv]`` or ``[B, T, 1]``, state ``[B, H_kv, D_k, D_v]``;
                        returns ``(output [B, T, H_q*D_v], present_state)``.
- ``rotary_embedding``  RotaryEmbedding-23: input ``[B, L, H*D]`` (with ``num_heads``) or
                        ``[B, H, L, D]``; caches ``[max_pos, rot/2]`` indexed by
                        ``position_ids [B, L]`` (or ``[B, L, rot/2]`` without ids).
- ``attention``         Attention-23/25 without cache: ``[B, L, H*D]`` packed (with
                        ``q_num_heads``/``kv_num_heads``) or ``[B, H, L, D]``; GQA by
                        interleave-repeat of the KV heads (KV head j serves query heads
                        ``j*g .. j*g+g-1``).

Weights of projections are stored ``[in, out]`` (``y = x @ W``), as MatMul reads them.
``looped_forward`` is the whole forward of every looped model (``lt2.models.looped``: LT2
Full+GDN, GDN+DSA, sliding window, pure GDN, Ouro with sandwich norms and exit gate), written
from lt2-models.md and research/lt2-spec.md directly and *not* from the ONNX graph, so it
checks the graphs; ``lt2_forward`` is its logits (the example model). DSA layers use the
``lt2`` domain oracles of ``lt2.lt2_ops``.
"""

from __future__ import annotations

import numpy as np

_F = np.float64


def _f(x):
    return np.asarray(x, dtype=_F)


# --------------------------------------------------------------------------- pointwise


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))`` (overflow-safe), float64."""
    x = _f(x)
    return np.exp(-np.logaddexp(0.0, -x))


def silu(x):
    """SiLU / swish: ``x * sigmoid(x)``, float64."""
    x = _f(x)
    return x * sigmoid(x)


def softplus(x):
    """``log(1 + exp(x))`` (overflow-safe), float64."""
    return np.logaddexp(0.0, _f(x))


# --------------------------------------------------------------------------- norms


def rms_norm(x, scale, eps=1e-5, axis=-1):
    """RMSNormalization-23: ``x / sqrt(mean(x^2 over axes axis..end) + eps) * scale``.

    ``scale`` broadcasts against the normalised trailing axes (ONNX's ``Scale``).
    """
    x = _f(x)
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    ms = np.mean(x * x, axis=axes, keepdims=True)
    return x / np.sqrt(ms + eps) * _f(scale)


def l2_norm(x, eps=1e-6, axis=-1):
    """``x / sqrt(sum(x^2, axis) + eps)``: the per-head q/k normalisation of a GDN layer."""
    x = _f(x)
    return x / np.sqrt(np.sum(x * x, axis=axis, keepdims=True) + eps)


# --------------------------------------------------------------------------- GDN pieces


def causal_conv1d(x, weight, bias=None, past_state=None, activation="none"):
    """CausalConvWithState-27: causal depthwise 1-D convolution with carried state.

    ``x`` is ``[B, C, L]``, ``weight`` ``[C, 1, k]`` (cross-correlation, as ONNX Conv:
    ``y[b,c,t] = sum_j w[c,0,j] * xp[b,c,t+j]`` where ``xp`` is ``x`` left-padded with
    ``past_state`` (zeros when absent), so ``w[c,0,k-1]`` weighs the current token).
    ``activation`` is ``"none"``, ``"silu"`` or ``"swish"``. Returns ``(y [B, C, L],
    present_state [B, C, k-1])`` where the state is the last ``k-1`` columns of ``xp``.
    """
    x = _f(x)
    w = _f(weight)
    b, c, length = x.shape
    if w.shape[0] != c or w.shape[1] != 1:
        raise ValueError(f"weight must be [C, 1, k] with C={c}, got {w.shape}")
    k = w.shape[2]
    pad = np.zeros((b, c, k - 1), _F) if past_state is None else _f(past_state)
    xp = np.concatenate([pad, x], axis=2)
    y = np.zeros((b, c, length), _F)
    for j in range(k):
        y += w[None, :, 0, j, None] * xp[:, :, j : j + length]
    if bias is not None:
        y += _f(bias)[None, :, None]
    if activation in ("silu", "swish"):
        y = silu(y)
    elif activation != "none":
        raise ValueError(f"unsupported activation {activation!r}")
    return y, xp[:, :, xp.shape[2] - (k - 1) :]


def linear_attention(
    query,
    key,
    value,
    past_state=None,
    decay=None,
    beta=None,
    *,
    q_num_heads,
    kv_num_heads,
    scale=0.0,
    update_rule="gated_delta",
):
    """LinearAttention-27 by its token recurrence (the definition; no chunking).

    Per KV head, with state ``S`` of shape ``[D_k, D_v]`` (``S_0 = past_state`` or 0)::

        S = exp(g_t) * S                  # "gated", "gated_delta" (g per head or per key dim)
        u = beta_t * (v_t - S^T k_t)      # "delta", "gated_delta"; else u = v_t
        S = S + k_t u^T
        o_t = scale * S^T q_t             # every query head of the KV head's group

    ``scale`` 0 means ``D_k ** -0.5``. Returns ``(output [B, T, H_q*D_v],
    present_state [B, H_kv, D_k, D_v])``.
    """
    if update_rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ValueError(f"unsupported update_rule {update_rule!r}")
    gated = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise ValueError(f"update_rule {update_rule!r} does not match the decay/beta inputs given")
    if q_num_heads % kv_num_heads:
        raise ValueError("q_num_heads must be a multiple of kv_num_heads")
    q, k, v = _f(query), _f(key), _f(value)
    b, t, _ = q.shape
    hq, hk = q_num_heads, kv_num_heads
    dk = q.shape[2] // hq
    dv = v.shape[2] // hk
    grp = hq // hk
    q = q.reshape(b, t, hq, dk)
    k = k.reshape(b, t, hk, dk)
    v = v.reshape(b, t, hk, dv)
    if gated:
        g = _f(decay)
        g = g.reshape(b, t, hk, 1) if g.shape[2] == hk else g.reshape(b, t, hk, dk)
    if delta:
        bt = _f(beta).reshape(b, t, -1)  # [B, T, H_kv] or [B, T, 1]
    s = np.zeros((b, hk, dk, dv), _F) if past_state is None else _f(past_state).copy()
    sc = dk**-0.5 if not scale else float(scale)
    out = np.zeros((b, t, hq, dv), _F)
    for i in range(t):
        if gated:
            s = s * np.exp(g[:, i])[..., None]  # [B,H,Dk|1,1] over Dv
        u = v[:, i]
        if delta:
            u = bt[:, i, :, None] * (u - np.einsum("bhkv,bhk->bhv", s, k[:, i]))
        s = s + k[:, i, :, :, None] * u[:, :, None, :]
        s_read = np.repeat(s, grp, axis=1) if grp > 1 else s
        out[:, i] = sc * np.einsum("bhk,bhkv->bhv", q[:, i], s_read)
    return out.reshape(b, t, hq * dv), s


def gated_delta_rule(q, k, v, g, beta, *, num_heads, scale=0.0, initial_state=None):
    """Gated delta rule (GDN): ``linear_attention(..., update_rule="gated_delta")`` with
    ``q_num_heads == kv_num_heads == num_heads``; ``g`` is the log decay ``[B, T, H]``."""
    return linear_attention(
        q, k, v, initial_state, g, beta,
        q_num_heads=num_heads, kv_num_heads=num_heads, scale=scale, update_rule="gated_delta",
    )


# --------------------------------------------------------------------------- attention


def rope_cache(max_positions, rotary_dim, theta=1e4):
    """``(cos, sin)`` caches ``[max_positions, rotary_dim/2]``: angle ``p * theta^(-2i/rotary_dim)``."""
    inv = float(theta) ** (-np.arange(0, rotary_dim, 2, dtype=_F) / rotary_dim)
    ang = np.arange(max_positions, dtype=_F)[:, None] * inv[None, :]
    return np.cos(ang), np.sin(ang)


def rotary_embedding(
    x, cos_cache, sin_cache, position_ids=None, *, interleaved=False, num_heads=0, rotary_embedding_dim=0
):
    """RotaryEmbedding-23.

    Rotates pairs of the first ``rotary_embedding_dim`` (0 = whole head) channels of each
    head: pairs ``(2i, 2i+1)`` if ``interleaved`` else ``(i, i + rot/2)`` (rotate-half);
    ``(x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)``. ``x`` is ``[B, L, H*D]`` (needs
    ``num_heads``) or ``[B, H, L, D]``. Caches are gathered by ``position_ids [B, L]``, or
    are already ``[B, L, rot/2]`` when ``position_ids`` is None.
    """
    x = _f(x)
    if x.ndim == 3:
        if not num_heads:
            raise ValueError("3-D input needs num_heads")
        b, length, hd = x.shape
        xh = x.reshape(b, length, num_heads, hd // num_heads)
    elif x.ndim == 4:
        xh = x.transpose(0, 2, 1, 3)
    else:
        raise ValueError(f"input must be rank 3 or 4, got {x.shape}")
    d = xh.shape[-1]
    rot = rotary_embedding_dim or d
    cos, sin = _f(cos_cache), _f(sin_cache)
    if position_ids is not None:
        pid = np.asarray(position_ids)
        cos, sin = cos[pid], sin[pid]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [B, L, 1, rot/2]
    xr, xp = xh[..., :rot], xh[..., rot:]
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
    else:
        x1, x2 = xr[..., : rot // 2], xr[..., rot // 2 :]
    re = x1 * cos - x2 * sin
    im = x1 * sin + x2 * cos
    if interleaved:
        yr = np.stack([re, im], axis=-1).reshape(xr.shape)
    else:
        yr = np.concatenate([re, im], axis=-1)
    y = np.concatenate([yr, xp], axis=-1)
    return y.reshape(x.shape) if x.ndim == 3 else y.transpose(0, 2, 1, 3)


def attention(q, k, v, *, q_num_heads=None, kv_num_heads=None, is_causal=False, scale=None, window=0):
    """Attention-23 (no cache, no mask): ``softmax(scale * q k^T [+ causal]) v`` per head.

    ``window`` > 0 keeps, for query i, only keys ``j > i - window`` (the current key and
    ``window - 1`` predecessors with ``is_causal``): Attention-25's
    ``left_window_size = window - 1``.

    3-D packed ``[B, L, H*D]`` inputs need ``q_num_heads`` and ``kv_num_heads`` and give
    ``[B, L, H_q*D_v]``; 4-D ``[B, H, L, D]`` inputs give ``[B, H_q, L, D_v]``. ``scale``
    None means ``D ** -0.5``. Causal is top-left aligned (query i sees keys ``j <= i``), as
    ONNX without past keys. GQA: KV head j serves query heads ``j*g .. j*g+g-1``.
    """
    q, k, v = _f(q), _f(k), _f(v)
    packed = q.ndim == 3
    if packed:
        b, lq, _ = q.shape
        lk = k.shape[1]
        q = q.reshape(b, lq, q_num_heads, -1).transpose(0, 2, 1, 3)
        k = k.reshape(b, lk, kv_num_heads, -1).transpose(0, 2, 1, 3)
        v = v.reshape(b, lk, kv_num_heads, -1).transpose(0, 2, 1, 3)
    hq, hk = q.shape[1], k.shape[1]
    if hq != hk:
        k = np.repeat(k, hq // hk, axis=1)
        v = np.repeat(v, hq // hk, axis=1)
    sc = q.shape[-1] ** -0.5 if scale is None else float(scale)
    s = sc * np.einsum("bhid,bhjd->bhij", q, k)
    if is_causal or window:
        lq, lk = s.shape[-2:]
        mask = np.ones((lq, lk), bool)
        if is_causal:
            mask &= np.arange(lk)[None, :] <= np.arange(lq)[:, None]
        if window:
            mask &= np.arange(lk)[None, :] > np.arange(lq)[:, None] - window
        s = np.where(mask, s, -np.inf)
    s = s - np.max(s, axis=-1, keepdims=True)
    p = np.exp(s)
    p /= np.sum(p, axis=-1, keepdims=True)
    y = np.einsum("bhij,bhjd->bhid", p, v)
    if packed:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return y


# --------------------------------------------------------------------------- blocks


def swiglu_ffn(x, w1, w2, w3):
    """SwiGLU FFN: ``(silu(x W1) * (x W3)) W2`` with ``[in, out]`` weights."""
    x = _f(x)
    return (silu(x @ _f(w1)) * (x @ _f(w3))) @ _f(w2)


def gdn_mixer(x, w, prefix, cfg):
    """GDN token mixer of lt2-models.md section 2 on normalised input ``x [B, L, d]``.

    ``w[prefix + name]`` holds ``q_proj, k_proj, v_proj, a_proj, b_proj, g_proj, o_proj``
    (``.weight``, ``[in, out]``), ``q_conv, k_conv, v_conv`` (``.weight``, ``[C, 1, k]``),
    ``A_log [HV]``, ``dt_bias [HV]``, ``o_norm.weight [V]``. With grouped values
    (``cfg.gdn_v_heads`` = HV > H = ``cfg.gdn_heads``) the normalised q/k heads are repeated,
    key head h serving value heads ``h*g .. h*g+g-1`` (flash-linear-attention's
    ``repeat(x, '... h d -> ... (h g) d')``), and the decay, beta and state are per value head.
    """
    x = _f(x)
    bsz, length, _ = x.shape
    h, dk, dv = cfg.gdn_heads, cfg.gdn_k, cfg.gdn_v
    hv = getattr(cfg, "gdn_v_heads", 0) or h

    def proj_conv(tag):
        y = x @ _f(w[f"{prefix}{tag}_proj.weight"])
        y, _ = causal_conv1d(y.transpose(0, 2, 1), w[f"{prefix}{tag}_conv.weight"], activation="silu")
        return y.transpose(0, 2, 1)

    q = l2_norm(proj_conv("q").reshape(bsz, length, h, dk), cfg.qk_l2_eps)
    k = l2_norm(proj_conv("k").reshape(bsz, length, h, dk), cfg.qk_l2_eps)
    q = np.repeat(q, hv // h, axis=2).reshape(bsz, length, hv * dk)
    k = np.repeat(k, hv // h, axis=2).reshape(bsz, length, hv * dk)
    v = proj_conv("v")
    g = -np.exp(_f(w[f"{prefix}A_log"])) * softplus(x @ _f(w[f"{prefix}a_proj.weight"]) + _f(w[f"{prefix}dt_bias"]))
    beta = sigmoid(x @ _f(w[f"{prefix}b_proj.weight"]))
    o, _ = gated_delta_rule(q, k, v, g, beta, num_heads=hv, scale=dk**-0.5)
    o = rms_norm(o.reshape(bsz, length, hv, dv), w[f"{prefix}o_norm.weight"], cfg.gdn_norm_eps)
    o = o * silu((x @ _f(w[f"{prefix}g_proj.weight"])).reshape(bsz, length, hv, dv))
    return o.reshape(bsz, length, hv * dv) @ _f(w[f"{prefix}o_proj.weight"])


def attention_mixer(x, w, prefix, cfg, position_ids, cos_cache, sin_cache, window=0, kv_hook=None):
    """Causal attention mixer with RoPE (interleaved or rotate-half per ``cfg``), an
    optional sliding ``window`` and, with ``cfg.attn_output_gate``, the sigmoid output
    gate ``attn * sigmoid(x W_gate)`` before ``W_o``. ``kv_hook(k, v) -> (k, v)`` may
    replace keys (after RoPE) and values (early exit's K/V of skipped loops)."""
    x = _f(x)
    q = x @ _f(w[f"{prefix}q_proj.weight"])
    k = x @ _f(w[f"{prefix}k_proj.weight"])
    v = x @ _f(w[f"{prefix}v_proj.weight"])
    q = rotary_embedding(q, cos_cache, sin_cache, position_ids, interleaved=cfg.rope_interleaved, num_heads=cfg.attn_q_heads)
    k = rotary_embedding(k, cos_cache, sin_cache, position_ids, interleaved=cfg.rope_interleaved, num_heads=cfg.attn_kv_heads)
    if kv_hook is not None:
        k, v = kv_hook(k, v)
    a = attention(q, k, v, q_num_heads=cfg.attn_q_heads, kv_num_heads=cfg.attn_kv_heads, is_causal=True, window=window)
    if getattr(cfg, "attn_output_gate", False):
        a = a * sigmoid(x @ _f(w[f"{prefix}gate_proj.weight"]))
    return a @ _f(w[f"{prefix}o_proj.weight"])


def dsa_mixer(x, w, prefix, cfg, stats=None):
    """LT2's DSA mixer (research/lt2-spec.md b.3) on normalised input ``x [B, L, d]``::

        q_s = x W_qs [B,L,H*S];  k_s = x W_ks [B,L,S]
        idx = top-k over s <= t of mean_h(q_s[t,h] . k_s[s])   (lt2 LightningIndexer)
        q = x W_q [B,L,H*D_lat];  c = x W_kv [B,L,D_lat]        (one shared latent)
        o[t,h] = softmax_{s in idx_t}(D_lat^-1/2 q[t,h] . c[s]) c[s, :D_v]
        out = concat_h(o) W_o

    ``stats`` (a list) receives, per call, the smallest gap between the top-k-th and the
    next causal score over all queries with more than top-k causal positions (how far the
    golden is from a tie that float32 rounding could flip).
    """
    from .lt2_ops import indexer_scores, lightning_indexer, sparse_attention

    x = _f(x)
    hh, k = cfg.dsa_heads, cfg.dsa_top_k
    dl = cfg.dsa_value_dim + cfg.dsa_tail_dim
    qs = x @ _f(w[f"{prefix}qs_proj.weight"])
    ks = x @ _f(w[f"{prefix}ks_proj.weight"])
    idx = lightning_indexer(qs, ks, num_heads=hh, top_k=k)
    if stats is not None:
        sc = indexer_scores(qs, ks, num_heads=hh)
        gaps = []
        for t in range(k, sc.shape[1]):
            srt = np.sort(sc[:, t, : t + 1], axis=-1)[:, ::-1]
            gaps.append(np.min(srt[:, k - 1] - srt[:, k]))
        stats.append(min(gaps) if gaps else np.inf)
    q = x @ _f(w[f"{prefix}q_proj.weight"])
    c = x @ _f(w[f"{prefix}kv_proj.weight"])
    o = sparse_attention(q, c, c[:, :, : cfg.dsa_value_dim], idx, q_num_heads=hh, kv_num_heads=1, scale=dl**-0.5)
    return o @ _f(w[f"{prefix}o_proj.weight"])


def looped_forward(weights, input_ids, cfg, stats=None, exit_threshold=1.0, chunks=None):
    """Whole forward of a looped model (``lt2.models.looped``), float64, from lt2-models.md.

    ``weights``: name -> array, the initializer names of the ONNX model (see
    ``lt2.models.looped.make_weights``); ``cfg``: a ``LoopedConfig``. Returns
    ``{"logits": [B, L, vocab]}`` plus ``"exit_probs": [B, L, T]`` with an exit gate::

        h = embed[ids]
        for tau in range(T):
            h_in = h
            for each layer l:                                   # mixer: gdn | attn | swa | dsa
                h += [post_norm](Mixer_l(RMSNorm(h)))           # post norms: Ouro's sandwich
                h += [post_norm](SwiGLU_l(RMSNorm(h)))
            h = h + rho[tau] * h_in                             # loop_residual
            if final_norm_every_loop: h = RMSNorm_final(h)      # Ouro
            if exit_gate: lambda_tau = sigmoid(h w_exit + b_exit)
        logits = LMHead(h if final_norm_every_loop else RMSNorm_final(h))
        exit_probs: p_tau = lambda_tau prod_{j<tau}(1 - lambda_j) (tau < T-1), p_{T-1} = prod_{j<T-1}(1 - lambda_j)

    ``stats``: see ``dsa_mixer``.

    ``exit_threshold`` < 1 (Ouro's early exit, as lt2c's sessions run it): token t exits at the
    first loop tau < T-1 with ``1 - prod_{j<=tau}(1 - lambda_j) >= exit_threshold`` (else the
    last), and its logits come from its state after that loop. ``chunks`` (lengths summing to
    L; default one chunk) says how the sequence was fed (prompt, then one token per decode
    step): once every token of a chunk has exited, its later loops are skipped, and their keys
    and values for the chunk's positions are those of the last loop run. Attention mixers only.
    """
    w = weights
    opt = lambda name, default: getattr(cfg, name, default)  # noqa: E731 (ExampleConfig-like configs)
    ids = np.asarray(input_ids)
    embed = _f(w["embed.weight"])
    h = embed[ids]
    bsz, length = ids.shape
    pos = np.broadcast_to(np.arange(length, dtype=np.int64), (bsz, length))
    cos, sin = w.get("rope.cos_cache"), w.get("rope.sin_cache")
    sandwich, every, gate = opt("sandwich_norm", False), opt("final_norm_every_loop", False), opt("exit_gate", False)
    lams = []
    early = exit_threshold < 1.0
    if early and not (gate and every):
        raise ValueError("early exit needs the exit gate and the per-loop final norm")
    bounds = np.cumsum([0] + list(chunks or [length]))
    if bounds[-1] != length:
        raise ValueError(f"chunks {chunks} do not sum to the length {length}")
    chunk_done = [None] * (len(bounds) - 1)  # last loop run per chunk, once all its tokens exited
    survive = np.ones((bsz, length))
    exit_at = np.full((bsz, length), -1)
    h_sel = None
    kv = {}

    def kv_hook_for(tau, l):
        def hook(k, v):
            k, v = k.copy(), v.copy()
            for c, done in enumerate(chunk_done):
                if done is not None and tau > done:
                    a, b = bounds[c], bounds[c + 1]
                    k[:, a:b], v[:, a:b] = kv[(done, l)][0][:, a:b], kv[(done, l)][1][:, a:b]
            kv[(tau, l)] = (k, v)
            return k, v
        return hook if early else None

    for tau in range(cfg.n_loops):
        h_in = h
        for l, mixer in enumerate(cfg.mixers):
            lp = f"layers.{l}."
            x = rms_norm(h, w[f"{lp}mixer_norm.weight"], cfg.norm_eps)
            if mixer == "gdn":
                y = gdn_mixer(x, w, f"{lp}gdn.", cfg)
            elif mixer == "attn":
                y = attention_mixer(x, w, f"{lp}attn.", cfg, pos, cos, sin, kv_hook=kv_hook_for(tau, l))
            elif mixer == "swa":
                y = attention_mixer(x, w, f"{lp}attn.", cfg, pos, cos, sin, window=cfg.window, kv_hook=kv_hook_for(tau, l))
            elif mixer == "dsa":
                y = dsa_mixer(x, w, f"{lp}dsa.", cfg, stats)
            else:
                raise ValueError(f"unknown mixer {mixer!r}")
            if sandwich:
                y = rms_norm(y, w[f"{lp}mixer_post_norm.weight"], cfg.norm_eps)
            h = h + y
            x = rms_norm(h, w[f"{lp}ffn_norm.weight"], cfg.norm_eps)
            y = swiglu_ffn(x, w[f"{lp}ffn.w1.weight"], w[f"{lp}ffn.w2.weight"], w[f"{lp}ffn.w3.weight"])
            if sandwich:
                y = rms_norm(y, w[f"{lp}ffn_post_norm.weight"], cfg.norm_eps)
            h = h + y
        if opt("loop_residual", True):
            h = h + _f(w["rho"])[tau] * h_in
        if every:
            h = rms_norm(h, w["final_norm.weight"], cfg.norm_eps)
        if gate:
            lams.append(sigmoid(h @ _f(w["exit_gate.weight"]) + _f(w["exit_gate.bias"]))[..., 0])
        if early:
            survive = survive * (1.0 - lams[-1])
            newly = (exit_at < 0) & (1.0 - survive >= exit_threshold)
            if tau == cfg.n_loops - 1:
                newly = exit_at < 0
            exit_at[newly] = tau
            h_sel = np.where(newly[..., None], h, h if h_sel is None else h_sel)
            for c in range(len(chunk_done)):
                if chunk_done[c] is None and (exit_at[:, bounds[c]:bounds[c + 1]] >= 0).all() and tau < cfg.n_loops - 1:
                    chunk_done[c] = tau
    if early:
        h = h_sel
    if not every:
        h = rms_norm(h, w["final_norm.weight"], cfg.norm_eps)
    head = embed.T if opt("tied_head", True) else _f(w["lm_head.weight"])
    out = {"logits": h @ head}
    if gate:
        out["exit_probs"] = exit_distribution(np.stack(lams, axis=-1))
    return out


def exit_distribution(lambdas):
    """Ouro's exit distribution from per-loop gates ``lambdas [..., T]`` (float64):
    ``p_tau = lambda_tau prod_{j<tau}(1 - lambda_j)`` for ``tau < T-1`` and
    ``p_{T-1} = prod_{j<T-1}(1 - lambda_j)``; sums to 1 along the last axis."""
    lam = _f(lambdas)
    t = lam.shape[-1]
    p = np.zeros_like(lam)
    survive = np.ones(lam.shape[:-1])
    for tau in range(t - 1):
        p[..., tau] = lam[..., tau] * survive
        survive = survive * (1.0 - lam[..., tau])
    p[..., t - 1] = survive
    return p


def lt2_forward(weights, input_ids, cfg):
    """Logits ``[B, L, vocab]`` (float64) of a looped model without exit gate, e.g. the
    example LT2-hybrid model (``lt2.models.example``): ``looped_forward(...)["logits"]``::

        h = embed[ids]
        for tau in range(T):
            h_in = h
            for each layer l: h += Mixer_l(RMSNorm(h)); h += SwiGLU_l(RMSNorm(h))
            h = h + rho[tau] * h_in
        logits = RMSNorm_final(h) @ embed^T          # tied head
    """
    return looped_forward(weights, input_ids, cfg)["logits"]
