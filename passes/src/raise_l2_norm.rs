//! raise-l2-norm: the per-head L2 normalisation of GDN's queries and keys, as exporters write
//! it, → one `lt2.rms_norm` (one kernel instead of five: decode runs this twice per GDN layer
//! per loop).
//!
//! Matches `div(x, sqrt(add(reduce_sum(mul(x, x) | pow(x, 2), axes = [last], keepdims), eps)))`
//! with eps a scalar `lt2.constant` and a static last dim D. Since
//! x / sqrt(Σx² + eps) = (1/√D) · x / sqrt(mean(x²) + eps/D), it emits
//! `lt2.rms_norm(x, w) {epsilon = eps / D}` over the last axis with w a constant splat of 1/√D.
//! Run canonicalize after it to drop the dead chain. Before: verified IR. After: the same outputs
//! up to rounding (the fused op accumulates in f64). Idempotent.

use lt2_ir::TensorType;
use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The raise-l2-norm pass.
pub struct RaiseL2Norm;

impl Pass for RaiseL2Norm {
    fn name(&self) -> &'static str {
        "raise-l2-norm"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: &str| PassError::Failed { pass: self.name().into(), reason: reason.into() };
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.div" {
                continue;
            }
            let x = raw::operand(op, 0);
            let Some(sqrt) = raw::def(raw::operand(op, 1), "lt2.sqrt") else { continue };
            let Some(add) = raw::def(raw::operand(sqrt, 0), "lt2.add") else { continue };
            let (sum_v, eps) = match (raw::const_scalar(raw::operand(add, 1)), raw::const_scalar(raw::operand(add, 0))) {
                (Some(e), _) => (raw::operand(add, 0), e),
                (_, Some(e)) => (raw::operand(add, 1), e),
                _ => continue,
            };
            let Some(sum) = raw::def(sum_v, "lt2.reduce_sum") else { continue };
            let Some(rank) = raw::rank(x) else { continue };
            if rank == 0 || raw::i64s_attr(sum, "axes") != Some(vec![rank as i64 - 1]) {
                continue;
            }
            if raw::square_of(raw::operand(sum, 0)).map(|v| v.ptr) != Some(x.ptr) {
                continue;
            }
            let out = raw::result(op, 0);
            if !raw::same_type(x, out) {
                continue;
            }
            let Some(t) = TensorType::parse(&raw::type_text(raw::value_type(x))) else { continue };
            let Some(Some(d)) = t.dims.last().copied() else { continue };
            if t.elem != lt2_ir::Elem::F32 || d <= 0 {
                continue;
            }
            let wt = raw::parse_type(op, &format!("tensor<{d}xf32>")).ok_or_else(|| fail("cannot make the scale type"))?;
            let scale = 1.0 / (d as f64).sqrt();
            let w = raw::create_before(op, "lt2.constant", &[], &[wt], &[("value", format!("dense<{scale:.9e}> : tensor<{d}xf32>"))]).ok_or_else(|| fail("could not create the scale constant"))?;
            let attrs = [("epsilon", format!("{:.8e} : f32", eps / d as f64)), ("axis", format!("{} : i64", rank - 1))];
            let norm = raw::create_before(op, "lt2.rms_norm", &[x, raw::result(w, 0)], &[raw::value_type(out)], &attrs).ok_or_else(|| fail("could not create lt2.rms_norm"))?;
            raw::replace_all_uses(out, raw::result(norm, 0));
            n += 1;
        }
        Ok(n)
    }
}
