//! Attention (opset 23+) in its 3-D packed form, and RotaryEmbedding (opset 23).

use tract_onnx::pb::NodeProto;

use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{tensor_type, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    match (domain, op) {
        ("", "Attention") => Some(attention),
        ("", "RotaryEmbedding") => Some(rotary),
        _ => None,
    }
}

fn last_const(node: &NodeProto, r: &Rt, what: &str) -> Result<i64, FrontendError> {
    r.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, format!("the last dim of {what} must be static")))
}

fn attention(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    if super::attention_parts::needed(imp, node)? {
        return super::attention_parts::attention(imp, node);
    }
    let nonpad = imp.opt_rt(node, 6)?;
    if imp.output_used(node, 3) {
        return Err(node_err(node, "the qk_matmul_output output is not supported yet"));
    }
    let past = (imp.opt_rt(node, 4)?, imp.opt_rt(node, 5)?);
    if past.0.is_some() != past.1.is_some() {
        return Err(node_err(node, "past_key and past_value must be given together"));
    }
    if attrs::float(node, "softcap", 0.0) != 0.0 {
        return Err(node_err(node, "softcap is not supported yet"));
    }
    let loc = Importer::loc(node);
    let mut q = imp.rt(node, 0)?;
    let mut k = imp.rt(node, 1)?;
    let mut v = imp.rt(node, 2)?;
    let four_d = q.shape.len() == 4;
    // The explicit-cache form: K/V become concat(past, new) along the sequence ([B, Hkv, P+S, D]),
    // returned as present_key / present_value; queries align bottom-right (offset = past length).
    let mut present: Vec<Value> = Vec::new();
    if let (Some(pk), Some(pv)) = &past {
        let seq_axis = if four_d { 2 } else { 1 };
        if q.shape[seq_axis] != k.shape[seq_axis] {
            return Err(node_err(node, "a past with new keys of another length than the queries is not supported (the causal offset would not be the past length)"));
        }
        let hkv = pk.shape[1].as_const().ok_or_else(|| node_err(node, "past_key's head count must be static"))?;
        let mut full = Vec::new();
        for (new, old) in [(&k, pk), (&v, pv)] {
            let heads_first = if four_d { new.clone() } else { unpack(imp, node, new, hkv, &loc)? };
            let mut shape = old.shape.clone();
            shape[2] = Dim::add(old.shape[2].clone(), heads_first.shape[2].clone());
            let val = imp.b.concat(&old.val, &heads_first.val, 2, tensor_type(&shape, Elem::F32), &loc);
            full.push(Rt { val, shape });
        }
        present = full.iter().cloned().map(Value::Rt).collect();
        if four_d {
            k = full[0].clone();
            v = full[1].clone();
        } else {
            k = packed(imp, &full[0], &loc)?;
            v = packed(imp, &full[1], &loc)?;
        }
    }
    let (hq, hkv) = if four_d {
        if k.shape.len() != 4 || v.shape.len() != 4 {
            return Err(node_err(node, "Q, K and V must all be 3-D or all 4-D"));
        }
        let h = |r: &Rt, w: &str| r.shape[1].as_const().ok_or_else(|| node_err(node, format!("the head count of {w} must be static")));
        let (hq, hkv) = (h(&q, "Q")?, h(&k, "K")?);
        // [B, H, S, D] -> [B, S, H*D]
        q = packed(imp, &q, &loc)?;
        k = packed(imp, &k, &loc)?;
        v = packed(imp, &v, &loc)?;
        (hq, hkv)
    } else {
        if q.shape.len() != 3 || k.shape.len() != 3 || v.shape.len() != 3 {
            return Err(node_err(node, "Q, K and V must be 3-D [B, S, H*D] or 4-D [B, H, S, D]"));
        }
        (attrs::required_int(node, "q_num_heads")?, attrs::required_int(node, "kv_num_heads")?)
    };
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return Err(node_err(node, format!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}")));
    }
    let qd = last_const(node, &q, "Q")?;
    let vd = last_const(node, &v, "V")?;
    if qd % hq != 0 || vd % hkv != 0 {
        return Err(node_err(node, "hidden sizes are not divisible by the head counts"));
    }
    let head = qd / hq;
    let scale = if attrs::has(node, "scale") { attrs::float(node, "scale", 0.0) } else { 1.0 / (head as f32).sqrt() };
    let mut causal = attrs::int(node, "is_causal", 0) != 0;
    let mut window = (attrs::int(node, "left_window_size", -1), attrs::int(node, "right_window_size", -1));
    // ONNX aligns the causal mask and windows to the top-left (offset 0) when there is no past.
    let top_left = past.0.is_none() && q.shape[1] != k.shape[1];
    let mut mask = imp.opt_rt(node, 3)?;
    if let Some(m) = &mask {
        if m.shape.len() > 4 {
            return Err(node_err(node, "attn_mask of rank above 4 is not supported"));
        }
    }
    if let Some(np) = nonpad {
        if past.0.is_some() {
            return Err(node_err(node, "nonpad_kv_seqlen together with past_key / past_value (the spec rules it out)"));
        }
        mask = Some(super::attention_parts::nonpad_bias(imp, node, &np, &q.shape[1], &k.shape[1], causal, window, mask, &loc)?);
        (causal, window) = (false, (-1, -1));
    }
    let shape = vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Const(hq * (vd / hkv))];
    let val = imp.b.attention_masked(&q.val, &k.val, &v.val, mask.as_ref().map(|m| &m.val), hq, hkv, scale, causal, window, top_left, tensor_type(&shape, Elem::F32), &loc);
    let mut outs = finish(imp, node, Rt { val, shape }, four_d, hq, &loc)?;
    if present.is_empty() && (imp.output_used(node, 1) || imp.output_used(node, 2)) {
        return Err(node_err(node, "present_key / present_value without a past are not supported yet"));
    }
    let unread = Value::Unavailable(format!("node `{}` (Attention): this output is not produced", crate::attrs::node_name(node)));
    if present.is_empty() {
        present = vec![unread.clone(), unread.clone()];
    }
    outs.extend(present);
    outs.push(unread);
    Ok(outs)
}

