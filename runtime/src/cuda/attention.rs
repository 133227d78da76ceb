//! Launch wrappers for scaled dot-product attention (flash-style: fp32 kernels, and tensor-core
//! prefill for bf16 / fp16 operands; k and v fp32 or a K/V cache kept in 16 bits). Semantics:
//! `cpu/attention.rs`, including the optional mask input.

use cudarc::driver::LaunchConfig;

use crate::cpu::attention::{attention_dims, mask_strides, AttnDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{self, DType};

use super::kernels::{KvElem, Kernel};
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
    /// Split kernel: 0, or the address of an i64 holding the tokens cached before the step
    /// (the key count is then that plus lq, read on the device).
    lk_dev: u64,
    /// Split kernel: rows per batch of k and v (a fixed-capacity cache); 0: lk.
    kv_rows: i64,
}
device_repr!(AttnParams);

/// softmax(scale q k^T + mask) v per head for q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv].
pub(crate) fn attention(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], mask: Option<&CudaBuf>, a: &plan::Attention) -> Result<CudaBuf, OpError> {
    let op = "attention";
    let (q_heads, kv_heads) = (a.q_heads as usize, a.kv_heads as usize);
    expect_f32(op, "q", q)?;
    expect_kv(op, k)?;
    expect_kv(op, v)?;
    // Caches of different forms (a head width that stays fp32 beside one kept in 16 bits): fp32.
    let (k, v) = if k.dtype == v.dtype { (k, v) } else { (&widen(cu, k)?, &widen(cu, v)?) };
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
        rnd: operand_rounding(a),
        lk_dev: 0,
        kv_rows: 0,
    };
    if lq == 1 && mask.is_none() && dv <= DV_PER_LAUNCH && lk >= 2 * SPLIT_MIN_KEYS {
        // k and v as stored: the split kernel reads fp32 and 16-bit caches alike.
        let splits = lk.div_ceil(SPLIT_MIN_KEYS).min(SPLIT_TARGET_BLOCKS.div_ceil(nb * q_heads)).max(1);
        return decode_split(cu, [q, k, v], out, p, splits);
    }
    let grid = |queries_per_block: usize| (lq.div_ceil(queries_per_block) as u32, q_heads as u32, nb as u32);
    if p.rnd != 0 && mask.is_none() && lq >= TILED_MIN_QUERIES && d % 16 == 0 && d <= MMA_MAX_D && dv % 16 == 0 {
        // Many queries, bf16/fp16 operands: tensor cores, 128 queries per block of 8 warps,
        // scores and output in registers, k and v cast once to the operand type and streamed
        // through two shared-memory stages (attention.cu `lt2_attention_mma_*`).
        let to = if p.rnd == 2 { DType::F16 } else { DType::Bf16 };
        let half = |t: &CudaBuf| if t.dtype == to { Ok(t.clone()) } else { super::select::cast(cu, &widen(cu, t)?, to) };
        let (kh, vh) = (half(k)?, half(v)?);
        let smem = |dvc: usize| MMA_STAGES * MMA_BK * (d + MMA_PAD + dvc + MMA_PAD) * 2;
        launch_per_value_columns(cu, Kernel::AttentionMma(p.rnd == 2), [q, &kh, &vh], &out, p, dv, MMA_DV_PER_LAUNCH, grid(MMA_BQ), (MMA_THREADS, 1, 1), smem)?;
        return Ok(out);
    }
    // The fp32 kernels read fp32 k and v: a 16-bit cache widens (exactly) first.
    let (k, v) = (&widen(cu, k)?, &widen(cu, v)?);
    if lq >= TILED_MIN_QUERIES && d <= TILED_MAX_D {
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

/// k or v of attention: fp32, or a K/V cache kept in 16 bits (`Backend::to_kv_cache`).
fn expect_kv(op: &str, t: &CudaBuf) -> Result<(), OpError> {
    if !matches!(t.dtype, DType::F32 | DType::Bf16 | DType::F16) {
        op_bail!("{op}: k and v must be f32, bf16 or fp16, got {:?}", t.dtype);
    }
    Ok(())
}

/// A bf16 / fp16 buffer as fp32 (exact); fp32 as it is.
fn widen(cu: &Cuda, t: &CudaBuf) -> Result<CudaBuf, OpError> {
    if t.dtype == DType::F32 { Ok(t.clone()) } else { super::select::cast(cu, t, DType::F32) }
}

/// The form in which a K/V cache of `a` is kept: the operand type of a `--dtype bf16|fp16`
/// attention (its kernels round k and v to it as they load, so nothing changes but the bytes:
/// half the memory and half the traffic of every decode step), else fp32.
pub(crate) fn kv_cache_dtype(a: &plan::Attention) -> DType {
    match operand_rounding(a) {
        1 => DType::Bf16,
        2 => DType::F16,
        _ => DType::F32,
    }
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
/// Shared-memory stages of k and v tiles in the tensor-core kernel (one loads while one is read).
const MMA_STAGES: usize = 2;

/// Fewest keys a split of the decode kernel takes; warps of a split block (attention.cu
/// ATT_SPLIT_WARPS); blocks the decode kernel aims for (a few per SM of an H100).
const SPLIT_MIN_KEYS: usize = 64;
const SPLIT_WARPS: usize = 4;
const SPLIT_TARGET_BLOCKS: usize = 512;

/// How attention kernels round q, k and v as they load (AttnParams::rnd).
fn operand_rounding(a: &plan::Attention) -> i32 {
    match DType::try_from(a.operand_dtype) {
        Ok(DType::Bf16) => 1,
        Ok(DType::F16) => 2,
        _ => 0,
    }
}

/// One query per (batch, head) over a long cache: the keys split across blocks, then merged
/// (attention.cu `lt2_attention_split_f32` / `lt2_attention_combine_f32`).
fn decode_split(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], out: CudaBuf, mut p: AttnParams, splits: usize) -> Result<CudaBuf, OpError> {
    let (nb, q_heads, d, dv) = (p.b as usize, p.hq as usize, p.d as usize, p.dv as usize);
    let part = cu.alloc(vec![nb * q_heads * splits * (dv + 2)], DType::F32)?;
    (p.dv0, p.dvc) = (0, dv as i32);
    let smem = (SPLIT_WARPS * dv + d) * 4;
    let cfg = LaunchConfig { grid_dim: (splits as u32, q_heads as u32, nb as u32), block_dim: (32, SPLIT_WARPS as u32, 1), shared_mem_bytes: smem as u32 };
    let elem = KvElem::of(k.dtype).ok_or_else(|| OpError::new(format!("attention: k of {:?}", k.dtype)))?;
    launch!(cu, Kernel::AttentionSplit(elem), cfg, q.ptr(), k.ptr(), v.ptr(), part.ptr(), p, splits as i32)?;
    let cfg = LaunchConfig { grid_dim: (q_heads as u32, nb as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    launch!(cu, Kernel::AttentionCombine, cfg, part.ptr(), out.ptr(), splits as i32, dv as i32)?;
    Ok(out)
}

/// One decode step of causal attention over fixed-capacity caches (a step that a CUDA graph
/// replays): writes the step's k_new, v_new [B, Lq, Hkv*D(v)] at rows past.. of k_cache, v_cache
/// [B, cap, ...], then attends q [B, Lq, Hq*D] to rows 0 .. past + Lq, with `past` (an i64 in
/// device memory) read by the kernels, so the launches do not depend on the cache length.
/// Checks everything before writing: a failure leaves the caches as they were.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_cached(
    cu: &Cuda,
    a: &plan::Attention,
    q: &CudaBuf,
    [k_new, v_new]: [&CudaBuf; 2],
    [k_cache, v_cache]: [&CudaBuf; 2],
    past: &CudaBuf,
) -> Result<CudaBuf, OpError> {
    let op = "attention (fixed-capacity cache)";
    for (what, t) in [("q", q), ("k", k_new), ("v", v_new)] {
        expect_f32(op, what, t)?;
    }
    expect_kv(op, k_cache)?;
    expect_kv(op, v_cache)?;
    if past.dtype != DType::I64 || past.numel() != 1 {
        op_bail!("{op}: the token count must be one int64, got {:?} {:?}", past.dtype, past.shape);
    }
    let cap = k_cache.shape.get(1).copied().unwrap_or(0);
    let AttnDims { nb, lq, d, dv, .. } = attention_dims([&q.shape, &k_cache.shape, &v_cache.shape], a.q_heads as usize, a.kv_heads as usize)?;
    for (new, cache) in [(k_new, k_cache), (v_new, v_cache)] {
        let (ns, cs) = (&new.shape, &cache.shape);
        if ns.len() != 3 || cs.len() != 3 || ns[0] != cs[0] || ns[2] != cs[2] || ns[1] != lq {
            op_bail!("{op}: new rows {ns:?} do not fit cache {cs:?} with {lq} queries");
        }
    }
    if a.top_left {
        op_bail!("{op}: attention aligned top-left cannot be decoded");
    }
    if dv > DV_PER_LAUNCH {
        op_bail!("{op}: value heads of {dv} exceed the decode kernel's {DV_PER_LAUNCH}");
    }
    for (new, cache) in [(k_new, k_cache), (v_new, v_cache)] {
        write_rows(cu, cache, &super::select::cast(cu, new, cache.dtype)?, past)?;
    }
    let out = cu.alloc(vec![nb, lq, a.q_heads as usize * dv], DType::F32)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let p = AttnParams {
        b: nb as i32,
        lq: lq as i32,
        lk: cap as i32,
        hq: a.q_heads as i32,
        hkv: a.kv_heads as i32,
        d: d as i32,
        dv: dv as i32,
        causal: 1,
        top_left: 0,
        scale: if a.scale == 0.0 { (1.0 / (d as f64).sqrt()) as f32 } else { a.scale },
        wl: a.window_left,
        wr: a.window_right,
        mask: 0,
        mask_bool: 0,
        dv0: 0,
        ms: [0; 4],
        dvc: 0,
        rnd: operand_rounding(a),
        lk_dev: past.ptr(),
        kv_rows: cap as i64,
    };
    // Splits for the capacity; at shorter lengths each split takes fewer keys.
    let splits = cap.div_ceil(SPLIT_MIN_KEYS).min(SPLIT_TARGET_BLOCKS.div_ceil(nb * a.q_heads as usize)).max(1);
    if k_cache.dtype != v_cache.dtype {
        return decode_split(cu, [q, &widen(cu, k_cache)?, &widen(cu, v_cache)?], out, p, splits);
    }
    decode_split(cu, [q, k_cache, v_cache], out, p, splits)
}

/// Writes rows [B, n, w] at rows past.. of cache [B, cap, w] (f32), `past` read on the device
/// (layout.cu `lt2_write_rows_w4`; a full cache is reported through the error word).
pub(crate) fn write_rows(cu: &Cuda, cache: &CudaBuf, rows: &CudaBuf, past: &CudaBuf) -> Result<(), OpError> {
    let (nb, n, cap) = (rows.shape[0] as i64, rows.shape[1] as i64, cache.shape[1] as i64);
    let w = (rows.numel() / (rows.shape[0] * rows.shape[1]).max(1) * super::dtype_size(rows.dtype) / 4) as i64;
    launch!(cu, Kernel::WriteRows, super::grid_for((nb * n * w) as usize, 256), rows.ptr(), cache.ptr(), past.ptr(), nb, n, cap, w, cu.err_ptr())
}
