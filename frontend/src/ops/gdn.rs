//! Gated DeltaNet building blocks: LinearAttention (opset 27) and CausalConvWithState (27).

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
        ("", "LinearAttention") => Some(linear_attention),
        ("", "CausalConvWithState") => Some(causal_conv),
        _ => None,
    }
}

fn linear_attention(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let q = imp.rt(node, 0)?;
    let k = imp.rt(node, 1)?;
    let v = imp.rt(node, 2)?;
    let state = imp.opt_rt(node, 3)?;
    let g = imp.opt_rt(node, 4)?;
    let beta = imp.opt_rt(node, 5)?;
    if q.shape.len() != 3 || k.shape.len() != 3 || v.shape.len() != 3 {
        return Err(node_err(node, "query, key and value must be 3-D [B, T, H*D]"));
    }
    let hq = attrs::required_int(node, "q_num_heads")?;
    let hkv = attrs::required_int(node, "kv_num_heads")?;
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return Err(node_err(node, format!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}")));
    }
    let rule = attrs::string(node, "update_rule", "gated_delta")?;
    let needs = match rule.as_str() {
        "gated_delta" => (true, true),
        "gated" => (true, false),
        "delta" => (false, true),
        "linear" => (false, false),
        other => return Err(node_err(node, format!("update_rule `{other}` is unknown (linear, gated, delta, gated_delta)"))),
    };
    if needs.0 && g.is_none() {
        return Err(node_err(node, format!("update_rule `{rule}` needs the decay input")));
    }
    if needs.1 && beta.is_none() {
        return Err(node_err(node, format!("update_rule `{rule}` needs the beta input")));
    }
    let qd = q.shape[2].as_const().ok_or_else(|| node_err(node, "query's last dim must be static"))?;
    let vd = v.shape[2].as_const().ok_or_else(|| node_err(node, "value's last dim must be static"))?;
    let dk = qd / hq;
    let dv = vd / hkv;
    if dk * hq != qd || dv * hkv != vd {
        return Err(node_err(node, "hidden sizes are not divisible by the head counts"));
    }
    let scale = if attrs::has(node, "scale") { attrs::float(node, "scale", 0.0) } else { 1.0 / (dk as f32).sqrt() };
    let o_shape = vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Const(hq * dv)];
    let s_shape = vec![q.shape[0].clone(), Dim::Const(hkv), Dim::Const(dk), Dim::Const(dv)];
    let (o, s) = imp.b.gdn(
        &q.val,
        &k.val,
        &v.val,
        g.as_ref().map(|x| &x.val),
        beta.as_ref().map(|x| &x.val),
        state.as_ref().map(|x| &x.val),
        hq,
        hkv,
        scale,
        &rule,
        tensor_type(&o_shape, Elem::F32),
        tensor_type(&s_shape, Elem::F32),
        &Importer::loc(node),
    );
    Ok(vec![Value::Rt(Rt { val: o, shape: o_shape }), Value::Rt(Rt { val: s, shape: s_shape })])
}

/// CausalConvWithState is channels-first ([B, C, L]); `lt2.causal_conv` is channels-last, the
/// layout the surrounding projections produce. The import brackets it with transposes, which
/// canonicalization cancels against the exporter's own.
fn causal_conv(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    let w = imp.rt(node, 1)?;
    let bias = imp.opt_rt(node, 2)?;
    let past = imp.opt_rt(node, 3)?;
    if x.shape.len() != 3 {
        return Err(node_err(node, "input must be [B, C, L]"));
    }
    let act = attrs::string(node, "activation", "none")?;
    let act = match act.as_str() {
        "none" | "" => "none",
        "silu" | "swish" => "silu",
        other => return Err(node_err(node, format!("activation `{other}` is not supported (none, silu, swish)"))),
    };
    let ksize = w.shape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "kernel size must be static"))?;
    let (b, c, l) = (x.shape[0].clone(), x.shape[1].clone(), x.shape[2].clone());
    let loc = Importer::loc(node);
    let cl_shape = vec![b.clone(), l.clone(), c.clone()];
    let xt = imp.b.transpose(&x.val, &[0, 2, 1], tensor_type(&cl_shape, Elem::F32), &loc);
    let st_shape = vec![b, c, Dim::Const(ksize - 1)];
    let (y, st) = imp.b.causal_conv(&xt, &w.val, bias.as_ref().map(|b| &b.val), past.as_ref().map(|p| &p.val), act, tensor_type(&cl_shape, Elem::F32), tensor_type(&st_shape, Elem::F32), &loc);
    let yt = imp.b.transpose(&y, &[0, 2, 1], x.val.ty.clone(), &loc);
    Ok(vec![Value::Rt(Rt { val: yt, shape: x.shape }), Value::Rt(Rt { val: st, shape: st_shape })])
}
