//! Launch wrappers for the lightning indexer and sparse attention. Semantics: `cpu/sparse.rs`.

use cudarc::driver::{sys, LaunchConfig};

use crate::cpu::sparse::{indexer_dims, sparse_dims, IndexerDims, SparseDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;

use super::attention::DV_PER_LAUNCH;
use super::kernels::Kernel;
use super::{device_repr, expect_f32, launch, Cuda, CudaBuf};

/// The indexer's score scratch holds at most this many floats: longer prefills score and select
/// their queries in chunks of rows (small under test, so that the parity cases take that path).
const SCORE_CHUNK_FLOATS: usize = if cfg!(test) { 1 << 16 } else { 1 << 26 };
/// sparse.cu `IDX_TILE`: the scores kernel's tile is 64 queries x 64 keys.
const SCORE_TILE: usize = 64;
/// Chunks of at most this many queries (decode) are scored a block per (64 keys, query).
const ROWS_MAX_QUERIES: usize = 8;
/// sparse.cu `TOPK_THREADS`; the most keys the top-k kernel sorts in shared memory (beyond:
/// `lt2_indexer_topk_rank_f32`).
const TOPK_THREADS: u32 = 512;
const TOPK_SORT_MAX: usize = 8192;
/// sparse.cu `SPA_*`: heads per block, indices per chunk, key dims per tile, floats per tile
/// buffer, value columns per launch, threads, most splits of the index list.
const SPA_G: usize = 16;
const SPA_NK: usize = 64;
const SPA_DC: usize = 64;
const SPA_BUF: usize = 8192;
const SPA_DVC: usize = 512;
const SPA_THREADS: u32 = 256;
const SPA_MAX_SPLITS: usize = 256;
/// Blocks the tiled sparse attention aims for before it splits index lists (two per SM of an H100).
const SPA_TARGET_BLOCKS: usize = 264;

/// Lets kernel `k` take `smem` bytes of dynamic shared memory (beyond the default 48 KiB).
fn allow_smem(cu: &Cuda, k: Kernel, smem: usize) -> Result<(), OpError> {
    if smem <= 48 * 1024 {
        return Ok(());
    }
    cu.func(k)?
        .set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
        .map_err(|e| OpError::new(format!("{}: raising the shared memory limit to {smem} bytes: {e:?}", k.symbol())))
}

/// The most dynamic shared memory a block may opt in to on this device.
fn smem_optin(cu: &Cuda) -> usize {
    cu.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).map_or(48 * 1024, |v| v as usize)
}

