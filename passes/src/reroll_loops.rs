//! reroll-loops: T consecutive copies of one computation at the top level of a function, as
//! `torch.onnx.export` writes a Python `for` loop over shared layers, → one `lt2.loop` with
//! `trip_count = T`. The plan then holds the body once (smaller model.bin, each pass and
//! kernel choice made once) and the runtime sees the loop structure the looped model has.
//!
//! Matches, among the function's top-level ops (ops that read no function argument, only each
//! other — weights, constants, position ids — count as defined before everything and move to
//! the top when a loop is built): the longest run of T >= 2 consecutive blocks of P ops
//! with the same names, attributes and result types, where every operand of the op at offset i
//! of copy t is, for all t alike, either
//! - a result of the same op of the same copy (the body's own dataflow),
//! - a value defined before the copies (the same value, or an operand-free op of the same name
//!   and attributes: a weight read again),
//! - in copy 0 a value X defined before the copies and in copy t >= 1 a result of copy t - 1
//!   (a carried value, initialised with X), or
//! - an int64 scalar constant equal to t (the iteration number: becomes the loop counter), or
//! - per copy a different vector of at most 64K f32 defined before the copies (a per-loop
//!   weight: the loop reads row t of their stack),
//!
//! where some weight matrix is shared by all copies (distinct layers, as in a plain
//! transformer, are not a loop),
//! and the copies' values read after them are read at the top level. Emits the loop with copy 0
//! as its body: the last copy's carried values are its results, and any other value read after
//! the copies (Ouro's per-loop exit gates and survivals) a scan output, of which the reader gets
//! its copy's row (lt2.gather). At most 8 carried values and scan outputs together. Run canonicalize after it. Before: verified IR. After: the same
//! outputs. Idempotent (one loop is not copies).

use std::collections::HashMap;

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirType, MlirValue};

use crate::raw;
use crate::{Pass, PassError};

/// The reroll-loops pass.
pub struct RerollLoops;

/// lt2.loop's operand and result segments (ir/lt2.irdl.mlir).
const SEGMENTS: usize = 8;
/// Fewest ops a body must have: shorter repeats are runs of elementwise ops, not loops.
const MIN_BODY: usize = 4;
/// Most elements of a per-iteration value (a vector per copy, such as a loop embedding; larger
/// per-copy tensors mean the copies are different layers, not one loop).
const MAX_PER_ITERATION: i64 = 1 << 16;
/// Candidates (by coverage) checked per function before giving up.
const MAX_TRIES: usize = 64;

impl Pass for RerollLoops {
    fn name(&self) -> &'static str {
        "reroll-loops"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: String| PassError::Failed { pass: self.name().into(), reason };
        let mut n = 0;
        // The functions are listed before any is rewritten: a reroll destroys ops of the list.
        let funcs: Vec<_> = raw::all_ops(module).into_iter().filter(|&op| raw::name(op) == "func.func").collect();
        for f in funcs {
            n += reroll(f).map_err(fail)?;
        }
        Ok(n)
    }
}

/// How operand j of the op at a body offset reads its value, the same in every copy.
#[derive(Clone)]
enum Source {
    /// Result `r` of the op at offset `i` of the same copy.
    Local(usize, usize),
    /// A value from before the copies (copy 0's; the others read an equal one).
    Outside(MlirValue),
    /// Carried: copy 0 reads `init`, copy t reads result `r` of offset `i` of copy t - 1.
    Carried { i: usize, r: usize, init: MlirValue },
    /// The iteration number.
    Iteration,
    /// Copy t reads values[t], defined before the copies (static shape, f32): a per-iteration
    /// weight such as Ouro's / LT2's loop embedding, which constant folding turned into one
    /// weight per copy. The loop reads row t of their stack.
    PerIteration(Vec<MlirValue>),
}

