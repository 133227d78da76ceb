//! ONNX ops that lt2c spells with other ONNX ops, as the ONNX spec's function bodies do: Gemm,
//! Clip, ReduceL2, LayerNormalization, Sum, Mean, Gelu and Erf (a series near 0, a
//! Chebyshev fit of erfc beyond: within 2e-7 of erf). Each body is a few nodes imported one by one
//! with their own importers, so constant folding, broadcasting and type checks come with them
//! (a Gemm over an initializer `B` still becomes `lt2.linear`; LayerNormalization becomes
//! `lt2.rms_norm` of the centred input, one fused kernel).

use tract_onnx::pb::{AttributeProto, NodeProto};

use super::ImportFn;
use crate::attrs::{self, node_err, node_name};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{norm_axis, Known, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op {
        "Gemm" => gemm,
        "Clip" => clip,
        "ReduceL2" => reduce_l2,
        "LayerNormalization" => layer_norm,
        "Sum" => |i, n| variadic(i, n, "Add", false),
        "Mean" => |i, n| variadic(i, n, "Add", true),
        "Erf" => |i, n| {
            let mut b = Body::new(n);
            let y = erf(&mut b, i, input(n, 0)?)?;
            Ok(vec![value(i, n, &y)?])
        },
        "Gelu" => gelu,
        _ => return None,
    })
}

/// The body of one composite node: its sub-nodes' values live under names private to it.
pub(super) struct Body<'a> {
    node: &'a NodeProto,
    count: usize,
}

impl<'a> Body<'a> {
    pub(super) fn new(node: &'a NodeProto) -> Self {
        Body { node, count: 0 }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}::{what}{}", node_name(self.node), self.count)
    }

    /// Imports `op_type(inputs)` with `attrs`; returns the name of its first output.
    pub(super) fn op(&mut self, imp: &mut Importer, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> Result<String, FrontendError> {
        Ok(self.op_outputs(imp, op_type, inputs, attrs, 1)?.remove(0))
    }

    /// Imports `op_type(inputs)` with `attrs`; returns the names of its first `n` outputs.
    pub(super) fn op_outputs(&mut self, imp: &mut Importer, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>, n: usize) -> Result<Vec<String>, FrontendError> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        let sub = NodeProto {
            name: format!("{}/{op_type}", node_name(self.node)),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            attribute: attrs,
            ..Default::default()
        };
        let f = super::lookup("", op_type).ok_or_else(|| node_err(self.node, format!("internal: no importer for {op_type}")))?;
        let vals = f(imp, &sub)?;
        if vals.len() < n {
            return Err(node_err(self.node, format!("internal: {op_type} gave {} values, {n} needed", vals.len())));
        }
        for (o, v) in outs.iter().zip(vals) {
            imp.set(o, v);
        }
        Ok(outs)
    }

    /// A scalar f32 constant.
    pub(super) fn scalar(&mut self, imp: &mut Importer, v: f32) -> String {
        let name = self.fresh("const");
        imp.set(&name, Value::Known(Known::f32(vec![], vec![v])));
        name
    }

    /// A scalar int64 constant.
    pub(super) fn int(&mut self, imp: &mut Importer, v: i64) -> String {
        let name = self.fresh("int");
        imp.set(&name, Value::Known(Known::i64(vec![], vec![lt2_runtime::dim::Dim::Const(v)])));
        name
    }

    /// Int64 constant of `values` (a 1-D tensor).
    pub(super) fn ints(&mut self, imp: &mut Importer, values: &[i64]) -> String {
        let name = self.fresh("ints");
        imp.set(&name, Value::Known(Known::i64(vec![values.len()], values.iter().map(|&v| lt2_runtime::dim::Dim::Const(v)).collect())));
        name
    }
}

/// The value named `name` (a body's result, or an input passed through).
pub(super) fn value(imp: &Importer, node: &NodeProto, name: &str) -> Result<Value, FrontendError> {
    imp.lookup(name).cloned().ok_or_else(|| node_err(node, format!("input `{name}` is not defined before this node")))
}

pub(super) fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 7, ints: v.to_vec(), ..Default::default() }
}

pub(super) fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 2, i: v, ..Default::default() }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: 1, f: v, ..Default::default() }
}

/// Input `i` of the node when present and named.
fn opt_input(node: &NodeProto, i: usize) -> Option<&str> {
    node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

pub(super) fn input<'n>(node: &'n NodeProto, i: usize) -> Result<&'n str, FrontendError> {
    opt_input(node, i).ok_or_else(|| node_err(node, format!("input {i} is missing")))
}

/// A reduction over `axes` keeping dims: axes as an input from opset 18, else as an attribute.
pub(super) fn reduce(b: &mut Body, imp: &mut Importer, op: &str, x: &str, axes: &[i64]) -> Result<String, FrontendError> {
    if imp.opset >= 18 {
        let a = b.ints(imp, axes);
        b.op(imp, op, &[x, &a], vec![int_attr("keepdims", 1)])
    } else {
        b.op(imp, op, &[x], vec![ints_attr("axes", axes), int_attr("keepdims", 1)])
    }
}

