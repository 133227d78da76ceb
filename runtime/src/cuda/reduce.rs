//! Launch wrappers for ReduceSum / ReduceMean / ReduceMax and CumSum. Semantics: `cpu/reduce.rs`.

use cudarc::driver::LaunchConfig;

use crate::cpu::reduce::reduced_axes;
use crate::cpu::shape::strides;
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{DType, ReduceKind};

use super::elementwise::{collapse, MAX_RANK};
use super::kernels::{Kernel, Ty};
use super::{device_repr, grid_for, launch, Cuda, CudaBuf};

/// reduce.cu `ReduceParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ReduceParams {
    out_rank: i32,
    red_rank: i32,
    n_out: i64,
    count: i64,
    out_dims: [i64; MAX_RANK],
    out_st: [i64; MAX_RANK],
    red_dims: [i64; MAX_RANK],
    red_st: [i64; MAX_RANK],
}
device_repr!(ReduceParams);

/// Reduces `x` over `axes` (empty = all), keeping them as size-1 dims when `keepdims`.
pub(crate) fn reduce(cu: &Cuda, x: &CudaBuf, kind: ReduceKind, axes: &[i64], keepdims: bool) -> Result<CudaBuf, OpError> {
    let op = format!("reduce {kind:?}");
    let r = x.shape.len();
    let reduced = reduced_axes(&op, axes, r)?;
    let ty = match x.dtype {
        DType::F32 => Ty::F32,
        DType::I64 => Ty::I64,
        d => op_bail!("{op}: {d:?} input is not supported"),
    };
    let count: usize = (0..r).filter(|&d| reduced[d]).map(|d| x.shape[d]).product();
    if ty == Ty::I64 && kind == ReduceKind::Mean && count == 0 {
        op_bail!("{op}: int64 mean over an empty set");
    }
    let shape: Vec<usize> = (0..r).filter_map(|d| if reduced[d] { keepdims.then_some(1) } else { Some(x.shape[d]) }).collect();
    let out = cu.alloc(shape, x.dtype)?;
    let n_out = out.numel();
    if n_out == 0 {
        return Ok(out);
    }
    let st = strides(&x.shape);
    let split = |want: bool| {
        let dims: Vec<usize> = (0..r).filter(|&d| reduced[d] == want).map(|d| x.shape[d]).collect();
        let s: Vec<isize> = (0..r).filter(|&d| reduced[d] == want).map(|d| st[d] as isize).collect();
        let (d, s) = collapse(&dims, &[s]);
        (d, s.into_iter().next().unwrap_or_default())
    };
    let (od, os) = split(false);
    let (rd, rs) = split(true);
    if od.len() > MAX_RANK || rd.len() > MAX_RANK {
        op_bail!("{op}: more than {MAX_RANK} non-mergeable dims");
    }
    let mut p = ReduceParams {
        out_rank: od.len() as i32,
        red_rank: rd.len() as i32,
        n_out: n_out as i64,
        count: count as i64,
        out_dims: [1; MAX_RANK],
        out_st: [0; MAX_RANK],
        red_dims: [1; MAX_RANK],
        red_st: [0; MAX_RANK],
    };
    p.out_dims[..od.len()].copy_from_slice(&od);
    p.out_st[..os.len()].copy_from_slice(&os);
    p.red_dims[..rd.len()].copy_from_slice(&rd);
    p.red_st[..rs.len()].copy_from_slice(&rs);
    // One warp per output element, 8 warps per block.
    let cfg = LaunchConfig { grid_dim: (n_out.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(cu, Kernel::Reduce(ty), cfg, x.ptr(), out.ptr(), kind as i32, p)?;
    Ok(out)
}

/// Running sums of `x` along `axis` (CumSum).
pub(crate) fn cumsum(cu: &Cuda, x: &CudaBuf, axis: i64, exclusive: bool, reverse: bool) -> Result<CudaBuf, OpError> {
    let a = crate::cpu::shape::norm_axis("cumsum", axis, x.shape.len())?;
    let ty = match x.dtype {
        DType::F32 => Ty::F32,
        DType::I64 => Ty::I64,
        d => op_bail!("cumsum: {d:?} input is not supported (f32 or int64)"),
    };
    let out = cu.alloc(x.shape.clone(), x.dtype)?;
    let n = x.shape[a];
    let inner: usize = x.shape[a + 1..].iter().product();
    let outer: usize = x.shape[..a].iter().product();
    if out.numel() == 0 {
        return Ok(out);
    }
    launch!(cu, Kernel::CumSum(ty), grid_for(outer * inner, 256), x.ptr(), out.ptr(), outer as i64, n as i64, inner as i64, exclusive as i32, reverse as i32)?;
    Ok(out)
}