/// Rerolls the longest run of copies in the function's body; returns 1 if it did.
fn reroll(func: MlirOperation) -> Result<usize, String> {
    let ops = top_level_ops(func);
    let Some((&term, ops)) = ops.split_last() else { return Ok(0) };
    // Ops that read no function argument, only each other (weights, constants, position ids,
    // RoPE tables: an importer emits a shared one where copy 0 first needs it) count as defined
    // before the copies; they move to the top when the loop is built.
    let invariant = invariant_ops(ops);
    // The rest in a canonical order: copies with the same dataflow then list their ops alike,
    // whatever order the importer wrote them in (independent ops may be interleaved differently).
    let body = dataflow_order(ops, &invariant, term);
    for (s, p, t) in candidates(&body) {
        if let Some(plan) = check(&body, s, p, t) {
            // Invariants first, then the body in the order matched.
            for &o in ops.iter().filter(|o| invariant.contains(&(o.ptr as usize))).chain(&body) {
                raw::move_before(o, term);
            }
            apply(&body, s, p, t, &plan)?;
            return Ok(1);
        }
    }
    Ok(0)
}

/// The ops (addresses) that read no function argument, only each other: weights, constants
/// and what is computed from them alone (positions from a range, RoPE tables).
fn invariant_ops(ops: &[MlirOperation]) -> std::collections::HashSet<usize> {
    let mut inv = std::collections::HashSet::new();
    for &o in ops {
        // A lookup by an int64 scalar constant may be indexed by a copy's iteration number: it
        // stays in the copy (and its index becomes the loop counter).
        let indexed = matches!(raw::name(o).as_str(), "lt2.embed" | "lt2.gather") && (0..raw::num_operands(o)).any(|j| iteration_constant(raw::operand(o, j)).is_some());
        let reads_invariants = !indexed && (0..raw::num_operands(o)).all(|j| raw::defining_op(raw::operand(o, j)).is_some_and(|d| inv.contains(&(d.ptr as usize))));
        if raw::num_regions(o) == 0 && raw::num_results(o) > 0 && reads_invariants {
            inv.insert(o.ptr as usize);
        }
    }
    inv
}

/// The non-invariant ops in depth-first post-order from the terminator's operands (each op's
/// operands visited in order), then any op not reached, in program order. A topological order
/// that depends on the dataflow only.
fn dataflow_order(ops: &[MlirOperation], invariant: &std::collections::HashSet<usize>, term: MlirOperation) -> Vec<MlirOperation> {
    let top: std::collections::HashSet<usize> = ops.iter().map(|o| o.ptr as usize).collect();
    let mut done: std::collections::HashSet<usize> = std::collections::HashSet::new();
    let mut order = Vec::with_capacity(ops.len());
    // Explicit stack of (op, next operand to visit): chains of thousands of ops are common.
    let mut stack: Vec<(MlirOperation, usize)> = Vec::new();
    let push = |v: MlirValue, stack: &mut Vec<(MlirOperation, usize)>, done: &std::collections::HashSet<usize>| {
        if let Some(d) = raw::defining_op(v) {
            let k = d.ptr as usize;
            if top.contains(&k) && !invariant.contains(&k) && !done.contains(&k) {
                stack.push((d, 0));
            }
        }
    };
    for j in 0..raw::num_operands(term) {
        push(raw::operand(term, j), &mut stack, &done);
        while let Some((op, next)) = stack.pop() {
            if done.contains(&(op.ptr as usize)) {
                continue;
            }
            if next < raw::num_operands(op) {
                stack.push((op, next + 1));
                push(raw::operand(op, next), &mut stack, &done);
            } else {
                done.insert(op.ptr as usize);
                order.push(op);
            }
        }
    }
    order.extend(ops.iter().copied().filter(|o| !invariant.contains(&(o.ptr as usize)) && !done.contains(&(o.ptr as usize))));
    order
}

fn top_level_ops(func: MlirOperation) -> Vec<MlirOperation> {
    let mut v = Vec::new();
    let mut op = raw::first_op_in_region(func, 0);
    while let Some(o) = op {
        v.push(o);
        op = raw::next_op(o);
    }
    v
}

