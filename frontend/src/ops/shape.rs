//! Shape arithmetic and data movement: Shape, Gather, Slice, Squeeze, Unsqueeze, Range,
//! Concat, Constant, Identity, Reshape, Transpose, Expand, Cast. Evaluated at compile time
//! whenever the inputs are known (shape values hold symbolic dims); otherwise lt2 ops with
//! dim-expression attributes.

use std::sync::Arc;

use tract_onnx::pb::NodeProto;

use lt2_ir::Elem;
use lt2_runtime::dim::Dim;

use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::tensor;
use crate::value::{norm_axis, product, tensor_type, Known, KnownData, Rt, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op {
        "Shape" => shape,
        "Gather" => gather,
        "GatherND" => gather_nd,
        "Slice" => slice,
        "Split" => split,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Range" => range,
        "Concat" => concat,
        "Constant" => constant,
        "Identity" => identity,
        "Dropout" => dropout,
        "Reshape" => reshape,
        "Flatten" => flatten,
        "Transpose" => transpose,
        "Expand" => expand,
        "Cast" => cast,
        _ => return None,
    })
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Picks elements of a known tensor by flat source index.
fn pick(k: &Known, shape: Vec<usize>, idx: impl Iterator<Item = usize>) -> Known {
    let data = match &k.data {
        KnownData::F32(v) => KnownData::F32(std::sync::Arc::new(idx.map(|i| v[i]).collect())),
        KnownData::I64(v) => KnownData::I64(idx.map(|i| v[i].clone()).collect()),
        KnownData::Bool(v) => KnownData::Bool(idx.map(|i| v[i]).collect()),
    };
    Known { shape, data, source: None }
}

fn shape(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let dims = imp.req(node, 0)?.shape();
    let r = dims.len() as i64;
    let clamp = |a: i64| (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
    let start = clamp(attrs::int(node, "start", 0));
    let end = clamp(attrs::int(node, "end", r));
    let d: Vec<Dim> = if start < end { dims[start..end].to_vec() } else { vec![] };
    Ok(vec![Value::Known(Known::i64(vec![d.len()], d))])
}

fn gather(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let data = imp.req(node, 0)?;
    let idx = imp.req(node, 1)?;
    let rank = data.rank();
    let axis = norm_axis(attrs::int(node, "axis", 0), rank).ok_or_else(|| node_err(node, "axis out of range"))?;
    let loc = Importer::loc(node);
    if let (Value::Known(kd), Value::Known(ki)) = (&data, &idx) {
        let ix = ki.ints().ok_or_else(|| node_err(node, "indices must be integers"))?;
        let dim = kd.shape[axis] as i64;
        let ix: Vec<usize> = ix
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                (0..dim).contains(&j).then_some(j as usize).ok_or_else(|| node_err(node, format!("index {i} out of range for dim {dim}")))
            })
            .collect::<Result<_, _>>()?;
        let outer: usize = kd.shape[..axis].iter().product();
        let inner: usize = kd.shape[axis + 1..].iter().product();
        let mut shape = kd.shape[..axis].to_vec();
        shape.extend(&ki.shape);
        shape.extend(&kd.shape[axis + 1..]);
        let mut src = Vec::new();
        for o in 0..outer {
            for &i in &ix {
                for n in 0..inner {
                    src.push((o * kd.shape[axis] + i) * inner + n);
                }
            }
        }
        return Ok(vec![Value::Known(pick(kd, shape, src.into_iter()))]);
    }
    let mut shape = data.shape()[..axis].to_vec();
    shape.extend(idx.shape());
    shape.extend(data.shape()[axis + 1..].iter().cloned());
    let elem = data.elem();
    let rd = imp.materialize(node, data)?;
    let ri = imp.materialize(node, idx)?;
    if ri.elem() != Elem::I64 {
        return Err(node_err(node, "indices must be int64 or int32"));
    }
    let ty = tensor_type(&shape, elem);
    let val = if axis == 0 { imp.b.embed(&rd.val, &ri.val, ty, &loc) } else { imp.b.gather(&rd.val, &ri.val, axis as i64, ty, &loc) };
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn const_ints(imp: &Importer, node: &NodeProto, i: usize, what: &str) -> Result<Option<Vec<i64>>, FrontendError> {
    match imp.input(node, i)? {
        None => Ok(None),
        Some(Value::Known(k)) => k.ints().map(Some).ok_or_else(|| node_err(node, format!("{what} must be constant integers"))),
        Some(_) => Err(node_err(node, format!("{what} given at run time is not supported: it must be known at compile time"))),
    }
}

