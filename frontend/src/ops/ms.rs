//! ONNX Runtime's `com.microsoft` ops that LLM exports use: GatedDeltaNet, CausalConvWithState,
//! GatedRMSNorm, GroupQueryAttention, RotaryEmbedding, SimplifiedLayerNormalization,
//! SkipSimplifiedLayerNormalization and MatMulNBits (semantics: onnxruntime's
//! ContribOperators.md). Each is expressed with the same lt2 ops as its standard-domain
//! counterpart; MatMulNBits' block-quantized weight is dequantized at compile time
//! (`nbits.rs`) into an `lt2.linear` weight.

use tract_onnx::pb::NodeProto;

use lt2_ir::builder::{BinaryOp, ReduceOp, UnaryOp, Val};
use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{tensor_type, Known, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if domain != "com.microsoft" {
        return None;
    }
    Some(match op {
        "GatedDeltaNet" => gated_delta_net,
        "CausalConvWithState" => causal_conv,
        "GatedRMSNorm" => gated_rms_norm,
        "GroupQueryAttention" => group_query_attention,
        "RotaryEmbedding" => rotary,
        "SkipSimplifiedLayerNormalization" => skip_rms_norm,
        "MatMulNBits" => matmul_nbits,
        _ => return None,
    })
}

fn scalar(imp: &mut Importer, node: &NodeProto, v: f32) -> Result<Rt, FrontendError> {
    imp.materialize(node, Value::Known(Known::f32(vec![], vec![v])))
}

fn reshape(imp: &mut Importer, x: &Rt, shape: Vec<Dim>, loc: &str) -> Rt {
    let val = imp.b.reshape(&x.val, &Importer::dim_strings(&shape), tensor_type(&shape, x.elem()), loc);
    Rt { val, shape }
}

fn bin(imp: &mut Importer, k: BinaryOp, a: &Rt, b: &Rt, loc: &str) -> Rt {
    let shape = crate::value::broadcast(&a.shape, &b.shape).unwrap_or_else(|| a.shape.clone());
    let val = imp.b.binary(k, &a.val, &b.val, tensor_type(&shape, a.elem()), loc);
    Rt { val, shape }
}

fn un(imp: &mut Importer, k: UnaryOp, a: &Rt, loc: &str) -> Rt {
    Rt { val: imp.b.unary(k, &a.val, loc), shape: a.shape.clone() }
}

/// x / sqrt(sum(x^2, last axis) + eps), per head (x is [..., D]).
fn l2_norm(imp: &mut Importer, node: &NodeProto, x: &Rt, eps: f32, loc: &str) -> Result<Rt, FrontendError> {
    let sq = bin(imp, BinaryOp::Mul, x, x, loc);
    let mut rshape = x.shape.clone();
    *rshape.last_mut().expect("rank >= 1") = Dim::Const(1);
    let axis = x.shape.len() as i64 - 1;
    let ss = Rt { val: imp.b.reduce(ReduceOp::Sum, &sq.val, &[axis], true, tensor_type(&rshape, Elem::F32), loc), shape: rshape };
    let e = scalar(imp, node, eps)?;
    let se = bin(imp, BinaryOp::Add, &ss, &e, loc);
    let n = un(imp, UnaryOp::Sqrt, &se, loc);
    Ok(bin(imp, BinaryOp::Div, x, &n, loc))
}

fn dim(node: &NodeProto, d: &Dim, what: &str) -> Result<i64, FrontendError> {
    d.as_const().ok_or_else(|| node_err(node, format!("{what} must be static")))
}

