//! Elementwise activations and index reductions that lt2c spells with other ONNX ops, as the
//! ONNX spec's function bodies do: LeakyRelu, PRelu, ThresholdedRelu, Elu, Selu, Celu,
//! HardSigmoid, HardSwish, Softsign, Mish, LogSoftmax (x - max - log(sum(exp(x - max)))), and
//! ArgMax / ArgMin (TopK with k = 1: ties to the lower index, ONNX's default; with
//! select_last_index, the last position equal to the extreme), IsNaN (x != x: torch's
//! decomposed SDPA guards fully masked rows with it) and IsInf (x == +inf / x == -inf). The branches of a piecewise function are both computed and one is
//! picked with Where, so an overflow in the branch not taken (exp of a large x) never shows.

use tract_onnx::pb::NodeProto;

use super::composite::{input, int_attr, reduce, value, Body};
use super::ImportFn;
use crate::attrs::{self, node_err};
use crate::error::FrontendError;
use crate::import::Importer;
use crate::value::{norm_axis, Value};

pub(super) fn lookup(domain: &str, op: &str) -> Option<ImportFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op {
        "LeakyRelu" => |i, n| {
            let alpha = attrs::float(n, "alpha", 0.01);
            negative_slope(i, n, Slope::Scalar(alpha))
        },
        "PRelu" => |i, n| negative_slope(i, n, Slope::Input),
        "ThresholdedRelu" => thresholded_relu,
        "Elu" => elu,
        "Selu" => selu,
        "Celu" => celu,
        "HardSigmoid" => |i, n| {
            let (alpha, beta) = (attrs::float(n, "alpha", 0.2), attrs::float(n, "beta", 0.5));
            hard_sigmoid(i, n, alpha, beta, false)
        },
        "HardSwish" => |i, n| hard_sigmoid(i, n, 1.0 / 6.0, 0.5, true),
        "Softsign" => softsign,
        "Mish" => mish,
        "LogSoftmax" => log_softmax,
        "ArgMax" => |i, n| arg_extreme(i, n, true),
        "ArgMin" => |i, n| arg_extreme(i, n, false),
        "IsNaN" => is_nan,
        "IsInf" => is_inf,
        _ => return None,
    })
}

/// Where the slope of x < 0 comes from: an attribute (LeakyRelu) or input 1 (PRelu, broadcast
/// to x).
enum Slope {
    Scalar(f32),
    Input,
}

