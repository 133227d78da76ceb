//! Softmax, masks and selection: Softmax, Where, Equal/Less/Greater/LessOrEqual/GreaterOrEqual,
//! And/Or/Not, Trilu, ConstantOfShape — what decomposed attention and causal masks use.

use tract_onnx::pb::NodeProto;

use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::tensor;
use crate::value::{broadcast, norm_axis, tensor_type, Known, KnownData, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op {
        "Softmax" => softmax,
        "Where" => where_,
        "Equal" => |i, n| compare(i, n, "eq"),
        "Less" => |i, n| compare(i, n, "lt"),
        "LessOrEqual" => |i, n| compare(i, n, "le"),
        "Greater" => |i, n| compare(i, n, "gt"),
        "GreaterOrEqual" => |i, n| compare(i, n, "ge"),
        "And" => |i, n| compare(i, n, "and"),
        "Or" => |i, n| compare(i, n, "or"),
        "Not" => not,
        "Trilu" => trilu,
        "ConstantOfShape" => constant_of_shape,
        _ => return None,
    })
}

fn softmax(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    // Opset 13+: one axis, default -1. Before: flatten from `axis` (default 1); equal when axis is last.
    let default = if imp.opset >= 13 { -1 } else { 1 };
    let axis = attrs::int(node, "axis", default);
    let ax = norm_axis(axis, x.shape.len()).ok_or_else(|| node_err(node, format!("axis {axis} out of range")))?;
    if imp.opset < 13 && ax + 1 != x.shape.len() {
        return Err(node_err(node, "Softmax before opset 13 over more than the last axis is not supported"));
    }
    let val = imp.b.softmax(&x.val, ax as i64, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}

fn where_(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let c = imp.req(node, 0)?;
    let a = imp.req(node, 1)?;
    let b = imp.req(node, 2)?;
    let shape = broadcast(&c.shape(), &a.shape())
        .and_then(|s| broadcast(&s, &b.shape()))
        .ok_or_else(|| node_err(node, "condition and branches do not broadcast"))?;
    if a.elem() != b.elem() {
        return Err(node_err(node, "the two branches differ in element type"));
    }
    let (rc, ra, rb) = (imp.materialize(node, c)?, imp.materialize(node, a)?, imp.materialize(node, b)?);
    if rc.elem() != Elem::I1 {
        return Err(node_err(node, "the condition must be bool"));
    }
    let val = imp.b.select(&rc.val, &ra.val, &rb.val, tensor_type(&shape, ra.elem()), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn fold_cmp(pred: &str, a: &Known, b: &Known) -> Option<Known> {
    if a.numel() != 1 && b.numel() != 1 && a.shape != b.shape {
        return None;
    }
    let n = a.numel().max(b.numel());
    let shape = if a.numel() >= b.numel() { a.shape.clone() } else { b.shape.clone() };
    let get = |k: &Known, i: usize| -> Option<f64> {
        let j = if k.numel() == 1 { 0 } else { i };
        match &k.data {
            KnownData::F32(v) => Some(v[j] as f64),
            KnownData::I64(v) => v[j].as_const().map(|x| x as f64),
            KnownData::Bool(v) => Some(v[j] as i64 as f64),
        }
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (get(a, i)?, get(b, i)?);
        out.push(match pred {
            "eq" => x == y,
            "lt" => x < y,
            "le" => x <= y,
            "gt" => x > y,
            "ge" => x >= y,
            "and" => x != 0.0 && y != 0.0,
            "or" => x != 0.0 || y != 0.0,
            _ => return None,
        });
    }
    Some(Known { shape, data: KnownData::Bool(out), source: None })
}

fn compare(imp: &mut Importer, node: &NodeProto, pred: &str) -> Result<Vec<Value>, FrontendError> {
    let a = imp.req(node, 0)?;
    let b = imp.req(node, 1)?;
    if let (Value::Known(ka), Value::Known(kb)) = (&a, &b) {
        if let Some(k) = fold_cmp(pred, ka, kb) {
            return Ok(vec![Value::Known(k)]);
        }
    }
    let shape = broadcast(&a.shape(), &b.shape()).ok_or_else(|| node_err(node, "operands do not broadcast"))?;
    if a.elem() != b.elem() {
        return Err(node_err(node, "operands differ in element type"));
    }
    let (ra, rb) = (imp.materialize(node, a)?, imp.materialize(node, b)?);
    let val = imp.b.compare(pred, &ra.val, Some(&rb.val), tensor_type(&shape, Elem::I1), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn not(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    match imp.req(node, 0)? {
        Value::Known(Known { shape, data: KnownData::Bool(v), .. }) => {
            Ok(vec![Value::Known(Known { shape, data: KnownData::Bool(v.iter().map(|b| !b).collect()), source: None })])
        }
        x => {
            let r = imp.materialize(node, x)?;
            let val = imp.b.compare("not", &r.val, None, r.val.ty.clone(), &Importer::loc(node));
            Ok(vec![Value::Rt(Rt { val, shape: r.shape })])
        }
    }
}

fn trilu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    let k = match imp.input(node, 1)? {
        None => 0,
        Some(Value::Known(k)) => k.ints().and_then(|v| v.first().copied()).ok_or_else(|| node_err(node, "k must be a constant integer"))?,
        Some(_) => return Err(node_err(node, "k given at run time is not supported: it must be known at compile time")),
    };
    let upper = attrs::int(node, "upper", 1) != 0;
    let val = imp.b.trilu(&x.val, upper, k, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}

/// A constant shape gives a compile-time tensor; a symbolic one broadcasts the scalar value.
fn constant_of_shape(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let shape = imp.known(node, 0, "shape")?;
    let dims = shape.dims().ok_or_else(|| node_err(node, "shape must be integers"))?.to_vec();
    let value = match attrs::tensor(node, "value") {
        Some(t) => tensor::decode(t, imp.base_dir.as_deref()).map_err(|e| node_err(node, e))?,
        None => Known::f32(vec![1], vec![0.0]),
    };
    if value.numel() != 1 {
        return Err(node_err(node, "value must hold one element"));
    }
    if let Some(c) = dims.iter().map(Dim::as_const).collect::<Option<Vec<i64>>>() {
        let shape: Vec<usize> = c.iter().map(|&d| d.max(0) as usize).collect();
        let n: usize = shape.iter().product();
        let data = match &value.data {
            KnownData::F32(v) => KnownData::F32(std::sync::Arc::new(vec![v[0]; n])),
            KnownData::I64(v) => KnownData::I64(vec![v[0].clone(); n]),
            KnownData::Bool(v) => KnownData::Bool(vec![v[0]; n]),
        };
        return Ok(vec![Value::Known(Known { shape, data, source: None })]);
    }
    let scalar = Known { shape: vec![], data: value.data, source: None };
    let r = imp.materialize(node, Value::Known(scalar))?;
    let val = imp.b.expand(&r.val, &Importer::dim_strings(&dims), tensor_type(&dims, r.elem()), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: dims })])
}