/// GatedDeltaNet in its rank-4 spelling: q [B,S,H,Dk], k [B,S,H,Dk], v [B,S,HV,Dv], decay and
/// beta [B,S,HV]; optional fused gate (`qwen`: -exp(a_log)·softplus(decay + dt_bias)), sigmoid
/// beta and q/k L2 norm; V-major state [B,HV,Dv,Dk]. Value heads may outnumber q/k heads.
fn gated_delta_net(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    if imp.input(node, 1)?.is_none() || imp.input(node, 2)?.is_none() {
        return Err(node_err(node, "packed QKV (key and value omitted) is not supported yet"));
    }
    if imp.input(node, 3)?.is_some() {
        return Err(node_err(node, "cu_seqlens (ragged packing) is not supported yet"));
    }
    if imp.input(node, 9)?.is_some() || attrs::int(node, "state_update_capacity", 0) != 0 {
        return Err(node_err(node, "compact state updates (state_update_capacity, capture_count) are not supported yet"));
    }
    let q = imp.rt(node, 0)?;
    let k = imp.rt(node, 1)?;
    let v = imp.rt(node, 2)?;
    if q.shape.len() != 4 || k.shape.len() != 4 || v.shape.len() != 4 {
        return Err(node_err(node, "only the rank-4 spelling [B, S, H, D] is supported yet (the token-major rank-3 form needs cu_seqlens)"));
    }
    let (h, dk) = (dim(node, &q.shape[2], "the query head count")?, dim(node, &q.shape[3], "head_size_qk")?);
    let (hv, dv) = (dim(node, &v.shape[2], "the value head count")?, dim(node, &v.shape[3], "head_size_v")?);
    if dim(node, &k.shape[2], "the key head count")? != h || hv % h != 0 {
        return Err(node_err(node, format!("key heads must equal query heads ({h}) and value heads ({hv}) be a multiple of them")));
    }
    let (b, s) = (q.shape[0].clone(), q.shape[1].clone());
    let (mut q, mut k) = (q, k);
    if attrs::int(node, "qk_l2_norm", 0) != 0 {
        q = l2_norm(imp, node, &q, 1e-6, &loc)?;
        k = l2_norm(imp, node, &k, 1e-6, &loc)?;
    }
    // Repeat q/k heads for grouped values: [B,S,H,Dk] -> [B,S,H,G,Dk] -> [B,S,HV*Dk].
    let g = hv / h;
    let widen = |imp: &mut Importer, x: &Rt| -> Rt {
        if g == 1 {
            return reshape(imp, x, vec![b.clone(), s.clone(), Dim::Const(h * dk)], &loc);
        }
        let x5 = reshape(imp, x, vec![b.clone(), s.clone(), Dim::Const(h), Dim::Const(1), Dim::Const(dk)], &loc);
        let e_shape = vec![b.clone(), s.clone(), Dim::Const(h), Dim::Const(g), Dim::Const(dk)];
        let e = Rt { val: imp.b.expand(&x5.val, &Importer::dim_strings(&e_shape), tensor_type(&e_shape, Elem::F32), &loc), shape: e_shape };
        reshape(imp, &e, vec![b.clone(), s.clone(), Dim::Const(hv * dk)], &loc)
    };
    let qp = widen(imp, &q);
    let kp = widen(imp, &k);
    let vp = reshape(imp, &v, vec![b.clone(), s.clone(), Dim::Const(hv * dv)], &loc);
    let mut decay = imp.opt_rt(node, 4)?;
    let mut beta = imp.opt_rt(node, 5)?;
    match attrs::string(node, "gate_activation", "none")?.as_str() {
        "none" => {}
        "qwen" => {
            let (a_log, dt_bias) = (imp.known(node, 7, "a_log")?, imp.rt(node, 8)?);
            let neg_a = Known::f32(a_log.shape.clone(), a_log.data_f32().iter().map(|x| -x.exp()).collect());
            let neg_a = imp.materialize(node, Value::Known(neg_a))?;
            let d = decay.ok_or_else(|| node_err(node, "gate_activation qwen needs the decay input"))?;
            let z = bin(imp, BinaryOp::Add, &d, &dt_bias, &loc);
            let sp = un(imp, UnaryOp::Softplus, &z, &loc);
            decay = Some(bin(imp, BinaryOp::Mul, &neg_a, &sp, &loc));
        }
        other => return Err(node_err(node, format!("gate_activation `{other}` is unknown (none, qwen)"))),
    }
    match attrs::string(node, "beta_activation", "none")?.as_str() {
        "none" => {}
        "sigmoid" => beta = beta.map(|x| un(imp, UnaryOp::Sigmoid, &x, &loc)),
        other => return Err(node_err(node, format!("beta_activation `{other}` is unknown (none, sigmoid)"))),
    }
    if decay.as_ref().is_some_and(|d| d.shape.len() == 4) {
        let d = decay.take().expect("checked");
        decay = Some(reshape(imp, &d, vec![b.clone(), s.clone(), Dim::Const(hv * dk)], &loc));
    }
    // V-major state [B,HV,Dv,Dk] <-> lt2's [B,HV,Dk,Dv].
    let state = match imp.opt_rt(node, 6)? {
        None => None,
        Some(st) => {
            let t_shape = vec![st.shape[0].clone(), Dim::Const(hv), Dim::Const(dk), Dim::Const(dv)];
            Some(imp.b.transpose(&st.val, &[0, 1, 3, 2], tensor_type(&t_shape, Elem::F32), &loc))
        }
    };
    let rule = attrs::string(node, "update_rule", "gated_delta")?;
    let sc = attrs::float(node, "scale", 0.0);
    let scale = if sc == 0.0 { 1.0 / (dk as f32).sqrt() } else { sc };
    let o_shape = vec![b.clone(), s.clone(), Dim::Const(hv * dv)];
    let s_shape = vec![b.clone(), Dim::Const(hv), Dim::Const(dk), Dim::Const(dv)];
    let (o, st) = imp.b.gdn(
        &qp.val,
        &kp.val,
        &vp.val,
        decay.as_ref().map(|x| &x.val),
        beta.as_ref().map(|x| &x.val),
        state.as_ref(),
        hv,
        hv,
        scale,
        &rule,
        tensor_type(&o_shape, Elem::F32),
        tensor_type(&s_shape, Elem::F32),
        &loc,
    );
    let o = reshape(imp, &Rt { val: o, shape: o_shape }, vec![b.clone(), s.clone(), Dim::Const(hv), Dim::Const(dv)], &loc);
    let vm_shape = vec![b, Dim::Const(hv), Dim::Const(dv), Dim::Const(dk)];
    let st_vm = imp.b.transpose(&st, &[0, 1, 3, 2], tensor_type(&vm_shape, Elem::F32), &loc);
    Ok(vec![Value::Rt(o), Value::Rt(Rt { val: st_vm, shape: vm_shape })])
}

