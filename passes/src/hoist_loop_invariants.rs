//! hoist-loop-invariants: moves `lt2.weight` ops out of `lt2.loop` regions to the start of the
//! function, so every loop iteration reads the one resident copy of each shared weight.
//!
//! Matches: `lt2.weight` ops nested in any `lt2.loop`. Emits: the same ops at the top of the
//! enclosing function's entry block (weights have no operands, so dominance is kept).
//! Run `canonicalize` after it to merge duplicates. Idempotent.

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The hoist-loop-invariants pass.
pub struct HoistLoopInvariants;

impl Pass for HoistLoopInvariants {
    fn name(&self) -> &'static str {
        "hoist-loop-invariants"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.weight" {
                continue;
            }
            // Find the enclosing func and whether a loop lies between.
            let mut in_loop = false;
            let mut p = raw::parent_op(op);
            let mut func = None;
            while let Some(q) = p {
                let name = raw::name(q);
                if name == "lt2.loop" {
                    in_loop = true;
                }
                if name == "func.func" {
                    func = Some(q);
                    break;
                }
                p = raw::parent_op(q);
            }
            let (true, Some(f)) = (in_loop, func) else { continue };
            if raw::num_regions(f) == 0 {
                continue;
            }
            let Some(first) = raw::first_op_in_region(f, 0) else { continue };
            raw::move_before(op, first);
            n += 1;
        }
        Ok(n)
    }
}
