//! raise-attention: attention as exporters without a fused attention op write it (MatMul,
//! scale, causal mask, Softmax, MatMul over per-head transposes) → one `lt2.attention`. Besides
//! one kernel instead of a dozen, this is what makes such models decodable: decode caches are
//! derived for attention ops, not for a MatMul over the whole sequence.
//!
//! Matches, with q4 [B, L, Hq, D], k4 [B, L, Hk, D], v4 [B, L, Hk, Dv] (static heads and dims):
//!
//! ```text
//! s = matmul(transpose(q4, [0,2,1,3]), K)          K = transpose(k4, [0,2,3,1]), or its GQA
//!                                                  repeat reshape(expand(reshape(.)))
//! s = mul(s, scale)                                optional, scale a scalar constant
//! s = where(mask, s, c) | add(s, mask_add)         c <= -1e30; the masks below
//! o = matmul(softmax(s, last axis), V)             V = transpose(v4, [0,2,1,3]) or its repeat
//! transpose(o, [0,2,1,3])                          → reshape(lt2.attention(...), [B, L, Hq, Dv])
//! ```
//!
//! Masks, over r = range(0, seq, 1), i = reshape(r, [seq, 1]), j = reshape(r, [1, seq]):
//! causal `not(j > i)` (or `j <= i`), windowed `and(causal, (i - j) < w)` (window_left w - 1),
//! and additive `trilu(expand(c), k = 1, upper)` with c <= -1e30. Queries and keys have the same
//! length in such a graph, so the causal mask is the bottom-right one lt2.attention applies.
//! The softmax result and the second product must have no other users. Run canonicalize after
//! it to drop the dead chain. Before: verified IR. After: the same outputs up to rounding.
//! Idempotent (the softmax is gone).

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

use crate::raw;
use crate::{Pass, PassError};

/// The raise-attention pass.
pub struct RaiseAttention;

/// Values at or below this in a mask are "minus infinity".
pub(crate) const MASKED: f64 = -1e30;

impl Pass for RaiseAttention {
    fn name(&self) -> &'static str {
        "raise-attention"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: String| PassError::Failed { pass: self.name().into(), reason };
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.softmax" {
                continue;
            }
            let Some(m) = match_attention(op) else { continue };
            let before = m.out_transpose;
            let reshape = |v: MlirValue, shape: Vec<String>, dims: &str| -> Result<MlirValue, PassError> {
                let t = raw::parse_type(op, &format!("tensor<{dims}xf32>")).ok_or_else(|| fail(format!("cannot make type {dims}")))?;
                let attr = format!("[{}]", shape.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "));
                let r = raw::create_before(before, "lt2.reshape", &[v], &[t], &[("shape", attr)]).ok_or_else(|| fail("could not create lt2.reshape".into()))?;
                Ok(raw::result(r, 0))
            };
            let (b, l) = (m.batch.clone(), m.seq.clone());
            let flat = |heads: i64, d: i64| vec![b.clone(), l.clone(), (heads * d).to_string()];
            let q = reshape(m.q4, flat(m.hq, m.d), &format!("?x?x{}", m.hq * m.d))?;
            let k = reshape(m.k4, flat(m.hk, m.d), &format!("?x?x{}", m.hk * m.d))?;
            let v = reshape(m.v4, flat(m.hk, m.dv), &format!("?x?x{}", m.hk * m.dv))?;
            let out_t = raw::parse_type(op, &format!("tensor<?x?x{}xf32>", m.hq * m.dv)).ok_or_else(|| fail("cannot make the output type".into()))?;
            let attrs = [
                ("causal", "true".to_string()),
                ("kv_heads", format!("{} : i64", m.hk)),
                ("q_heads", format!("{} : i64", m.hq)),
                ("scale", format!("{:.9e} : f32", m.scale)),
                ("top_left", "false".to_string()),
                ("window_left", format!("{} : i64", m.window_left)),
                ("window_right", "-1 : i64".to_string()),
            ];
            let att = raw::create_before(before, "lt2.attention", &[q, k, v], &[out_t], &attrs).ok_or_else(|| fail("could not create lt2.attention".into()))?;
            let o4 = reshape(raw::result(att, 0), vec![b.clone(), l.clone(), m.hq.to_string(), m.dv.to_string()], &format!("?x?x{}x{}", m.hq, m.dv))?;
            raw::replace_same_type(raw::result(m.out_transpose, 0), o4).map_err(fail)?;
            n += 1;
        }
        Ok(n)
    }
}

/// One matched decomposed attention.
struct Matched {
    q4: MlirValue,
    k4: MlirValue,
    v4: MlirValue,
    hq: i64,
    hk: i64,
    d: i64,
    dv: i64,
    scale: f64,
    window_left: i64,
    /// The batch and sequence dims as reshapes name them.
    batch: String,
    seq: String,
    /// transpose(o, [0,2,1,3]), whose result the raised op replaces.
    out_transpose: MlirOperation,
}

