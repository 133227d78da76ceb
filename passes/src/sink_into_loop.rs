//! sink-into-loop: computations after an `lt2.loop` that apply the same ops to the value of
//! every iteration move into the loop body, as scan outputs.
//!
//! torch's unrolled export of Ouro computes each loop's exit gate λ_t = sigmoid(h_t·w + b) after
//! all loops, from the states h_1..h_T; once reroll-loops has made the loop, those states are
//! rows of a scan output (lt2.gather) and the last one is the loop's result. Moved into the body,
//! the gate becomes a scan output computed by a sigmoid, as in Ouro's Loop form: the runtime can
//! then stop looping a token early (`--exit-threshold`), and the state scan nothing else reads
//! anymore goes.
//!
//! Matches, among the ops after a top-level loop in its block, groups of ops of the same name,
//! attributes and result types whose operands are, alike for the whole group, either the value
//! of one body value at iteration t (a row of a scan output, a carried value's row, or the
//! loop's last result) or one value defined before the loop, with exactly one op per iteration
//! t = 0..T-1: the body then computes the same ops once per iteration, no more. Repeats on the
//! ops of sunk groups. Each sunk op's result that something else still reads becomes a scan
//! output, read back by lt2.gather of its row; scan outputs nothing reads any more are dropped.
//! At most 8 carried values and scan outputs together (else nothing changes). Before: verified
//! IR. After: the same outputs; canonicalize drops the dead row indices.

use std::collections::{HashMap, HashSet};

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

use crate::raw;
use crate::{Pass, PassError};

/// The sink-into-loop pass.
pub struct SinkIntoLoop;

/// lt2.loop's operand and result segments (ir/lt2.irdl.mlir).
const SEGMENTS: usize = lt2_ir::ops::MAX_CARRIED;

impl Pass for SinkIntoLoop {
    fn name(&self) -> &'static str {
        "sink-into-loop"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: String| PassError::Failed { pass: self.name().into(), reason };
        // Listed before any is rewritten: a sink replaces the loop op.
        let loops: Vec<MlirOperation> = raw::all_ops(module)
            .into_iter()
            .filter(|&op| raw::name(op) == "lt2.loop" && raw::parent_op(op).is_some_and(|p| raw::name(p) == "func.func"))
            .collect();
        let mut n = 0;
        for lp in loops {
            n += sink(lp).map_err(fail)?;
        }
        Ok(n)
    }
}

/// A body value at an iteration.
type Row = (MlirValue, usize);

/// Ops after the loop computing the same thing from every iteration's row.
struct Group {
    rep: MlirOperation,
    /// Per operand: the body value it reads a row of (None: a value from before the loop).
    pattern: Vec<Option<MlirValue>>,
    /// The op of each iteration.
    copies: Vec<Option<MlirOperation>>,
}

