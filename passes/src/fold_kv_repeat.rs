//! fold-kv-repeat: grouped-query attention as torch exports it (Hugging Face's `repeat_kv`:
//! each K / V head copied g times by reshape / expand / reshape before a fused Attention) →
//! the attention reads the Hkv heads and its `kv_heads` says so. The copies go: prefill stops
//! writing g-fold K and V, and decode caches Hkv heads instead of Hkv * g (g-fold less KV memory
//! and cache traffic per token).
//!
//! Matches an `lt2.attention` whose k and v operands are both
//! `reshape(transpose(R, [0,2,1,3]), [B, S, H*D])` with R the GQA repeat of x [B, Hkv, S, D]
//! (`raise_attention::repeated`) by the same g, H = Hkv * g = the attention's kv_heads.
//! Emits `reshape(transpose(x, [0,2,1,3]), [B, S, Hkv*D])` for each and sets kv_heads = Hkv;
//! the repeats are left dead for canonicalize. Before / after: verified, same outputs (query head
//! h reads kv head h / (Hq / Hkv) either way). Idempotent (a folded operand is no repeat).

use melior::ir::Module;
use mlir_sys::{MlirOperation, MlirValue};

use crate::raise_attention::repeated;
use crate::raw;
use crate::{Pass, PassError};

/// The fold-kv-repeat pass.
pub struct FoldKvRepeat;

impl Pass for FoldKvRepeat {
    fn name(&self) -> &'static str {
        "fold-kv-repeat"
    }
    fn is_required(&self) -> bool {
        false
    }
    fn run(&self, module: &mut Module) -> Result<usize, PassError> {
        let fail = |reason: &str| PassError::Failed { pass: self.name().into(), reason: reason.into() };
        let mut n = 0;
        for op in raw::all_ops(module) {
            if raw::name(op) != "lt2.attention" {
                continue;
            }
            let Some(kv_heads) = raw::int_attr(op, "kv_heads") else { continue };
            let (Some(k), Some(v)) = (unrepeated(raw::operand(op, 1)), unrepeated(raw::operand(op, 2))) else { continue };
            if k.g != v.g || k.g < 2 || k.heads * k.g != kv_heads || v.heads * v.g != kv_heads {
                continue;
            }
            for (i, p) in [(1, k), (2, v)] {
                let packed = pack(op, &p).ok_or_else(|| fail("could not create the transpose / reshape of the unrepeated heads"))?;
                raw::set_operand(op, i, packed);
            }
            if !raw::set_attr(op, "kv_heads", &format!("{} : i64", kv_heads / k.g)) {
                return Err(fail("could not set kv_heads"));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// An attention operand that packs a GQA repeat: the unrepeated heads and how to pack them.
#[derive(Clone, Copy)]
struct Unrepeated {
    /// x [B, Hkv, S, D].
    x: MlirValue,
    heads: i64,
    g: i64,
    /// The reshape that packed the repeat to [B, S, H*D].
    pack: MlirOperation,
}

/// `v` = reshape(transpose(repeat(x, g), [0,2,1,3]), [B, S, H*D]) → x, Hkv, g.
fn unrepeated(v: MlirValue) -> Option<Unrepeated> {
    let pack = raw::def(v, "lt2.reshape")?;
    let t = raw::def(raw::operand(pack, 0), "lt2.transpose")?;
    if raw::i64s_attr(t, "perm")? != [0, 2, 1, 3] {
        return None;
    }
    let (x, g) = repeated(raw::operand(t, 0));
    let heads = raw::dims(x)?.get(1).copied()??;
    (g > 1 && raw::strs_attr(pack, "shape")?.len() == 3).then_some(Unrepeated { x, heads, g, pack })
}

/// reshape(transpose(x, [0,2,1,3]), [B, S, Hkv*D]) before the attention `at`.
fn pack(at: MlirOperation, u: &Unrepeated) -> Option<MlirValue> {
    let xd = raw::dims(u.x)?;
    let d = xd.get(3).copied()??;
    let elem = raw::type_text(raw::value_type(u.x));
    let elem = elem.rsplit('x').next()?.trim_end_matches('>').to_string();
    let dim = |x: Option<i64>| x.map_or("?".to_string(), |v| v.to_string());
    let ty = |dims: &[Option<i64>]| raw::parse_type(at, &format!("tensor<{}x{elem}>", dims.iter().map(|&x| dim(x)).collect::<Vec<_>>().join("x")));
    let t = raw::create_before(at, "lt2.transpose", &[u.x], &[ty(&[xd[0], xd[2], xd[1], xd[3]])?], &[("perm", "array<i64: 0, 2, 1, 3>".into())])?;
    let mut shape = raw::strs_attr(u.pack, "shape")?;
    shape[2] = (u.heads * d).to_string();
    let attr = format!("[{}]", shape.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "));
    let r = raw::create_before(at, "lt2.reshape", &[raw::result(t, 0)], &[ty(&[xd[0], xd[2], Some(u.heads * d)])?], &[("shape", attr)])?;
    Some(raw::result(r, 0))
}