/// (start, body length, copies) of repeated blocks of op names, most ops covered first.
fn candidates(body: &[MlirOperation]) -> Vec<(usize, usize, usize)> {
    let mut ids: HashMap<String, u64> = HashMap::new();
    let seq: Vec<u64> = body.iter().map(|&o| {
        let k = ids.len() as u64 + 1;
        *ids.entry(raw::name(o)).or_insert(k)
    }).collect();
    let n = seq.len();
    // Prefix hashes: h[k] = sum seq[j] * B^(k-1-j), so block hashes compare in O(1).
    const B: u64 = 1_000_003;
    let mut h = vec![0u64; n + 1];
    let mut pw = vec![1u64; n + 1];
    for k in 0..n {
        h[k + 1] = h[k].wrapping_mul(B).wrapping_add(seq[k]);
        pw[k + 1] = pw[k].wrapping_mul(B);
    }
    let block = |s: usize, p: usize| h[s + p].wrapping_sub(h[s].wrapping_mul(pw[p]));
    let mut found: Vec<(usize, usize, usize)> = Vec::new();
    for p in MIN_BODY..=n / 2 {
        let mut s = 0;
        while s + 2 * p <= n {
            let b = block(s, p);
            let mut t = 1;
            while s + (t + 1) * p <= n && block(s + t * p, p) == b {
                t += 1;
            }
            if t >= 2 {
                found.push((s, p, t));
                s += 1;
            } else {
                s += 1;
            }
        }
    }
    found.sort_by_key(|&(s, p, t)| (std::cmp::Reverse(p * t), std::cmp::Reverse(p), s));
    found.truncate(MAX_TRIES);
    found
}

/// The body's operand sources (per offset, per operand) and carried values, if the copies form
/// a loop (see the module doc).
struct Plan {
    sources: Vec<Vec<Source>>,
    /// (offset, result, init) of each carried value, in loop-operand order.
    carried: Vec<(usize, usize, MlirValue)>,
    /// Values read after the copies from copies other than through the last carried values:
    /// the loop's scan outputs (one row per iteration), in result order after the carried ones.
    scans: Vec<Scan>,
}

/// One scan output of the rerolled loop.
#[derive(Clone, Copy, PartialEq)]
enum Scan {
    /// Result `r` of the op at offset `i` of every copy (row t: copy t's).
    Value(usize, usize),
    /// The value carried into each iteration (row t: what copy t read; Ouro's survival), read
    /// after the copies as copy t - 1's carried result.
    CarriedIn(usize),
}

