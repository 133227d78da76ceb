//! fuse-silu: `mul(x, sigmoid(x))` (either operand order) → `silu(x)`.
//!
//! Matches: an `lt2.mul` whose operands are a value and `lt2.sigmoid` of that same value, with
//! the result type of x (no broadcasting). Emits: one `lt2.silu`. The sigmoid stays while other
//! ops use it (canonicalize removes it otherwise). Needs no other pass first; idempotent.

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The fuse-silu pass.
pub struct FuseSilu;

impl Pass for FuseSilu {
    fn name(&self) -> &'static str {
        "fuse-silu"
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
            let (a, b) = (raw::operand(op, 0), raw::operand(op, 1));
            let sig_of = |v| raw::defining_op(v).filter(|&d| raw::name(d) == "lt2.sigmoid").map(|d| raw::operand(d, 0));
            let x = match (sig_of(b), sig_of(a)) {
                (Some(s), _) if s.ptr == a.ptr => a,
                (_, Some(s)) if s.ptr == b.ptr => b,
                _ => continue,
            };
            let out = raw::result(op, 0);
            if !raw::same_type(x, out) {
                continue;
            }
            let silu = raw::create_before(op, "lt2.silu", &[x], &[raw::value_type(out)], &[])
                .ok_or_else(|| PassError::Failed { pass: self.name().into(), reason: "could not create lt2.silu".into() })?;
            raw::replace_all_uses(out, raw::result(silu, 0));
            n += 1;
        }
        Ok(n)
    }
}
