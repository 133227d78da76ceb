//! Launch wrapper for scaled dot-product attention (flash-style, fp32). Semantics:
//! `cpu/attention.rs`, including the optional mask input.

use cudarc::driver::LaunchConfig;

use crate::cpu::attention::{attention_dims, mask_strides, AttnDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{self, DType};

use super::kernels::Kernel;
use super::{device_repr, expect_f32, launch, Cuda, CudaBuf};

/// Keys per shared-memory tile and the value columns one launch handles (attention.cu ATT_TILE,
/// 32 * ATT_MAX_DV_PER_LANE); wider value heads take one launch per 256 columns.
const TILE: usize = 32;
pub(crate) const DV_PER_LAUNCH: usize = 256;

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
    dv0: i32,
    ms: [i64; 4],
    dvc: i32,
    /// q, k, v rounded to bf16 (1) or fp16 (2) as they load (`--dtype`); 0: fp32.
    rnd: i32,
}
device_repr!(AttnParams);

/// softmax(scale q k^T + mask) v per head for q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv].
pub(crate) fn attention(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], mask: Option<&CudaBuf>, a: &plan::Attention) -> Result<CudaBuf, OpError> {
    let op = "attention";
    let (q_heads, kv_heads) = (a.q_heads as usize, a.kv_heads as usize);
    for (what, t) in [("q", q), ("k", k), ("v", v)] {
        expect_f32(op, what, t)?;
    }
    let AttnDims { nb, lq, lk, d, dv } = attention_dims([&q.shape, &k.shape, &v.shape], q_heads, kv_heads)?;
    let (mut mask_ptr, mut mask_bool, mut ms) = (0u64, 0i32, [0i64; 4]);
    if let Some(m) = mask {
        for (s, x) in ms.iter_mut().zip(mask_strides(&m.shape, [nb, q_heads, lq, lk])?) {
            *s = x as i64;
        }
        mask_bool = match m.dtype {
            DType::F32 => 0,
            DType::Bool => 1,
            _ => op_bail!("{op}: mask must be bool or f32"),
        };
        mask_ptr = m.ptr();
    }
    let out = cu.alloc(vec![nb, lq, q_heads * dv], DType::F32)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let scale = if a.scale == 0.0 { (1.0 / (d as f64).sqrt()) as f32 } else { a.scale };
    let rows = lq.min(8);
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
        dv0: 0,
        ms,
        dvc: 0,
        rnd: match DType::try_from(a.operand_dtype) {
            Ok(DType::Bf16) => 1,
            Ok(DType::F16) => 2,
            _ => 0,
        },
    };
    if lq == 1 && mask.is_none() && dv <= DV_PER_LAUNCH && lk >= 2 * SPLIT_MIN_KEYS {
        return decode_split(cu, [q, k, v], out, p, nb, q_heads, lk, d, dv);
    }
    let grid = |queries_per_block: usize| (lq.div_ceil(queries_per_block) as u32, q_heads as u32, nb as u32);
    if p.rnd != 0 && mask.is_none() && lq >= TILED_MIN_QUERIES && d % 16 == 0 && d <= MMA_MAX_D && dv % 16 == 0 {
        // Many queries, bf16/fp16 operands: tensor cores, 128 queries per block of 8 warps,
        // scores and output in registers (attention.cu `lt2_attention_mma_*`).
        let smem = |dvc: usize| (MMA_BK * (d + MMA_PAD) + dvc * (MMA_BK + MMA_PAD)) * 2;
        launch_per_value_columns(cu, Kernel::AttentionMma(p.rnd == 2), [q, k, v], &out, p, dv, MMA_DV_PER_LAUNCH, grid(MMA_BQ), (MMA_THREADS, 1, 1), smem)?;
    } else if lq >= TILED_MIN_QUERIES && d <= TILED_MAX_D {
        // Many queries: 64 per block of 256 threads, 4 x 4 scores and 4 x 8 output values per
        // thread in registers (attention.cu `lt2_attention_tiled_f32`).
        let smem = |_| (d * TILED_TS + d.max(TILED_BQ) * TILED_TS + TILED_BQ * TILED_DV_PER_LAUNCH) * 4;
        launch_per_value_columns(cu, Kernel::AttentionTiled, [q, k, v], &out, p, dv, TILED_DV_PER_LAUNCH, grid(TILED_BQ), (256, 1, 1), smem)?;
    } else {
        let smem = |dvc: usize| (TILE * (d + 1) + TILE * dvc + rows * d) * 4;
        launch_per_value_columns(cu, Kernel::Attention, [q, k, v], &out, p, dv, DV_PER_LAUNCH, grid(rows), (32, rows as u32, 1), smem)?;
    }
    Ok(out)
}

