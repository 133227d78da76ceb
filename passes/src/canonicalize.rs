//! canonicalize: local simplifications that every later stage benefits from.
//!
//! Matches and emits:
//! - `transpose(transpose(x, p1), p2)` whose permutations compose to the identity → `x`
//!   (the importer brackets channels-first convs with transposes that cancel the exporter's);
//! - `reshape(reshape(x))` → `reshape(x)` (the outer shape wins);
//! - an lt2 op without regions that repeats an earlier op of the same block (same name,
//!   operands, attributes and result types) → the earlier one's results (common subexpression
//!   elimination: a weight read twice, the RoPE tables torch's exporter recomputes per layer);
//! - lt2 ops (all pure) whose results are unused → erased, to a fixed point.
//!
//! Before: a verified module. After: a verified module with the same outputs. Needs no other
//! pass first. Idempotent: a second run makes no rewrite.

use std::collections::HashMap;

use melior::ir::Module;

use crate::raw;
use crate::{Pass, PassError};

/// The canonicalize pass.
pub struct Canonicalize;

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let mut n = fold_transposes(module) + fold_reshapes(module) + cse(module);
        n += dce(module);
        Ok(n)
    }
}

fn fold_transposes(module: &Module) -> usize {
    let mut n = 0;
    for op in raw::all_ops(module) {
        if raw::name(op) != "lt2.transpose" {
            continue;
        }
        let Some(inner) = raw::defining_op(raw::operand(op, 0)) else { continue };
        if raw::name(inner) != "lt2.transpose" {
            continue;
        }
        let (Some(p2), Some(p1)) = (raw::i64s_attr(op, "perm"), raw::i64s_attr(inner, "perm")) else { continue };
        // out[i] = mid[p2[i]] = x[p1[p2[i]]]
        let identity = p2.iter().enumerate().all(|(i, &j)| p1.get(j as usize) == Some(&(i as i64)));
        let x = raw::operand(inner, 0);
        if identity && raw::same_type(x, raw::result(op, 0)) {
            raw::replace_all_uses(raw::result(op, 0), x);
            n += 1;
        }
    }
    n
}

fn fold_reshapes(module: &Module) -> usize {
    let mut n = 0;
    for op in raw::all_ops(module) {
        if raw::name(op) != "lt2.reshape" {
            continue;
        }
        let Some(inner) = raw::defining_op(raw::operand(op, 0)) else { continue };
        if raw::name(inner) != "lt2.reshape" {
            continue;
        }
        // SAFETY: both ops are live; the outer reshape now reads the inner one's input.
        unsafe { mlir_sys::mlirOperationSetOperand(op, 0, raw::operand(inner, 0)) };
        n += 1;
    }
    n
}

/// Common subexpression elimination over lt2 ops (all pure) without regions, within a block.
fn cse(module: &Module) -> usize {
    let mut n = 0;
    let mut seen: HashMap<(usize, String, Vec<usize>), Vec<mlir_sys::MlirOperation>> = HashMap::new();
    for op in raw::all_ops(module) {
        let name = raw::name(op);
        if !name.starts_with("lt2.") || raw::num_regions(op) != 0 {
            continue;
        }
        // SAFETY: live operation.
        let block = unsafe { mlir_sys::mlirOperationGetBlock(op) }.ptr as usize;
        let operands: Vec<usize> = (0..raw::num_operands(op)).map(|i| raw::operand(op, i).ptr as usize).collect();
        let same = |e: &mlir_sys::MlirOperation| {
            raw::num_results(*e) == raw::num_results(op)
                && (0..raw::num_results(op)).all(|i| raw::same_type(raw::result(*e, i), raw::result(op, i)))
                && raw::same_attributes(*e, op)
        };
        let earlier = seen.entry((block, name, operands)).or_default();
        match earlier.iter().find(|e| same(e)) {
            Some(&e) => {
                for i in 0..raw::num_results(op) {
                    raw::replace_all_uses(raw::result(op, i), raw::result(e, i));
                }
                n += 1;
            }
            None => earlier.push(op),
        }
    }
    n
}

/// Erases unused lt2 ops until none is left.
fn dce(module: &Module) -> usize {
    let mut total = 0;
    loop {
        let dead: Vec<_> = raw::all_ops(module)
            .into_iter()
            .filter(|&op| raw::name(op).starts_with("lt2.") && (0..raw::num_results(op)).all(|i| !raw::has_uses(raw::result(op, i))))
            .collect();
        if dead.is_empty() {
            return total;
        }
        // Erase outermost only: an erased loop takes its nested ops with it. Decided before any
        // op is destroyed (a destroyed op's parent cannot be asked for).
        let dead_set: std::collections::HashSet<usize> = dead.iter().map(|o| o.ptr as usize).collect();
        let outermost: Vec<_> = dead
            .into_iter()
            .filter(|&op| {
                let mut p = raw::parent_op(op);
                while let Some(q) = p {
                    if dead_set.contains(&(q.ptr as usize)) {
                        return false;
                    }
                    p = raw::parent_op(q);
                }
                true
            })
            .collect();
        for op in outermost {
            raw::erase(op);
            total += 1;
        }
    }
}