fn match_attention(softmax: MlirOperation) -> Option<Matched> {
    let probs = raw::result(softmax, 0);
    if raw::rank(probs) != Some(4) || !matches!(raw::int_attr(softmax, "axis"), Some(3) | Some(-1)) {
        return None;
    }
    // Mask.
    let masked = raw::operand(softmax, 0);
    let (scaled, window_left) = if let Some(w) = raw::def(masked, "lt2.where") {
        if raw::const_scalar(raw::operand(w, 2)).is_none_or(|c| c > MASKED) {
            return None;
        }
        (raw::operand(w, 1), bool_mask_window(raw::operand(w, 0))?)
    } else {
        let a = raw::def(masked, "lt2.add")?;
        let x = if additive_causal(raw::operand(a, 1)) {
            raw::operand(a, 0)
        } else if additive_causal(raw::operand(a, 0)) {
            raw::operand(a, 1)
        } else {
            return None;
        };
        (x, -1)
    };
    // Scale.
    let (scores, scale) = match raw::def(scaled, "lt2.mul") {
        Some(m) => match (raw::const_scalar(raw::operand(m, 1)), raw::const_scalar(raw::operand(m, 0))) {
            (Some(s), _) => (raw::operand(m, 0), s),
            (_, Some(s)) => (raw::operand(m, 1), s),
            _ => return None,
        },
        None => (scaled, 1.0),
    };
    // Scores = q . k^T per head.
    let qk = raw::def(scores, "lt2.matmul")?;
    let q4 = transposed(raw::operand(qk, 0), &[0, 2, 1, 3])?;
    let (kt, k_group) = repeated(raw::operand(qk, 1));
    let k4 = transposed(kt, &[0, 2, 3, 1])?;
    // Output = probs . v per head, then back to [B, L, H, Dv].
    let (pv, idx) = raw::single_use(probs)?;
    if raw::name(pv) != "lt2.matmul" || idx != 0 {
        return None;
    }
    let (vt, v_group) = repeated(raw::operand(pv, 1));
    let v4 = transposed(vt, &[0, 2, 1, 3])?;
    let (out_transpose, _) = raw::single_use(raw::result(pv, 0))?;
    if raw::name(out_transpose) != "lt2.transpose" || raw::i64s_attr(out_transpose, "perm")? != [0, 2, 1, 3] {
        return None;
    }
    // Heads and dims, static.
    let (qd, kd, vd) = (raw::dims(q4)?, raw::dims(k4)?, raw::dims(v4)?);
    let (hq, d, hk, dk, hv, dv) = (qd[2]?, qd[3]?, kd[2]?, kd[3]?, vd[2]?, vd[3]?);
    if d != dk || hk != hv || k_group != v_group || hk * k_group != hq || hq <= 0 || d <= 0 || dv <= 0 {
        return None;
    }
    // Dim names for the reshapes: the first two entries of a reshape that made q4, k4 or v4,
    // or of the one that packs the output.
    let packs = raw::single_use(raw::result(out_transpose, 0)).map(|(u, _)| u).filter(|&u| raw::name(u) == "lt2.reshape");
    let names = [q4, k4, v4].into_iter().filter_map(|v| raw::def(v, "lt2.reshape")).chain(packs).find_map(|r| raw::strs_attr(r, "shape").filter(|n| n.len() >= 3))?;
    let (batch, seq) = (names[0].clone(), names[1].clone());
    Some(Matched { q4, k4, v4, hq, hk, d, dv, scale, window_left, batch, seq, out_transpose })
}

/// x when `v` is `transpose(x, perm)`.
fn transposed(v: MlirValue, perm: &[i64]) -> Option<MlirValue> {
    let t = raw::def(v, "lt2.transpose")?;
    (raw::i64s_attr(t, "perm")? == perm).then(|| raw::operand(t, 0))
}

/// (x, g) when `v` repeats each head of x [B, H, a, b] g times as exporters write GQA:
/// reshape(expand(reshape(x, [B, H, 1, a, b]), [B, H, g, a, b]), [B, H*g, a, b]); else (v, 1).
pub(crate) fn repeated(v: MlirValue) -> (MlirValue, i64) {
    let peel = || -> Option<(MlirValue, i64)> {
        let r2 = raw::def(v, "lt2.reshape")?;
        let e = raw::def(raw::operand(r2, 0), "lt2.expand")?;
        let r1 = raw::def(raw::operand(e, 0), "lt2.reshape")?;
        let x = raw::operand(r1, 0);
        let (xd, d1, de, d2) = (raw::dims(x)?, raw::dims(raw::result(r1, 0))?, raw::dims(raw::result(e, 0))?, raw::dims(v)?);
        let (h, g) = (xd.get(1).copied()??, de.get(2).copied()??);
        let ok = xd.len() == 4
            && d1.len() == 5
            && de.len() == 5
            && d2.len() == 4
            && d1[1] == Some(h)
            && d1[2] == Some(1)
            && de[1] == Some(h)
            && d2[1] == Some(h * g)
            && d1[3..] == xd[2..]
            && de[3..] == xd[2..]
            && d2[2..] == xd[2..];
        ok.then_some((x, g))
    };
    peel().unwrap_or((v, 1))
}