fn causal_conv(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    if attrs::int(node, "ndim", 1) != 1 || attrs::int(node, "dilation", 1) != 1 || attrs::int(node, "state_window", 0) != 0 {
        return Err(node_err(node, "ndim, dilation and state_window other than the defaults are not supported yet"));
    }
    let loc = Importer::loc(node);
    let x = imp.rt(node, 0)?;
    let w = imp.rt(node, 1)?;
    let bias = imp.opt_rt(node, 2)?;
    let past = imp.opt_rt(node, 3)?;
    let act = match attrs::string(node, "activation", "none")?.as_str() {
        "none" | "" => "none",
        "silu" | "swish" => "silu",
        other => return Err(node_err(node, format!("activation `{other}` is not supported (none, silu, swish)"))),
    };
    let ksize = w.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "kernel size must be static"))?;
    if x.shape.len() != 3 {
        return Err(node_err(node, "input must be rank 3"));
    }
    let channels_last = attrs::int(node, "channels_last", 0) != 0;
    let (b, l, c) = if channels_last { (x.shape[0].clone(), x.shape[1].clone(), x.shape[2].clone()) } else { (x.shape[0].clone(), x.shape[2].clone(), x.shape[1].clone()) };
    let cl_shape = vec![b.clone(), l, c.clone()];
    let xin = if channels_last { x.val.clone() } else { imp.b.transpose(&x.val, &[0, 2, 1], tensor_type(&cl_shape, Elem::F32), &loc) };
    let st_shape = vec![b, c, Dim::Const(ksize - 1)];
    let (y, st) = imp.b.causal_conv(&xin, &w.val, bias.as_ref().map(|b| &b.val), past.as_ref().map(|p| &p.val), act, tensor_type(&cl_shape, Elem::F32), tensor_type(&st_shape, Elem::F32), &loc);
    let y = if channels_last { y } else { imp.b.transpose(&y, &[0, 2, 1], x.val.ty.clone(), &loc) };
    Ok(vec![Value::Rt(Rt { val: y, shape: x.shape }), Value::Rt(Rt { val: st, shape: st_shape })])
}

