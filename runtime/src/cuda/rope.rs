//! Launch wrapper for rotary position embedding. Semantics: `cpu/rope.rs`.

use crate::error::OpError;
use crate::op_bail;
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
    let (nb, l, h, d, heads_first) = match *x.shape.as_slice() {
        [nb, l, hd] => {
            if num_heads == 0 || hd % num_heads != 0 {
                op_bail!("{op}: hidden size {hd} of x {:?} is not divisible by num_heads {num_heads}", x.shape);
            }
            (nb, l, num_heads, hd / num_heads, false)
        }
        [nb, h, l, d] => {
            if num_heads != 0 && num_heads != h {
                op_bail!("{op}: num_heads {num_heads} disagrees with x [B, H, L, D] = {:?}", x.shape);
            }
            (nb, l, h, d, true)
        }
        _ => op_bail!("{op}: x must be [B, L, H*D] or [B, H, L, D], got shape {:?}", x.shape),
    };
    let r = if rotary_dim == 0 { d } else { rotary_dim };
    if r > d || r % 2 != 0 {
        op_bail!("{op}: rotary_dim {r} must be even and at most the head size {d}");
    }
    let half = r / 2;
    if cos.shape != sin.shape {
        op_bail!("{op}: cos {:?} and sin {:?} differ in shape", cos.shape, sin.shape);
    }
    let positions = match position_ids {
        Some(p) => {
            if p.dtype != DType::I64 {
                op_bail!("{op}: position_ids must be int64, got {:?}", p.dtype);
            }
            if p.shape != [nb, l] {
                op_bail!("{op}: position_ids must be [B, L] = [{nb}, {l}], got {:?}", p.shape);
            }
            let &[np, w] = cos.shape.as_slice() else { op_bail!("{op}: with position_ids, cos/sin must be [P, R/2], got {:?}", cos.shape) };
            if w != half {
                op_bail!("{op}: cos/sin last dim {w} must be R/2 = {half}");
            }
            np
        }
        None => {
            if cos.shape != [nb, l, half] {
                op_bail!("{op}: without position_ids, cos/sin must be [B, L, R/2] = [{nb}, {l}, {half}], got {:?}", cos.shape);
            }
            nb * l
        }
    };
    let out = cu.alloc(x.shape.clone(), DType::F32)?;
    cu.copy_dtod(out.ptr(), x.ptr(), x.nbytes())?;
    let n = nb * l * h * half;
    if n > 0 {
        let p = RopeParams { b: nb as i64, l: l as i64, h: h as i64, d: d as i64, half: half as i64, p: positions as i64, interleaved: interleaved as i32, heads_first: heads_first as i32 };
        launch!(cu, Kernel::Rope, grid_for(n, 256), x.ptr(), cos.ptr(), sin.ptr(), position_ids.map_or(0, |b| b.ptr()), out.ptr(), p, cu.err_ptr())?;
    }
    Ok(out)
}
