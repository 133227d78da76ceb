//! Launch wrappers for shape and indexing ops (Embed, Gather, Reshape, Transpose, Expand,
//! Range, Concat, Slice): host-side shape logic shared with `cpu/shape.rs`, data movement by
//! one strided-copy kernel (layout.cu) and one gather kernel (gather.cu).

use std::collections::HashMap;

use crate::cpu::shape::{broadcast_shape, broadcast_strides, concat_shape, eval_dims, norm_axis, slice_view, strides, transpose_perm};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;

use super::elementwise::{collapse, MAX_RANK};
use super::kernels::{Kernel, Width};
use super::{device_repr, dtype_size, grid_for, launch, Cuda, CudaBuf};

/// layout.cu `CopyParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CopyParams {
    rank: i32,
    pad: i32,
    n: i64,
    src_base: i64,
    dst_base: i64,
    dims: [i64; MAX_RANK],
    src_st: [i64; MAX_RANK],
    dst_st: [i64; MAX_RANK],
}
device_repr!(CopyParams);

/// Copies the strided view (`src_base`, `src_st`) of `src` over `dims` into the strided view
/// (`dst_base`, `dst_st`) of `dst` (offsets in elements).
fn copy_view(cu: &Cuda, src: &CudaBuf, src_base: isize, src_st: Vec<isize>, dims: &[usize], dst: &CudaBuf, dst_base: isize, dst_st: Vec<isize>) -> Result<(), OpError> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    let (d, st) = collapse(dims, &[src_st, dst_st]);
    if d.len() > MAX_RANK {
        op_bail!("copy: a view with {} non-mergeable dims is more than the CUDA backend's {MAX_RANK}", d.len());
    }
    let mut p = CopyParams {
        rank: d.len() as i32,
        pad: 0,
        n: n as i64,
        src_base: src_base as i64,
        dst_base: dst_base as i64,
        dims: [1; MAX_RANK],
        src_st: [0; MAX_RANK],
        dst_st: [0; MAX_RANK],
    };
    p.dims[..d.len()].copy_from_slice(&d);
    p.src_st[..d.len()].copy_from_slice(&st[0]);
    p.dst_st[..d.len()].copy_from_slice(&st[1]);
    let contiguous = d.len() == 1 && st[0][0] == 1 && st[1][0] == 1;
    let es = dtype_size(src.dtype);
    if contiguous {
        return cu.copy_dtod(dst.ptr() + (dst_base as usize * es) as u64, src.ptr() + (src_base as usize * es) as u64, n * es);
    }
    launch!(cu, Kernel::Copy(Width::of_bytes(es)), grid_for(n, 256), src.ptr(), dst.ptr(), p)
}

/// A new contiguous tensor of `shape` holding the strided view (`base`, `st`) of `x`.
fn gather_view(cu: &Cuda, x: &CudaBuf, shape: Vec<usize>, st: Vec<isize>, base: isize) -> Result<CudaBuf, OpError> {
    let out = cu.alloc(shape.clone(), x.dtype)?;
    let dst_st = strides(&shape).into_iter().map(|s| s as isize).collect();
    copy_view(cu, x, base, st, &shape, &out, 0, dst_st)?;
    Ok(out)
}

/// `x` broadcast (numpy rules) to exactly `shape`, materialised.
pub(crate) fn broadcast_to(cu: &Cuda, x: &CudaBuf, shape: &[usize]) -> Result<CudaBuf, OpError> {
    gather_view(cu, x, shape.to_vec(), broadcast_strides(&x.shape, shape), 0)
}

/// Embed: rows of `table` [N, ...] picked by int64 `ids` (Gather on axis 0).
pub(crate) fn embed(cu: &Cuda, table: &CudaBuf, ids: &CudaBuf) -> Result<CudaBuf, OpError> {
    if table.shape.is_empty() {
        op_bail!("embed: table must have rank >= 1, got a scalar");
    }
    gather_impl(cu, "embed", table, ids, 0)
}

/// ONNX Gather along `axis`; out-of-range indices are reported at the next download.
pub(crate) fn gather(cu: &Cuda, data: &CudaBuf, indices: &CudaBuf, axis: i64) -> Result<CudaBuf, OpError> {
    gather_impl(cu, "gather", data, indices, axis)
}

