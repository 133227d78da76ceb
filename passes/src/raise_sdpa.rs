//! raise-sdpa: scaled dot-product attention as torch decomposes it when it exports below opset
//! 23 (the default opset 18 of `torch.onnx.export(dynamo=True)`), with whatever mask the model
//! built → one `lt2.attention` taking that mask. Decode then derives as for a fused attention
//! once codegen has seen the mask to be causal (`causal_mask.rs`); prefill runs one kernel
//! instead of a chain over [B, H, L, L] scores.
//!
//! Matches, with Q [B, H, L, D], KT [B, H, D, L], V [B, H, L, Dv] (static heads and dims):
//!
//! ```text
//! s = matmul(mul(Q, a) | Q, mul(KT, b) | KT)        a, b scalar constants (torch splits sqrt(scale))
//! s = add(s, M) | where(Mb, s, c)                   optional: M additive f32, Mb bool, c <= -1e30
//! p = softmax(s, last axis)
//! p = where(not(p == p), 0, p)                      optional: torch's guard for rows that are all NaN
//! o = matmul(p, V)                                  → transpose(reshape(lt2.attention(...)))
//! ```
//!
//! KT as torch writes it for grouped-query attention, reshape(transpose(reshape(R, [B*H, L, D]),
//! [0,2,1]), [B, H, D, L]), is read as R's heads; fold-kv-repeat then removes a repeat. The mask
//! must broadcast to [B, H, L, L]; the attention is neither causal nor windowed by itself. Before / after: verified, same outputs up
//! to rounding (a row whose every score is masked by an additive mask averages V in both; by a
//! bool mask it gives zeros in both). Run canonicalize after it to drop the dead chain.

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

use crate::raise_attention::MASKED;
use crate::raw;
use crate::{Pass, PassError};

/// The raise-sdpa pass.
pub struct RaiseSdpa;

impl Pass for RaiseSdpa {
    fn name(&self) -> &'static str {
        "raise-sdpa"
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
            let Some(m) = match_sdpa(op) else { continue };
            let at = m.pv;
            let ty = |dims: &[Option<i64>]| -> Result<mlir_sys::MlirType, PassError> {
                let text = dims.iter().map(|d| d.map_or("?".to_string(), |x| x.to_string())).collect::<Vec<_>>().join("x");
                raw::parse_type(at, &format!("tensor<{text}xf32>")).ok_or_else(|| fail(format!("cannot make type {text}")))
            };
            let create = |name: &str, operands: &[MlirValue], dims: &[Option<i64>], attrs: &[(&str, String)]| -> Result<MlirValue, PassError> {
                let o = raw::create_before(at, name, operands, &[ty(dims)?], attrs).ok_or_else(|| fail(format!("could not create {name}")))?;
                Ok(raw::result(o, 0))
            };
            let shape = |s: &[String]| format!("[{}]", s.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", "));
            let perm = |p: &str| format!("array<i64: {p}>");
            let (b, l) = (m.batch.clone(), m.seq.clone());
            let (sb, sl) = (m.static_b, m.static_l);
            // [B, H, L, D] (or KT [B, H, D, L]) -> [B, L, H*D].
            let pack = |x: MlirValue, p: &str, heads: i64, d: i64| -> Result<MlirValue, PassError> {
                let t = create("lt2.transpose", &[x], &[sb, sl, Some(heads), Some(d)], &[("perm", perm(p))])?;
                create("lt2.reshape", &[t], &[sb, sl, Some(heads * d)], &[("shape", shape(&[b.clone(), l.clone(), (heads * d).to_string()]))])
            };
            let q = pack(m.q, "0, 2, 1, 3", m.h, m.d)?;
            let k = pack(m.k, m.k_perm, m.h, m.d)?;
            let v = pack(m.v, "0, 2, 1, 3", m.h, m.dv)?;
            let attrs = [
                ("causal", "false".to_string()),
                ("kv_heads", format!("{} : i64", m.h)),
                ("q_heads", format!("{} : i64", m.h)),
                ("scale", format!("{:.9e} : f32", m.scale)),
                ("top_left", "false".to_string()),
                ("window_left", "-1 : i64".to_string()),
                ("window_right", "-1 : i64".to_string()),
            ];
            let mut operands = vec![q, k, v];
            operands.extend(m.mask);
            let att = create("lt2.attention", &operands, &[sb, sl, Some(m.h * m.dv)], &attrs)?;
            let o4 = create("lt2.reshape", &[att], &[sb, sl, Some(m.h), Some(m.dv)], &[("shape", shape(&[b.clone(), l.clone(), m.h.to_string(), m.dv.to_string()]))])?;
            let o = create("lt2.transpose", &[o4], &[sb, Some(m.h), sl, Some(m.dv)], &[("perm", perm("0, 2, 1, 3"))])?;
            raw::replace_same_type(raw::result(m.pv, 0), o).map_err(fail)?;
            n += 1;
        }
        Ok(n)
    }
}