/// Y = rms_norm over groups of C (C = len(scale)) · scale · act(gate).
fn gated_rms_norm(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    let x = imp.rt(node, 0)?;
    let scale = imp.rt(node, 1)?;
    let gate = imp.rt(node, 2)?;
    let c = scale.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "scale must have a static length"))?;
    let last = x.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "the last dim of X must be static"))?;
    if c <= 0 || last % c != 0 {
        return Err(node_err(node, format!("X's last dim {last} is not a multiple of scale's length {c}")));
    }
    let eps = attrs::float(node, "epsilon", 1e-5);
    let mut gshape = x.shape[..x.shape.len() - 1].to_vec();
    gshape.extend([Dim::Const(last / c), Dim::Const(c)]);
    let xg = reshape(imp, &x, gshape.clone(), &loc);
    let n = Rt { val: imp.b.rms_norm(&xg.val, &scale.val, eps, gshape.len() as i64 - 1, xg.val.ty.clone(), &loc), shape: gshape };
    let n = reshape(imp, &n, x.shape.clone(), &loc);
    let act = match attrs::string(node, "activation", "silu")?.as_str() {
        "silu" | "swish" => un(imp, UnaryOp::Silu, &gate, &loc),
        "sigmoid" => un(imp, UnaryOp::Sigmoid, &gate, &loc),
        other => return Err(node_err(node, format!("activation `{other}` is unknown (silu, swish, sigmoid)"))),
    };
    Ok(vec![Value::Rt(bin(imp, BinaryOp::Mul, &n, &act, &loc))])
}

/// Positions 0..seq (shifted by the past in decode sessions) as [B, seq].
fn positions(imp: &mut Importer, b: &Dim, s: &Dim, loc: &str) -> Val {
    let r = imp.b.range(0, 1, &s.to_string(), tensor_type(&[s.clone()], Elem::I64), loc);
    let shape1 = vec![Dim::Const(1), s.clone()];
    let r1 = imp.b.reshape(&r, &Importer::dim_strings(&shape1), tensor_type(&shape1, Elem::I64), loc);
    let shape = vec![b.clone(), s.clone()];
    imp.b.expand(&r1, &Importer::dim_strings(&shape), tensor_type(&shape, Elem::I64), loc)
}

