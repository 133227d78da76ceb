//! The `lt2` ONNX domain (version 1): LightningIndexer and SparseAttention (onnx-ops.md).

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
        ("lt2", "LightningIndexer") => Some(indexer),
        ("lt2", "SparseAttention") => Some(sparse_attention),
        _ => None,
    }
}

fn indexer(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let q = imp.rt(node, 0)?;
    let k = imp.rt(node, 1)?;
    let w = imp.opt_rt(node, 2)?;
    let heads = attrs::required_int(node, "num_heads")?;
    let top_k = attrs::required_int(node, "top_k")?;
    let score = attrs::string(node, "score", "mean_dot")?;
    if !matches!(score.as_str(), "mean_dot" | "relu_weighted") {
        return Err(node_err(node, format!("score `{score}` is unknown (mean_dot, relu_weighted)")));
    }
    if (score == "relu_weighted") != w.is_some() {
        return Err(node_err(node, "the weights input is required by relu_weighted and refused by mean_dot"));
    }
    if heads <= 0 || top_k <= 0 || q.shape.len() != 3 || k.shape.len() != 3 {
        return Err(node_err(node, "q_index must be [B,T,H*D], k_index [B,S,D], num_heads and top_k positive"));
    }
    let shape = vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Const(top_k)];
    let val = imp.b.lightning_indexer(&q.val, &k.val, w.as_ref().map(|w| &w.val), heads, top_k, &score, tensor_type(&shape, Elem::I64), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn sparse_attention(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let q = imp.rt(node, 0)?;
    let k = imp.rt(node, 1)?;
    let v = imp.rt(node, 2)?;
    let idx = imp.rt(node, 3)?;
    let hq = attrs::required_int(node, "q_num_heads")?;
    let hkv = attrs::required_int(node, "kv_num_heads")?;
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 || q.shape.len() != 3 || v.shape.len() != 3 {
        return Err(node_err(node, "q_num_heads must be a positive multiple of kv_num_heads; inputs [B, T, H*D]"));
    }
    let qd = q.shape[2].as_const().ok_or_else(|| node_err(node, "query's last dim must be static"))?;
    let vd = v.shape[2].as_const().ok_or_else(|| node_err(node, "value's last dim must be static"))?;
    let scale = if attrs::has(node, "scale") { attrs::float(node, "scale", 0.0) } else { 1.0 / ((qd / hq) as f32).sqrt() };
    let shape = vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Const(hq * (vd / hkv))];
    let val = imp.b.sparse_attention(&q.val, &k.val, &v.val, &idx.val, hq, hkv, scale, tensor_type(&shape, Elem::F32), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}