fn gather_impl(cu: &Cuda, op: &str, data: &CudaBuf, indices: &CudaBuf, axis: i64) -> Result<CudaBuf, OpError> {
    if indices.dtype != DType::I64 {
        op_bail!("{op}: indices must be int64, got {:?}", indices.dtype);
    }
    if data.shape.is_empty() {
        op_bail!("{op}: data must have rank >= 1, got a scalar");
    }
    let axis = norm_axis(op, axis, data.shape.len())?;
    let s = data.shape[axis];
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    let out = cu.alloc(shape, data.dtype)?;
    let n = out.numel();
    if n > 0 {
        let k = Kernel::Gather(Width::of_bytes(dtype_size(data.dtype)));
        launch!(cu, k, grid_for(n, 256), data.ptr(), indices.ptr(), out.ptr(), outer as i64, s as i64, inner as i64, indices.numel() as i64, cu.err_ptr())?;
    }
    Ok(out)
}

/// Reshape to dim expressions evaluated with `env`: the same memory, a new shape.
pub(crate) fn reshape(x: &CudaBuf, shape: &[String], env: &HashMap<String, i64>) -> Result<CudaBuf, OpError> {
    let dims = eval_dims("reshape", shape, env)?;
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(x.numel()) {
        op_bail!("reshape: cannot reshape {:?} ({} elements) to {:?} = {dims:?}", x.shape, x.numel(), shape);
    }
    Ok(x.with_shape(dims))
}

/// ONNX Transpose.
pub(crate) fn transpose(cu: &Cuda, x: &CudaBuf, perm: &[i64]) -> Result<CudaBuf, OpError> {
    let perm = transpose_perm(perm, x.shape.len())?;
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let view: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    gather_view(cu, x, shape, view, 0)
}

/// ONNX Expand (bidirectional broadcast with the evaluated `shape`).
pub(crate) fn expand(cu: &Cuda, x: &CudaBuf, shape: &[String], env: &HashMap<String, i64>) -> Result<CudaBuf, OpError> {
    let target = eval_dims("expand", shape, env)?;
    let out = broadcast_shape("expand", &x.shape, &target)?;
    broadcast_to(cu, x, &out)
}

/// Range: int64 [n] with start + i * delta.
pub(crate) fn range(cu: &Cuda, start: i64, delta: i64, size: &String, env: &HashMap<String, i64>) -> Result<CudaBuf, OpError> {
    let n = eval_dims("range", std::slice::from_ref(size), env)?[0];
    // The values are monotone, so only the last can overflow first.
    if n > 0 && (n as i64 - 1).checked_mul(delta).and_then(|d| d.checked_add(start)).is_none() {
        op_bail!("range: start {start} + {} * delta {delta} overflows int64", n - 1);
    }
    let out = cu.alloc(vec![n], DType::I64)?;
    if n > 0 {
        launch!(cu, Kernel::Range, grid_for(n, 256), out.ptr(), start, delta, n as i64)?;
    }
    Ok(out)
}

/// ONNX Concat: one copy per input into its slab of the output.
pub(crate) fn concat(cu: &Cuda, xs: &[&CudaBuf], axis: i64) -> Result<CudaBuf, OpError> {
    let sigs: Vec<(&[usize], DType)> = xs.iter().map(|x| (x.shape.as_slice(), x.dtype)).collect();
    let (axis, shape) = concat_shape(&sigs, axis)?;
    let out = cu.alloc(shape.clone(), xs[0].dtype)?;
    let ost: Vec<isize> = strides(&shape).into_iter().map(|s| s as isize).collect();
    let mut at = 0usize;
    for x in xs {
        let xst = strides(&x.shape).into_iter().map(|s| s as isize).collect();
        copy_view(cu, x, 0, xst, &x.shape, &out, (at * ost[axis] as usize) as isize, ost.clone())?;
        at += x.shape[axis];
    }
    Ok(out)
}

/// ONNX Slice with constant bounds.
pub(crate) fn slice(cu: &Cuda, x: &CudaBuf, axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<CudaBuf, OpError> {
    let (shape, view, base) = slice_view(&x.shape, axes, starts, ends, steps)?;
    gather_view(cu, x, shape, view, base)
}