/// x for x >= 0, slope * x below.
fn negative_slope(imp: &mut Importer, node: &NodeProto, slope: Slope) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let s = match slope {
        Slope::Scalar(a) => b.scalar(imp, a),
        Slope::Input => input(node, 1)?.to_string(),
    };
    let zero = b.scalar(imp, 0.0);
    let neg = b.op(imp, "Less", &[x, &zero], vec![])?;
    let sx = b.op(imp, "Mul", &[x, &s], vec![])?;
    let y = b.op(imp, "Where", &[&neg, &sx, x], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// x where x > alpha, else 0.
fn thresholded_relu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let alpha = b.scalar(imp, attrs::float(node, "alpha", 1.0));
    let zero = b.scalar(imp, 0.0);
    let gt = b.op(imp, "Greater", &[x, &alpha], vec![])?;
    let y = b.op(imp, "Where", &[&gt, x, &zero], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// alpha (e^x - 1) for x < 0, x for x >= 0.
fn elu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let (alpha, zero, one) = (b.scalar(imp, attrs::float(node, "alpha", 1.0)), b.scalar(imp, 0.0), b.scalar(imp, 1.0));
    let neg = b.op(imp, "Less", &[x, &zero], vec![])?;
    let e = b.op(imp, "Exp", &[x], vec![])?;
    let em1 = b.op(imp, "Sub", &[&e, &one], vec![])?;
    let a = b.op(imp, "Mul", &[&em1, &alpha], vec![])?;
    let y = b.op(imp, "Where", &[&neg, &a, x], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// gamma (alpha e^x - alpha) for x <= 0, gamma x for x > 0.
fn selu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let alpha = b.scalar(imp, attrs::float(node, "alpha", 1.673_263_2));
    let gamma = b.scalar(imp, attrs::float(node, "gamma", 1.050_701));
    let zero = b.scalar(imp, 0.0);
    let le = b.op(imp, "LessOrEqual", &[x, &zero], vec![])?;
    let e = b.op(imp, "Exp", &[x], vec![])?;
    let ae = b.op(imp, "Mul", &[&e, &alpha], vec![])?;
    let n = b.op(imp, "Sub", &[&ae, &alpha], vec![])?;
    let w = b.op(imp, "Where", &[&le, &n, x], vec![])?;
    let y = b.op(imp, "Mul", &[&w, &gamma], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// max(0, x) + min(0, alpha (e^(x / alpha) - 1)).
fn celu(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let (alpha, zero, one) = (b.scalar(imp, attrs::float(node, "alpha", 1.0)), b.scalar(imp, 0.0), b.scalar(imp, 1.0));
    let xa = b.op(imp, "Div", &[x, &alpha], vec![])?;
    let e = b.op(imp, "Exp", &[&xa], vec![])?;
    let em1 = b.op(imp, "Sub", &[&e, &one], vec![])?;
    let ae = b.op(imp, "Mul", &[&em1, &alpha], vec![])?;
    let lo = b.op(imp, "Min", &[&ae, &zero], vec![])?;
    let hi = b.op(imp, "Max", &[x, &zero], vec![])?;
    let y = b.op(imp, "Add", &[&hi, &lo], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// max(0, min(1, alpha x + beta)), times x for HardSwish.
fn hard_sigmoid(imp: &mut Importer, node: &NodeProto, alpha: f32, beta: f32, times_x: bool) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let (a, c, zero, one) = (b.scalar(imp, alpha), b.scalar(imp, beta), b.scalar(imp, 0.0), b.scalar(imp, 1.0));
    let ax = b.op(imp, "Mul", &[x, &a], vec![])?;
    let lin = b.op(imp, "Add", &[&ax, &c], vec![])?;
    let lo = b.op(imp, "Min", &[&lin, &one], vec![])?;
    let mut y = b.op(imp, "Max", &[&lo, &zero], vec![])?;
    if times_x {
        y = b.op(imp, "Mul", &[x, &y], vec![])?;
    }
    Ok(vec![value(imp, node, &y)?])
}

/// x / (1 + |x|).
fn softsign(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let one = b.scalar(imp, 1.0);
    let a = b.op(imp, "Abs", &[x], vec![])?;
    let d = b.op(imp, "Add", &[&a, &one], vec![])?;
    let y = b.op(imp, "Div", &[x, &d], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// x tanh(softplus(x)).
fn mish(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let sp = b.op(imp, "Softplus", &[x], vec![])?;
    let t = b.op(imp, "Tanh", &[&sp], vec![])?;
    let y = b.op(imp, "Mul", &[x, &t], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// x - max - log(sum(exp(x - max))) over one axis (opset 13's semantics; before 13 the input is
/// coerced to 2-D at `axis`, which is the same only for the last axis).
fn log_softmax(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let rank = imp.req(node, 0)?.rank();
    let axis = attrs::int(node, "axis", if imp.opset >= 13 { -1 } else { 1 });
    let a = norm_axis(axis, rank).ok_or_else(|| node_err(node, format!("axis {axis} out of range for rank {rank}")))?;
    if imp.opset < 13 && a + 1 != rank {
        return Err(node_err(node, format!("LogSoftmax before opset 13 over axis {axis} of a rank-{rank} input (a 2-D coercion) is not supported; only the last axis")));
    }
    let m = reduce(&mut b, imp, "ReduceMax", x, &[a as i64])?;
    let s = b.op(imp, "Sub", &[x, &m], vec![])?;
    let e = b.op(imp, "Exp", &[&s], vec![])?;
    let sum = reduce(&mut b, imp, "ReduceSum", &e, &[a as i64])?;
    let l = b.op(imp, "Log", &[&sum], vec![])?;
    let y = b.op(imp, "Sub", &[&s, &l], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// The index of the largest (smallest) value along `axis`, the axis kept or squeezed (keepdims):
/// TopK's indices with k = 1 (the first of equal extremes), or with select_last_index the
/// largest position holding the extreme (ReduceMax over Where(x == extreme, position, -1)).
fn arg_extreme(imp: &mut Importer, node: &NodeProto, largest: bool) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let rank = imp.req(node, 0)?.rank();
    let axis = attrs::int(node, "axis", 0);
    let a = norm_axis(axis, rank).ok_or_else(|| node_err(node, format!("axis {axis} out of range for rank {rank}")))? as i64;
    let mut y = if attrs::int(node, "select_last_index", 0) != 0 {
        let m = if largest {
            reduce(&mut b, imp, "ReduceMax", x, &[a])?
        } else {
            // min = -max(-x)
            let nx = b.op(imp, "Neg", &[x], vec![])?;
            let m = reduce(&mut b, imp, "ReduceMax", &nx, &[a])?;
            b.op(imp, "Neg", &[&m], vec![])?
        };
        let eq = b.op(imp, "Equal", &[x, &m], vec![])?;
        // positions 0..n along the axis, shaped [n, 1, ..., 1] to broadcast against x's trailing dims
        let shape = b.op(imp, "Shape", &[x], vec![])?;
        let at = b.ints(imp, &[a]);
        let n = b.op(imp, "Gather", &[&shape, &at], vec![])?;
        let (zero, one) = (b.ints(imp, &[0]), b.ints(imp, &[1]));
        let (zero, one) = (b.op(imp, "Squeeze", &[&zero], vec![])?, b.op(imp, "Squeeze", &[&one], vec![])?);
        let n = b.op(imp, "Squeeze", &[&n], vec![])?;
        let pos = b.op(imp, "Range", &[&zero, &n, &one], vec![])?;
        let mut dims = vec![-1i64];
        dims.resize(rank - a as usize, 1);
        let dims = b.ints(imp, &dims);
        let pos = b.op(imp, "Reshape", &[&pos, &dims], vec![])?;
        let none = b.ints(imp, &[-1]);
        let none = b.op(imp, "Squeeze", &[&none], vec![])?;
        let w = b.op(imp, "Where", &[&eq, &pos, &none], vec![])?;
        reduce(&mut b, imp, "ReduceMax", &w, &[a])?
    } else {
        let k = b.ints(imp, &[1]);
        b.op_outputs(imp, "TopK", &[x, &k], vec![int_attr("axis", a), int_attr("largest", largest as i64)], 2)?.remove(1)
    };
    if attrs::int(node, "keepdims", 1) == 0 {
        let axes = b.ints(imp, &[a]);
        y = b.op(imp, "Squeeze", &[&y, &axes], vec![])?;
    }
    Ok(vec![value(imp, node, &y)?])
}

/// not(x == x): true exactly for NaN.
fn is_nan(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let eq = b.op(imp, "Equal", &[x, x], vec![])?;
    let y = b.op(imp, "Not", &[&eq], vec![])?;
    Ok(vec![value(imp, node, &y)?])
}

/// x == +inf (detect_positive), x == -inf (detect_negative), or either.
fn is_inf(imp: &mut Importer, node: &NodeProto) -> Result<Vec<Value>, FrontendError> {
    let mut b = Body::new(node);
    let x = input(node, 0)?;
    let (pos, neg) = (attrs::int(node, "detect_positive", 1) != 0, attrs::int(node, "detect_negative", 1) != 0);
    let y = match (pos, neg) {
        (true, true) => {
            let a = b.op(imp, "Abs", &[x], vec![])?;
            let inf = b.scalar(imp, f32::INFINITY);
            b.op(imp, "Equal", &[&a, &inf], vec![])?
        }
        (true, false) | (false, true) => {
            let inf = b.scalar(imp, if pos { f32::INFINITY } else { f32::NEG_INFINITY });
            b.op(imp, "Equal", &[x, &inf], vec![])?
        }
        (false, false) => {
            // Nothing is detected: false everywhere, shaped like x.
            let inf = b.scalar(imp, f32::NAN);
            b.op(imp, "Equal", &[x, &inf], vec![])?
        }
    };
    Ok(vec![value(imp, node, &y)?])
}