/// lt2::LightningIndexer: int64 [B, T, top_k] positions, highest score first, -1 padded.
/// Scores (bit for bit the CPU's) then a per-query radix select and sort, over chunks of rows.
/// With `past` (an i64 in device memory), `k` is a fixed-capacity cache whose rows
/// 0 .. past + T hold keys (a recorded decode step): query t selects among rows 0 ..= past + t.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lightning_indexer(
    cu: &Cuda,
    q: &CudaBuf,
    k: &CudaBuf,
    w: Option<&CudaBuf>,
    heads: usize,
    top_k: usize,
    score: &str,
    past: Option<&CudaBuf>,
) -> Result<CudaBuf, OpError> {
    let op = "lightning_indexer";
    expect_f32(op, "q_index", q)?;
    expect_f32(op, "k_index", k)?;
    let IndexerDims { b, t, s, d, weighted } = indexer_dims([&q.shape, &k.shape], w.map(|w| &w.shape[..]), heads, score)?;
    let w = w.filter(|_| weighted);
    if let Some(w) = w {
        expect_f32(op, "weights", w)?;
    }
    let out = cu.alloc(vec![b, t, top_k], DType::I64)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let rows = (SCORE_CHUNK_FLOATS / (b * s).max(1)).clamp(1, t);
    let scores = cu.alloc(vec![b, rows, s], DType::F32)?;
    let sort_n = s.min(top_k).next_power_of_two();
    let (topk, smem) = if sort_n <= TOPK_SORT_MAX { (Kernel::IndexerTopK, sort_n * 8) } else { (Kernel::IndexerTopKRank, 0) };
    allow_smem(cu, topk, smem)?;
    let [bi, ti, si, hi, di, ki] = [b, t, s, heads, d, top_k].map(|x| x as i64);
    let rows_smem = (SCORE_TILE * (d + 1) + heads * d + heads * SCORE_TILE) * 4;
    for t0 in (0..t).step_by(rows) {
        let tc = rows.min(t - t0);
        let (kernel, cfg) = if tc <= ROWS_MAX_QUERIES && rows_smem <= 48 * 1024 {
            (Kernel::IndexerScoresRows, LaunchConfig { grid_dim: (s.div_ceil(SCORE_TILE) as u32, tc as u32, b as u32), block_dim: (256, 1, 1), shared_mem_bytes: rows_smem as u32 })
        } else {
            (Kernel::IndexerScores, LaunchConfig { grid_dim: (s.div_ceil(SCORE_TILE) as u32, tc.div_ceil(SCORE_TILE) as u32, b as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 })
        };
        launch!(cu, kernel, cfg, q.ptr(), k.ptr(), w.map_or(0, |w| w.ptr()), scores.ptr(), bi, ti, si, hi, di, t0 as i64, tc as i64)?;
        let threads = if topk == Kernel::IndexerTopK { TOPK_THREADS } else { 128 };
        let cfg = LaunchConfig { grid_dim: ((b * tc) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: smem as u32 };
        launch!(cu, topk, cfg, scores.ptr(), out.ptr(), ti, si, ki, t0 as i64, tc as i64, past.map_or(0, |p| p.ptr()))?;
    }
    Ok(out)
}

/// One decode step of the lightning indexer over a fixed-capacity key cache (a step that a CUDA
/// graph replays): writes the step's keys k_new [B, T, D] at rows past.. of k_cache [B, cap, D],
/// then selects among rows 0 ..= past + t for query t, `past` read on the device.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lightning_indexer_cached(
    cu: &Cuda,
    q: &CudaBuf,
    k_new: &CudaBuf,
    w: Option<&CudaBuf>,
    k_cache: &CudaBuf,
    past: &CudaBuf,
    heads: usize,
    top_k: usize,
    score: &str,
) -> Result<CudaBuf, OpError> {
    check_cached("lightning_indexer (fixed-capacity cache)", &[(k_new, k_cache)], past)?;
    super::attention::write_rows(cu, k_cache, k_new, past)?;
    lightning_indexer(cu, q, k_cache, w, heads, top_k, score, Some(past))
}

/// One decode step of sparse attention over fixed-capacity K/V caches: writes k_new, v_new at
/// rows past.. of the caches, then attends over the positions in `idx` (all below past + T).
pub(crate) fn sparse_attention_cached(
    cu: &Cuda,
    q: &CudaBuf,
    [k_new, v_new]: [&CudaBuf; 2],
    [k_cache, v_cache]: [&CudaBuf; 2],
    idx: &CudaBuf,
    past: &CudaBuf,
    (q_heads, kv_heads, scale): (usize, usize, f32),
) -> Result<CudaBuf, OpError> {
    check_cached("sparse_attention (fixed-capacity cache)", &[(k_new, k_cache), (v_new, v_cache)], past)?;
    for (new, cache) in [(k_new, k_cache), (v_new, v_cache)] {
        super::attention::write_rows(cu, cache, new, past)?;
    }
    sparse_attention(cu, [q, k_cache, v_cache], idx, q_heads, kv_heads, scale)
}

/// New rows [B, T, w] f32 that fit their cache [B, cap, w]; the token count one int64. Checked
/// before anything is written (a failure leaves the caches as they were).
fn check_cached(op: &str, pairs: &[(&CudaBuf, &CudaBuf)], past: &CudaBuf) -> Result<(), OpError> {
    if past.dtype != DType::I64 || past.numel() != 1 {
        op_bail!("{op}: the token count must be one int64, got {:?} {:?}", past.dtype, past.shape);
    }
    for (new, cache) in pairs {
        expect_f32(op, "new rows", new)?;
        expect_f32(op, "cache", cache)?;
        let (ns, cs) = (&new.shape, &cache.shape);
        if ns.len() != 3 || cs.len() != 3 || ns[0] != cs[0] || ns[2] != cs[2] || ns[1] > cs[1] {
            op_bail!("{op}: new rows {ns:?} do not fit cache {cs:?}");
        }
    }
    Ok(())
}

/// sparse.cu `SparseParams`: the dims, the value columns of one launch, the scale.
#[repr(C)]
#[derive(Clone, Copy)]
struct SparseParams {
    b: i64,
    t: i64,
    s: i64,
    hq: i64,
    hkv: i64,
    dk: i64,
    dv: i64,
    kk: i64,
    dv0: i64,
    dvc: i64,
    scale: f32,
    pad: i32,
}

/// sparse.cu `SparseTiledParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SparseTiledParams {
    d: SparseParams,
    /// Index entries per split (a multiple of SPA_NK).
    kps: i64,
    splits: i32,
    /// Blocks per kv head (16 query heads each).
    hg: i32,
    /// Dk rounded up to SPA_DC.
    dkp: i32,
    /// 16-byte copies.
    vec: i32,
}
device_repr!(SparseParams, SparseTiledParams);

