//! matmul-weights-bf16 / matmul-weights-fp16 (`lt2c --dtype bf16|fp16`): matrix products read
//! their weights in reduced precision. Tensor cores take bf16/fp16 operands at many times the
//! fp32 rate, and decode is bound by reading weights, which this halves. Everything else stays
//! fp32: activations between ops, norms, GDN state, softmax, and the accumulation inside each
//! product (the plan's Linear step rounds its activation operand to the same type). Attention's
//! products read q, k and v in the same type (`operand_type` on `lt2.attention`), as
//! FlashAttention does in bf16.
//!
//! Matches: an `lt2.linear` whose weight operand is an f32 `lt2.weight`. Emits: one `lt2.cast`
//! of that weight to bf16 (or f16) right after it, shared by every linear reading the weight,
//! and makes those linears read the cast. Other uses of the weight (an embedding table tied to
//! the LM head) keep the f32 original; codegen stores the cast weight as its own bf16 entry.
//! Runs after the pipeline (weights already hoisted out of loops and merged). Idempotent.

use std::collections::HashMap;

use lt2_ir::Elem;
use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The reduced-precision pass for one element type (`Elem::Bf16` or `Elem::F16`).
pub struct MatmulWeightPrecision(pub Elem);

impl Pass for MatmulWeightPrecision {
    fn name(&self) -> &'static str {
        match self.0 {
            Elem::F16 => "matmul-weights-fp16",
            _ => "matmul-weights-bf16",
        }
    }
    fn is_required(&self) -> bool {
        // Asked for by --dtype: a result of the compile, not an optimisation to bisect away.
        true
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: String| PassError::Failed { pass: self.name().into(), reason };
        let to = self.0.mlir();
        let mut casts: HashMap<usize, mlir_sys::MlirValue> = HashMap::new();
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) == "lt2.attention" {
                // Attention's two products (q k^T, p v) read their operands in the same type.
                if raw::str_attr(op, "operand_type").as_deref() != Some(to) {
                    if !raw::set_attr(op, "operand_type", &format!("\"{to}\"")) {
                        return Err(fail("could not set operand_type".into()));
                    }
                    n += 1;
                }
                continue;
            }
            if raw::name(op) != "lt2.linear" {
                continue;
            }
            let w = raw::operand(op, 1);
            let Some(def) = raw::defining_op(w).filter(|&d| raw::name(d) == "lt2.weight") else { continue };
            let text = raw::type_text(raw::value_type(w));
            let Some(dims) = text.strip_suffix("xf32>") else { continue };
            let cast = match casts.get(&(w.ptr as usize)) {
                Some(&c) => c,
                None => {
                    let ty = raw::parse_type(op, &format!("{dims}x{to}>")).ok_or_else(|| fail(format!("cannot make the type {dims}x{to}>")))?;
                    let at = raw::next_op(def).ok_or_else(|| fail("a weight is the last op of its block".into()))?;
                    let c = raw::create_before(at, "lt2.cast", &[w], &[ty], &[]).ok_or_else(|| fail("could not create lt2.cast".into()))?;
                    let c = raw::result(c, 0);
                    casts.insert(w.ptr as usize, c);
                    c
                }
            };
            raw::set_operand(op, 1, cast);
            n += 1;
        }
        Ok(n)
    }
}
