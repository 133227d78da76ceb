//! Elementwise math, MatMul and reductions: folded at compile time when every input is known,
//! otherwise `lt2.add`/`lt2.linear`/`lt2.reduce_*` and friends.

use tract_onnx::pb::NodeProto;

use lt2_ir::builder::{BinaryOp, ReduceOp, UnaryOp};
use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{broadcast, norm_axis, tensor_type, Known, KnownData, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op {
        "Add" => |i, n| binary(i, n, BinaryOp::Add),
        "Sub" => |i, n| binary(i, n, BinaryOp::Sub),
        "Mul" => |i, n| binary(i, n, BinaryOp::Mul),
        "Div" => |i, n| binary(i, n, BinaryOp::Div),
        "Pow" => |i, n| binary(i, n, BinaryOp::Pow),
        "Min" => |i, n| if n.input.len() == 2 { binary(i, n, BinaryOp::Min) } else { super::composite::variadic(i, n, "Min", false) },
        "Max" => |i, n| if n.input.len() == 2 { binary(i, n, BinaryOp::Max) } else { super::composite::variadic(i, n, "Max", false) },
        "TopK" => top_k,
        "Neg" => |i, n| unary(i, n, UnaryOp::Neg),
        "Exp" => |i, n| unary(i, n, UnaryOp::Exp),
        "Sigmoid" => |i, n| unary(i, n, UnaryOp::Sigmoid),
        "Softplus" => |i, n| unary(i, n, UnaryOp::Softplus),
        "Sqrt" => |i, n| unary(i, n, UnaryOp::Sqrt),
        "Log" => |i, n| unary(i, n, UnaryOp::Log),
        "Tanh" => |i, n| unary(i, n, UnaryOp::Tanh),
        "Relu" => |i, n| unary(i, n, UnaryOp::Relu),
        "Reciprocal" => |i, n| unary(i, n, UnaryOp::Reciprocal),
        "Abs" => |i, n| unary(i, n, UnaryOp::Abs),
        "Sin" => |i, n| unary(i, n, UnaryOp::Sin),
        "Cos" => |i, n| unary(i, n, UnaryOp::Cos),
        "MatMul" => matmul,
        "ReduceSum" => |i, n| reduce(i, n, ReduceOp::Sum),
        "ReduceMean" => |i, n| reduce(i, n, ReduceOp::Mean),
        "ReduceMax" => |i, n| reduce(i, n, ReduceOp::Max),
        "CumSum" => cumsum,
        _ => return None,
    })
}

fn fold_f32(kind: BinaryOp, a: f32, b: f32) -> f32 {
    match kind {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Max => a.max(b),
    }
}

fn fold_dim(kind: BinaryOp, a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match kind {
        BinaryOp::Add => Dim::add(a.clone(), b.clone()),
        BinaryOp::Sub => Dim::sub(a.clone(), b.clone()),
        BinaryOp::Mul => Dim::mul(a.clone(), b.clone()),
        BinaryOp::Div => Dim::div(a.clone(), b.clone()),
        BinaryOp::Min => Dim::min(a.clone(), b.clone()),
        BinaryOp::Max => Dim::max(a.clone(), b.clone()),
        BinaryOp::Pow => match (a.as_const(), b.as_const()) {
            (Some(x), Some(y)) if y >= 0 => Dim::Const(x.checked_pow(u32::try_from(y).ok()?)?),
            _ => return None,
        },
    })
}

/// Index of the element of a broadcast input for an output index.
fn bcast_index(out_shape: &[usize], in_shape: &[usize], mut flat: usize) -> usize {
    let mut idx = 0;
    let mut stride = 1;
    let off = out_shape.len() - in_shape.len();
    for ax in (0..out_shape.len()).rev() {
        let o = flat % out_shape[ax];
        flat /= out_shape[ax];
        if ax >= off {
            let d = in_shape[ax - off];
            if d != 1 {
                idx += o * stride;
            }
            stride *= d;
        }
    }
    idx
}

