//! Launch wrapper for RMSNormalization. Semantics: `cpu/norm.rs`.

use cudarc::driver::LaunchConfig;

use crate::cpu::norm::rms_norm_axis;
use crate::error::OpError;

use super::kernels::Kernel;
use super::{expect_f32, launch, shape, Cuda, CudaBuf};

/// `x / sqrt(mean(x^2 over dims axis..) + eps) * scale`, `scale` broadcast to those dims.
pub(crate) fn rms_norm(cu: &Cuda, x: &CudaBuf, scale: &CudaBuf, eps: f32, axis: i64) -> Result<CudaBuf, OpError> {
    expect_f32("rms_norm", "x", x)?;
    expect_f32("rms_norm", "scale", scale)?;
    let axis = rms_norm_axis(&x.shape, &scale.shape, axis)?;
    let inner = &x.shape[axis..];
    let n: usize = inner.iter().product();
    let rows: usize = x.shape[..axis].iter().product();
    // A scale that is not already the full [inner] block is broadcast once.
    let full = if scale.numel() == n { scale.clone() } else { shape::broadcast_to(cu, scale, inner)? };
    let out = cu.alloc(x.shape.clone(), x.dtype)?;
    if n == 0 || rows == 0 {
        return Ok(out);
    }
    if n <= 1024 {
        // One warp per row (rms_norm.cu lt2_rms_norm_rows_f32).
        let cfg = LaunchConfig { grid_dim: (rows.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(cu, Kernel::RmsNormRows, cfg, x.ptr(), full.ptr(), out.ptr(), rows as i64, n as i64, eps)?;
        return Ok(out);
    }
    let threads = 512;
    let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    launch!(cu, Kernel::RmsNorm, cfg, x.ptr(), full.ptr(), out.ptr(), rows as i64, n as i64, eps)?;
    Ok(out)
}