/// One matched decomposed SDPA.
struct Matched {
    /// [B, H, L, D].
    q: MlirValue,
    /// K with its heads and positions in the order `k_perm` makes [B, L, H, D] of.
    k: MlirValue,
    k_perm: &'static str,
    /// [B, H, L, Dv].
    v: MlirValue,
    mask: Option<MlirValue>,
    h: i64,
    d: i64,
    dv: i64,
    scale: f64,
    /// The batch and sequence dims as a reshape of the output names them, and their static
    /// sizes where the types have them.
    batch: String,
    seq: String,
    static_b: Option<i64>,
    static_l: Option<i64>,
    /// matmul(p, V), whose result the raised op replaces.
    pv: MlirOperation,
}

fn match_sdpa(softmax: MlirOperation) -> Option<Matched> {
    let probs = raw::result(softmax, 0);
    if raw::rank(probs) != Some(4) || !matches!(raw::int_attr(softmax, "axis"), Some(3) | Some(-1)) {
        return None;
    }
    // Mask.
    let masked = raw::operand(softmax, 0);
    let (scaled, mask) = if let Some(w) = raw::def(masked, "lt2.where") {
        if raw::const_scalar(raw::operand(w, 2)).is_none_or(|c| c > MASKED) || raw::single_use(masked).is_none() {
            return None;
        }
        (raw::operand(w, 1), Some(raw::operand(w, 0)))
    } else if let Some(a) = raw::def(masked, "lt2.add").filter(|_| raw::single_use(masked).is_some()) {
        // The scores are the operand that is a product of q and k.
        let (x, y) = (raw::operand(a, 0), raw::operand(a, 1));
        if scores_of(x).is_some() {
            (x, Some(y))
        } else {
            (y, Some(x))
        }
    } else {
        (masked, None)
    };
    // Scores, with the scale split over q and k.
    let (qk, scale) = scores_of(scaled)?;
    let (qs, ks) = (raw::operand(qk, 0), raw::operand(qk, 1));
    let (q, sq) = unscaled(qs);
    let (kt, sk) = unscaled(ks);
    // The guard, then the product with V.
    let p = nan_guarded(probs).unwrap_or(probs);
    let (pv, idx) = raw::single_use(p)?;
    if raw::name(pv) != "lt2.matmul" || idx != 0 {
        return None;
    }
    let v = raw::operand(pv, 1);
    // K as [B, H, L, D] heads when torch wrote its transpose over a flattened repeat.
    let (k, k_perm) = heads_of_kt(kt).map_or((kt, "0, 3, 1, 2"), |k| (k, "0, 2, 1, 3"));
    // Heads and dims, static; the mask broadcasts to the scores.
    let (qd, ktd, vd) = (raw::dims(q)?, raw::dims(kt)?, raw::dims(v)?);
    if qd.len() != 4 || ktd.len() != 4 || vd.len() != 4 {
        return None;
    }
    let (h, d, dv) = (qd[1]?, qd[3]?, vd[3]?);
    if ktd[1] != Some(h) || ktd[2] != Some(d) || vd[1] != Some(h) || h <= 0 || d <= 0 || dv <= 0 {
        return None;
    }
    if let Some(m) = mask {
        let md = raw::dims(m)?;
        if md.len() > 4 || md.iter().rev().zip([None, Some(h), None, None].iter().rev()).any(|(a, b)| *a != Some(1) && b.is_some() && a != b) {
            return None;
        }
    }
    // Dim names: the reshape that packs transpose(o, [0,2,1,3]) to [B, L, H*Dv].
    let (mut t, _) = raw::single_use(raw::result(pv, 0))?;
    // A reshape to the same shape (Phi's `view` before the transpose) changes nothing.
    if raw::name(t) == "lt2.reshape" && raw::same_type(raw::operand(t, 0), raw::result(t, 0)) {
        t = raw::single_use(raw::result(t, 0))?.0;
    }
    if raw::name(t) != "lt2.transpose" || raw::i64s_attr(t, "perm")? != [0, 2, 1, 3] {
        return None;
    }
    let (r, _) = raw::single_use(raw::result(t, 0))?;
    let names = raw::strs_attr(r, "shape").filter(|n| raw::name(r) == "lt2.reshape" && n.len() == 3)?;
    let (batch, seq) = (names[0].clone(), names[1].clone());
    Some(Matched { q, k, k_perm, v, mask, h, d, dv, scale: scale * sq * sk, batch, seq, static_b: qd[0], static_l: qd[2], pv })
}