fn fold_binary(node: &NodeProto, kind: BinaryOp, a: &Known, b: &Known) -> Result<Option<Known>, FrontendError> {
    let sa: Vec<Dim> = a.shape_dims();
    let sb: Vec<Dim> = b.shape_dims();
    let out = broadcast(&sa, &sb).ok_or_else(|| node_err(node, format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape)))?;
    let out: Vec<usize> = out.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
    let n: usize = out.iter().product();
    let data = match (&a.data, &b.data) {
        (KnownData::F32(x), KnownData::F32(y)) => {
            KnownData::F32(std::sync::Arc::new((0..n).map(|i| fold_f32(kind, x[bcast_index(&out, &a.shape, i)], y[bcast_index(&out, &b.shape, i)])).collect()))
        }
        (KnownData::I64(x), KnownData::I64(y)) => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                match fold_dim(kind, &x[bcast_index(&out, &a.shape, i)], &y[bcast_index(&out, &b.shape, i)]) {
                    Some(d) => v.push(d),
                    None => return Ok(None),
                }
            }
            KnownData::I64(v)
        }
        _ => return Ok(None),
    };
    Ok(Some(Known { shape: out, data, source: None }))
}

fn binary(imp: &mut Importer, node: &NodeProto, kind: BinaryOp) -> Result<Vec<Value>, FrontendError> {
    let a = imp.req(node, 0)?;
    let b = imp.req(node, 1)?;
    if let (Value::Known(ka), Value::Known(kb)) = (&a, &b) {
        if let Some(k) = fold_binary(node, kind, ka, kb)? {
            return Ok(vec![Value::Known(k)]);
        }
    }
    let shape = broadcast(&a.shape(), &b.shape())
        .ok_or_else(|| node_err(node, format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape())))?;
    let b = match (kind, a.elem(), b.elem()) {
        // Pow's exponent may have another numeric type: compute in the base's type.
        (BinaryOp::Pow, Elem::F32, Elem::I64) => match b {
            Value::Known(Known { shape, data: KnownData::I64(v), .. }) => {
                let f: Option<Vec<f32>> = v.iter().map(|d| d.as_const().map(|x| x as f32)).collect();
                Value::Known(Known::f32(shape, f.ok_or_else(|| node_err(node, "symbolic exponent"))?))
            }
            b => {
                let r = imp.materialize(node, b)?;
                let val = imp.b.cast(&r.val, tensor_type(&r.shape, Elem::F32), &Importer::loc(node));
                Value::Rt(Rt { val, shape: r.shape })
            }
        },
        (BinaryOp::Pow, Elem::I64, _) => return Err(node_err(node, "Pow of an integer base is not supported (float bases only)")),
        (_, ea, eb) if ea != eb => return Err(node_err(node, format!("operand element types differ ({ea:?} vs {eb:?})"))),
        _ => b,
    };
    let ra = imp.materialize(node, a)?;
    let rb = imp.materialize(node, b)?;
    let ty = tensor_type(&shape, ra.elem());
    let val = imp.b.binary(kind, &ra.val, &rb.val, ty, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn fold_unary(kind: UnaryOp, x: f32) -> f32 {
    match kind {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
    }
}

fn unary(imp: &mut Importer, node: &NodeProto, kind: UnaryOp) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    match x {
        Value::Known(Known { shape, data: KnownData::F32(v), .. }) => {
            Ok(vec![Value::Known(Known::f32(shape, v.iter().map(|&e| fold_unary(kind, e)).collect()))])
        }
        Value::Known(Known { shape, data: KnownData::I64(v), .. }) if kind == UnaryOp::Neg => {
            Ok(vec![Value::Known(Known::i64(shape, v.into_iter().map(|d| Dim::sub(Dim::Const(0), d)).collect()))])
        }
        x => {
            let r = imp.materialize(node, x)?;
            if r.elem() != Elem::F32 {
                return Err(node_err(node, "lt2c supports this op on float tensors only"));
            }
            let val = imp.b.unary(kind, &r.val, &Importer::loc(node));
            Ok(vec![Value::Rt(Rt { val, shape: r.shape })])
        }
    }
}

