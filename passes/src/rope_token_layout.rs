//! rope-token-layout: a rotary embedding over heads-first x [B, H, L, D] that a transpose made
//! from [B, L, H, D] runs on the token layout instead: `rope(transpose(y, [0,2,1,3]))` →
//! `transpose(reshape(rope(reshape(y, [B, L, H*D])), [B, L, H, D]), [0,2,1,3])`. The rotation
//! of each (token, head) is the same either way; the transpose moves after the rope, where it
//! meets the transpose that packs q / k for attention and canonicalize cancels both: two copy
//! kernels fewer per rotated tensor (Hugging Face exports rotate heads-first).
//!
//! Matches `lt2.rope` with a 4-D x = transpose(y, [0,2,1,3]) where y = reshape(.., [B, L, H, D])
//! names its dims, or y is a same-shaped op (Qwen3's per-head q / k norm) over such a reshape
//! (static H and D). Before / after: verified, same outputs bit for bit.
//! Idempotent (the new rope reads a 3-D x).

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The rope-token-layout pass.
pub struct RopeTokenLayout;

impl Pass for RopeTokenLayout {
    fn name(&self) -> &'static str {
        "rope-token-layout"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |what: &str| PassError::Failed { pass: self.name().into(), reason: format!("could not create {what}") };
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.rope" || raw::rank(raw::operand(op, 0)) != Some(4) {
                continue;
            }
            let Some(t) = raw::def(raw::operand(op, 0), "lt2.transpose") else { continue };
            if raw::i64s_attr(t, "perm").as_deref() != Some(&[0, 2, 1, 3]) {
                continue;
            }
            let y = raw::operand(t, 0);
            let Some(names) = dim_names(y, 3) else { continue };
            let Some(yd) = raw::dims(y) else { continue };
            let (Some(h), Some(d)) = (yd[2], yd[3]) else { continue };
            let dim = |x: Option<i64>| x.map_or("?".to_string(), |v| v.to_string());
            let ty = |dims: &[Option<i64>]| raw::parse_type(op, &format!("tensor<{}xf32>", dims.iter().map(|&x| dim(x)).collect::<Vec<_>>().join("x")));
            let flat = [yd[0], yd[1], Some(h * d)];
            let shape = |s: &[String]| format!("[{}]", s.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", "));
            let y3 = raw::create_before(op, "lt2.reshape", &[y], &[ty(&flat).ok_or_else(|| fail("a type"))?], &[("shape", shape(&[names[0].clone(), names[1].clone(), (h * d).to_string()]))])
                .ok_or_else(|| fail("lt2.reshape"))?;
            let mut operands = vec![raw::result(y3, 0)];
            operands.extend((1..raw::num_operands(op)).map(|i| raw::operand(op, i)));
            let r3 = raw::create_before(op, "lt2.rope", &operands, &[ty(&flat).ok_or_else(|| fail("a type"))?], &[]).ok_or_else(|| fail("lt2.rope"))?;
            raw::copy_attributes(op, r3, &[]);
            if !raw::set_attr(r3, "num_heads", &format!("{h} : i64")) {
                return Err(fail("num_heads"));
            }
            let r4 = raw::create_before(op, "lt2.reshape", &[raw::result(r3, 0)], &[raw::value_type(y)], &[("shape", shape(&names))]).ok_or_else(|| fail("lt2.reshape"))?;
            let back = raw::create_before(op, "lt2.transpose", &[raw::result(r4, 0)], &[raw::value_type(raw::result(op, 0))], &[("perm", "array<i64: 0, 2, 1, 3>".into())])
                .ok_or_else(|| fail("lt2.transpose"))?;
            raw::replace_all_uses(raw::result(op, 0), raw::result(back, 0));
            n += 1;
        }
        Ok(n)
    }
}

/// The dim names [B, L, H, D] of `y`: a reshape's shape, or that of the reshape under up to
/// `depth` ops whose result has their first operand's type.
fn dim_names(y: mlir_sys::MlirValue, depth: usize) -> Option<Vec<String>> {
    let op = raw::defining_op(y)?;
    if raw::name(op) == "lt2.reshape" {
        return raw::strs_attr(op, "shape").filter(|s| s.len() == 4);
    }
    if depth == 0 || raw::num_operands(op) == 0 || !raw::same_type(raw::operand(op, 0), y) {
        return None;
    }
    dim_names(raw::operand(op, 0), depth - 1)
}