/// lt2::SparseAttention over the positions in `idx` [B, T, K] (-1 skipped).
pub(crate) fn sparse_attention(cu: &Cuda, [q, k, v]: [&CudaBuf; 3], idx: &CudaBuf, q_heads: usize, kv_heads: usize, scale: f32) -> Result<CudaBuf, OpError> {
    let op = "sparse_attention";
    for (what, t) in [("query", q), ("key", k), ("value", v)] {
        expect_f32(op, what, t)?;
    }
    if idx.dtype != DType::I64 {
        op_bail!("{op}: indices must be int64");
    }
    let SparseDims { b, t, s, kk, dk, dv } = sparse_dims([&q.shape, &k.shape, &v.shape, &idx.shape], q_heads, kv_heads)?;
    let scale = if scale == 0.0 { (1.0 / (dk as f64).sqrt()) as f32 } else { scale };
    let out_shape = vec![b, t, q_heads * dv];
    if b * t * q_heads * dv == 0 || kk == 0 {
        return cu.zeros(out_shape, DType::F32);
    }
    let out = cu.alloc(out_shape, DType::F32)?;
    let [b, t, s, hq, hkv, dk, dv, kk] = [b, t, s, q_heads, kv_heads, dk, dv, kk].map(|x| x as i64);
    let p = SparseParams { b, t, s, hq, hkv, dk, dv, kk, dv0: 0, dvc: 0, scale, pad: 0 };
    let dkp = (dk as usize).div_ceil(SPA_DC) * SPA_DC;
    let smem = (SPA_G * (dkp + 4) + 2 * SPA_BUF + SPA_NK * SPA_G + 3 * SPA_G) * 4 + SPA_NK * 4;
    let ins = [q, k, v, idx];
    if smem <= smem_optin(cu) {
        sparse_tiled(cu, ins, &out, p, dkp, smem)?;
    } else {
        sparse_untiled(cu, ins, &out, p)?;
    }
    Ok(out)
}

/// The tiled kernel (sparse.cu `lt2_sparse_attention_tiled_f32`): a block per query row, kv head
/// and 16 query heads; where those are too few blocks, the index lists split over blocks and
/// `lt2_sparse_combine_f32` merges the parts.
fn sparse_tiled(cu: &Cuda, [q, k, v, idx]: [&CudaBuf; 4], out: &CudaBuf, d: SparseParams, dkp: usize, smem: usize) -> Result<(), OpError> {
    let [b, t, hq, hkv, kk, dv] = [d.b, d.t, d.hq, d.hkv, d.kk, d.dv].map(|x| x as usize);
    let hg = (hq / hkv).div_ceil(SPA_G);
    let rows = b * t * hkv * hg;
    let chunks = kk.div_ceil(SPA_NK);
    let want = SPA_TARGET_BLOCKS.div_ceil(rows).clamp(1, chunks.min(SPA_MAX_SPLITS));
    let kps = chunks.div_ceil(want) * SPA_NK;
    let splits = kk.div_ceil(kps);
    let vec = [q, k, v].iter().all(|x| x.ptr() % 16 == 0) && d.dk % 4 == 0 && dv % 4 == 0;
    let mut p = SparseTiledParams { d, kps: kps as i64, splits: splits as i32, hg: hg as i32, dkp: dkp as i32, vec: vec as i32 };
    allow_smem(cu, Kernel::SparseAttentionTiled, smem)?;
    let part = if splits > 1 { Some(cu.alloc(vec![b * t * hq * splits * (SPA_DVC.min(dv) + 2)], DType::F32)?) } else { None };
    let part_ptr = part.as_ref().map_or(0, |x| x.ptr());
    let cfg = LaunchConfig { grid_dim: (rows as u32, splits as u32, 1), block_dim: (SPA_THREADS, 1, 1), shared_mem_bytes: smem as u32 };
    for dv0 in (0..dv).step_by(SPA_DVC) {
        (p.d.dv0, p.d.dvc) = (dv0 as i64, SPA_DVC.min(dv - dv0) as i64);
        launch!(cu, Kernel::SparseAttentionTiled, cfg, q.ptr(), k.ptr(), v.ptr(), idx.ptr(), out.ptr(), part_ptr, p, cu.err_ptr())?;
        if part.is_some() {
            let cfg = LaunchConfig { grid_dim: ((b * t * hq) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
            launch!(cu, Kernel::SparseCombine, cfg, part_ptr, out.ptr(), splits as i32, p.d.dv, p.d.dv0, p.d.dvc)?;
        }
    }
    Ok(())
}

/// The untiled kernel (a warp per query row and head), for head dims whose tiles do not fit.
fn sparse_untiled(cu: &Cuda, [q, k, v, idx]: [&CudaBuf; 4], out: &CudaBuf, mut p: SparseParams) -> Result<(), OpError> {
    let warps = (p.b * p.t * p.hq) as usize;
    let cfg = LaunchConfig { grid_dim: (warps.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let dv = p.dv as usize;
    for dv0 in (0..dv).step_by(DV_PER_LAUNCH) {
        (p.dv0, p.dvc) = (dv0 as i64, DV_PER_LAUNCH.min(dv - dv0) as i64);
        launch!(cu, Kernel::SparseAttention, cfg, q.ptr(), k.ptr(), v.ptr(), idx.ptr(), out.ptr(), p, cu.err_ptr())?;
    }
    Ok(())
}