fn check(body: &[MlirOperation], s: usize, p: usize, t: usize) -> Option<Plan> {
    let pos: HashMap<usize, usize> = body.iter().enumerate().map(|(k, o)| (o.ptr as usize, k)).collect();
    let end = s + p * t;
    let locate = |v: MlirValue| -> Option<(usize, usize)> {
        let d = raw::defining_op(v)?;
        let k = *pos.get(&(d.ptr as usize))?;
        (k >= s && k < end).then(|| (k, raw::result_number(v)))
    };
    let mut sources = Vec::with_capacity(p);
    let mut carried: Vec<(usize, usize, MlirValue)> = Vec::new();
    for i in 0..p {
        let op0 = body[s + i];
        let nops = raw::num_operands(op0);
        for c in 1..t {
            let op = body[s + c * p + i];
            if raw::name(op) != raw::name(op0) || raw::num_regions(op) != 0 || raw::num_operands(op) != nops || !raw::same_attributes(op, op0) || !same_result_types(op, op0) {
                return None;
            }
        }
        if raw::num_regions(op0) != 0 {
            return None;
        }
        let mut srcs = Vec::with_capacity(nops);
        for j in 0..nops {
            let v0 = raw::operand(op0, j);
            let src = match locate(v0) {
                Some((k, r)) => Source::Local(k - s, r),
                None if iteration_constant(v0) == Some(0) && (1..t).all(|c| iteration_constant(raw::operand(body[s + c * p + i], j)) == Some(c as i64)) => Source::Iteration,
                None => match locate(raw::operand(body[s + p + i], j)) {
                    Some((k, r)) if k >= s && k < s + p => Source::Carried { i: k - s, r, init: v0 },
                    Some(_) => return None,
                    None => {
                        let vs: Vec<MlirValue> = (0..t).map(|c| raw::operand(body[s + c * p + i], j)).collect();
                        if vs.iter().all(|&v| raw::same_outside(v, v0)) {
                            Source::Outside(v0)
                        } else if vs.iter().all(|&v| locate(v).is_none() && raw::same_type(v, v0)) && static_f32(v0).is_some_and(|d| d.len() <= 1 && d.iter().product::<i64>() <= MAX_PER_ITERATION) {
                            Source::PerIteration(vs)
                        } else {
                            return None;
                        }
                    }
                },
            };
            // Every other copy must read the same way.
            for c in 1..t {
                let v = raw::operand(body[s + c * p + i], j);
                let ok = match &src {
                    Source::Local(li, lr) => locate(v) == Some((s + c * p + li, *lr)),
                    Source::Outside(x) => locate(v).is_none() && raw::same_outside(v, *x),
                    Source::Carried { i: ci, r: cr, .. } => locate(v) == Some((s + (c - 1) * p + ci, *cr)),
                    Source::Iteration | Source::PerIteration(_) => true,
                };
                if !ok {
                    return None;
                }
            }
            if let Source::Carried { i: ci, r: cr, init } = src {
                match carried.iter().find(|(a, b, _)| *a == ci && *b == cr) {
                    Some((_, _, x)) if x.ptr != init.ptr => return None,
                    Some(_) => {}
                    None => {
                        let ty = raw::value_type(raw::result(body[s + ci], cr));
                        if !type_eq(raw::value_type(init), ty) {
                            return None;
                        }
                        carried.push((ci, cr, init));
                    }
                }
            }
            srcs.push(src.clone());
        }
        sources.push(srcs);
    }
    if carried.is_empty() || carried.len() > SEGMENTS {
        return None;
    }
    // A loop of a looped model reads the same weight matrices in every copy; copies of distinct
    // layers (a plain transformer's) do not, and stay as they are.
    let shares_a_matrix = sources.iter().flatten().any(|src| matches!(src, Source::Outside(v) if raw::def(*v, "lt2.weight").is_some() && raw::rank(*v).is_some_and(|r| r >= 2)));
    if !shares_a_matrix {
        return None;
    }
    // Values of the copies read after them, at the top level (a nested use would need the value
    // inside another region): the last copy's carried values are the loop's results; any other
    // value becomes a scan output (Ouro's per-loop exit gates and survivals).
    let mut scans: Vec<Scan> = Vec::new();
    for k in s..end {
        let (c, i) = ((k - s) / p, (k - s) % p);
        for r in 0..raw::num_results(body[k]) {
            for user in raw::users(raw::result(body[k], r)) {
                if pos.get(&(user.ptr as usize)).is_some_and(|&u| u >= s && u < end) {
                    continue;
                }
                if raw::parent_op(user).map(|p| p.ptr) != raw::parent_op(body[k]).map(|p| p.ptr) {
                    return None;
                }
                let slot = carried.iter().position(|&(a, b, _)| a == i && b == r);
                let scan = match slot {
                    Some(_) if c == t - 1 => continue,
                    Some(x) => Scan::CarriedIn(x),
                    None => Scan::Value(i, r),
                };
                if !scans.contains(&scan) {
                    scans.push(scan);
                }
            }
        }
    }
    if carried.len() + scans.len() > SEGMENTS {
        return None;
    }
    Some(Plan { sources, carried, scans })
}

fn same_result_types(a: MlirOperation, b: MlirOperation) -> bool {
    raw::num_results(a) == raw::num_results(b) && (0..raw::num_results(a)).all(|r| raw::same_type(raw::result(a, r), raw::result(b, r)))
}

