//! fuse-silu-mul: `mul(silu(g), u)` (either operand order) → `silu_mul(g, u)`: SwiGLU's gated
//! product (and GDN's output gate) in one elementwise kernel instead of two, so the silu never
//! goes to memory and a decode step launches one kernel less per gate.
//!
//! Matches: an `lt2.mul` with an operand that is an `lt2.silu` read by nothing else, where the
//! silu's input, the other operand and the result have one type (no broadcasting). Emits: one
//! `lt2.silu_mul`; the silu is left dead for canonicalize. Runs after fuse-silu (which makes the
//! silus); idempotent.

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The fuse-silu-mul pass.
pub struct FuseSiluMul;

impl Pass for FuseSiluMul {
    fn name(&self) -> &'static str {
        "fuse-silu-mul"
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
            // The silu's input, if `v` is a silu whose only reader is this mul.
            let gate_of = |v| raw::def(v, "lt2.silu").filter(|_| raw::single_use(v).is_some()).map(|d| raw::operand(d, 0));
            let (g, u) = match (gate_of(a), gate_of(b)) {
                (Some(g), _) => (g, b),
                (_, Some(g)) => (g, a),
                _ => continue,
            };
            let out = raw::result(op, 0);
            if !raw::same_type(g, out) || !raw::same_type(u, out) {
                continue;
            }
            let fused = raw::create_before(op, "lt2.silu_mul", &[g, u], &[raw::value_type(out)], &[])
                .ok_or_else(|| PassError::Failed { pass: self.name().into(), reason: "could not create lt2.silu_mul".into() })?;
            raw::replace_all_uses(out, raw::result(fused, 0));
            n += 1;
        }
        Ok(n)
    }
}