/// Sinks what it can after `lp`; returns the number of op groups sunk.
fn sink(lp: MlirOperation) -> Result<usize, String> {
    let t = raw::int_attr(lp, "trip_count").ok_or("lt2.loop without a trip count")?;
    // One iteration: every op after the loop would qualify, and nothing is gained.
    if t < 2 {
        return Ok(0);
    }
    let t = t as usize;
    let block = raw::region_block(lp, 0).ok_or("lt2.loop without a body")?;
    let yield_op = raw::terminator(block).ok_or("lt2.loop body without a terminator")?;
    let nc = raw::num_operands(lp);
    let (mut rows, gathers) = rows_of(lp, t, nc, block, yield_op);
    // Values from before the loop, which the body can read.
    let func = raw::parent_op(lp).ok_or("lt2.loop outside a function")?;
    let mut before: HashSet<usize> = raw::region_block(func, 0).map_or_else(Vec::new, raw::block_args).iter().map(|v| v.ptr as usize).collect();
    let mut op = raw::first_op_in_region(func, 0);
    while let Some(o) = op.filter(|o| o.ptr != lp.ptr) {
        (0..raw::num_results(o)).for_each(|r| {
            before.insert(raw::result(o, r).ptr as usize);
        });
        op = raw::next_op(o);
    }
    let after: Vec<MlirOperation> = std::iter::successors(raw::next_op(lp), |&o| raw::next_op(o)).collect();
    // Rounds of complete groups: each round's clones go at the end of the body.
    let mut sunk: Vec<(MlirOperation, Vec<MlirOperation>)> = Vec::new();
    let mut taken: HashSet<usize> = HashSet::new();
    loop {
        let mut groups: Vec<Group> = Vec::new();
        for &o in &after {
            if taken.contains(&(o.ptr as usize)) || raw::num_regions(o) != 0 || raw::num_results(o) == 0 {
                continue;
            }
            let Some((pattern, c)) = classify(o, &rows, &before) else { continue };
            let g = groups.iter_mut().find(|g| {
                g.copies[c].is_none()
                    && g.pattern.len() == pattern.len()
                    && raw::name(g.rep) == raw::name(o)
                    && raw::same_attributes(g.rep, o)
                    && (0..raw::num_results(o)).all(|r| raw::num_results(g.rep) == raw::num_results(o) && raw::same_type(raw::result(g.rep, r), raw::result(o, r)))
                    && g.pattern.iter().zip(&pattern).enumerate().all(|(j, (a, b))| match (a, b) {
                        (Some(x), Some(y)) => x.ptr == y.ptr,
                        (None, None) => raw::same_outside(raw::operand(g.rep, j), raw::operand(o, j)),
                        _ => false,
                    })
            });
            match g {
                Some(g) => g.copies[c] = Some(o),
                None => {
                    let mut copies = vec![None; t];
                    copies[c] = Some(o);
                    groups.push(Group { rep: o, pattern, copies });
                }
            }
        }
        // Groups with an op for every iteration, their copies in iteration order.
        let complete: Vec<(Group, Vec<MlirOperation>)> = groups.into_iter().filter_map(|g| g.copies.iter().copied().collect::<Option<Vec<_>>>().map(|c| (g, c))).collect();
        if complete.is_empty() {
            break;
        }
        for (g, copies) in complete {
            let clone = raw::clone_before(g.rep, yield_op);
            for (j, p) in g.pattern.iter().enumerate() {
                if let Some(y) = p {
                    raw::set_operand(clone, j, *y);
                }
            }
            for (c, &copy) in copies.iter().enumerate() {
                taken.insert(copy.ptr as usize);
                for r in 0..raw::num_results(copy) {
                    rows.insert(raw::result(copy, r).ptr as usize, (raw::result(clone, r), c));
                }
            }
            sunk.push((clone, copies));
        }
    }
    if sunk.is_empty() {
        return Ok(0);
    }
    // New scan outputs: sunk results that an op left outside still reads.
    let mut new_scans: Vec<(MlirValue, Vec<MlirValue>)> = Vec::new();
    for (clone, copies) in &sunk {
        for r in 0..raw::num_results(*clone) {
            let per_iteration: Vec<MlirValue> = copies.iter().map(|&c| raw::result(c, r)).collect();
            if per_iteration.iter().any(|&v| raw::users(v).iter().any(|u| !taken.contains(&(u.ptr as usize)))) {
                new_scans.push((raw::result(*clone, r), per_iteration));
            }
        }
    }
    // Old scan outputs stay while something but a sunk op's row read reads them.
    let kept: Vec<usize> = (nc..raw::num_results(lp))
        .filter(|&k| {
            raw::users(raw::result(lp, k)).iter().any(|u| !gathers.contains(&(u.ptr as usize)) || raw::users(raw::result(*u, 0)).iter().any(|w| !taken.contains(&(w.ptr as usize))))
        })
        .collect();
    // The last carried results are rows too: a carried result read only by sunk ops stays a
    // result (the loop carries it regardless).
    if nc + kept.len() + new_scans.len() > SEGMENTS {
        for (clone, _) in sunk.iter().rev() {
            raw::erase(*clone);
        }
        return Ok(0);
    }
    let n = sunk.len();
    let lp2 = rebuild(lp, block, yield_op, t, nc, &kept, &new_scans)?;
    // Readers outside get their iteration's row of the new scans.
    let first_after = raw::next_op(lp2).ok_or("no op after the loop")?;
    let i64_ty = raw::parse_type(lp2, "tensor<i64>").ok_or("cannot make tensor<i64>")?;
    for (k, (_, per_iteration)) in new_scans.iter().enumerate() {
        let scanned = raw::result(lp2, nc + kept.len() + k);
        for (c, &v) in per_iteration.iter().enumerate() {
            if !raw::users(v).iter().any(|u| !taken.contains(&(u.ptr as usize))) {
                continue;
            }
            let idx = raw::create_before(first_after, "lt2.constant", &[], &[i64_ty], &[("value", format!("dense<{c}> : tensor<i64>"))]).ok_or("could not create a row index")?;
            let g = raw::create_before(first_after, "lt2.gather", &[scanned, raw::result(idx, 0)], &[raw::value_type(v)], &[("axis", "0 : i64".into())]).ok_or("could not create lt2.gather")?;
            raw::replace_all_uses(v, raw::result(g, 0));
        }
    }
    // The sunk ops go (readers first), then the row reads of dropped scans, then the old loop.
    for &o in after.iter().rev().filter(|o| taken.contains(&(o.ptr as usize))) {
        raw::erase(o);
    }
    for &o in after.iter().rev().filter(|o| gathers.contains(&(o.ptr as usize))) {
        if !raw::has_uses(raw::result(o, 0)) {
            raw::erase(o);
        }
    }
    if (0..raw::num_results(lp)).any(|r| raw::has_uses(raw::result(lp, r))) {
        return Err("the old loop is still read after sinking".into());
    }
    raw::erase(lp);
    Ok(n)
}

