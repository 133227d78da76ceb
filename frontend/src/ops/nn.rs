//! Normalisation: RMSNormalization (opset 23) and ONNX Runtime's SimplifiedLayerNormalization.

use tract_onnx::pb::NodeProto;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{norm_axis, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    match (domain, op) {
        ("", "RMSNormalization") | ("com.microsoft", "SimplifiedLayerNormalization") | ("", "SimplifiedLayerNormalization") => Some(rms_norm),
        _ => None,
    }
}

fn rms_norm(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    let scale = imp.rt(node, 1)?;
    let rank = x.shape.len();
    let axis = attrs::int(node, "axis", -1);
    let axis_n = norm_axis(axis, rank).ok_or_else(|| node_err(node, format!("axis {axis} out of range for rank {rank}")))?;
    let eps = attrs::float(node, "epsilon", 1e-5);
    if imp.output_used(node, 1) || imp.output_used(node, 2) {
        return Err(node_err(node, "the mean / inverse-std-dev outputs are not supported"));
    }
    let val = imp.b.rms_norm(&x.val, &scale.val, eps, axis_n as i64, x.val.ty.clone(), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}
