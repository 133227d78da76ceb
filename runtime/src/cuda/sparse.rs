//! Launch wrappers for the lightning indexer and sparse attention. Semantics: `cpu/sparse.rs`.

use cudarc::driver::LaunchConfig;

use crate::cpu::sparse::{indexer_dims, sparse_dims, IndexerDims, SparseDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;

use super::attention::DV_PER_LAUNCH;
use super::kernels::Kernel;
use super::{device_repr, expect_f32, grid_for, launch, Cuda, CudaBuf};

/// lt2::LightningIndexer: int64 [B, T, top_k] positions, highest score first, -1 padded.
pub(crate) fn lightning_indexer(cu: &Cuda, q: &CudaBuf, k: &CudaBuf, w: Option<&CudaBuf>, heads: usize, top_k: usize, score: &str) -> Result<CudaBuf, OpError> {
    let op = "lightning_indexer";
    expect_f32(op, "q_index", q)?;
    expect_f32(op, "k_index", k)?;
    let IndexerDims { b, t, s, d, weighted } = indexer_dims([&q.shape, &k.shape], w.map(|w| &w.shape[..]), heads, score)?;
    if let Some(w) = w.filter(|_| weighted) {
        expect_f32(op, "weights", w)?;
    }
    let out = cu.alloc(vec![b, t, top_k], DType::I64)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let scores = cu.alloc(vec![b, t, s], DType::F32)?;
    let dims = [b as i64, t as i64, s as i64, heads as i64, d as i64];
    launch!(cu, Kernel::IndexerScores, grid_for(b * t * s, 256), q.ptr(), k.ptr(), w.map_or(0, |w| w.ptr()), scores.ptr(), dims[0], dims[1], dims[2], dims[3], dims[4])?;
    let cfg = LaunchConfig { grid_dim: ((b * t) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    launch!(cu, Kernel::IndexerTopK, cfg, scores.ptr(), out.ptr(), t as i64, s as i64, top_k as i64)?;
    Ok(out)
}

/// sparse.cu `SparseParams`.
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
device_repr!(SparseParams);

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
    let out = cu.alloc(vec![b, t, q_heads * dv], DType::F32)?;
    let warps = b * t * q_heads;
    if out.numel() == 0 {
        return Ok(out);
    }
    let mut p = SparseParams { b: b as i64, t: t as i64, s: s as i64, hq: q_heads as i64, hkv: kv_heads as i64, dk: dk as i64, dv: dv as i64, kk: kk as i64, dv0: 0, dvc: 0, scale, pad: 0 };
    let cfg = LaunchConfig { grid_dim: (warps.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    for dv0 in (0..dv).step_by(DV_PER_LAUNCH) {
        (p.dv0, p.dvc) = (dv0 as i64, DV_PER_LAUNCH.min(dv - dv0) as i64);
        launch!(cu, Kernel::SparseAttention, cfg, q.ptr(), k.ptr(), v.ptr(), idx.ptr(), out.ptr(), p, cu.err_ptr())?;
    }
    Ok(out)
}