/// The key window of a boolean mask: -1 for `not(j > i)` / `j <= i`, w - 1 for
/// `and(causal, (i - j) < w)` (either order); None for anything else.
fn bool_mask_window(m: MlirValue) -> Option<i64> {
    let c = raw::def(m, "lt2.compare")?;
    match raw::str_attr(c, "predicate")?.as_str() {
        "and" => {
            let (a, b) = (raw::operand(c, 0), raw::operand(c, 1));
            let (causal, near) = if bool_mask_window(a) == Some(-1) { (a, b) } else { (b, a) };
            if bool_mask_window(causal) != Some(-1) {
                return None;
            }
            let lt = raw::def(near, "lt2.compare")?;
            if raw::str_attr(lt, "predicate")? != "lt" {
                return None;
            }
            let w = raw::const_int(raw::operand(lt, 1))?;
            let sub = raw::def(raw::operand(lt, 0), "lt2.sub")?;
            let (i, j) = (raw::operand(sub, 0), raw::operand(sub, 1));
            (positions(i) == Some(Axis::Rows) && positions(j) == Some(Axis::Cols) && same_range(i, j) && w >= 1).then_some(w - 1)
        }
        "not" => {
            let gt = raw::def(raw::operand(c, 0), "lt2.compare")?;
            let (a, b) = (raw::operand(gt, 0), raw::operand(gt, 1));
            let p = raw::str_attr(gt, "predicate")?;
            // not(j > i) or not(i < j).
            let ok = (p == "gt" && positions(a) == Some(Axis::Cols) && positions(b) == Some(Axis::Rows)) || (p == "lt" && positions(a) == Some(Axis::Rows) && positions(b) == Some(Axis::Cols));
            (ok && same_range(a, b)).then_some(-1)
        }
        "le" | "ge" => {
            let (a, b) = (raw::operand(c, 0), raw::operand(c, 1));
            let p = raw::str_attr(c, "predicate")?;
            // j <= i or i >= j.
            let ok = (p == "le" && positions(a) == Some(Axis::Cols) && positions(b) == Some(Axis::Rows)) || (p == "ge" && positions(a) == Some(Axis::Rows) && positions(b) == Some(Axis::Cols));
            (ok && same_range(a, b)).then_some(-1)
        }
        _ => None,
    }
}

/// Whether `v` is `trilu(expand(c), k = 1, upper)` with c <= -1e30: minus infinity above the
/// diagonal (an additive causal mask).
fn additive_causal(v: MlirValue) -> bool {
    let Some(t) = raw::def(v, "lt2.trilu") else { return false };
    if raw::int_attr(t, "k") != Some(1) || raw::bool_attr(t, "upper") != Some(true) || raw::rank(v) != Some(2) {
        return false;
    }
    let fill = raw::operand(t, 0);
    let c = raw::def(fill, "lt2.expand").map_or(fill, |e| raw::operand(e, 0));
    raw::const_scalar(c).is_some_and(|c| c <= MASKED)
}

/// Which positions a [seq, 1] / [1, seq] view of range(0, seq, 1) indexes.
#[derive(PartialEq, Debug)]
enum Axis {
    /// i, the query (first axis).
    Rows,
    /// j, the key (last axis).
    Cols,
}

fn positions(v: MlirValue) -> Option<Axis> {
    let r = raw::def(v, "lt2.reshape")?;
    let range = raw::def(raw::operand(r, 0), "lt2.range")?;
    if raw::int_attr(range, "start") != Some(0) || raw::int_attr(range, "delta") != Some(1) {
        return None;
    }
    match raw::dims(v)?.as_slice() {
        [None, Some(1)] => Some(Axis::Rows),
        [Some(1), None] => Some(Axis::Cols),
        _ => None,
    }
}

/// Whether two views index the same range op (or two ranges of the same size).
fn same_range(a: MlirValue, b: MlirValue) -> bool {
    let range = |v: MlirValue| raw::def(v, "lt2.reshape").and_then(|r| raw::def(raw::operand(r, 0), "lt2.range"));
    match (range(a), range(b)) {
        (Some(x), Some(y)) => x.ptr == y.ptr || (raw::str_attr(x, "size").is_some() && raw::str_attr(x, "size") == raw::str_attr(y, "size")),
        _ => false,
    }
}