/// Gemm: alpha * A' B' + beta * C, A' = A or A^T (transA), B' likewise (transB).
fn gemm(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let (alpha, beta) = (attrs::float(node, "alpha", 1.0), attrs::float(node, "beta", 1.0));
    for i in 0..2 {
        if imp.req(node, i)?.rank() != 2 {
            return Err(node_err(node, format!("input {i} must be 2-D, got rank {}", imp.req(node, i)?.rank())));
        }
    }
    let t = |b: &mut Body, imp: &mut Importer, x: &str, on: bool| if on { b.op(imp, "Transpose", &[x], vec![ints_attr("perm", &[1, 0])]) } else { Ok(x.to_string()) };
    let a = t(&mut b, imp, input(node, 0)?, attrs::int(node, "transA", 0) != 0)?;
    let w = t(&mut b, imp, input(node, 1)?, attrs::int(node, "transB", 0) != 0)?;
    let mut y = b.op(imp, "MatMul", &[&a, &w], vec![])?;
    if alpha != 1.0 {
        let s = b.scalar(imp, alpha);
        y = b.op(imp, "Mul", &[&y, &s], vec![])?;
    }
    if let Some(c) = opt_input(node, 2) {
        let c = if beta != 1.0 {
            let s = b.scalar(imp, beta);
            b.op(imp, "Mul", &[c, &s], vec![])?
        } else {
            c.to_string()
        };
        y = b.op(imp, "Add", &[&y, &c], vec![])?;
    }
    Ok(vec![value(imp, node, &y)?])
}

/// Clip: max(x, min) then min(·, max); bounds from inputs (opset 11+) or attributes.
fn clip(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let mut y = input(node, 0)?.to_string();
    let (lo, hi) = if imp.opset >= 11 {
        (opt_input(node, 1).map(str::to_string), opt_input(node, 2).map(str::to_string))
    } else {
        let lo = attrs::has(node, "min").then(|| b.scalar(imp, attrs::float(node, "min", f32::MIN)));
        let hi = attrs::has(node, "max").then(|| b.scalar(imp, attrs::float(node, "max", f32::MAX)));
        (lo, hi)
    };
    if let Some(lo) = lo {
        y = b.op(imp, "Max", &[&y, &lo], vec![])?;
    }
    if let Some(hi) = hi {
        y = b.op(imp, "Min", &[&y, &hi], vec![])?;
    }
    Ok(vec![value(imp, node, &y)?])
}