fn slice(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let dims = x.shape();
    let rank = dims.len();
    if imp.opset >= 10 {
        if let Some(v) = slice_to_symbolic_end(imp, node, &x)? {
            return Ok(vec![v]);
        }
    }
    let (starts, ends, axes, steps) = if imp.opset < 10 {
        let s = attrs::ints(node, "starts").ok_or_else(|| node_err(node, "starts missing"))?;
        let e = attrs::ints(node, "ends").ok_or_else(|| node_err(node, "ends missing"))?;
        (s.clone(), e, attrs::ints(node, "axes").unwrap_or_else(|| (0..s.len() as i64).collect()), vec![1; s.len()])
    } else {
        let s = const_ints(imp, node, 1, "starts")?.ok_or_else(|| node_err(node, "starts missing"))?;
        let e = const_ints(imp, node, 2, "ends")?.ok_or_else(|| node_err(node, "ends missing"))?;
        let a = const_ints(imp, node, 3, "axes")?.unwrap_or_else(|| (0..s.len() as i64).collect());
        let st = const_ints(imp, node, 4, "steps")?.unwrap_or_else(|| vec![1; s.len()]);
        (s, e, a, st)
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(node_err(node, "starts, ends, axes and steps differ in length"));
    }
    let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank).ok_or_else(|| node_err(node, format!("axis {a} out of range")))).collect::<Result<_, _>>()?;
    let mut out_shape = dims.clone();
    let mut ranges = vec![];
    for (j, &ax) in axes.iter().enumerate() {
        let step = steps[j];
        if step == 0 {
            return Err(node_err(node, "slice step 0"));
        }
        // Symbolic dim: only the full-range or prefix forms are resolvable at compile time.
        match dims[ax].as_const() {
            Some(d) => {
                let cl = |v: i64, lo: i64, hi: i64| (if v < 0 { v + d } else { v }).clamp(lo, hi);
                let (s, e) = if step > 0 { (cl(starts[j], 0, d), cl(ends[j], 0, d)) } else { (cl(starts[j], -1, d - 1), cl(ends[j], -1, d - 1)) };
                let n = if step > 0 { ((e - s).max(0) + step - 1) / step } else { ((s - e).max(0) + (-step) - 1) / (-step) };
                out_shape[ax] = Dim::Const(n);
                ranges.push((ax, s, step, n));
            }
            None => {
                if step == 1 && starts[j] == 0 && ends[j] >= i64::MAX / 2 {
                    ranges.push((ax, 0, 1, -1));
                } else if step == 1 && starts[j] >= 0 && ends[j] >= 0 && ends[j] < i64::MAX / 2 {
                    // A prefix of a symbolic dim: assume the dim is at least `end` (checked at run time by the slice op).
                    out_shape[ax] = Dim::Const(ends[j] - starts[j]);
                    ranges.push((ax, starts[j], 1, ends[j] - starts[j]));
                } else {
                    return Err(node_err(node, format!("slicing symbolic dim `{}` with starts {} ends {} is not supported", dims[ax], starts[j], ends[j])));
                }
            }
        }
    }
    if let Value::Known(k) = &x {
        let shape: Vec<usize> = out_shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
        let st = strides(&k.shape);
        let n: usize = shape.iter().product();
        let ost = strides(&shape);
        let src = (0..n).map(|flat| {
            let mut src = 0;
            for ax in 0..shape.len() {
                let mut o = (flat / ost[ax]) % shape[ax].max(1);
                if let Some(&(_, s, step, _)) = ranges.iter().find(|r| r.0 == ax) {
                    o = (s + o as i64 * step) as usize;
                }
                src += o * st[ax];
            }
            src
        });
        let k2 = pick(k, shape.clone(), src.collect::<Vec<_>>().into_iter());
        return Ok(vec![Value::Known(k2)]);
    }
    let elem = x.elem();
    let r = imp.materialize(node, x)?;
    let (a, s, e, st): (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) = (
        ranges.iter().map(|r| r.0 as i64).collect(),
        starts.clone(),
        ends.clone(),
        steps.clone(),
    );
    let val = imp.b.slice(&r.val, &a, &s, &e, &st, tensor_type(&out_shape, elem), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape: out_shape })])
}

