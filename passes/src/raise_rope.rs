//! raise-rope: rotary embedding as Hugging Face's `rotate_half` exports below opset 23 → one
//! `lt2.rope`: one kernel per q or k instead of seven (two slices, a negation, a concat, two
//! products and a sum).
//!
//! Matches, with x [B, H, L, D] (static H and D) and f [1, L, D/2] (angles):
//!
//! ```text
//! C = reshape(cos(concat(f, f, last)), [1, 1, L, D])     S likewise with sin
//! r = concat(neg(slice(x, D/2..)), slice(x, ..D/2), last)
//! add(mul(x, C), mul(r, S))                             operands of add and mul in either order
//! ```
//!
//! Emits `lt2.rope(x, expand(cos(f), [B, L, D/2]), expand(sin(f), [B, L, D/2]))` (rotate-half
//! pairs, all of D rotated; the cos / sin of the half angles, since both halves of the table are
//! the same by construction). B and L are named from the reshape that split x's heads. Before /
//! after: verified, same outputs up to rounding. Run canonicalize after it (CSE shares the
//! tables between q and k and across layers; the chain dies).

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

use crate::raw;
use crate::{Pass, PassError};

/// The raise-rope pass.
pub struct RaiseRope;

impl Pass for RaiseRope {
    fn name(&self) -> &'static str {
        "raise-rope"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |what: &str| PassError::Failed { pass: self.name().into(), reason: format!("could not create {what}") };
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.add" {
                continue;
            }
            let Some(m) = match_rope(op) else { continue };
            let half = m.d / 2;
            let f_ty = raw::value_type(m.angles);
            let table_ty = raw::parse_type(op, &format!("tensor<?x?x{half}xf32>")).ok_or_else(|| fail("the table type"))?;
            let shape = format!("[\"{}\", \"{}\", \"{half}\"]", m.batch, m.seq);
            let mut tables = Vec::new();
            for f in ["lt2.cos", "lt2.sin"] {
                let t = raw::create_before(op, f, &[m.angles], &[f_ty], &[]).ok_or_else(|| fail(f))?;
                let e = raw::create_before(op, "lt2.expand", &[raw::result(t, 0)], &[table_ty], &[("shape", shape.clone())]).ok_or_else(|| fail("lt2.expand"))?;
                tables.push(raw::result(e, 0));
            }
            let out = raw::result(op, 0);
            let attrs = [("interleaved", "false".to_string()), ("num_heads", format!("{} : i64", m.h)), ("rotary_dim", "0 : i64".to_string())];
            let rope = raw::create_before(op, "lt2.rope", &[m.x, tables[0], tables[1]], &[raw::value_type(out)], &attrs).ok_or_else(|| fail("lt2.rope"))?;
            raw::replace_all_uses(out, raw::result(rope, 0));
            n += 1;
        }
        Ok(n)
    }
}

/// One matched rotate-half rotary embedding.
struct Matched {
    x: MlirValue,
    /// f [1, L, D/2].
    angles: MlirValue,
    h: i64,
    d: i64,
    batch: String,
    seq: String,
}

fn match_rope(add: MlirOperation) -> Option<Matched> {
    let (a, b) = (raw::operand(add, 0), raw::operand(add, 1));
    let (x, cos_f, rot, sin_f) = product(a, "lt2.cos").and_then(|(x, c)| product(b, "lt2.sin").map(|(r, s)| (x, c, r, s))).or_else(|| product(b, "lt2.cos").and_then(|(x, c)| product(a, "lt2.sin").map(|(r, s)| (x, c, r, s))))?;
    if cos_f.ptr != sin_f.ptr {
        return None;
    }
    let xd = raw::dims(x)?;
    let (h, d) = (xd.get(1).copied()??, xd.get(3).copied()??);
    if xd.len() != 4 || d % 2 != 0 || !raw::same_type(x, raw::result(add, 0)) {
        return None;
    }
    // r = concat(neg(x[..., D/2:]), x[..., :D/2]).
    let c = raw::def(rot, "lt2.concat")?;
    if !matches!(raw::int_attr(c, "axis"), Some(3) | Some(-1)) || raw::num_operands(c) != 2 {
        return None;
    }
    let neg = raw::def(raw::operand(c, 0), "lt2.neg")?;
    let upper = half_of(raw::operand(neg, 0), x, d / 2, true)?;
    let lower = half_of(raw::operand(c, 1), x, d / 2, false)?;
    if !(upper && lower) {
        return None;
    }
    // f [1, L, D/2].
    if raw::dims(cos_f)?.last() != Some(&Some(d / 2)) {
        return None;
    }
    // B and L as the reshape that split x's heads names them: x = transpose(reshape(.., [B, L, H, D])).
    let t = raw::def(x, "lt2.transpose")?;
    let names = raw::strs_attr(raw::def(raw::operand(t, 0), "lt2.reshape")?, "shape").filter(|n| n.len() == 4)?;
    if raw::i64s_attr(t, "perm")? != [0, 2, 1, 3] {
        return None;
    }
    Some(Matched { x, angles: cos_f, h, d, batch: names[0].clone(), seq: names[1].clone() })
}

/// (other, f) when `v` = mul(other, T) in either order with T = reshape(fun(concat(f, f, last))).
fn product(v: MlirValue, fun: &str) -> Option<(MlirValue, MlirValue)> {
    let m = raw::def(v, "lt2.mul")?;
    let (a, b) = (raw::operand(m, 0), raw::operand(m, 1));
    match (table_angles(b, fun), table_angles(a, fun)) {
        (Some(f), _) => Some((a, f)),
        (_, Some(f)) => Some((b, f)),
        _ => None,
    }
}

/// f when `v` = reshape(fun(concat(f, f, last)), [1, 1, L, D]).
fn table_angles(v: MlirValue, fun: &str) -> Option<MlirValue> {
    let r = raw::def(v, "lt2.reshape")?;
    let vd = raw::dims(v)?;
    if vd.len() != 4 || vd[0] != Some(1) || vd[1] != Some(1) {
        return None;
    }
    let t = raw::def(raw::operand(r, 0), fun)?;
    let c = raw::def(raw::operand(t, 0), "lt2.concat")?;
    let f = raw::operand(c, 0);
    let rank = raw::rank(f)?;
    let last = matches!(raw::int_attr(c, "axis"), Some(a) if a == -1 || a == rank as i64 - 1);
    (last && raw::num_operands(c) == 2 && raw::operand(c, 1).ptr == f.ptr && rank == 3 && raw::dims(f)?[0] == Some(1)).then_some(f)
}

/// Whether `v` = slice(x, last axis, D/2..) (`upper`) or ..D/2.
fn half_of(v: MlirValue, x: MlirValue, half: i64, upper: bool) -> Option<bool> {
    let s = raw::def(v, "lt2.slice")?;
    if raw::operand(s, 0).ptr != x.ptr || !matches!(raw::i64s_attr(s, "axes")?.as_slice(), [3] | [-1]) || raw::i64s_attr(s, "steps")? != [1] {
        return None;
    }
    let (start, end) = (raw::i64s_attr(s, "starts")?[0], raw::i64s_attr(s, "ends")?[0]);
    Some(if upper { start == half && end >= 2 * half } else { start == 0 && end == half })
}
