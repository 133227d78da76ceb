//! Attention (opset 23+) computed from its parts, MatMul / Softmax / masks, for what the fused
//! `lt2.attention` does not express: `softcap`, the `qk_matmul_output` output, and a past whose
//! new keys differ in length from the queries (the causal frontier then sits at the past
//! length, not at the end of the keys). Follows the ONNX reference
//! (onnx/reference/ops/op_attention.py): scores = scale Q K^T, softcap c tanh(scores / c), plus
//! the bias (attn_mask as -inf / additive, the causal frontier at i + offset, windows around
//! it, nonpad_kv_seqlen's padding), softmax with fully hidden rows zeroed, times V; KV heads
//! repeat for grouped queries ([h0, h0, h1, h1, ...]).

use tract_onnx::pb::NodeProto;

use lt2_ir::builder::{BinaryOp, ReduceOp, UnaryOp, Val};
use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{broadcast, tensor_type, Known, Rt, Value};

/// Whether `node` needs the decomposed form.
pub(super) fn needed(imp: &Importer, node: &NodeProto) -> Result<bool, FrontendError> {
    if attrs::float(node, "softcap", 0.0) != 0.0 || imp.output_used(node, 3) {
        return Ok(true);
    }
    // Shapes only: nothing is materialised (a constant mask would be stored twice).
    let shape = |imp: &Importer, i: usize| imp.input(node, i).map(|v| v.map(|v| v.shape()));
    let (Some(q), Some(k)) = (shape(imp, 0)?, shape(imp, 1)?) else {
        return Ok(false);
    };
    let past = shape(imp, 4)?;
    let axis = if q.len() == 4 { 2 } else { 1 };
    if past.is_some() && q.get(axis) != k.get(axis) {
        return Ok(true);
    }
    // A mask shorter than the keys (padded with hidden keys).
    let Some(kl) = k.get(axis).cloned() else { return Ok(false) };
    let keys = match past.as_ref().and_then(|p| p.get(2)) {
        Some(p) => Dim::add(p.clone(), kl),
        None => kl,
    };
    Ok(shape(imp, 3)?.is_some_and(|m| m.last() != Some(&keys)))
}

fn f32c(imp: &mut Importer, node: &NodeProto, v: f32) -> Result<Val, FrontendError> {
    Ok(imp.materialize(node, Value::Known(Known::f32(vec![], vec![v])))?.val)
}

fn i64c(imp: &mut Importer, node: &NodeProto, v: Dim) -> Result<Val, FrontendError> {
    Ok(imp.materialize(node, Value::Known(Known::i64(vec![], vec![v])))?.val)
}

/// [B, S, H*D] -> [B, H, S, D].
fn heads_first(imp: &mut Importer, node: &NodeProto, x: &Rt, heads: i64, loc: &str) -> Result<Rt, FrontendError> {
    let w = x.shape[2].as_const().ok_or_else(|| node_err(node, "the hidden size must be static"))?;
    let r_shape = vec![x.shape[0].clone(), x.shape[1].clone(), Dim::Const(heads), Dim::Const(w / heads)];
    let r = imp.b.reshape(&x.val, &Importer::dim_strings(&r_shape), tensor_type(&r_shape, Elem::F32), loc);
    let shape = vec![x.shape[0].clone(), Dim::Const(heads), x.shape[1].clone(), Dim::Const(w / heads)];
    Ok(Rt { val: imp.b.transpose(&r, &[0, 2, 1, 3], tensor_type(&shape, Elem::F32), loc), shape })
}

/// [B, Hkv, L, D] -> [B, Hkv * g, L, D], each head repeated g times in place.
fn repeat_heads(imp: &mut Importer, x: &Rt, g: i64, loc: &str) -> Rt {
    if g == 1 {
        return x.clone();
    }
    let s = &x.shape;
    let s5 = vec![s[0].clone(), s[1].clone(), Dim::Const(1), s[2].clone(), s[3].clone()];
    let r = imp.b.reshape(&x.val, &Importer::dim_strings(&s5), tensor_type(&s5, Elem::F32), loc);
    let e5 = vec![s[0].clone(), s[1].clone(), Dim::Const(g), s[2].clone(), s[3].clone()];
    let e = imp.b.expand(&r, &Importer::dim_strings(&e5), tensor_type(&e5, Elem::F32), loc);
    let shape = vec![s[0].clone(), Dim::mul(s[1].clone(), Dim::Const(g)), s[2].clone(), s[3].clone()];
    Rt { val: imp.b.reshape(&e, &Importer::dim_strings(&shape), tensor_type(&shape, Elem::F32), loc), shape }
}