/// GroupQueryAttention without a past (prefill form; lt2c derives decode itself): optional
/// fused rotary, causal, optional local window of `local_window_size` keys.
fn group_query_attention(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    for (i, what) in [(3, "past_key"), (4, "past_value"), (9, "position_ids"), (10, "attention_bias"), (11, "head_sink"), (12, "k_scale"), (13, "v_scale"), (14, "q_norm_weight"), (15, "k_norm_weight")] {
        if imp.input(node, i)?.is_some() {
            return Err(node_err(node, format!("input `{what}` is not supported yet")));
        }
    }
    if (1..4).any(|i| imp.output_used(node, i)) {
        return Err(node_err(node, "outputs present_key/present_value/output_qk are not supported yet"));
    }
    if attrs::float(node, "softcap", 0.0) != 0.0 || attrs::int(node, "smooth_softmax", 0) != 0 {
        return Err(node_err(node, "softcap and smooth_softmax are not supported yet"));
    }
    let q = imp.rt(node, 0)?;
    let k = imp.opt_rt(node, 1)?.ok_or_else(|| node_err(node, "packed QKV (key omitted) is not supported yet"))?;
    let v = imp.opt_rt(node, 2)?.ok_or_else(|| node_err(node, "packed QKV (value omitted) is not supported yet"))?;
    let hq = attrs::required_int(node, "num_heads")?;
    let hkv = attrs::required_int(node, "kv_num_heads")?;
    let (mut q, mut k) = (q.val, k.val);
    let (b, s) = (v.shape[0].clone(), v.shape[1].clone());
    if attrs::int(node, "do_rotary", 0) != 0 {
        let cos = imp.rt(node, 7)?;
        let sin = imp.rt(node, 8)?;
        let inter = attrs::int(node, "rotary_interleaved", 0) != 0;
        let pos = positions(imp, &b, &s, &loc);
        q = imp.b.rope(&q, &cos.val, &sin.val, Some(&pos), hq, inter, 0, &loc);
        k = imp.b.rope(&k, &cos.val, &sin.val, Some(&pos), hkv, inter, 0, &loc);
    }
    let qd = q.ty.dims.last().copied().flatten().ok_or_else(|| node_err(node, "query width must be static"))?;
    let vd = v.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "value width must be static"))?;
    let sc = attrs::float(node, "scale", 0.0);
    let scale = if sc == 0.0 { 1.0 / ((qd / hq) as f32).sqrt() } else { sc };
    let w = attrs::int(node, "local_window_size", -1);
    let window = if w > 0 { (w - 1, 0) } else { (-1, -1) };
    let shape = vec![b, s, Dim::Const(hq * (vd / hkv))];
    let val = imp.b.attention(&q, &k, &v.val, hq, hkv, scale, true, window, false, tensor_type(&shape, Elem::F32), &loc);
    Ok(vec![Value::Rt(Rt { val, shape })])
}

