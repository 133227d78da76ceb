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
//! and makes those linears read the cast. A linear that reads its weight as stored, [K, N]
//! (`transpose_w = false`), reads the cast of `lt2.transpose` [N, K] instead, with
//! `transpose_w = true`: each output's weights then lie contiguous along K, which the CUDA
//! backend's decode GEMV reads with 16-byte loads (cuBLASLt takes either layout). Other uses of
//! the weight (an embedding table tied to the LM head) keep the f32 original; codegen stores
//! each cast (transposed or not) as its own bf16 entry, the transpose folded in. Runs after the
//! pipeline (weights already hoisted out of loops and merged). Idempotent.

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
        let mut casts: HashMap<(usize, bool), mlir_sys::MlirValue> = HashMap::new();
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
            let Some(prefix) = text.strip_suffix("xf32>") else { continue };
            let dims = raw::dims(w).unwrap_or_default();
            // [K, N] read as stored: store [N, K] instead (static 2-D weights only).
            let transpose = raw::bool_attr(op, "transpose_w") == Some(false) && dims.len() == 2 && dims.iter().all(|d| d.is_some());
            let cast = match casts.get(&(w.ptr as usize, transpose)) {
                Some(&c) => c,
                None => {
                    let at = raw::next_op(def).ok_or_else(|| fail("a weight is the last op of its block".into()))?;
                    let (src, ty_text) = if transpose {
                        let [k, n] = [dims[0].unwrap_or(0), dims[1].unwrap_or(0)];
                        let ty = raw::parse_type(op, &format!("tensor<{n}x{k}xf32>")).ok_or_else(|| fail("cannot make the transposed type".into()))?;
                        let t = raw::create_before(at, "lt2.transpose", &[w], &[ty], &[("perm", "array<i64: 1, 0>".into())]).ok_or_else(|| fail("could not create lt2.transpose".into()))?;
                        (raw::result(t, 0), format!("tensor<{n}x{k}x{to}>"))
                    } else {
                        (w, format!("{prefix}x{to}>"))
                    };
                    let ty = raw::parse_type(op, &ty_text).ok_or_else(|| fail(format!("cannot make the type {ty_text}")))?;
                    let c = raw::create_before(at, "lt2.cast", &[src], &[ty], &[]).ok_or_else(|| fail("could not create lt2.cast".into()))?;
                    let c = raw::result(c, 0);
                    casts.insert((w.ptr as usize, transpose), c);
                    c
                }
            };
            raw::set_operand(op, 1, cast);
            if transpose && !raw::set_attr(op, "transpose_w", "true") {
                return Err(fail("could not set transpose_w".into()));
            }
            n += 1;
        }
        Ok(n)
    }
}