fn type_eq(a: MlirType, b: MlirType) -> bool {
    // SAFETY: live types of one context.
    unsafe { mlir_sys::mlirTypeEqual(a, b) }
}

/// The static dims of an f32 tensor value (None when dynamic or of another type).
fn static_f32(v: MlirValue) -> Option<Vec<i64>> {
    let dims = raw::dims(v)?;
    let text = raw::type_text(raw::value_type(v));
    if !text.ends_with("xf32>") && text != "tensor<f32>" {
        return None;
    }
    dims.into_iter().collect()
}

/// The value of an int64 scalar `lt2.constant`.
fn iteration_constant(v: MlirValue) -> Option<i64> {
    (raw::rank(v) == Some(0)).then(|| raw::const_int(v)).flatten()
}

fn apply(body: &[MlirOperation], s: usize, p: usize, t: usize, plan: &Plan) -> Result<(), String> {
    let first = body[s];
    let iter_ty = raw::parse_type(first, "tensor<i64>").ok_or("cannot make tensor<i64>")?;
    let slot_tys: Vec<MlirType> = plan.carried.iter().map(|&(i, r, _)| raw::value_type(raw::result(body[s + i], r))).collect();
    let mut arg_tys = vec![iter_ty];
    arg_tys.extend(&slot_tys);
    let (region, block) = raw::new_region_with_block(first, &arg_tys);
    // Per-iteration values: stacked [T, n] before the loop, row `iteration` read in the body.
    let mut rows: Vec<(Vec<MlirValue>, MlirValue)> = Vec::new();
    for srcs in &plan.sources {
        for src in srcs {
            let Source::PerIteration(vs) = src else { continue };
            if rows.iter().any(|(k, _)| k.iter().zip(vs).all(|(a, b)| a.ptr == b.ptr)) {
                continue;
            }
            let dims = static_f32(vs[0]).ok_or("per-iteration value of dynamic shape")?;
            let n: i64 = dims.iter().product();
            let ty = |d: &[i64]| raw::parse_type(first, &format!("tensor<{}f32>", d.iter().map(|x| format!("{x}x")).collect::<String>())).ok_or("cannot make a type");
            let shape_attr = |d: &[i64]| format!("[{}]", d.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", "));
            let mut parts = Vec::with_capacity(t);
            for &v in vs {
                let r = raw::create_before(first, "lt2.reshape", &[v], &[ty(&[1, n])?], &[("shape", shape_attr(&[1, n]))]).ok_or("could not create lt2.reshape")?;
                parts.push(raw::result(r, 0));
            }
            // lt2.concat is binary: rows 0..k+1 = concat(rows 0..k, row k).
            let mut stack = parts[0];
            for (k, &part) in parts.iter().enumerate().skip(1) {
                let c = raw::create_before(first, "lt2.concat", &[stack, part], &[ty(&[k as i64 + 1, n])?], &[("axis", "0 : i64".into())]).ok_or("could not create lt2.concat")?;
                stack = raw::result(c, 0);
            }
            let row = raw::append_op(block, first, "lt2.embed", &[stack, raw::block_arg(block, 0)], &[ty(&[n])?], &[]).ok_or("could not create lt2.embed")?;
            let mut v = raw::result(row, 0);
            if dims.as_slice() != [n] {
                let r = raw::append_op(block, first, "lt2.reshape", &[v], &[raw::value_type(vs[0])], &[("shape", shape_attr(&dims))]).ok_or("could not create lt2.reshape")?;
                v = raw::result(r, 0);
            }
            rows.push((vs.clone(), v));
        }
    }
    // Copy 0 is the body; its operands re-pointed at the clones, the block's arguments and the
    // outside values.
    let mut clones = Vec::with_capacity(p);
    for (i, srcs) in plan.sources.iter().enumerate() {
        let c = raw::clone_into(body[s + i], block);
        for (j, src) in srcs.iter().enumerate() {
            let v = match src {
                Source::Local(li, r) => raw::result(clones[*li], *r),
                Source::Outside(x) => *x,
                Source::Carried { i: ci, r, .. } => {
                    let k = plan.carried.iter().position(|&(a, b, _)| a == *ci && b == *r).ok_or("carried value not planned")?;
                    raw::block_arg(block, k + 1)
                }
                Source::Iteration => raw::block_arg(block, 0),
                Source::PerIteration(vs) => rows.iter().find(|(k, _)| k.iter().zip(vs).all(|(a, b)| a.ptr == b.ptr)).map(|(_, v)| *v).ok_or("per-iteration value not stacked")?,
            };
            raw::set_operand(c, j, v);
        }
        clones.push(c);
    }
    let mut yields: Vec<MlirValue> = plan.carried.iter().map(|&(i, r, _)| raw::result(clones[i], r)).collect();
    let mut result_tys = slot_tys.clone();
    for scan in &plan.scans {
        let v = match *scan {
            Scan::Value(i, r) => raw::result(clones[i], r),
            Scan::CarriedIn(x) => raw::block_arg(block, x + 1),
        };
        yields.push(v);
        // Scan outputs stack the iterations on a new leading axis of T.
        let text = raw::type_text(raw::value_type(v));
        let inner = text.strip_prefix("tensor<").ok_or("a scanned value is not a tensor")?;
        result_tys.push(raw::parse_type(first, &format!("tensor<{t}x{inner}")).ok_or("cannot make a scan type")?);
    }
    raw::append_op(block, first, lt2_ir::ops::LOOP_YIELD, &yields, &[], &[]).ok_or("could not create the loop's yield")?;
    let seg = |k: usize| format!("array<i32: {}>", (0..SEGMENTS).map(|x| if x < k { "1" } else { "0" }).collect::<Vec<_>>().join(", "));
    let inits: Vec<MlirValue> = plan.carried.iter().map(|&(_, _, x)| x).collect();
    let attrs = [("trip_count", format!("{t} : i64")), ("operandSegmentSizes", seg(inits.len())), ("resultSegmentSizes", seg(result_tys.len()))];
    let lp = raw::create_with_region_before(first, "lt2.loop", &inits, &result_tys, &attrs, region).ok_or("could not create lt2.loop")?;
    // The last copy's carried values are the loop's results; what was read of other copies is
    // row c of a scan output (gathered right after the copies); then the copies go, last first.
    for (k, &(i, r, _)) in plan.carried.iter().enumerate() {
        raw::replace_all_uses(raw::result(body[s + (t - 1) * p + i], r), raw::result(lp, k));
    }
    let after = raw::next_op(body[s + p * t - 1]).ok_or("no op after the copies")?;
    let i64_ty = raw::parse_type(first, "tensor<i64>").ok_or("cannot make tensor<i64>")?;
    for (k, scan) in plan.scans.iter().enumerate() {
        let scanned = raw::result(lp, plan.carried.len() + k);
        for c in 0..t {
            // The copy's value that this row holds.
            let (v, row) = match *scan {
                Scan::Value(i, r) => (raw::result(body[s + c * p + i], r), c),
                Scan::CarriedIn(x) if c + 1 < t => {
                    let (i, r, _) = plan.carried[x];
                    (raw::result(body[s + c * p + i], r), c + 1)
                }
                Scan::CarriedIn(_) => continue,
            };
            if !raw::users(v).iter().any(|u| !body[s..s + p * t].iter().any(|b| b.ptr == u.ptr)) {
                continue;
            }
            let idx = raw::create_before(after, "lt2.constant", &[], &[i64_ty], &[("value", format!("dense<{row}> : tensor<i64>"))]).ok_or("could not create a row index")?;
            let g = raw::create_before(after, "lt2.gather", &[scanned, raw::result(idx, 0)], &[raw::value_type(v)], &[("axis", "0 : i64".into())]).ok_or("could not create lt2.gather")?;
            raw::replace_all_uses(v, raw::result(g, 0));
        }
    }
    for k in (s..s + p * t).rev() {
        raw::erase(body[k]);
    }
    Ok(())
}