/// Where the causal frontier and windows sit: query i is at position offset + i.
enum Offset {
    /// The past length (0 without a past).
    Scalar(Dim),
    /// nonpad_kv_seqlen [B] - Lq, per batch.
    PerBatch(Rt),
}

/// The additive bias [.., Lq, Lk] (0 where visible, -inf where hidden), or None when every key is
/// visible.
#[allow(clippy::too_many_arguments)]
fn bias(imp: &mut Importer, node: &NodeProto, lq: &Dim, lk: &Dim, offset: &Offset, causal: bool, (wl, wr): (i64, i64), mask: Option<Rt>, nonpad: Option<&Rt>, loc: &str) -> Result<Option<Rt>, FrontendError> {
    let one = Dim::Const(1);
    let i64t = |s: &[Dim]| tensor_type(s, Elem::I64);
    let booln = |s: &[Dim]| tensor_type(s, Elem::I1);
    let range = |imp: &mut Importer, n: &Dim, shape: Vec<Dim>| {
        let r = imp.b.range(0, 1, &n.to_string(), i64t(std::slice::from_ref(n)), loc);
        imp.b.reshape(&r, &Importer::dim_strings(&shape), i64t(&shape), loc)
    };
    let j_shape = vec![one.clone(), one.clone(), one.clone(), lk.clone()];
    let j = range(imp, lk, j_shape.clone());
    let mut keep: Option<(Val, Vec<Dim>)> = None;
    let and = |imp: &mut Importer, keep: Option<(Val, Vec<Dim>)>, c: Val, cs: Vec<Dim>| -> Result<Option<(Val, Vec<Dim>)>, FrontendError> {
        Ok(Some(match keep {
            None => (c, cs),
            Some((k, ks)) => {
                let s = broadcast(&ks, &cs).ok_or_else(|| node_err(node, "masks do not broadcast"))?;
                (imp.b.compare("and", &k, Some(&c), booln(&s), loc), s)
            }
        }))
    };
    if causal || wl >= 0 || wr >= 0 {
        let i = range(imp, lq, vec![one.clone(), one.clone(), lq.clone(), one.clone()]);
        let (pos, pos_shape) = match offset {
            Offset::Scalar(d) => {
                let o = i64c(imp, node, d.clone())?;
                let s = vec![one.clone(), one.clone(), lq.clone(), one.clone()];
                (imp.b.binary(BinaryOp::Add, &i, &o, i64t(&s), loc), s)
            }
            Offset::PerBatch(o) => {
                let b4 = vec![o.shape[0].clone(), one.clone(), one.clone(), one.clone()];
                let o4 = imp.b.reshape(&o.val, &Importer::dim_strings(&b4), i64t(&b4), loc);
                let s = vec![o.shape[0].clone(), one.clone(), lq.clone(), one.clone()];
                (imp.b.binary(BinaryOp::Add, &o4, &i, i64t(&s), loc), s)
            }
        };
        let s = broadcast(&pos_shape, &j_shape).ok_or_else(|| node_err(node, "positions do not broadcast"))?;
        if causal {
            let c = imp.b.compare("le", &j, Some(&pos), booln(&s), loc);
            keep = and(imp, keep, c, s.clone())?;
        }
        for (w, pred, op) in [(wl, "ge", BinaryOp::Sub), (wr, "le", BinaryOp::Add)] {
            if w >= 0 {
                let wv = i64c(imp, node, Dim::Const(w))?;
                let edge = imp.b.binary(op, &pos, &wv, i64t(&pos_shape), loc);
                let c = imp.b.compare(pred, &j, Some(&edge), booln(&s), loc);
                keep = and(imp, keep, c, s.clone())?;
            }
        }
    }
    if let Some(np) = nonpad {
        let b_shape = vec![np.shape[0].clone(), one.clone(), one.clone(), one.clone()];
        let n = imp.b.reshape(&np.val, &Importer::dim_strings(&b_shape), i64t(&b_shape), loc);
        let s = vec![np.shape[0].clone(), one.clone(), one.clone(), lk.clone()];
        let c = imp.b.compare("lt", &j, Some(&n), booln(&s), loc);
        keep = and(imp, keep, c, s)?;
    }
    let mut add: Option<Rt> = None;
    if let Some(m) = mask {
        let m = pad_keys(imp, node, m, lk, loc)?;
        if m.elem() == Elem::I1 {
            keep = and(imp, keep, m.val.clone(), m.shape.clone())?;
        } else {
            add = Some(m);
        }
    }
    let bias = match keep {
        None => None,
        Some((k, ks)) => {
            let (zero, hidden) = (f32c(imp, node, 0.0)?, f32c(imp, node, f32::NEG_INFINITY)?);
            Some(Rt { val: imp.b.select(&k, &zero, &hidden, tensor_type(&ks, Elem::F32), loc), shape: ks })
        }
    };
    Ok(match (bias, add) {
        (None, a) => a,
        (b, None) => b,
        (Some(b), Some(a)) => {
            let s = broadcast(&b.shape, &a.shape).ok_or_else(|| node_err(node, "attn_mask does not broadcast over [batch, heads, queries, keys]"))?;
            Some(Rt { val: imp.b.binary(BinaryOp::Add, &b.val, &a.val, tensor_type(&s, Elem::F32), loc), shape: s })
        }
    })
}