/// Split along one axis: piece sizes from the `split` input (opset 13+) or attribute, else
/// equal pieces, one per output (`num_outputs`, opset 18: the last smaller when the dim does not
/// divide). Each piece is a slice of the axis.
fn split(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let dims = x.shape();
    let axis = norm_axis(attrs::int(node, "axis", 0), dims.len()).ok_or_else(|| node_err(node, "axis out of range"))?;
    let n_out = node.output.len();
    let given = if imp.opset >= 13 { const_ints(imp, node, 1, "split")? } else { attrs::ints(node, "split") };
    let dim = dims[axis].as_const();
    let sizes: Vec<i64> = match given {
        Some(s) => {
            if s.len() != n_out || s.iter().any(|&v| v < 0) {
                return Err(node_err(node, format!("split sizes {s:?} for {n_out} outputs")));
            }
            if let Some(d) = dim.filter(|&d| d != s.iter().sum::<i64>()) {
                return Err(node_err(node, format!("split sizes {s:?} do not add up to the axis' {d}")));
            }
            s
        }
        None => {
            let d = dim.ok_or_else(|| node_err(node, format!("splitting the symbolic dim `{}` into equal parts is not supported", dims[axis])))?;
            let n = attrs::int(node, "num_outputs", n_out as i64);
            if n != n_out as i64 || n == 0 {
                return Err(node_err(node, format!("num_outputs {n} but {n_out} outputs")));
            }
            if imp.opset < 18 && d % n != 0 {
                return Err(node_err(node, format!("the axis' {d} does not split into {n} equal parts")));
            }
            let chunk = (d + n - 1) / n;
            (0..n).map(|i| (d - i * chunk).clamp(0, chunk)).collect()
        }
    };
    let mut start = 0;
    let mut outs = Vec::with_capacity(n_out);
    for len in sizes {
        outs.push(slice_axis(imp, node, &x, axis, start, len)?);
        start += len;
    }
    Ok(outs)
}

/// Elements `start..start + len` of `axis` (folded when `x` is known).
fn slice_axis(imp: &mut Importer, node: &NodeProto, x: &Value, axis: usize, start: i64, len: i64) -> Result<Value, FrontendError> {
    let mut out_shape = x.shape();
    out_shape[axis] = Dim::Const(len);
    if let Value::Known(k) = x {
        let shape: Vec<usize> = out_shape.iter().map(|d| d.as_const().unwrap_or(0) as usize).collect();
        let (st, ost) = (strides(&k.shape), strides(&shape));
        let n: usize = shape.iter().product();
        let src = (0..n).map(|flat| (0..shape.len()).map(|ax| ((flat / ost[ax]) % shape[ax].max(1) + if ax == axis { start as usize } else { 0 }) * st[ax]).sum());
        return Ok(Value::Known(pick(k, shape.clone(), src.collect::<Vec<usize>>().into_iter())));
    }
    let r = imp.materialize(node, x.clone())?;
    let val = imp.b.slice(&r.val, &[axis as i64], &[start], &[start + len], &[1], tensor_type(&out_shape, r.elem()), &Importer::loc(node));
    Ok(Value::Rt(Rt { val, shape: out_shape }))
}

fn axes_of(imp: &Importer, node: &NodeProto) -> Result<Option<Vec<i64>>, FrontendError> {
    if imp.opset >= 13 {
        const_ints(imp, node, 1, "axes")
    } else {
        Ok(attrs::ints(node, "axes"))
    }
}

/// Reshape of a value to a new symbolic shape (compile-time when known).
fn reshape_to(imp: &mut Importer, node: &NodeProto, x: Value, shape: Vec<Dim>) -> Result<Value, FrontendError> {
    match x {
        Value::Known(mut k) => {
            let s: Option<Vec<usize>> = shape.iter().map(|d| d.as_const().map(|c| c as usize)).collect();
            let s = s.ok_or_else(|| node_err(node, "reshaping a constant to a symbolic shape"))?;
            if s.iter().product::<usize>() != k.numel() {
                return Err(node_err(node, format!("cannot reshape {:?} to {:?}", k.shape, s)));
            }
            k.shape = s;
            k.source = None;
            Ok(Value::Known(k))
        }
        x => {
            let r = imp.materialize(node, x)?;
            let val = imp.b.reshape(&r.val, &Importer::dim_strings(&shape), tensor_type(&shape, r.elem()), &Importer::loc(node));
            Ok(Value::Rt(Rt { val, shape }))
        }
    }
}

/// Flatten: dims before `axis` into one, the rest into another.
fn flatten(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let dims = x.shape();
    let rank = dims.len();
    let axis = attrs::int(node, "axis", 1);
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a > rank as i64 {
        return Err(node_err(node, format!("axis {axis} out of range for rank {rank}")));
    }
    let prod = |ds: &[Dim]| ds.iter().cloned().fold(Dim::Const(1), Dim::mul);
    let shape = vec![prod(&dims[..a as usize]), prod(&dims[a as usize..])];
    Ok(vec![reshape_to(imp, node, x, shape)?])
}