/// MatMul. A 2-D compile-time right operand is a weight: `lt2.linear`. So is the transpose of
/// an initializer (a tied LM head), which keeps a single copy of the weight.
fn matmul(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let a = imp.req(node, 0)?;
    let b = imp.req(node, 1)?;
    let sa = a.shape();
    let sb = b.shape();
    if sa.is_empty() || sb.is_empty() {
        return Err(node_err(node, "MatMul operands must have rank >= 1"));
    }
    let loc = Importer::loc(node);
    if let Value::Known(kb) = &b {
        if kb.shape.len() == 2 && sa.len() >= 2 {
            let (k, n) = (kb.shape[0] as i64, kb.shape[1] as i64);
            if sa.last().and_then(Dim::as_const).is_some_and(|x| x != k) {
                return Err(node_err(node, format!("inner dims differ: {:?} x {:?}", sa, kb.shape)));
            }
            let ra = imp.materialize(node, a)?;
            let mut shape = sa.clone();
            *shape.last_mut().expect("rank >= 2") = Dim::Const(n);
            // Transposed initializer: use the original weight with transpose_w.
            let (w, transpose_w) = match transposed_initializer(imp, node, kb) {
                Some(orig) => (imp.materialize(node, Value::Known(orig))?, true),
                None => (imp.materialize(node, b.clone())?, false),
            };
            let val = imp.b.linear(&ra.val, &w.val, None, transpose_w, tensor_type(&shape, Elem::F32), &loc);
            return Ok(vec![Value::Rt(Rt { val, shape })]);
        }
    }
    // numpy's 1-D operands: a vector a is a row [1, K], a vector b a column [K, 1], and that dim
    // leaves the result again.
    let mut ra = imp.materialize(node, a)?;
    let mut rb = imp.materialize(node, b)?;
    let (va, vb) = (sa.len() == 1, sb.len() == 1);
    let as_matrix = |imp: &mut Importer, r: &Rt, shape: Vec<Dim>| Rt { val: imp.b.reshape(&r.val, &Importer::dim_strings(&shape), tensor_type(&shape, Elem::F32), &loc), shape };
    if va {
        ra = as_matrix(imp, &ra, vec![Dim::Const(1), sa[0].clone()]);
    }
    if vb {
        rb = as_matrix(imp, &rb, vec![sb[0].clone(), Dim::Const(1)]);
    }
    let (sa, sb) = (&ra.shape, &rb.shape);
    let batch = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).ok_or_else(|| node_err(node, "batch dims do not broadcast"))?;
    let mut shape = batch;
    shape.push(sa[sa.len() - 2].clone());
    shape.push(sb[sb.len() - 1].clone());
    let val = imp.b.matmul(&ra.val, &rb.val, tensor_type(&shape, Elem::F32), &loc);
    if !va && !vb {
        return Ok(vec![Value::Rt(Rt { val, shape })]);
    }
    let r = shape.len();
    let out: Vec<Dim> = shape.iter().enumerate().filter(|&(i, _)| !(va && i == r - 2) && !(vb && i == r - 1)).map(|(_, d)| d.clone()).collect();
    let val = imp.b.reshape(&val, &Importer::dim_strings(&out), tensor_type(&out, Elem::F32), &loc);
    Ok(vec![Value::Rt(Rt { val, shape: out })])
}

/// If MatMul's right operand is `Transpose(initializer)` of a 2-D initializer, that initializer.
fn transposed_initializer(imp: &Importer, node: &NodeProto, _kb: &Known) -> Option<Known> {
    let name = node.input.get(1)?;
    let src = imp.transposed_from.get(name)?;
    match imp.lookup(src)? {
        Value::Known(k) if k.source.is_some() && k.shape.len() == 2 => Some(k.clone()),
        _ => None,
    }
}