/// The fused op's mask for `nonpad_kv_seqlen` [B] (a static external cache): the additive bias
/// with the causal frontier and windows at nonpad[b] - Lq + i, the padding and `mask`; the op
/// then runs with no causal flag or windows of its own.
#[allow(clippy::too_many_arguments)]
pub(super) fn nonpad_bias(imp: &mut Importer, node: &NodeProto, np: &Rt, lq: &Dim, lk: &Dim, causal: bool, window: (i64, i64), mask: Option<Rt>, loc: &str) -> Result<Rt, FrontendError> {
    let offset = nonpad_offset(imp, node, np, lq, loc)?;
    let b = bias(imp, node, lq, lk, &offset, causal, window, mask, Some(np), loc)?;
    b.ok_or_else(|| node_err(node, "nonpad_kv_seqlen gave no mask (an lt2c bug)"))
}

/// Where the queries of batch b sit in a static cache of nonpad[b] valid keys: nonpad[b] - Lq.
fn nonpad_offset(imp: &mut Importer, node: &NodeProto, np: &Rt, lq: &Dim, loc: &str) -> Result<Offset, FrontendError> {
    if np.shape.len() != 1 || np.elem() != Elem::I64 {
        return Err(node_err(node, format!("nonpad_kv_seqlen must be an int64 vector [batch], got {:?}", np.shape)));
    }
    let n = lq.as_const().ok_or_else(|| node_err(node, "nonpad_kv_seqlen needs a static query length"))?;
    let c = i64c(imp, node, Dim::Const(n))?;
    let val = imp.b.binary(BinaryOp::Sub, &np.val, &c, tensor_type(&np.shape, Elem::I64), loc);
    Ok(Offset::PerBatch(Rt { val, shape: np.shape.clone() }))
}

/// A mask over fewer keys than `lk`, padded with hidden keys (false, or -inf), as the reference
/// does; static mask dims only.
fn pad_keys(imp: &mut Importer, node: &NodeProto, m: Rt, lk: &Dim, loc: &str) -> Result<Rt, FrontendError> {
    if m.shape.last() == Some(lk) {
        return Ok(m);
    }
    if m.shape.is_empty() {
        return Err(node_err(node, "attn_mask must have rank 1 to 4 (broadcast over [B, H, Lq, Lk])"));
    }
    let dims: Option<Vec<usize>> = m.shape.iter().map(|d| d.as_const().map(|x| x as usize)).collect();
    let (Some(mut dims), Some(total)) = (dims, lk.as_const()) else {
        return Err(node_err(node, "an attn_mask shorter than the keys needs static shapes"));
    };
    let have = *dims.last().unwrap_or(&0);
    if have > total as usize {
        return Err(node_err(node, format!("attn_mask covers {have} keys, more than the {total} there are")));
    }
    let last = dims.len() - 1;
    dims[last] = total as usize - have;
    let n: usize = dims.iter().product();
    let pad = if m.elem() == Elem::I1 {
        Known { shape: dims.clone(), data: crate::value::KnownData::Bool(vec![false; n]), source: None }
    } else {
        Known::f32(dims.clone(), vec![f32::NEG_INFINITY; n])
    };
    let pad = imp.materialize(node, Value::Known(pad))?;
    let mut shape = m.shape.clone();
    shape[last] = lk.clone();
    let axis = last as i64;
    let val = imp.b.concat(&m.val, &pad.val, axis, tensor_type(&shape, m.elem()), loc);
    Ok(Rt { val, shape })
}