/// The matmul of `v` = matmul(..) or mul(matmul(..), c) with c a scalar constant, and c (1 if none).
fn scores_of(v: MlirValue) -> Option<(MlirOperation, f64)> {
    if let Some(mm) = raw::def(v, "lt2.matmul") {
        return Some((mm, 1.0));
    }
    let m = raw::def(v, "lt2.mul")?;
    let (x, c) = match (raw::const_scalar(raw::operand(m, 1)), raw::const_scalar(raw::operand(m, 0))) {
        (Some(c), _) => (raw::operand(m, 0), c),
        (_, Some(c)) => (raw::operand(m, 1), c),
        _ => return None,
    };
    Some((raw::def(x, "lt2.matmul")?, c))
}

/// (x, c) when `v` = mul(x, c) with c a scalar constant; else (v, 1).
fn unscaled(v: MlirValue) -> (MlirValue, f64) {
    if let Some(m) = raw::def(v, "lt2.mul") {
        if let Some(c) = raw::const_scalar(raw::operand(m, 1)) {
            return (raw::operand(m, 0), c);
        }
        if let Some(c) = raw::const_scalar(raw::operand(m, 0)) {
            return (raw::operand(m, 1), c);
        }
    }
    (v, 1.0)
}

/// where(not(p == p), 0, p) when that is what reads `p` (and nothing else does).
fn nan_guarded(p: MlirValue) -> Option<MlirValue> {
    let users = raw::users(p);
    let eq = users.iter().copied().find(|&u| raw::name(u) == "lt2.compare" && raw::str_attr(u, "predicate").as_deref() == Some("eq"))?;
    if raw::operand(eq, 0).ptr != p.ptr || raw::operand(eq, 1).ptr != p.ptr {
        return None;
    }
    let (not, _) = raw::single_use(raw::result(eq, 0))?;
    if raw::name(not) != "lt2.compare" || raw::str_attr(not, "predicate").as_deref() != Some("not") {
        return None;
    }
    let (w, idx) = raw::single_use(raw::result(not, 0))?;
    if raw::name(w) != "lt2.where" || idx != 0 || raw::operand(w, 2).ptr != p.ptr || raw::const_scalar(raw::operand(w, 1)) != Some(0.0) {
        return None;
    }
    // p is read by the compare (twice) and the where, nothing else.
    (users.len() == 3 && users.iter().all(|u| u.ptr == eq.ptr || u.ptr == w.ptr)).then(|| raw::result(w, 0))
}

/// R [B, H, L, D] as a reshape of R5 when `kt` = reshape(transpose(reshape(R5, [B*H, L, D]),
/// [0,2,1]), [B, H, D, L]) (torch's K^T over a GQA repeat).
fn heads_of_kt(kt: MlirValue) -> Option<MlirValue> {
    let r2 = raw::def(kt, "lt2.reshape")?;
    let t = raw::def(raw::operand(r2, 0), "lt2.transpose")?;
    if raw::i64s_attr(t, "perm")? != [0, 2, 1] {
        return None;
    }
    let r1 = raw::def(raw::operand(t, 0), "lt2.reshape")?;
    let (ktd, flat) = (raw::dims(kt)?, raw::dims(raw::result(r1, 0))?);
    let src = raw::operand(r1, 0);
    let sd = raw::dims(src)?;
    // [B*H, L, D] from R5; the result [B, H, D, L].
    if ktd.len() != 4 || flat.len() != 3 || flat[2] != ktd[2] || ktd[1].is_none() || sd.last() != Some(&ktd[2]) {
        return None;
    }
    let names = raw::strs_attr(r2, "shape")?;
    let l = raw::strs_attr(r1, "shape")?.get(1)?.clone();
    let shape = format!("[\"{}\", \"{}\", \"{l}\", \"{}\"]", names.first()?, names.get(1)?, names.get(2)?);
    let text = format!("tensor<?x{}x?x{}xf32>", ktd[1]?, ktd[2]?);
    let ty = raw::parse_type(r2, &text)?;
    let r = raw::create_before(r2, "lt2.reshape", &[src], &[ty], &[("shape", shape)])?;
    Some(raw::result(r, 0))
}
