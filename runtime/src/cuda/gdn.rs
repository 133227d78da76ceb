//! Launch wrapper for linear attention with a matrix state (the gated delta rule and its special
//! cases), the token recurrence with the state in registers. Semantics: `cpu/gdn.rs`.

use cudarc::driver::LaunchConfig;

use crate::cpu::gdn::{gdn_dims, GdnDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{DType, UpdateRule};

use super::kernels::Kernel;
use super::{device_repr, expect_f32, launch, Cuda, CudaBuf};

/// State rows each thread keeps in registers (gdn.cu GDN_ROWS).
const ROWS: usize = 32;

/// gdn.cu GDN_QPF: query values per thread the kernel prefetches.
const QPF: usize = 8;

/// gdn.cu `GdnParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GdnParams {
    b: i32,
    t: i32,
    hq: i32,
    hkv: i32,
    dk: i32,
    dv: i32,
    gated: i32,
    delta: i32,
    g_per_dim: i32,
    beta_per_head: i32,
    scale: f32,
    pad: i32,
}
device_repr!(GdnParams);

/// (o [B,T,Hq*V], final state [B,Hkv,K,V]) from q, k, v and optional state, decay, beta.
pub(crate) fn linear_attention(
    cu: &Cuda,
    [q, k, v]: [&CudaBuf; 3],
    [state, decay, beta]: [Option<&CudaBuf>; 3],
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    rule: UpdateRule,
) -> Result<(CudaBuf, CudaBuf), OpError> {
    let op = "linear_attention";
    for (what, t) in [("q", Some(q)), ("k", Some(k)), ("v", Some(v)), ("state", state), ("decay", decay), ("beta", beta)] {
        if let Some(t) = t {
            expect_f32(op, what, t)?;
        }
    }
    fn shape(b: Option<&CudaBuf>) -> Option<&[usize]> {
        b.map(|b| &b.shape[..])
    }
    let GdnDims { nb, t, dk, dv, gated, delta, g_per_dim, beta_per_head } = gdn_dims([&q.shape, &k.shape, &v.shape], [shape(state), shape(decay), shape(beta)], q_heads, kv_heads, rule)?;
    let scale = if scale == 0.0 { (1.0 / (dk as f64).sqrt()) as f32 } else { scale };
    let o = cu.alloc(vec![nb, t, q_heads * dv], DType::F32)?;
    let s_out = cu.alloc(vec![nb, kv_heads, dk, dv], DType::F32)?;
    if nb == 0 || dv == 0 {
        return Ok((o, s_out));
    }
    if dk == 0 {
        // No state rows: o = 0 and the state is empty.
        return Ok((cu.zeros(o.shape.clone(), DType::F32)?, s_out));
    }
    // Row groups of ROWS rows (threadIdx.y) times a tile of columns (threadIdx.x).
    let groups = dk.div_ceil(ROWS);
    if groups > 32 {
        op_bail!("{op}: key dim {dk} is more than the CUDA kernel's {} rows", 32 * ROWS);
    }
    // One warp of columns per block: more blocks run the (sequential) token loop side by side.
    // The kernel holds each thread's share of the next token's k / g (one value: threads >= DK)
    // and q (GDN_QPF values) in registers.
    let cols = 32;
    let group = q_heads / kv_heads;
    if group * dk > QPF * cols * groups {
        op_bail!("{op}: {group} query heads per key head of {dk} dims are more than the CUDA kernel holds ({QPF} per thread)");
    }
    let smem = (2 * dk + group * dk + groups * cols) * 4;
    let cfg = LaunchConfig { grid_dim: ((nb * kv_heads) as u32, dv.div_ceil(cols) as u32, 1), block_dim: (cols as u32, groups as u32, 1), shared_mem_bytes: smem as u32 };
    let p = GdnParams {
        b: nb as i32,
        t: t as i32,
        hq: q_heads as i32,
        hkv: kv_heads as i32,
        dk: dk as i32,
        dv: dv as i32,
        gated: gated as i32,
        delta: delta as i32,
        g_per_dim: g_per_dim as i32,
        beta_per_head: beta_per_head as i32,
        scale,
        pad: 0,
    };
    let ptr = |b: Option<&CudaBuf>| b.map_or(0, |b| b.ptr());
    launch!(cu, Kernel::Gdn, cfg, q.ptr(), k.ptr(), v.ptr(), ptr(state), ptr(decay), ptr(beta), o.ptr(), s_out.ptr(), p)?;
    Ok((o, s_out))
}