/// The outside values that are rows of the loop's body values, normalised so that a carried
/// value's row t + 1 as it enters the body is its yielded value's row t; and the row reads
/// (gathers) found.
fn rows_of(lp: MlirOperation, t: usize, nc: usize, block: mlir_sys::MlirBlock, yield_op: MlirOperation) -> (HashMap<usize, Row>, HashSet<usize>) {
    let mut rows = HashMap::new();
    let mut gathers = HashSet::new();
    let yielded = |k: usize| raw::operand(yield_op, k);
    let normalise = |y: MlirValue, c: usize| -> Row {
        match raw::block_arg_number(y, block) {
            Some(a) if a >= 1 && a <= nc && c >= 1 => (yielded(a - 1), c - 1),
            _ => (y, c),
        }
    };
    for j in 0..nc {
        rows.insert(raw::result(lp, j).ptr as usize, (yielded(j), t - 1));
    }
    for k in nc..raw::num_results(lp) {
        let scanned = raw::result(lp, k);
        for u in raw::users(scanned) {
            let is_row = raw::name(u) == "lt2.gather" && raw::int_attr(u, "axis") == Some(0) && raw::operand(u, 0).ptr == scanned.ptr && raw::rank(raw::operand(u, 1)) == Some(0);
            if let Some(c) = is_row.then(|| raw::const_int(raw::operand(u, 1))).flatten().filter(|&c| c >= 0 && (c as usize) < t) {
                rows.insert(raw::result(u, 0).ptr as usize, normalise(yielded(k), c as usize));
                gathers.insert(u.ptr as usize);
            }
        }
    }
    (rows, gathers)
}

/// Per operand the body value whose row it reads (None: from before the loop), and the
/// iteration, when every operand is one or the other, at least one a row, all of one iteration.
fn classify(o: MlirOperation, rows: &HashMap<usize, Row>, before: &HashSet<usize>) -> Option<(Vec<Option<MlirValue>>, usize)> {
    let mut pattern = Vec::with_capacity(raw::num_operands(o));
    let mut iteration = None;
    for j in 0..raw::num_operands(o) {
        let v = raw::operand(o, j);
        match rows.get(&(v.ptr as usize)) {
            Some(&(y, c)) => {
                if iteration.is_some_and(|i| i != c) {
                    return None;
                }
                iteration = Some(c);
                pattern.push(Some(y));
            }
            None if before.contains(&(v.ptr as usize)) => pattern.push(None),
            None => return None,
        }
    }
    iteration.map(|c| (pattern, c))
}

/// A copy of `lp` that yields its carried values, the scan outputs `kept` (result indices) and
/// the body values of `new_scans`, in that order, with the uses of the kept results moved over.
fn rebuild(lp: MlirOperation, block: mlir_sys::MlirBlock, yield_op: MlirOperation, t: usize, nc: usize, kept: &[usize], new_scans: &[(MlirValue, Vec<MlirValue>)]) -> Result<MlirOperation, String> {
    let mut yields: Vec<MlirValue> = (0..nc).map(|j| raw::operand(yield_op, j)).collect();
    let mut tys: Vec<mlir_sys::MlirType> = (0..nc).map(|j| raw::value_type(raw::result(lp, j))).collect();
    for &k in kept {
        yields.push(raw::operand(yield_op, k));
        tys.push(raw::value_type(raw::result(lp, k)));
    }
    for (v, _) in new_scans {
        yields.push(*v);
        let text = raw::type_text(raw::value_type(*v));
        let inner = text.strip_prefix("tensor<").ok_or("a scanned value is not a tensor")?;
        tys.push(raw::parse_type(lp, &format!("tensor<{t}x{inner}")).ok_or("cannot make a scan type")?);
    }
    raw::append_op(block, yield_op, lt2_ir::ops::LOOP_YIELD, &yields, &[], &[]).ok_or("could not create the loop's yield")?;
    raw::erase(yield_op);
    let inits: Vec<MlirValue> = (0..nc).map(|j| raw::operand(lp, j)).collect();
    let seg = format!("array<i32: {}>", (0..SEGMENTS).map(|x| if x < tys.len() { "1" } else { "0" }).collect::<Vec<_>>().join(", "));
    let region = raw::take_region(lp, 0);
    let lp2 = raw::create_with_region_before(lp, "lt2.loop", &inits, &tys, &[("resultSegmentSizes", seg)], region).ok_or("could not create lt2.loop")?;
    raw::copy_attributes(lp, lp2, &["resultSegmentSizes"]);
    for j in 0..nc {
        raw::replace_all_uses(raw::result(lp, j), raw::result(lp2, j));
    }
    for (x, &k) in kept.iter().enumerate() {
        raw::replace_all_uses(raw::result(lp, k), raw::result(lp2, nc + x));
    }
    Ok(lp2)
}
