"""Numpy oracles of the onnxruntime contrib ops the ``ms`` spelling uses, for
``onnx.reference.ReferenceEvaluator(model, new_ops=MS_OPS)``.

onnxruntime 1.31.1 (CPU) runs every one of these ops except ``com.microsoft::GatedDeltaNet``,
which has CUDA and WebGPU kernels only ("Could not find an implementation for
GatedDeltaNet(1)"). So the ReferenceEvaluator with these classes is the only oracle that runs
an ``ms`` model as written; ``tests/test_ms_ops.py`` checks each class against onnxruntime
where onnxruntime has a kernel, and ``substitute_gated_delta_net`` rewrites a model's
GatedDeltaNet nodes into ops onnxruntime runs (explicit L2 norms, ``LinearAttentionGate``,
``com.microsoft::LinearAttention``) so onnxruntime can check the rest of the graph.

Semantics (onnxruntime's ContribOperators / bert_defs.cc schemas, 1.31):

- ``SimplifiedLayerNormalization`` (registered by onnxruntime in the **default** domain,
  version 1): ``X / sqrt(mean(X^2 over axes axis..) + epsilon) * scale``; attributes
  ``axis`` (-1), ``epsilon`` (1e-5), ``stash_type``; optional 2nd output ``inv_std_var``.
- ``com.microsoft::RotaryEmbedding``: inputs ``(input, position_ids, cos_cache, sin_cache)``
  (standard RotaryEmbedding-23 has ``(X, cos, sin, position_ids)``), attributes
  ``interleaved``, ``num_heads``, ``rotary_embedding_dim``, ``scale`` (1.0), 3-D input
  ``[B, S, H*D]``; ``position_ids`` ``[B, S]`` (or ``[1]``: an offset added to 0..S-1).
- ``com.microsoft::GroupQueryAttention`` (no past, prompt only): inputs ``query [B,S,Hq*D]``,
  ``key``, ``value`` ``[B,S,Hkv*D]``, ``past_key`` = ``past_value`` = absent,
  ``seqlens_k`` int32 ``[B]`` (= total length - 1), ``total_sequence_length`` int32 scalar,
  optional ``cos_cache``, ``sin_cache`` (with ``do_rotary = 1``); attributes ``num_heads``,
  ``kv_num_heads``, ``scale`` (0 = D^-1/2), ``local_window_size`` (-1 = none; else query i
  sees keys ``i - local_window_size < j <= i``: **w keys**, the current one included, checked
  against onnxruntime), ``do_rotary``, ``rotary_interleaved``, ``softcap`` (0). Causal.
  KV head j serves query heads ``j*g .. j*g+g-1``.
- ``com.microsoft::GatedRMSNorm``: ``X * rsqrt(mean over groups of C + epsilon) * scale *
  act(gate)``, C = len(scale), ``activation`` ``silu``/``swish`` (default) or ``sigmoid``,
  ``epsilon`` 1e-5.
- ``com.microsoft::CausalConvWithState``: depthwise causal conv, weight ``[C, 1, k]``,
  optional bias and past state; ``channels_last = 1`` takes ``[B, L, C]`` (state
  ``[B, k-1, C]``); ``activation`` none/silu/swish; only ``ndim = 1``, ``dilation = 1``.
- ``com.microsoft::GatedDeltaNet``: q ``[B,S,Hq,Dk]``, k ``[B,S,Hk,Dk]`` (Hk = Hq),
  v ``[B,S,Hv,Dv]`` (rank 4; rank 3 ``[T,H,D]`` needs ``initial_state`` and no cu_seqlens
  here), ``cu_seqlens`` absent, ``decay [B,S,Hv]`` (or ``[B,S,Hv,Dk]``), ``beta [B,S,Hv]``,
  ``initial_state [B,Hv,Dv,Dk]`` (V-major), ``a_log``, ``dt_bias`` ``[Hv]``; attributes
  ``update_rule``, ``scale`` (0 = Dk^-1/2), ``gate_activation`` (``qwen``:
  ``g = -exp(a_log) * softplus(decay + dt_bias)``), ``beta_activation`` (``sigmoid``),
  ``qk_l2_norm`` (1: ``x / sqrt(sum(x^2) + 1e-6)`` per head; onnxruntime's epsilon is not
  documented, 1e-6 is flash-linear-attention's and changes nothing measurable here).
  Value head j uses query/key head ``j // (Hv / Hq)``. Output ``[B,S,Hv,Dv]``,
  optional ``final_state [B,Hv,Dv,Dk]``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference.op_run import OpRun

from . import reference as R

MS = "com.microsoft"


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --------------------------------------------------------------------------- numpy functions


def simplified_layer_norm(x, scale, *, axis=-1, epsilon=1e-5):
    return R.rms_norm(x, scale, epsilon, axis)


def ms_rotary_embedding(x, position_ids, cos_cache, sin_cache, *, interleaved=0, num_heads=0, rotary_embedding_dim=0, scale=1.0):
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError("this oracle covers 3-D input [B, S, H*D] only")
    b, s, hd = x.shape
    heads = num_heads or hd // (2 * np.asarray(cos_cache).shape[1])
    pid = np.asarray(position_ids)
    if pid.ndim == 1 and pid.size == 1:
        pid = pid[0] + np.broadcast_to(np.arange(s), (b, s))
    if scale not in (None, 1.0):
        raise ValueError("scale != 1 is not covered")
    return R.rotary_embedding(x, cos_cache, sin_cache, pid, interleaved=bool(interleaved), num_heads=heads,
                              rotary_embedding_dim=rotary_embedding_dim)


def group_query_attention(q, k, v, seqlens_k, total_sequence_length, cos_cache=None, sin_cache=None, position_ids=None, *,
                          num_heads, kv_num_heads, scale=0.0, local_window_size=-1, do_rotary=0, rotary_interleaved=0, softcap=0.0):
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    b, s, _ = q.shape
    total = int(np.asarray(total_sequence_length).reshape(-1)[0])
    sl = np.asarray(seqlens_k).reshape(-1)
    if total != s or (sl != s - 1).any():
        raise ValueError("this oracle covers the prompt without past and without padding (seqlens_k = S - 1 = total - 1)")
    if softcap:
        raise ValueError("softcap is not covered")
    if do_rotary:
        pid = np.broadcast_to(np.arange(s), (b, s)) if position_ids is None else np.asarray(position_ids)
        q = R.rotary_embedding(q, cos_cache, sin_cache, pid, interleaved=bool(rotary_interleaved), num_heads=num_heads)
        k = R.rotary_embedding(k, cos_cache, sin_cache, pid, interleaved=bool(rotary_interleaved), num_heads=kv_num_heads)
    d = q.shape[2] // num_heads
    sc = d**-0.5 if not scale else float(scale)
    win = local_window_size if local_window_size and local_window_size > 0 else 0
    return R.attention(q, k, v, q_num_heads=num_heads, kv_num_heads=kv_num_heads, is_causal=True, scale=sc, window=win)


def gated_rms_norm(x, scale, gate, *, activation="silu", epsilon=1e-5):
    x = R._f(x)
    c = np.asarray(scale).shape[-1]
    xs = x.reshape(*x.shape[:-1], x.shape[-1] // c, c)
    y = R.rms_norm(xs, scale, epsilon).reshape(x.shape)
    act = _s(activation)
    if act in ("silu", "swish"):
        return y * R.silu(gate)
    if act == "sigmoid":
        return y * R.sigmoid(gate)
    raise ValueError(f"unknown activation {act!r}")


def ms_causal_conv(x, weight, bias=None, past_state=None, *, activation="none", channels_last=0, ndim=1, dilation=1, state_window=0):
    if ndim != 1 or dilation != 1 or state_window:
        raise ValueError("this oracle covers ndim = 1, dilation = 1, state_window = 0")
    x = np.asarray(x)
    if channels_last:
        ps = None if past_state is None else np.asarray(past_state).transpose(0, 2, 1)
        y, st = R.causal_conv1d(x.transpose(0, 2, 1), weight, bias, ps, _s(activation))
        return y.transpose(0, 2, 1), st.transpose(0, 2, 1)
    return R.causal_conv1d(x, weight, bias, past_state, _s(activation))


def gated_delta_net(q, k, v, decay=None, beta=None, initial_state=None, a_log=None, dt_bias=None, *,
                    update_rule="gated_delta", scale=0.0, gate_activation="none", beta_activation="none", qk_l2_norm=0,
                    qk_l2_eps=1e-6):
    q, k, v = R._f(q), R._f(k), R._f(v)
    rank3 = q.ndim == 3
    if rank3:
        if initial_state is None:
            raise ValueError("rank-3 GatedDeltaNet without cu_seqlens needs initial_state")
        bsz = np.asarray(initial_state).shape[0]
        q, k, v = (a.reshape(bsz, -1, *a.shape[1:]) for a in (q, k, v))
        decay = None if decay is None else np.asarray(decay).reshape(bsz, -1, *np.asarray(decay).shape[1:])
        beta = None if beta is None else np.asarray(beta).reshape(bsz, -1, *np.asarray(beta).shape[1:])
    b, s, hq, dk = q.shape
    hv, dv = v.shape[2], v.shape[3]
    if k.shape[2] != hq or hv % hq:
        raise ValueError("need num_heads_k == num_heads_q and num_heads_v a multiple of num_heads_q")
    if qk_l2_norm:
        q, k = R.l2_norm(q, qk_l2_eps), R.l2_norm(k, qk_l2_eps)
    g = hv // hq
    q = np.repeat(q, g, axis=2).reshape(b, s, hv * dk)
    k = np.repeat(k, g, axis=2).reshape(b, s, hv * dk)
    rule = _s(update_rule)
    dec = None
    if rule in ("gated", "gated_delta"):
        dec = R._f(decay)
        if _s(gate_activation) == "qwen":
            bias = R._f(dt_bias).reshape(-1, *([1] * (dec.ndim - 3)))
            dec = -np.exp(R._f(a_log)).reshape(bias.shape) * R.softplus(dec + bias)
        elif _s(gate_activation) != "none":
            raise ValueError(f"unknown gate_activation {gate_activation!r}")
        dec = dec.reshape(b, s, -1)
    bt = None
    if rule in ("delta", "gated_delta"):
        bt = R._f(beta)
        if _s(beta_activation) == "sigmoid":
            bt = R.sigmoid(bt)
        elif _s(beta_activation) != "none":
            raise ValueError(f"unknown beta_activation {beta_activation!r}")
    st = None if initial_state is None else R._f(initial_state).transpose(0, 1, 3, 2)  # V-major -> [B,Hv,Dk,Dv]
    o, fin = R.linear_attention(q, k, v.reshape(b, s, hv * dv), st, dec, bt, q_num_heads=hv, kv_num_heads=hv, scale=scale,
                                update_rule=rule)
    o = o.reshape(b, s, hv, dv)
    if rank3:
        o = o.reshape(b * s, hv, dv)
    return o, fin.transpose(0, 1, 3, 2)


# --------------------------------------------------------------------------- OpRun classes


def _cast(y, like):
    return np.asarray(y).astype(np.asarray(like).dtype)


class SimplifiedLayerNormalization(OpRun):
    op_domain = ""

    def _run(self, x, scale, axis=-1, epsilon=1e-5, stash_type=1):  # noqa: D102
        y = simplified_layer_norm(x, scale, axis=axis, epsilon=epsilon)
        ax = axis % np.asarray(x).ndim
        inv = 1.0 / np.sqrt(np.mean(R._f(x) ** 2, axis=tuple(range(ax, np.asarray(x).ndim)), keepdims=True) + epsilon)
        return (_cast(y, x), inv.astype(np.float32))


class RotaryEmbedding(OpRun):
    op_domain = MS

    def _run(self, x, position_ids, cos_cache, sin_cache, interleaved=0, num_heads=0, rotary_embedding_dim=0, scale=1.0,
             is_packed_batching=0):  # noqa: D102
        y = ms_rotary_embedding(x, position_ids, cos_cache, sin_cache, interleaved=interleaved, num_heads=num_heads,
                                rotary_embedding_dim=rotary_embedding_dim, scale=scale)
        return (_cast(y, x),)


class GroupQueryAttention(OpRun):
    op_domain = MS

    def _run(self, q, k=None, v=None, past_key=None, past_value=None, seqlens_k=None, total_sequence_length=None, cos_cache=None,
             sin_cache=None, position_ids=None, *rest, num_heads=None, kv_num_heads=None, scale=0.0, local_window_size=-1,
             do_rotary=0, rotary_interleaved=0, softcap=0.0, **unused):  # noqa: D102
        if k is None or past_key is not None or any(r is not None for r in rest):
            raise ValueError("this oracle covers separate q/k/v without past, bias, sinks or quantisation")
        y = group_query_attention(q, k, v, seqlens_k, total_sequence_length, cos_cache, sin_cache, position_ids,
                                  num_heads=num_heads, kv_num_heads=kv_num_heads, scale=scale,
                                  local_window_size=local_window_size, do_rotary=do_rotary,
                                  rotary_interleaved=rotary_interleaved, softcap=softcap)
        return (_cast(y, q),)


class GatedRMSNorm(OpRun):
    op_domain = MS

    def _run(self, x, scale, gate, activation="silu", epsilon=1e-5):  # noqa: D102
        return (_cast(gated_rms_norm(x, scale, gate, activation=activation, epsilon=epsilon), x),)


class CausalConvWithState(OpRun):
    op_domain = MS

    def _run(self, x, weight, bias=None, past_state=None, activation="none", channels_last=0, ndim=1, dilation=1,
             state_window=0):  # noqa: D102
        y, st = ms_causal_conv(x, weight, bias, past_state, activation=activation, channels_last=channels_last, ndim=ndim,
                               dilation=dilation, state_window=state_window)
        return (_cast(y, x), _cast(st, x))


class GatedDeltaNet(OpRun):
    op_domain = MS

    def _run(self, q, k=None, v=None, cu_seqlens=None, decay=None, beta=None, initial_state=None, a_log=None, dt_bias=None,
             capture_count=None, state_update_active=None, update_rule="gated_delta", scale=0.0, gate_activation="none",
             beta_activation="none", qk_l2_norm=0, chunk_size=64, state_update_capacity=0):  # noqa: D102
        if k is None or cu_seqlens is not None or state_update_capacity:
            raise ValueError("this oracle covers separate q/k/v without cu_seqlens or state capture")
        o, fin = gated_delta_net(q, k, v, decay, beta, initial_state, a_log, dt_bias, update_rule=update_rule, scale=scale,
                                 gate_activation=gate_activation, beta_activation=beta_activation, qk_l2_norm=qk_l2_norm)
        return (_cast(o, q), fin.astype(np.float32))


MS_OPS = [SimplifiedLayerNormalization, RotaryEmbedding, GroupQueryAttention, GatedRMSNorm, CausalConvWithState, GatedDeltaNet]


# --------------------------------------------------------------------------- onnxruntime stand-in


def substitute_gated_delta_net(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose ``com.microsoft::GatedDeltaNet`` nodes (rank 4, qwen gate,
    sigmoid beta, qk_l2_norm, no initial state) are rewritten into ops onnxruntime 1.31 CPU
    runs: explicit L2 norms (Mul/ReduceSum/Add/Sqrt/Div, eps 1e-6), head repeat
    (Unsqueeze/Expand) for grouped values, ``com.microsoft::LinearAttentionGate``
    (decay = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)) and
    ``com.microsoft::LinearAttention`` on packed heads, Reshape back to ``[B,S,Hv,Dv]``.
    Head counts come from the initializers ``A_log`` ([Hv]) and from the Reshape
    constants that feed q and v (``[0, 0, H, D]``). Only for checking with onnxruntime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}

    def consts_of(graph):
        out = {}
        for n in graph.node:
            if n.op_type == "Constant":
                out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        return out

    def producer(graph, name):
        for n in graph.node:
            if name in n.output:
                return n
        return None

    def rewrite(graph, outer_consts):
        consts = dict(outer_consts)
        consts.update(consts_of(graph))
        new_nodes = []
        for n in graph.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    rewrite(a.g, consts)
            if not (n.op_type == "GatedDeltaNet" and n.domain == MS):
                new_nodes.append(n)
                continue
            q, k, v, _, a, b, _, alog, dtb = list(n.input) + [""] * (9 - len(n.input))
            hv = inits[alog].shape[0]
            qshape = consts[producer(graph, q).input[1]]
            vshape = consts[producer(graph, v).input[1]]
            h, dk, dv = int(qshape[2]), int(qshape[3]), int(vshape[3])
            g = hv // h
            attrs = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            p = f"{n.name}/ort"

            def c(name, arr):
                new_nodes.append(helper.make_node("Constant", [], [f"{p}/const_{name}"], name=f"{p}/const_{name}",
                                                  value=numpy_helper.from_array(np.asarray(arr))))
                return f"{p}/const_{name}"

            def nd(op, ins, name, domain="", **kw):
                new_nodes.append(helper.make_node(op, ins, [f"{p}/{name}"], name=f"{p}/{name}", domain=domain, **kw))
                return f"{p}/{name}"

            def l2(x, tag):
                sq = nd("Mul", [x, x], f"{tag}_sq")
                ss = nd("ReduceSum", [sq, c(f"{tag}_axes", np.array([-1], np.int64))], f"{tag}_ss", keepdims=1)
                se = nd("Add", [ss, c(f"{tag}_eps", np.array(1e-6, np.float32))], f"{tag}_sse")
                y = nd("Div", [x, nd("Sqrt", [se], f"{tag}_norm")], f"{tag}_l2")
                if g > 1:
                    y = nd("Unsqueeze", [y, c(f"{tag}_ax3", np.array([3], np.int64))], f"{tag}_u")
                    y = nd("Expand", [y, c(f"{tag}_rep", np.array([1, 1, h, g, dk], np.int64))], f"{tag}_rep")
                return nd("Reshape", [y, c(f"{tag}_packed_shape", np.array([0, 0, hv * dk], np.int64))], f"{tag}_packed")

            qq = l2(q, "q") if attrs.get("qk_l2_norm", 0) else q
            kk = l2(k, "k") if attrs.get("qk_l2_norm", 0) else k
            vv = nd("Reshape", [v, c("v_packed_shape", np.array([0, 0, hv * dv], np.int64))], "v_packed")
            scale_neg = nd("Neg", [nd("Exp", [alog], "exp_a_log")], "decay_scale")
            gate = helper.make_node("LinearAttentionGate", [a, dtb, scale_neg, b], [f"{p}/decay", f"{p}/beta"], name=f"{p}/gate",
                                    domain=MS)
            new_nodes.append(gate)
            la = helper.make_node("LinearAttention", [qq, kk, vv, "", f"{p}/decay", f"{p}/beta"], [f"{p}/la", f"{p}/la_state"],
                                  name=f"{p}/la", domain=MS, q_num_heads=hv, kv_num_heads=hv, update_rule="gated_delta",
                                  scale=float(attrs.get("scale", 0.0)))
            new_nodes.append(la)
            new_nodes.append(helper.make_node("Reshape", [f"{p}/la", c("out_shape", np.array([0, 0, hv, dv], np.int64))], [n.output[0]],
                                              name=f"{p}/out"))
        del graph.node[:]
        graph.node.extend(new_nodes)

    rewrite(m.graph, {})
    return m
