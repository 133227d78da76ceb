//! Launch wrapper for rotary position embedding. Semantics: `cpu/rope.rs`.

use crate::cpu::rope::{rope_dims, RopeDims};
use crate::error::OpError;
use crate::plan::DType;

use super::kernels::Kernel;
use super::{device_repr, expect_f32, grid_for, launch, Cuda, CudaBuf};

/// rope.cu `RopeParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RopeParams {
    b: i64,
    l: i64,
    h: i64,
    d: i64,
    half: i64,
    p: i64,
    interleaved: i32,
    heads_first: i32,
}
device_repr!(RopeParams);

/// Rotates x [B, L, H*D] or [B, H, L, D] by cos/sin rows picked by position_ids (or per (b, l)).
pub(crate) fn rope(cu: &Cuda, [x, cos, sin]: [&CudaBuf; 3], position_ids: Option<&CudaBuf>, num_heads: usize, interleaved: bool, rotary_dim: usize) -> Result<CudaBuf, OpError> {
    let op = "rope";
    for (what, t) in [("x", x), ("cos", cos), ("sin", sin)] {
        expect_f32(op, what, t)?;
    }
    let RopeDims { nb, l, h, d, half, heads_first, positions } = rope_dims([&x.shape, &cos.shape, &sin.shape], position_ids.map(|p| (&p.shape[..], p.dtype)), num_heads, rotary_dim)?;
    let out = cu.alloc(x.shape.clone(), DType::F32)?;
    if 2 * half < d {
        // Dims past the rotary ones pass through; with rotary_dim == D the kernel writes every element.
        cu.copy_dtod(out.ptr(), x.ptr(), x.nbytes())?;
    }
    let n = nb * l * h * half;
    if n > 0 {
        let p = RopeParams { b: nb as i64, l: l as i64, h: h as i64, d: d as i64, half: half as i64, p: positions as i64, interleaved: interleaved as i32, heads_first: heads_first as i32 };
        launch!(cu, Kernel::Rope, grid_for(n, 256), x.ptr(), cos.ptr(), sin.ptr(), position_ids.map_or(0, |b| b.ptr()), out.ptr(), p, cu.err_ptr())?;
    }
    Ok(out)
}
