//! Launch wrapper for scaled dot-product attention (flash-style, fp32). Semantics:
//! `cpu/attention.rs`, including the optional mask input.

use cudarc::driver::LaunchConfig;

use crate::cpu::shape::{broadcast_shape, broadcast_strides};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{self, DType};

use super::kernels::Kernel;
use super::{device_repr, expect_f32, launch, Cuda, CudaBuf};

/// Keys per shared-memory tile and the widest value head a lane's accumulators hold
/// (attention.cu ATT_TILE, 32 * ATT_MAX_DV_PER_LANE).
const TILE: usize = 32;
const MAX_DV: usize = 256;

/// attention.cu `AttnParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AttnParams {
    b: i32,
    lq: i32,
    lk: i32,
    hq: i32,
    hkv: i32,
    d: i32,
    dv: i32,
    causal: i32,
    top_left: i32,
    scale: f32,
    wl: i64,
    wr: i64,
    mask: u64,
    mask_bool: i32,
    pad: i32,
    ms: [i64; 4],
}
device_repr!(AttnParams);

/// softmax(scale q k^T + mask) v per head for q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv].
pub(crate) fn attention(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], mask: Option<&CudaBuf>, a: &plan::Attention) -> Result<CudaBuf, OpError> {
    let op = "attention";
    let (q_heads, kv_heads) = (a.q_heads as usize, a.kv_heads as usize);
    for (what, t) in [("q", q), ("k", k), ("v", v)] {
        expect_f32(op, what, t)?;
    }
    if q_heads == 0 || kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        op_bail!("{op}: q_heads ({q_heads}) must be a positive multiple of kv_heads ({kv_heads})");
    }
    let (&[nb, lq, qw], &[kb, lk, kw], &[vb, lv, vw]) = (q.shape.as_slice(), k.shape.as_slice(), v.shape.as_slice()) else {
        op_bail!("{op}: q, k, v must be rank 3 [B, L, H*D], got {:?}, {:?}, {:?}", q.shape, k.shape, v.shape)
    };
    if kb != nb || vb != nb || lv != lk {
        op_bail!("{op}: q {:?}, k {:?}, v {:?} disagree on batch or key length", q.shape, k.shape, v.shape);
    }
    if qw % q_heads != 0 || vw % kv_heads != 0 {
        op_bail!("{op}: q width {qw} / v width {vw} not divisible by q_heads {q_heads} / kv_heads {kv_heads}");
    }
    let (d, dv) = (qw / q_heads, vw / kv_heads);
    if kw != kv_heads * d {
        op_bail!("{op}: k width {kw} must be kv_heads * D = {kv_heads} * {d} (D from q {:?})", q.shape);
    }
    let (mut mask_ptr, mut mask_bool, mut ms) = (0u64, 0i32, [0i64; 4]);
    if let Some(m) = mask {
        let full = [nb, q_heads, lq, lk];
        if m.shape.len() > 4 || broadcast_shape(op, &m.shape, &full)? != full {
            op_bail!("{op}: mask {:?} does not broadcast to [B, Hq, Lq, Lk] = {full:?}", m.shape);
        }
        mask_bool = match m.dtype {
            DType::F32 => 0,
            DType::Bool => 1,
            DType::I64 => op_bail!("{op}: mask must be bool or f32"),
        };
        for (s, x) in ms.iter_mut().zip(broadcast_strides(&m.shape, &full)) {
            *s = x as i64;
        }
        mask_ptr = m.ptr();
    }
    if dv > MAX_DV {
        op_bail!("{op}: value head size {dv} is more than the CUDA kernel's {MAX_DV}");
    }
    let out = cu.alloc(vec![nb, lq, q_heads * dv], DType::F32)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let scale = if a.scale == 0.0 { (1.0 / (d as f64).sqrt()) as f32 } else { a.scale };
    let rows = lq.min(8);
    let smem = (TILE * (d + 1) + TILE * dv + rows * d) * 4;
    let cfg = LaunchConfig { grid_dim: (lq.div_ceil(rows) as u32, q_heads as u32, nb as u32), block_dim: (32, rows as u32, 1), shared_mem_bytes: smem as u32 };
    let p = AttnParams {
        b: nb as i32,
        lq: lq as i32,
        lk: lk as i32,
        hq: q_heads as i32,
        hkv: kv_heads as i32,
        d: d as i32,
        dv: dv as i32,
        causal: a.causal as i32,
        top_left: a.top_left as i32,
        scale,
        wl: a.window_left,
        wr: a.window_right,
        mask: mask_ptr,
        mask_bool,
        pad: 0,
        ms,
    };
    launch!(cu, Kernel::Attention, cfg, q.ptr(), k.ptr(), v.ptr(), out.ptr(), p)?;
    Ok(out)
}