/// com.microsoft RotaryEmbedding: inputs (input, position_ids, cos_cache, sin_cache).
fn rotary(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    if attrs::int(node, "is_packed_batching", 0) != 0 || attrs::float(node, "scale", 1.0) != 1.0 {
        return Err(node_err(node, "is_packed_batching and scale other than 1 are not supported yet"));
    }
    let x = imp.rt(node, 0)?;
    let pos = imp.rt(node, 1)?;
    let cos = imp.rt(node, 2)?;
    let sin = imp.rt(node, 3)?;
    let heads = attrs::int(node, "num_heads", 0);
    if x.shape.len() == 3 && heads == 0 {
        return Err(node_err(node, "num_heads is required for the 3-D input"));
    }
    let inter = attrs::int(node, "interleaved", 0) != 0;
    let rot = attrs::int(node, "rotary_embedding_dim", 0);
    let val = imp.b.rope(&x.val, &cos.val, &sin.val, Some(&pos.val), heads, inter, rot, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}

/// SkipSimplifiedLayerNormalization: (input + skip [+ bias]) normalised; output 3 is the sum.
fn skip_rms_norm(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    let x = imp.rt(node, 0)?;
    let skip = imp.rt(node, 1)?;
    let gamma = imp.rt(node, 2)?;
    let mut sum = bin(imp, BinaryOp::Add, &x, &skip, &loc);
    if let Some(b) = imp.opt_rt(node, 3)? {
        sum = bin(imp, BinaryOp::Add, &sum, &b, &loc);
    }
    if imp.output_used(node, 1) || imp.output_used(node, 2) {
        return Err(node_err(node, "the mean / inv_std_var outputs are not supported"));
    }
    let eps = attrs::float(node, "epsilon", 1e-5);
    let y = imp.b.rms_norm(&sum.val, &gamma.val, eps, sum.shape.len() as i64 - 1, sum.val.ty.clone(), &loc);
    let y = Value::Rt(Rt { val: y, shape: sum.shape.clone() });
    Ok(vec![y.clone(), y.clone(), y, Value::Rt(sum)])
}

/// MatMulNBits: Y = A B^T (+ bias), B [N, K] block-quantized (`bits` per value, `block_size`
/// values per scale); dequantized here into a float weight of `lt2.linear` (`--dtype bf16`
/// stores it in bf16, else fp32: more bytes than the packed form, the same products).
fn matmul_nbits(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    let (k, n) = (attrs::int(node, "K", 0), attrs::int(node, "N", 0));
    let (bits, block) = (attrs::int(node, "bits", 4), attrs::int(node, "block_size", 0));
    let known = |imp: &Importer, i: usize, what: &str| -> Result<Option<Vec<f32>>, FrontendError> {
        match imp.input(node, i)? {
            None => Ok(None),
            Some(Value::Known(kn)) if kn.elem() == Elem::F32 => Ok(Some(kn.data_f32())),
            Some(Value::Known(_)) => Err(node_err(node, format!("{what} must be a float or uint8 initializer"))),
            Some(_) => Err(node_err(node, format!("{what} must be an initializer (known at compile time)"))),
        }
    };
    if imp.input(node, 4)?.is_some() {
        return Err(node_err(node, "g_idx (act-order quantization) is not supported yet"));
    }
    if attrs::int(node, "weight_prepacked", 0) != 0 {
        return Err(node_err(node, "a prepacked B (weight_prepacked = 1) is not supported"));
    }
    let packed = known(imp, 1, "B")?.ok_or_else(|| node_err(node, "B is required"))?;
    let scales = known(imp, 2, "scales")?.ok_or_else(|| node_err(node, "scales is required"))?;
    let zp = known(imp, 3, "zero_points")?;
    // uint8 zero points are packed `bits` each; float ones are one per scale.
    let zp_packed = zp.is_some() && matches!(imp.input(node, 3)?, Some(Value::Known(ref z)) if z.numel() != scales.len());
    let q = super::nbits::Quantized { k, n, bits, block, packed: &packed, scales: &scales, zero_points: zp.as_deref(), zero_points_packed: zp_packed };
    let w = super::nbits::dequantize(&q).map_err(|e| node_err(node, e))?;
    let a = imp.rt(node, 0)?;
    if a.shape.last().and_then(Dim::as_const).is_some_and(|x| x != k) {
        return Err(node_err(node, format!("A's last dim is not K = {k}: {:?}", a.shape)));
    }
    const NOTE: &str = "MatMulNBits weights are dequantized at compile time: model.bin holds them in fp32 (bf16 with --dtype bf16), not in their packed bits";
    if !imp.warnings.iter().any(|w| w == NOTE) {
        imp.warnings.push(NOTE.to_string());
    }
    let mut wk = Known::f32(vec![n as usize, k as usize], w);
    wk.source = node.input.get(1).map(|s| format!("{s}.dequantized"));
    let wv = imp.materialize(node, Value::Known(wk))?;
    let bias = match known(imp, 5, "bias")? {
        Some(b) if b.len() == n as usize => Some(imp.materialize(node, Value::Known(Known::f32(vec![n as usize], b)))?),
        Some(b) => return Err(node_err(node, format!("bias has {} values for N = {n}", b.len()))),
        None => None,
    };
    let mut shape = a.shape.clone();
    *shape.last_mut().ok_or_else(|| node_err(node, "A must have rank >= 1"))? = Dim::Const(n);
    let val = imp.b.linear(&a.val, &wv.val, bias.as_ref().map(|b| &b.val), true, tensor_type(&shape, Elem::F32), &loc);
    Ok(vec![Value::Rt(Rt { val, shape })])
}