fn squeeze(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let dims = x.shape();
    let axes: Vec<usize> = match axes_of(imp, node)? {
        Some(a) => a.iter().map(|&a| norm_axis(a, dims.len()).ok_or_else(|| node_err(node, "axis out of range"))).collect::<Result<_, _>>()?,
        None => dims.iter().enumerate().filter(|(_, d)| **d == Dim::Const(1)).map(|(i, _)| i).collect(),
    };
    let shape: Vec<Dim> = dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect();
    Ok(vec![reshape_to(imp, node, x, shape)?])
}

fn unsqueeze(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let dims = x.shape();
    let axes = axes_of(imp, node)?.ok_or_else(|| node_err(node, "axes missing"))?;
    let out_rank = dims.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, out_rank).ok_or_else(|| node_err(node, "axis out of range"))).collect::<Result<_, _>>()?;
    axes.sort_unstable();
    let mut it = dims.into_iter();
    let shape: Vec<Dim> = (0..out_rank).map(|i| if axes.contains(&i) { Dim::Const(1) } else { it.next().unwrap_or(Dim::Const(1)) }).collect();
    Ok(vec![reshape_to(imp, node, x, shape)?])
}

fn range(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    // A float range of compile-time bounds folds to a constant; at run time, floats are not
    // supported.
    let float = |i: usize| match imp.input(node, i) {
        Ok(Some(Value::Known(Known { data: KnownData::F32(v), .. }))) if v.len() == 1 => Some(Some(v[0])),
        Ok(Some(v)) if v.elem() == Elem::F32 => Some(None),
        _ => None,
    };
    if let (Some(s), Some(l), Some(d)) = (float(0), float(1), float(2)) {
        let (Some(s), Some(l), Some(d)) = (s, l, d) else {
            return Err(node_err(node, "a float Range with bounds given at run time is not supported (integer ranges are)"));
        };
        let n = ((l - s) / d).ceil().max(0.0);
        if d == 0.0 || !n.is_finite() || n > 1e8 {
            return Err(node_err(node, format!("float Range({s}, {l}, {d}) has no finite length")));
        }
        let v: Vec<f32> = (0..n as usize).map(|i| s + i as f32 * d).collect();
        return Ok(vec![Value::Known(Known::f32(vec![v.len()], v))]);
    }
    let get = |i: usize, what: &str| -> Result<Dim, FrontendError> {
        match imp.input(node, i)? {
            Some(Value::Known(k)) if k.numel() == 1 => k.dims().map(|d| d[0].clone()).ok_or_else(|| node_err(node, format!("{what} must be an integer"))),
            _ => Err(node_err(node, format!("{what} given at run time is not supported: it must be a scalar known at compile time (lt2c supports integer ranges over symbolic lengths)"))),
        }
    };
    let (start, limit, delta) = (get(0, "start")?, get(1, "limit")?, get(2, "delta")?);
    let (Some(s), Some(d)) = (start.as_const(), delta.as_const()) else {
        return Err(node_err(node, "start and delta must be constant"));
    };
    if d == 0 {
        return Err(node_err(node, "delta is 0"));
    }
    if let Some(l) = limit.as_const() {
        let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as i64;
        let v: Vec<Dim> = (0..n).map(|i| Dim::Const(s + i * d)).collect();
        return Ok(vec![Value::Known(Known::i64(vec![n as usize], v))]);
    }
    let size = if d == 1 { Dim::sub(limit, Dim::Const(s)) } else { Dim::div(Dim::add(Dim::sub(limit, Dim::Const(s)), Dim::Const(d - d.signum())), Dim::Const(d)) };
    let shape = vec![size.clone()];
    let val = imp.b.range(s, d, &size.to_string(), tensor_type(&shape, Elem::I64), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn concat(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let xs: Vec<Value> = (0..node.input.len()).map(|i| imp.req(node, i)).collect::<Result<_, _>>()?;
    let first = xs.first().ok_or_else(|| node_err(node, "no inputs"))?;
    let rank = first.rank();
    let axis = norm_axis(attrs::required_int(node, "axis")?, rank).ok_or_else(|| node_err(node, "axis out of range"))?;
    if let Some(x) = xs.iter().find(|x| x.rank() != rank) {
        return Err(node_err(node, format!("inputs have different ranks ({rank} and {})", x.rank())));
    }
    if xs.iter().all(|x| matches!(x, Value::Known(_))) {
        let ks: Vec<&Known> = xs.iter().map(|x| if let Value::Known(k) = x { k } else { unreachable!() }).collect();
        let mut shape = ks[0].shape.clone();
        shape[axis] = ks.iter().map(|k| k.shape[axis]).sum();
        let outer: usize = shape[..axis].iter().product();
        let mut data: Option<KnownData> = None;
        for o in 0..outer {
            for k in &ks {
                let inner: usize = k.shape[axis..].iter().product();
                let part = pick(k, vec![inner], (o * inner..(o + 1) * inner).collect::<Vec<_>>().into_iter()).data;
                data = Some(match (data.take(), part) {
                    (None, p) => p,
                    (Some(KnownData::F32(a)), KnownData::F32(b)) => {
                        let mut a = Arc::try_unwrap(a).unwrap_or_else(|a| a.to_vec());
                        a.extend(b.iter());
                        KnownData::F32(Arc::new(a))
                    }
                    (Some(KnownData::I64(mut a)), KnownData::I64(b)) => {
                        a.extend(b);
                        KnownData::I64(a)
                    }
                    (Some(KnownData::Bool(mut a)), KnownData::Bool(b)) => {
                        a.extend(b);
                        KnownData::Bool(a)
                    }
                    _ => return Err(node_err(node, "inputs have different element types")),
                });
            }
        }
        let data = data.unwrap_or(KnownData::I64(vec![]));
        return Ok(vec![Value::Known(Known { shape, data, source: None })]);
    }
    let mut acc = imp.materialize(node, xs[0].clone())?;
    for x in &xs[1..] {
        let r = imp.materialize(node, x.clone())?;
        let mut shape = acc.shape.clone();
        shape[axis] = Dim::add(acc.shape[axis].clone(), r.shape[axis].clone());
        let val = imp.b.concat(&acc.val, &r.val, axis as i64, tensor_type(&shape, acc.elem()), &Importer::loc(node));
        acc = Rt { val, shape };
    }
    Ok(vec![Value::Rt(acc)])
}

fn constant(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    if let Some(t) = attrs::tensor(node, "value") {
        let k = tensor::decode(t, imp.base_dir.as_deref()).map_err(|e| node_err(node, e))?;
        return Ok(vec![Value::Known(k)]);
    }
    let a = node.attribute.first().ok_or_else(|| node_err(node, "Constant without a value"))?;
    let k = match a.name.as_str() {
        "value_float" => Known::f32(vec![], vec![a.f]),
        "value_floats" => Known::f32(vec![a.floats.len()], a.floats.clone()),
        "value_int" => Known::i64(vec![], vec![Dim::Const(a.i)]),
        "value_ints" => Known::i64(vec![a.ints.len()], a.ints.iter().map(|&i| Dim::Const(i)).collect()),
        other => return Err(node_err(node, format!("Constant attribute `{other}` is not supported"))),
    };
    Ok(vec![Value::Known(k)])
}

fn identity(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    Ok(vec![imp.req(node, 0)?])
}

/// Inference-mode Dropout: the identity, with an all-true mask when asked for.
fn dropout(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let training = match imp.input(node, 2)? {
        None => false,
        Some(Value::Known(Known { data: KnownData::Bool(b), .. })) => b.first() == Some(&true),
        Some(_) => return Err(node_err(node, "training_mode must be a constant (a runtime training_mode is not supported)")),
    };
    if training {
        return Err(node_err(node, "training_mode = true (random masks) is not supported: lt2c compiles inference graphs"));
    }
    let x = imp.req(node, 0)?;
    let mut outs = vec![x.clone()];
    if node.output.get(1).is_some_and(|o| !o.is_empty()) {
        let shape = x.shape();
        let t = imp.materialize(node, Value::Known(Known { shape: vec![], data: KnownData::Bool(vec![true]), source: None }))?;
        let val = imp.b.expand(&t.val, &Importer::dim_strings(&shape), tensor_type(&shape, Elem::I1), &Importer::loc(node));
        outs.push(Value::Rt(Rt { val, shape }));
    }
    Ok(outs)
}

fn reshape(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let target = match imp.input(node, 1)? {
        Some(Value::Known(k)) => k.dims().map(|d| d.to_vec()).ok_or_else(|| node_err(node, "shape must be integers"))?,
        Some(_) => return Err(node_err(node, "a target shape computed at run time is not supported: it must be computable at compile time (from constants and Shape ops)")),
        None => attrs::ints(node, "shape").ok_or_else(|| node_err(node, "shape missing"))?.into_iter().map(Dim::Const).collect(),
    };
    let allowzero = attrs::int(node, "allowzero", 0) != 0;
    let in_dims = x.shape();
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, d) in target.iter().enumerate() {
        match d.as_const() {
            Some(0) if !allowzero => out.push(Some(in_dims.get(i).cloned().ok_or_else(|| node_err(node, "0 in shape past the input's rank"))?)),
            Some(-1) => {
                if infer.replace(i).is_some() {
                    return Err(node_err(node, "more than one -1 in the target shape"));
                }
                out.push(None);
            }
            Some(c) if c < -1 => return Err(node_err(node, format!("bad dim {c} in the target shape"))),
            _ => out.push(Some(d.clone())),
        }
    }
    if let Some(i) = infer {
        let known: Vec<Dim> = out.iter().flatten().cloned().collect();
        let total = product(&in_dims);
        let rest = product(&known);
        out[i] = Some(infer_dim(total, rest));
    }
    let shape: Vec<Dim> = out.into_iter().map(|d| d.expect("filled")).collect();
    Ok(vec![reshape_to(imp, node, x, shape)?])
}

/// total / rest, cancelling common symbolic factors first (so `batch*seq*64 / (batch*seq)` is 64).
fn infer_dim(total: Dim, rest: Dim) -> Dim {
    fn factors(d: &Dim, out: &mut Vec<Dim>, c: &mut i64) {
        match d {
            Dim::Mul(a, b) => {
                factors(a, out, c);
                factors(b, out, c);
            }
            Dim::Const(k) => *c *= k,
            other => out.push(other.clone()),
        }
    }
    let (mut tf, mut rf, mut tc, mut rc) = (vec![], vec![], 1i64, 1i64);
    factors(&total, &mut tf, &mut tc);
    factors(&rest, &mut rf, &mut rc);
    let mut rem = vec![];
    for f in rf {
        if let Some(p) = tf.iter().position(|t| *t == f) {
            tf.remove(p);
        } else {
            rem.push(f);
        }
    }
    let num = tf.into_iter().fold(Dim::Const(1), Dim::mul);
    let den = rem.into_iter().fold(Dim::Const(1), Dim::mul);
    if rc != 0 && tc % rc == 0 {
        Dim::div(Dim::mul(num, Dim::Const(tc / rc)), den)
    } else {
        Dim::div(Dim::mul(num, Dim::Const(tc)), Dim::mul(den, Dim::Const(rc)))
    }
}

fn transpose(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let rank = x.rank();
    let perm: Vec<usize> = match attrs::ints(node, "perm") {
        Some(p) => p.iter().map(|&a| norm_axis(a, rank).ok_or_else(|| node_err(node, "perm out of range"))).collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    for &p in &perm {
        if std::mem::replace(&mut seen[p], true) {
            return Err(node_err(node, "perm is not a permutation"));
        }
    }
    if perm.len() != rank {
        return Err(node_err(node, "perm length differs from rank"));
    }
    let dims = x.shape();
    let shape: Vec<Dim> = perm.iter().map(|&p| dims[p].clone()).collect();
    if let Value::Known(k) = &x {
        if k.source.is_some() && perm == [1, 0] {
            if let (Some(out), Some(src)) = (node.output.first(), node.input.first()) {
                imp.transposed_from.insert(out.clone(), src.clone());
            }
        }
        let st = strides(&k.shape);
        let oshape: Vec<usize> = perm.iter().map(|&p| k.shape[p]).collect();
        let ost = strides(&oshape);
        let n = k.numel();
        let src = (0..n).map(|flat| perm.iter().enumerate().map(|(ax, &p)| ((flat / ost[ax]) % oshape[ax].max(1)) * st[p]).sum());
        let src: Vec<usize> = src.collect();
        return Ok(vec![Value::Known(pick(k, oshape, src.into_iter()))]);
    }
    let r = imp.materialize(node, x)?;
    let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
    let val = imp.b.transpose(&r.val, &p, tensor_type(&shape, r.elem()), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn expand(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    if let Value::Known(k) = &x {
        if k.bytes().is_none() {
            let why = format!("node `{}` (Expand) broadcasts symbolic integers at run time, which is not supported", crate::attrs::node_name(node));
            return Ok(vec![Value::Unavailable(why)]);
        }
    }
    let target = imp.known(node, 1, "shape")?;
    let target = target.dims().ok_or_else(|| node_err(node, "shape must be integers"))?.to_vec();
    let shape = crate::value::broadcast(&x.shape(), &target).ok_or_else(|| node_err(node, format!("cannot expand {:?} to {:?}", x.shape(), target)))?;
    let r = imp.materialize(node, x)?;
    let val = imp.b.expand(&r.val, &Importer::dim_strings(&shape), tensor_type(&shape, r.elem()), &Importer::loc(node));
    Ok(vec![Value::Rt(Rt { val, shape })])
}

fn cast(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let x = imp.req(node, 0)?;
    let to = attrs::required_int(node, "to")? as i32;
    // Floats of any width compute in float32: a cast between them is the identity.
    let same = matches!((to, x.elem()), (tensor::dt::INT64, Elem::I64) | (tensor::dt::BOOL, Elem::I1)) || (tensor::is_float(to) && x.elem() == Elem::F32);
    if same {
        return Ok(vec![x]);
    }
    let to = if tensor::is_float(to) { tensor::dt::FLOAT } else { to };
    match (to, x) {
        (tensor::dt::FLOAT, Value::Known(Known { shape, data: KnownData::I64(v), .. })) => {
            let f: Option<Vec<f32>> = v.iter().map(|d| d.as_const().map(|c| c as f32)).collect();
            Ok(vec![Value::Known(Known::f32(shape, f.ok_or_else(|| node_err(node, "cast of symbolic integers to float"))?))])
        }
        (tensor::dt::INT64 | tensor::dt::INT32, Value::Known(Known { shape, data: KnownData::F32(v), .. })) => {
            Ok(vec![Value::Known(Known::i64(shape, v.iter().map(|&x| Dim::Const(x as i64)).collect()))])
        }
        (tensor::dt::INT32, x @ Value::Known(Known { data: KnownData::I64(_), .. })) => Ok(vec![x]),
        (t, Value::Known(Known { shape, data: KnownData::Bool(v), .. })) if t == tensor::dt::FLOAT => {
            Ok(vec![Value::Known(Known::f32(shape, v.iter().map(|&b| b as i64 as f32).collect()))])
        }
        (t, x @ Value::Rt(_)) => {
            let elem = match t {
                tensor::dt::FLOAT | tensor::dt::DOUBLE => Elem::F32,
                tensor::dt::INT64 | tensor::dt::INT32 => Elem::I64,
                tensor::dt::BOOL => Elem::I1,
                other => return Err(node_err(node, format!("Cast to element type {other} is not supported (float, int64, int32, bool)"))),
            };
            let r = imp.materialize(node, x)?;
            if r.elem() == elem {
                return Ok(vec![Value::Rt(r)]);
            }
            let val = imp.b.cast(&r.val, tensor_type(&r.shape, elem), &Importer::loc(node));
            Ok(vec![Value::Rt(Rt { val, shape: r.shape })])
        }
        _ => Err(node_err(node, format!("Cast of this constant to type {to} is not supported"))),
    }
}

/// `Slice(table, [s], [e], [axis], [1])` with a symbolic end (`cache[:seq]`, how Hugging Face
/// code reads RoPE tables) is a gather of the rows s..e: `range` supplies them, and a decode
/// session shifts that range by the tokens already seen.
fn slice_to_symbolic_end(imp: &mut Importer, node: &NodeProto, x: &Value) -> Result<Option<Value>, FrontendError> {
    let Some(Value::Known(ends)) = imp.input(node, 2)? else { return Ok(None) };
    let Some(ed) = ends.dims() else { return Ok(None) };
    if ed.len() != 1 || ed[0].as_const().is_some() {
        return Ok(None);
    }
    let start = const_ints(imp, node, 1, "starts")?.unwrap_or_default();
    let axes = const_ints(imp, node, 3, "axes")?.unwrap_or_else(|| vec![0]);
    let steps = const_ints(imp, node, 4, "steps")?.unwrap_or_else(|| vec![1]);
    let (&[s], &[a], &[1]) = (start.as_slice(), axes.as_slice(), steps.as_slice()) else {
        return Err(node_err(node, "a symbolic slice end is supported only for one axis with step 1"));
    };
    let rank = x.rank();
    let axis = norm_axis(a, rank).ok_or_else(|| node_err(node, "axis out of range"))?;
    if s < 0 {
        return Err(node_err(node, "a symbolic slice end needs a non-negative start"));
    }
    let size = Dim::sub(ed[0].clone(), Dim::Const(s));
    let loc = Importer::loc(node);
    let idx_shape = vec![size.clone()];
    let idx = imp.b.range(s, 1, &size.to_string(), tensor_type(&idx_shape, Elem::I64), &loc);
    let mut shape = x.shape();
    shape[axis] = size;
    let elem = x.elem();
    let data = imp.materialize(node, x.clone())?;
    let val = if axis == 0 { imp.b.embed(&data.val, &idx, tensor_type(&shape, elem), &loc) } else { imp.b.gather(&data.val, &idx, axis as i64, tensor_type(&shape, elem), &loc) };
    Ok(Some(Value::Rt(Rt { val, shape })))
}

/// GatherND with `batch_dims` 0. Index tuples of length 1 (`weight[ids]` in PyTorch exports)
/// are a Gather on axis 0 of the indices without their last dim; longer tuples (HF's masks index
/// [batch, position] pairs) are one Gather from data with its first k dims flattened, at
/// `((i0 * d1 + i1) * d2 + i2) ...`, each index wrapped once if negative. An index past its dim
/// is not caught there (it reads another row); for k = 1 the gather reports it.
fn gather_nd(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    if attrs::int(node, "batch_dims", 0) != 0 {
        return Err(node_err(node, "batch_dims other than 0 is not supported yet"));
    }
    let data = imp.req(node, 0)?;
    let idx = imp.req(node, 1)?;
    let ishape = idx.shape();
    let k = ishape.last().and_then(Dim::as_const).ok_or_else(|| node_err(node, "the length of the index tuples (the last dim of indices) must be known at compile time"))?;
    if idx.elem() != Elem::I64 {
        return Err(node_err(node, "indices must be int64"));
    }
    let rank = data.rank();
    if k < 1 || k as usize > rank {
        return Err(node_err(node, format!("index tuples of length {k} for data of rank {rank}")));
    }
    if k > 1 {
        return gather_nd_tuples(imp, node, k as usize, rank);
    }
    let loc = Importer::loc(node);
    let squeezed: Vec<Dim> = ishape[..ishape.len() - 1].to_vec();
    let ri = imp.materialize(node, idx)?;
    let iv = imp.b.reshape(&ri.val, &Importer::dim_strings(&squeezed), tensor_type(&squeezed, Elem::I64), &loc);
    let mut shape = squeezed.clone();
    shape.extend(data.shape().into_iter().skip(1));
    let elem = data.elem();
    let rd = imp.materialize(node, data)?;
    let val = imp.b.embed(&rd.val, &iv, tensor_type(&shape, elem), &loc);
    Ok(vec![Value::Rt(Rt { val, shape })])
}

/// GatherND with tuples of length k > 1 (see `gather_nd`), spelled with Shape, Gather, Where,
/// Mul, Add, Concat and Reshape.
fn gather_nd_tuples(imp: &mut Importer, node: &NodeProto, k: usize, rank: usize) -> Result<Vec<Value>, FrontendError> {
    use super::composite::{input, int_attr, value, Body};
    let mut b = Body::new(node);
    let (data, idx) = (input(node, 0)?, input(node, 1)?);
    let shape = b.op(imp, "Shape", &[data], vec![])?;
    let zero = b.int(imp, 0);
    let mut linear: Option<String> = None;
    let mut rows: Option<String> = None;
    for j in 0..k {
        let at = b.int(imp, j as i64);
        let ij = b.op(imp, "Gather", &[idx, &at], vec![int_attr("axis", -1)])?;
        let dj = b.op(imp, "Gather", &[&shape, &at], vec![])?;
        let neg = b.op(imp, "Less", &[&ij, &zero], vec![])?;
        let wrapped = b.op(imp, "Add", &[&ij, &dj], vec![])?;
        let ij = b.op(imp, "Where", &[&neg, &wrapped, &ij], vec![])?;
        linear = Some(match linear {
            None => ij,
            Some(l) => {
                let scaled = b.op(imp, "Mul", &[&l, &dj], vec![])?;
                b.op(imp, "Add", &[&scaled, &ij], vec![])?
            }
        });
        rows = Some(match rows {
            None => dj,
            Some(r) => b.op(imp, "Mul", &[&r, &dj], vec![])?,
        });
    }
    let (Some(linear), Some(rows)) = (linear, rows) else {
        return Err(node_err(node, "internal: GatherND over tuples of length 0"));
    };
    let axes = b.ints(imp, &[0]);
    let rows = b.op(imp, "Unsqueeze", &[&rows, &axes], vec![])?;
    let target = if k < rank {
        let (from, to) = (b.ints(imp, &[k as i64]), b.ints(imp, &[rank as i64]));
        let rest = b.op(imp, "Slice", &[&shape, &from, &to], vec![])?;
        b.op(imp, "Concat", &[&rows, &rest], vec![int_attr("axis", 0)])?
    } else {
        rows
    };
    let flat = b.op(imp, "Reshape", &[data, &target], vec![])?;
    let y = b.op(imp, "Gather", &[&flat, &linear], vec![int_attr("axis", 0)])?;
    Ok(vec![value(imp, node, &y)?])
}