/// CumSum over a float or int64 input along an axis known at compile time (HF exports use it
/// on position ids to find packed sequences).
fn cumsum(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    let axis = imp.known(node, 1, "axis")?;
    let axis = axis.ints().and_then(|v| (v.len() == 1).then(|| v[0])).ok_or_else(|| node_err(node, "axis must be one integer known at compile time"))?;
    let a = norm_axis(axis, x.shape.len()).ok_or_else(|| node_err(node, format!("axis {axis} out of range for rank {}", x.shape.len())))?;
    if !matches!(x.elem(), Elem::F32 | Elem::I64) {
        return Err(node_err(node, format!("input of type {:?} is not supported (float or int64)", x.elem())));
    }
    let (exclusive, reverse) = (attrs::int(node, "exclusive", 0) != 0, attrs::int(node, "reverse", 0) != 0);
    let val = imp.b.cumsum(&x.val, a as i64, exclusive, reverse, &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: x.shape })])
}

fn reduce(imp: &mut Importer, node: &NodeProto, kind: ReduceOp) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let rank = x.rank();
    // Opset 18+ takes axes as an input; earlier opsets as an attribute.
    let axes = match imp.input(node, 1)? {
        Some(Value::Known(k)) => k.ints().ok_or_else(|| node_err(node, "axes must be constant"))?,
        Some(_) => return Err(node_err(node, "axes given at run time are not supported: they must be known at compile time")),
        None => attrs::ints(node, "axes").unwrap_or_default(),
    };
    let keepdims = attrs::int(node, "keepdims", 1) != 0;
    let noop = attrs::int(node, "noop_with_empty_axes", 0) != 0;
    if axes.is_empty() && noop {
        return Ok(vec![x]);
    }
    let mut axes: Vec<i64> = if axes.is_empty() {
        (0..rank as i64).collect()
    } else {
        axes.iter().map(|&a| norm_axis(a, rank).map(|a| a as i64).ok_or_else(|| node_err(node, format!("axis {a} out of range for rank {rank}")))).collect::<Result<_, _>>()?
    };
    axes.sort_unstable();
    axes.dedup();
    let in_shape = x.shape();
    let mut shape = Vec::new();
    for (i, d) in in_shape.iter().enumerate() {
        if axes.contains(&(i as i64)) {
            if keepdims {
                shape.push(Dim::Const(1));
            }
        } else {
            shape.push(d.clone());
        }
    }
    let r = imp.materialize(node, x)?;
    let val = imp.b.reduce(kind, &r.val, &axes, keepdims, tensor_type(&shape, r.elem()), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

/// TopK with k known at compile time (possibly symbolic, e.g. `min(2048, seq)`).
fn top_k(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.rt(node, 0)?;
    let k = match imp.input(node, 1)? {
        Some(Value::Known(k)) if k.numel() == 1 => k.dims().map(|d| d[0].clone()).ok_or_else(|| node_err(node, "k must be an integer"))?,
        Some(_) => return Err(node_err(node, "k given at run time is not supported: it must be known at compile time")),
        None => Dim::Const(attrs::required_int(node, "k")?),
    };
    let axis = norm_axis(attrs::int(node, "axis", -1), x.shape.len()).ok_or_else(|| node_err(node, "axis out of range"))?;
    let largest = attrs::int(node, "largest", 1) != 0;
    if attrs::int(node, "sorted", 1) == 0 {
        // Unsorted output may come in any order; sorted is one valid order.
    }
    let mut shape = x.shape.clone();
    shape[axis] = k.clone();
    let (v, i) = imp.b.topk(&x.val, axis as i64, largest, &k.to_string(), tensor_type(&shape, Elem::F32), tensor_type(&shape, Elem::I64), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val: v, shape: shape.clone() }), Value::Rt(Rt { val: i, shape })])
}