/// [B, S, H*D] -> [B, H, S, D].
fn unpack(imp: &mut Importer, node: &NodeProto, x: &Rt, heads: i64, loc: &str) -> Result<Rt, FrontendError> {
    let w = x.shape[2].as_const().ok_or_else(|| node_err(node, "the hidden size must be static"))?;
    let r_shape = vec![x.shape[0].clone(), x.shape[1].clone(), Dim::Const(heads), Dim::Const(w / heads)];
    let r = imp.b.reshape(&x.val, &Importer::dim_strings(&r_shape), tensor_type(&r_shape, Elem::F32), loc);
    let t_shape = vec![x.shape[0].clone(), Dim::Const(heads), x.shape[1].clone(), Dim::Const(w / heads)];
    let val = imp.b.transpose(&r, &[0, 2, 1, 3], tensor_type(&t_shape, Elem::F32), loc);
    Ok(Rt { val, shape: t_shape })
}

/// [B, H, S, D] -> [B, S, H*D].
fn packed(imp: &mut Importer, x: &Rt, loc: &str) -> Result<Rt, FrontendError> {
    let s = &x.shape;
    let t_shape = vec![s[0].clone(), s[2].clone(), s[1].clone(), s[3].clone()];
    let t = imp.b.transpose(&x.val, &[0, 2, 1, 3], tensor_type(&t_shape, x.elem()), loc);
    let p_shape = vec![s[0].clone(), s[2].clone(), Dim::mul(s[1].clone(), s[3].clone())];
    let val = imp.b.reshape(&t, &Importer::dim_strings(&p_shape), tensor_type(&p_shape, x.elem()), loc);
    Ok(Rt { val, shape: p_shape })
}

/// The output in the input's layout: 4-D inputs get [B, H, S, Dv] back.
fn finish(imp: &mut Importer, _node: &NodeProto, y: Rt, four_d: bool, heads: i64, loc: &str) -> Result<Vec<Value>, FrontendError> {
    if !four_d {
        return Ok(vec![Value::Rt(y)]);
    }
    let s = &y.shape;
    let dv = Dim::div(s[2].clone(), Dim::Const(heads));
    let r_shape = vec![s[0].clone(), s[1].clone(), Dim::Const(heads), dv.clone()];
    let r = imp.b.reshape(&y.val, &Importer::dim_strings(&r_shape), tensor_type(&r_shape, Elem::F32), loc);
    let t_shape = vec![s[0].clone(), Dim::Const(heads), s[1].clone(), dv];
    let val = imp.b.transpose(&r, &[0, 2, 1, 3], tensor_type(&t_shape, Elem::F32), loc);
    Ok(vec![Value::Rt(Rt { val, shape: t_shape })])
}

fn rotary(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    if x.shape.len() != 3 && x.shape.len() != 4 {
        return Err(node_err(node, "input must be 3-D [B, S, H*D] or 4-D [B, H, S, D]"));
    }
    let mut cos = imp.rt(node, 1)?;
    let mut sin = imp.rt(node, 2)?;
    let pos = imp.opt_rt(node, 3)?;
    // torch's exporter (HF models) passes per-position tables [1, S, R/2] shared by the batch;
    // the op wants [B, S, R/2].
    if pos.is_none() && cos.shape.len() == 3 && cos.shape[0].as_const() == Some(1) && x.shape[0].as_const() != Some(1) {
        let loc = Importer::loc(node);
        let shape = vec![x.shape[0].clone(), cos.shape[1].clone(), cos.shape[2].clone()];
        for t in [&mut cos, &mut sin] {
            let ty = tensor_type(&shape, t.elem());
            t.val = imp.b.expand(&t.val, &Importer::dim_strings(&shape), ty, &loc);
            t.shape = shape.clone();
        }
    }
    let heads = if x.shape.len() == 4 { attrs::int(node, "num_heads", 0) } else { attrs::required_int(node, "num_heads")? };
    let interleaved = attrs::int(node, "interleaved", 0) != 0;
    let rot = attrs::int(node, "rotary_embedding_dim", 0);
    let val = imp.b.rope(&x.val, &cos.val, &sin.val, pos.as_ref().map(|p| &p.val), heads, interleaved, rot, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}