/// ReduceL2: sqrt(ReduceSum(x * x)) with the node's own axes and flags.
fn reduce_l2(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let sq = b.op(imp, "Mul", &[x, x], vec![])?;
    let mut inputs = vec![sq.as_str()];
    if let Some(axes) = opt_input(node, 1) {
        inputs.push(axes);
    }
    let s = b.op(imp, "ReduceSum", &inputs, node.attribute.clone())?;
    let y = b.op(imp, "Sqrt", &[&s], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// LayerNormalization over axes `axis..rank`: RMS normalisation of x - mean(x), times Scale,
/// plus B; the Mean and InvStdDev outputs (1 / sqrt(var + epsilon)) when read.
fn layer_norm(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let rank = imp.req(node, 0)?.rank();
    let axis = attrs::int(node, "axis", -1);
    let first = norm_axis(axis, rank).ok_or_else(|| node_err(node, format!("axis {axis} out of range for rank {rank}")))?;
    let axes: Vec<i64> = (first as i64..rank as i64).collect();
    let mean = reduce(&mut b, imp, "ReduceMean", x, &axes)?;
    let centred = b.op(imp, "Sub", &[x, &mean], vec![])?;
    let eps = attrs::float(node, "epsilon", 1e-5);
    let mut y = b.op(imp, "RMSNormalization", &[&centred, input(node, 1)?], vec![int_attr("axis", first as i64), float_attr("epsilon", eps)])?;
    if let Some(bias) = opt_input(node, 2) {
        y = b.op(imp, "Add", &[&y, bias], vec![])?;
    }
    let mut outs = vec![value(imp, node, &y)?];
    if imp.output_used(node, 1) || imp.output_used(node, 2) {
        let sq = b.op(imp, "Mul", &[&centred, &centred], vec![])?;
        let var = reduce(&mut b, imp, "ReduceMean", &sq, &axes)?;
        let e = b.scalar(imp, eps);
        let v = b.op(imp, "Add", &[&var, &e], vec![])?;
        let s = b.op(imp, "Sqrt", &[&v], vec![])?;
        let inv = b.op(imp, "Reciprocal", &[&s], vec![])?;
        outs.push(value(imp, node, &mean)?);
        outs.push(value(imp, node, &inv)?);
    } else {
        // Named but unread: nothing computes them.
        outs.resize(node.output.len().max(1), Value::Unavailable("LayerNormalization's Mean / InvStdDev, not read".into()));
    }
    Ok(outs)
}

/// Sum (or Mean), Min or Max of any number of inputs, with broadcasting: `op` folded left to
/// right over them (one input passes through).
pub(super) fn variadic(imp: &mut Importer, node: &NodeProto, op: &str, mean: bool) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let mut y = input(node, 0)?.to_string();
    for i in 1..node.input.len() {
        y = b.op(imp, op, &[&y, input(node, i)?], vec![])?;
    }
    if mean && node.input.len() > 1 {
        let n = b.scalar(imp, node.input.len() as f32);
        y = b.op(imp, "Div", &[&y, &n], vec![])?;
    }
    Ok(vec![value(imp, node, &y)?])
}

/// `c0 + x (c1 + x (c2 + ...))` of `coeffs` = [c0, c1, ...].
fn horner(b: &mut Body, imp: &mut Importer, x: &str, coeffs: &[f32]) -> Result<String, FrontendError> {
    let (last, rest) = coeffs.split_last().ok_or_else(|| node_err(b.node, "internal: empty polynomial"))?;
    let mut y = b.scalar(imp, *last);
    for &c in rest.iter().rev() {
        let m = b.op(imp, "Mul", &[&y, x], vec![])?;
        let c = b.scalar(imp, c);
        y = b.op(imp, "Add", &[&m, &c], vec![])?;
    }
    Ok(y)
}

/// erf(x): for |x| < 0.5 the Maclaurin series to x^11 (truncation below 3e-8 relative), else
/// sign(x) (1 - erfc|x|) with Numerical Recipes' Chebyshev fit of erfc (fractional error below
/// 1.2e-7). Both branches are computed; Where picks one.
fn erf(b: &mut Body, imp: &mut Importer, x: &str) -> Result<String, FrontendError> {
    const TWO_OVER_SQRT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;
    let x2 = b.op(imp, "Mul", &[x, x], vec![])?;
    // 2/sqrt(pi) x sum_n (-1)^n x^2n / (n! (2n+1))
    let series: Vec<f32> = [1.0, -1.0 / 3.0, 1.0 / 10.0, -1.0 / 42.0, 1.0 / 216.0, -1.0 / 1320.0].iter().map(|c| c * TWO_OVER_SQRT_PI).collect();
    let p = horner(b, imp, &x2, &series)?;
    let small = b.op(imp, "Mul", &[x, &p], vec![])?;
    // erfc(a) = t exp(-a^2 + poly(t)), t = 1 / (1 + a / 2), a = |x|
    let a = b.op(imp, "Abs", &[x], vec![])?;
    let half = b.scalar(imp, 0.5);
    let one = b.scalar(imp, 1.0);
    let ah = b.op(imp, "Mul", &[&a, &half], vec![])?;
    let d = b.op(imp, "Add", &[&ah, &one], vec![])?;
    let t = b.op(imp, "Reciprocal", &[&d], vec![])?;
    let fit = [-1.265_512_2, 1.000_023_7, 0.374_091_96, 0.096_784_18, -0.186_288_06, 0.278_868_07, -1.135_203_98, 1.488_515_87, -0.822_152_23, 0.170_872_77];
    let q = horner(b, imp, &t, &fit)?;
    let e = b.op(imp, "Sub", &[&q, &x2], vec![])?;
    let ex = b.op(imp, "Exp", &[&e], vec![])?;
    let erfc = b.op(imp, "Mul", &[&t, &ex], vec![])?;
    let mag = b.op(imp, "Sub", &[&one, &erfc], vec![])?;
    let zero = b.scalar(imp, 0.0);
    let neg = b.op(imp, "Less", &[x, &zero], vec![])?;
    let nmag = b.op(imp, "Neg", &[&mag], vec![])?;
    let large = b.op(imp, "Where", &[&neg, &nmag, &mag], vec![])?;
    let near = b.op(imp, "Less", &[&a, &half], vec![])?;
    b.op(imp, "Where", &[&near, &small, &large], vec![])
}

/// Gelu (opset 20): x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, or with approximate = "tanh"
/// x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2.
fn gelu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let inner = match attrs::string(node, "approximate", "none")?.as_str() {
        "none" => {
            let s = b.scalar(imp, std::f32::consts::FRAC_1_SQRT_2);
            let xs = b.op(imp, "Mul", &[x, &s], vec![])?;
            erf(&mut b, imp, &xs)?
        }
        "tanh" => {
            let c = b.scalar(imp, 0.044_715);
            let k = b.scalar(imp, (2.0 / std::f64::consts::PI).sqrt() as f32);
            let x2 = b.op(imp, "Mul", &[x, x], vec![])?;
            let x3 = b.op(imp, "Mul", &[&x2, x], vec![])?;
            let cx3 = b.op(imp, "Mul", &[&x3, &c], vec![])?;
            let u = b.op(imp, "Add", &[x, &cx3], vec![])?;
            let ku = b.op(imp, "Mul", &[&u, &k], vec![])?;
            b.op(imp, "Tanh", &[&ku], vec![])?
        }
        other => return Err(node_err(node, format!("approximate = `{other}` is not one of none, tanh"))),
    };
    let one = b.scalar(imp, 1.0);
    let half = b.scalar(imp, 0.5);
    let s = b.op(imp, "Add", &[&inner, &one], vec![])?;
    let hx = b.op(imp, "Mul", &[x, &half], vec![])?;
    let y = b.op(imp, "Mul", &[&hx, &s], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}
