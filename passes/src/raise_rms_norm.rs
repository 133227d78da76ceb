//! raise-rms-norm: the decomposed RMSNorm exporters emit → one `lt2.rms_norm`.
//!
//! Matches `mul(div(x, sqrt(add(reduce_mean(pow(x, 2) | mul(x, x), axes = [last], keepdims),
//! eps))), w)` where eps is a scalar `lt2.constant` and w a rank-1 scale, and the same with
//! `mul(x, reciprocal(sqrt(..)))` for the division (torch's opset-18 export). Emits
//! `lt2.rms_norm(x, w)` with that epsilon over the last axis. A chain without the scale is left
//! alone (`lt2.rms_norm` needs one). Run canonicalize after it to drop the dead chain.
//! Before: verified IR. After: the same outputs up to rounding (the fused op accumulates the
//! mean of squares in f64). Idempotent.

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The raise-rms-norm pass.
pub struct RaiseRmsNorm;


impl Pass for RaiseRmsNorm {
    fn name(&self) -> &'static str {
        "raise-rms-norm"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.mul" {
                continue;
            }
            // mul(x / sqrt(..), w) in either order
            let (a, b) = (raw::operand(op, 0), raw::operand(op, 1));
            let ((x, sqrt), w) = match (normalized(a), normalized(b)) {
                (Some(n), _) => (n, b),
                (_, Some(n)) => (n, a),
                _ => continue,
            };
            let Some(add) = raw::def(raw::operand(sqrt, 0), "lt2.add") else { continue };
            let (mean_v, eps) = match (raw::const_scalar(raw::operand(add, 1)), raw::const_scalar(raw::operand(add, 0))) {
                (Some(e), _) => (raw::operand(add, 0), e),
                (_, Some(e)) => (raw::operand(add, 1), e),
                _ => continue,
            };
            let Some(mean) = raw::def(mean_v, "lt2.reduce_mean") else { continue };
            let Some(rank) = raw::rank(x) else { continue };
            if raw::i64s_attr(mean, "axes") != Some(vec![rank as i64 - 1]) {
                continue;
            }
            if raw::square_of(raw::operand(mean, 0)).map(|v| v.ptr) != Some(x.ptr) {
                continue;
            }
            // The scale must broadcast along the normalised axis only: rank 1.
            if raw::rank(w) != Some(1) {
                continue;
            }
            let out = raw::result(op, 0);
            if !raw::same_type(x, out) {
                continue;
            }
            let attrs = [("epsilon", format!("{:.8e} : f32", eps)), ("axis", format!("{} : i64", rank - 1))];
            let norm = raw::create_before(op, "lt2.rms_norm", &[x, w], &[raw::value_type(out)], &attrs)
                .ok_or_else(|| PassError::Failed { pass: self.name().into(), reason: "could not create lt2.rms_norm".into() })?;
            raw::replace_all_uses(out, raw::result(norm, 0));
            n += 1;
        }
        Ok(n)
    }
}

/// (x, the sqrt) when `v` is div(x, sqrt(..)) or mul(x, reciprocal(sqrt(..))) in either order
/// (torch's opset-18 RMSNorm multiplies by rsqrt).
fn normalized(v: mlir_sys::MlirValue) -> Option<(mlir_sys::MlirValue, mlir_sys::MlirOperation)> {
    if let Some(div) = raw::def(v, "lt2.div") {
        return Some((raw::operand(div, 0), raw::def(raw::operand(div, 1), "lt2.sqrt")?));
    }
    let m = raw::def(v, "lt2.mul")?;
    let rsqrt = |u| raw::def(u, "lt2.reciprocal").and_then(|r| raw::def(raw::operand(r, 0), "lt2.sqrt"));
    let (a, b) = (raw::operand(m, 0), raw::operand(m, 1));
    match (rsqrt(a), rsqrt(b)) {
        (_, Some(s)) => Some((a, s)),
        (Some(s), _) => Some((b, s)),
        _ => None,
    }
}
