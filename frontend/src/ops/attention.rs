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
    for (i, what) in [(3, "attn_mask"), (4, "past_key"), (5, "past_value"), (6, "nonpad_kv_seqlen")] {
        if imp.input(node, i)?.is_some() {
            return Err(node_err(node, format!("input `{what}` is not supported yet")));
        }
    }
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(node_err(node, "outputs present_key/present_value/qk_matmul_output are not supported yet"));
    }
    if attrs::float(node, "softcap", 0.0) != 0.0 {
        return Err(node_err(node, "softcap is not supported yet"));
    }
    for w in ["left_window_size", "right_window_size"] {
        if attrs::has(node, w) && attrs::int(node, w, -1) != -1 {
            return Err(node_err(node, format!("`{w}` (sliding windows) is not supported yet")));
        }
    }
    let q = imp.rt(node, 0)?;
    let k = imp.rt(node, 1)?;
    let v = imp.rt(node, 2)?;
    if q.shape.len() != 3 || k.shape.len() != 3 || v.shape.len() != 3 {
        return Err(node_err(node, "only the 3-D packed form [B, S, H*D] is supported yet"));
    }
    let hq = attrs::required_int(node, "q_num_heads")?;
    let hkv = attrs::required_int(node, "kv_num_heads")?;
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
    let causal = attrs::int(node, "is_causal", 0) != 0;
    let shape = vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Const(hq * (vd / hkv))];
    let val = imp.b.attention(&q.val, &k.val, &v.val, hq, hkv, scale, causal, tensor_type(&shape, Elem::F32), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn rotary(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    if x.shape.len() != 3 {
        return Err(node_err(node, "only the 3-D packed input [B, S, H*D] is supported yet"));
    }
    let cos = imp.rt(node, 1)?;
    let sin = imp.rt(node, 2)?;
    let pos = imp.opt_rt(node, 3)?;
    let heads = attrs::required_int(node, "num_heads")?;
    let interleaved = attrs::int(node, "interleaved", 0) != 0;
    let rot = attrs::int(node, "rotary_embedding_dim", 0);
    let val = imp.b.rope(&x.val, &cos.val, &sin.val, pos.as_ref().map(|p| &p.val), heads, interleaved, rot, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}