/// The node's outputs: Y, present_key, present_value, qk_matmul_output.
pub(super) fn attention(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let loc = Importer::loc(node);
    let (q, k, v) = (imp.rt(node, 0)?, imp.rt(node, 1)?, imp.rt(node, 2)?);
    let four_d = q.shape.len() == 4;
    if [&q, &k, &v].iter().any(|t| t.shape.len() != q.shape.len()) || !(3..=4).contains(&q.shape.len()) {
        return Err(node_err(node, "Q, K and V must all be 3-D [B, S, H*D] or all 4-D [B, H, S, D]"));
    }
    let (hq, hkv) = if four_d {
        let h = |r: &Rt, w: &str| r.shape[1].as_const().ok_or_else(|| node_err(node, format!("the head count of {w} must be static")));
        (h(&q, "Q")?, h(&k, "K")?)
    } else {
        (attrs::required_int(node, "q_num_heads")?, attrs::required_int(node, "kv_num_heads")?)
    };
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return Err(node_err(node, format!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}")));
    }
    let (q4, mut k4, mut v4) = if four_d {
        (q, k, v)
    } else {
        (heads_first(imp, node, &q, hq, &loc)?, heads_first(imp, node, &k, hkv, &loc)?, heads_first(imp, node, &v, hkv, &loc)?)
    };
    let nonpad = imp.opt_rt(node, 6)?;
    let (pk, pv) = (imp.opt_rt(node, 4)?, imp.opt_rt(node, 5)?);
    if [&pk, &pv].iter().any(|p| p.as_ref().is_some_and(|p| p.shape.len() != 4)) {
        return Err(node_err(node, "past_key / past_value must be 4-D [B, Hkv, P, D]"));
    }
    let mut present = vec![];
    let offset = match (&pk, &pv) {
        (Some(pk), Some(pv)) => {
            if nonpad.is_some() {
                return Err(node_err(node, "nonpad_kv_seqlen together with past_key / past_value (the spec rules it out)"));
            }
            let p = pk.shape[2].clone();
            for (new, old) in [(&mut k4, pk), (&mut v4, pv)] {
                let mut shape = old.shape.clone();
                shape[2] = Dim::add(old.shape[2].clone(), new.shape[2].clone());
                let val = imp.b.concat(&old.val, &new.val, 2, tensor_type(&shape, Elem::F32), &loc);
                *new = Rt { val, shape };
                present.push(Value::Rt(new.clone()));
            }
            Offset::Scalar(p)
        }
        (None, None) => match &nonpad {
            Some(np) => nonpad_offset(imp, node, np, &q4.shape[2], &loc)?,
            None => Offset::Scalar(Dim::Const(0)),
        },
        _ => return Err(node_err(node, "past_key and past_value must be given together")),
    };
    if present.is_empty() && (imp.output_used(node, 1) || imp.output_used(node, 2)) {
        return Err(node_err(node, "present_key / present_value without a past are not supported yet"));
    }
    let d = q4.shape[3].as_const().ok_or_else(|| node_err(node, "the head size must be static"))?;
    let scale = if attrs::has(node, "scale") { attrs::float(node, "scale", 0.0) } else { 1.0 / (d as f32).sqrt() };
    let g = hq / hkv;
    let (kr, vr) = (repeat_heads(imp, &k4, g, &loc), repeat_heads(imp, &v4, g, &loc));
    let (b, lq, lk) = (q4.shape[0].clone(), q4.shape[2].clone(), kr.shape[2].clone());
    let kt_shape = vec![b.clone(), Dim::Const(hq), Dim::Const(d), lk.clone()];
    let kt = imp.b.transpose(&kr.val, &[0, 1, 3, 2], tensor_type(&kt_shape, Elem::F32), &loc);
    let s_shape = vec![b.clone(), Dim::Const(hq), lq.clone(), lk.clone()];
    let st = tensor_type(&s_shape, Elem::F32);
    let qk = imp.b.matmul(&q4.val, &kt, st.clone(), &loc);
    let sc = f32c(imp, node, scale)?;
    let mut scores = imp.b.binary(BinaryOp::Mul, &qk, &sc, st.clone(), &loc);
    let cap = attrs::float(node, "softcap", 0.0);
    if cap > 0.0 {
        let c = f32c(imp, node, cap)?;
        let x = imp.b.binary(BinaryOp::Div, &scores, &c, st.clone(), &loc);
        let t = imp.b.unary(UnaryOp::Tanh, &x, &loc);
        scores = imp.b.binary(BinaryOp::Mul, &t, &c, st.clone(), &loc);
    }
    let causal = attrs::int(node, "is_causal", 0) != 0;
    let window = (attrs::int(node, "left_window_size", -1), attrs::int(node, "right_window_size", -1));
    let mask = imp.opt_rt(node, 3)?;
    if mask.as_ref().is_some_and(|m| !(1..=4).contains(&m.shape.len())) {
        return Err(node_err(node, "attn_mask must have rank 1 to 4 (broadcast over [B, H, Lq, Lk])"));
    }
    let bias = bias(imp, node, &lq, &lk, &offset, causal, window, mask, nonpad.as_ref(), &loc)?;
    let with_bias = match &bias {
        Some(bv) => imp.b.binary(BinaryOp::Add, &scores, &bv.val, st.clone(), &loc),
        None => scores.clone(),
    };
    let mut p = imp.b.softmax(&with_bias, 3, &loc);
    if let Some(bv) = &bias {
        // Rows whose every key is hidden give zeros (decided on the bias, as the reference).
        let mut ms = bv.shape.clone();
        if let Some(l) = ms.last_mut() {
            *l = Dim::Const(1);
        }
        let m = imp.b.reduce(ReduceOp::Max, &bv.val, &[bv.shape.len() as i64 - 1], true, tensor_type(&ms, Elem::F32), &loc);
        let hidden = f32c(imp, node, f32::NEG_INFINITY)?;
        let none = imp.b.compare("eq", &m, Some(&hidden), tensor_type(&ms, Elem::I1), &loc);
        let zero = f32c(imp, node, 0.0)?;
        p = imp.b.select(&none, &zero, &p, st.clone(), &loc);
    }
    let dv = vr.shape[3].clone();
    let y_shape = vec![b.clone(), Dim::Const(hq), lq.clone(), dv.clone()];
    let y4 = imp.b.matmul(&p, &vr.val, tensor_type(&y_shape, Elem::F32), &loc);
    let y = if four_d {
        Rt { val: y4, shape: y_shape }
    } else {
        let t_shape = vec![b.clone(), lq.clone(), Dim::Const(hq), dv.clone()];
        let t = imp.b.transpose(&y4, &[0, 2, 1, 3], tensor_type(&t_shape, Elem::F32), &loc);
        let shape = vec![b, lq, Dim::mul(Dim::Const(hq), dv)];
        Rt { val: imp.b.reshape(&t, &Importer::dim_strings(&shape), tensor_type(&shape, Elem::F32), &loc), shape }
    };
    let qk_out = match attrs::int(node, "qk_matmul_output_mode", 0) {
        0 | 1 => scores,
        2 => with_bias,
        3 => p,
        m => return Err(node_err(node, format!("qk_matmul_output_mode {m} (0 to 3 are defined)"))),
    };
    let unread = Value::Unavailable(format!("node `{}` (Attention): this output is not produced", attrs::node_name(node)));
    if present.is_empty() {
        present = vec![unread.clone(), unread];
    }
    let mut outs = vec![Value::Rt(y)];
    outs.extend(present);
    outs.push(Value::Rt(Rt { val: qk_out, shape: s_shape }));
    Ok(outs)
}