/// Launches an attention kernel once per `per_launch` value columns (`dv0`, `dvc`): value heads
/// wider than a kernel's register tile take several launches, each recomputing the scores.
#[allow(clippy::too_many_arguments)]
fn launch_per_value_columns(
    cu: &Cuda,
    kernel: Kernel,
    [q, k, v]: [&CudaBuf; 3],
    out: &CudaBuf,
    mut p: AttnParams,
    dv: usize,
    per_launch: usize,
    grid_dim: (u32, u32, u32),
    block_dim: (u32, u32, u32),
    smem: impl Fn(usize) -> usize,
) -> Result<(), OpError> {
    for dv0 in (0..dv).step_by(per_launch) {
        let dvc = per_launch.min(dv - dv0);
        (p.dv0, p.dvc) = (dv0 as i32, dvc as i32);
        let cfg = LaunchConfig { grid_dim, block_dim, shared_mem_bytes: smem(dvc) as u32 };
        launch!(cu, kernel, cfg, q.ptr(), k.ptr(), v.ptr(), out.ptr(), p)?;
    }
    Ok(())
}

/// Queries from which the register-tiled prefill kernel runs (it owns 64 per block), the head
/// dims and value columns per launch it takes (attention.cu ATT_BQ, ATT_TD, ATT_TDV, ATT_TS).
const TILED_MIN_QUERIES: usize = 16;
const TILED_MAX_D: usize = 128;
const TILED_DV_PER_LAUNCH: usize = 128;
const TILED_BQ: usize = 64;
const TILED_TS: usize = 68;

/// Head dims and value columns per launch of the tensor-core kernel; queries per block
/// (attention.cu ATT_MD, ATT_MDV, ATT_MQ, ATT_MK, ATT_KP).
const MMA_MAX_D: usize = 128;
const MMA_DV_PER_LAUNCH: usize = 128;
const MMA_BQ: usize = 128;
const MMA_THREADS: u32 = 256;
const MMA_BK: usize = 64;
const MMA_PAD: usize = 8;

/// Fewest keys a split of the decode kernel takes; warps of a split block (attention.cu
/// ATT_SPLIT_WARPS); blocks the decode kernel aims for (a few per SM of an H100).
const SPLIT_MIN_KEYS: usize = 64;
const SPLIT_WARPS: usize = 4;
const SPLIT_TARGET_BLOCKS: usize = 512;

/// One query per (batch, head) over a long cache: the keys split across blocks, then merged
/// (attention.cu `lt2_attention_split_f32` / `lt2_attention_combine_f32`).
#[allow(clippy::too_many_arguments)]
fn decode_split(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], out: CudaBuf, mut p: AttnParams, nb: usize, q_heads: usize, lk: usize, d: usize, dv: usize) -> Result<CudaBuf, OpError> {
    let heads = nb * q_heads;
    let splits = lk.div_ceil(SPLIT_MIN_KEYS).min(SPLIT_TARGET_BLOCKS.div_ceil(heads)).max(1);
    let chunk = lk.div_ceil(splits);
    let part = cu.alloc(vec![heads * splits * (dv + 2)], DType::F32)?;
    (p.dv0, p.dvc) = (0, dv as i32);
    let smem = (SPLIT_WARPS * dv + d) * 4;
    let cfg = LaunchConfig { grid_dim: (splits as u32, q_heads as u32, nb as u32), block_dim: (32, SPLIT_WARPS as u32, 1), shared_mem_bytes: smem as u32 };
    launch!(cu, Kernel::AttentionSplit, cfg, q.ptr(), k.ptr(), v.ptr(), part.ptr(), p, chunk as i32, splits as i32)?;
    let cfg = LaunchConfig { grid_dim: (q_heads as u32, nb as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    launch!(cu, Kernel::AttentionCombine, cfg, part.ptr(), out.ptr(), splits as i32, dv as i32)?;
    Ok(out)
}
