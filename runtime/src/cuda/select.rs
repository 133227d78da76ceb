//! Launch wrappers for Softmax, Where, Compare, Cast, Trilu and TopK. Semantics:
//! `cpu/select.rs`.

use std::collections::HashMap;

use cudarc::driver::LaunchConfig;

use crate::cpu::shape::{broadcast_shape, norm_axis};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{CompareKind, DType};

use super::elementwise::bcast;
use super::kernels::{Kernel, Ty, Width};
use super::{dtype_size, expect_f32, grid_for, launch, Cuda, CudaBuf};

/// Softmax along `axis` (a scalar gives 1).
pub(crate) fn softmax(cu: &Cuda, x: &CudaBuf, axis: i64) -> Result<CudaBuf, OpError> {
    expect_f32("softmax", "x", x)?;
    let ax = norm_axis("softmax", axis, x.shape.len().max(1))?;
    if x.shape.is_empty() {
        return cu.upload_bytes(&1f32.to_le_bytes(), vec![], DType::F32, true);
    }
    let n = x.shape[ax];
    let inner: usize = x.shape[ax + 1..].iter().product();
    let outer: usize = x.shape[..ax].iter().product();
    let out = cu.alloc(x.shape.clone(), DType::F32)?;
    let rows = outer * inner;
    if rows > 0 && n > 0 {
        // One warp per row, 8 per block.
        let cfg = LaunchConfig { grid_dim: (rows.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(cu, Kernel::Softmax, cfg, x.ptr(), out.ptr(), outer as i64, n as i64, inner as i64)?;
    }
    Ok(out)
}

/// Where(cond, a, b) with three-way broadcasting.
pub(crate) fn where_(cu: &Cuda, c: &CudaBuf, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf, OpError> {
    if c.dtype != DType::Bool {
        op_bail!("where: condition must be bool, got {:?}", c.dtype);
    }
    if a.dtype != b.dtype {
        op_bail!("where: branches differ in dtype ({:?} vs {:?})", a.dtype, b.dtype);
    }
    let shape = broadcast_shape("where", &broadcast_shape("where", &c.shape, &a.shape)?, &b.shape)?;
    let p = bcast("where", &shape, &[&c.shape, &a.shape, &b.shape])?;
    let out = cu.alloc(shape, a.dtype)?;
    if p.n_elems() > 0 {
        let k = Kernel::Where(Width::of_bytes(dtype_size(a.dtype)));
        launch!(cu, k, grid_for(p.n_elems(), 256), c.ptr(), a.ptr(), b.ptr(), out.ptr(), p)?;
    }
    Ok(out)
}

/// Comparisons (f32 or i64) and logic (bool) -> bool, with broadcasting; Not takes one operand.
pub(crate) fn compare(cu: &Cuda, a: &CudaBuf, b: Option<&CudaBuf>, kind: CompareKind) -> Result<CudaBuf, OpError> {
    let op = format!("compare {kind:?}");
    if kind == CompareKind::Not {
        if a.dtype != DType::Bool {
            op_bail!("{op}: operand must be bool");
        }
        let p = bcast(&op, &a.shape, &[&a.shape, &a.shape])?;
        let out = cu.alloc(a.shape.clone(), DType::Bool)?;
        if p.n_elems() > 0 {
            launch!(cu, Kernel::Compare(Ty::Bool), grid_for(p.n_elems(), 256), a.ptr(), a.ptr(), out.ptr(), kind as i32, p)?;
        }
        return Ok(out);
    }
    let b = b.ok_or_else(|| OpError::new(format!("{op}: needs two operands")))?;
    if a.dtype != b.dtype {
        op_bail!("{op}: operand dtypes differ ({:?} vs {:?})", a.dtype, b.dtype);
    }
    let logic = matches!(kind, CompareKind::And | CompareKind::Or);
    let ty = match a.dtype {
        DType::Bool if logic || kind == CompareKind::Eq => Ty::Bool,
        _ if logic => op_bail!("{op}: operands must be bool"),
        DType::F32 => Ty::F32,
        DType::I64 => Ty::I64,
        d => op_bail!("{op}: {d:?} operands are not supported"),
    };
    let shape = broadcast_shape(&op, &a.shape, &b.shape)?;
    let p = bcast(&op, &shape, &[&a.shape, &b.shape])?;
    let out = cu.alloc(shape, DType::Bool)?;
    if p.n_elems() > 0 {
        launch!(cu, Kernel::Compare(ty), grid_for(p.n_elems(), 256), a.ptr(), b.ptr(), out.ptr(), kind as i32, p)?;
    }
    Ok(out)
}

/// Converts between f32, i64 and bool (f32 -> i64 truncates toward zero).
pub(crate) fn cast(cu: &Cuda, x: &CudaBuf, to: DType) -> Result<CudaBuf, OpError> {
    if x.dtype == to {
        return Ok(x.clone());
    }
    let out = cu.alloc(x.shape.clone(), to)?;
    let n = x.numel();
    if x.dtype == DType::F32 && matches!(to, DType::Bf16 | DType::F16) && n % 4 == 0 && n > 0 {
        launch!(cu, Kernel::CastHalf4, grid_for(n / 4, 256), x.ptr(), out.ptr(), (to == DType::F16) as i32, (n / 4) as i64)?;
    } else if n > 0 {
        launch!(cu, Kernel::Cast, grid_for(n, 256), x.ptr(), out.ptr(), x.dtype as i32, to as i32, n as i64)?;
    }
    Ok(out)
}

/// Keeps the lower (or upper) triangle of the last two dims.
pub(crate) fn trilu(cu: &Cuda, x: &CudaBuf, upper: bool, k: i64) -> Result<CudaBuf, OpError> {
    let r = x.shape.len();
    if r < 2 {
        op_bail!("trilu: input must have rank >= 2, got {:?}", x.shape);
    }
    let (rows, cols) = (x.shape[r - 2], x.shape[r - 1]);
    let out = cu.alloc(x.shape.clone(), x.dtype)?;
    let n = x.numel();
    if n > 0 {
        let kern = Kernel::Trilu(Width::of_bytes(dtype_size(x.dtype)));
        launch!(cu, kern, grid_for(n, 256), x.ptr(), out.ptr(), n as i64, rows as i64, cols as i64, upper as i32, k)?;
    }
    Ok(out)
}

/// TopK along `axis`: (values, int64 indices), sorted, ties to the lower index.
pub(crate) fn top_k(cu: &Cuda, x: &CudaBuf, axis: i64, largest: bool, k: &str, env: &HashMap<String, i64>) -> Result<(CudaBuf, CudaBuf), OpError> {
    expect_f32("top_k", "x", x)?;
    let ax = norm_axis("top_k", axis, x.shape.len())?;
    let k = crate::dim::Dim::parse(k).and_then(|d| d.eval(env)).map_err(|e| OpError::new(format!("top_k: k: {e}")))?;
    let n = x.shape[ax];
    if k < 0 || k as usize > n {
        op_bail!("top_k: k = {k} is outside 0..={n} (the size of axis {ax})");
    }
    let inner: usize = x.shape[ax + 1..].iter().product();
    let outer: usize = x.shape[..ax].iter().product();
    let mut shape = x.shape.clone();
    shape[ax] = k as usize;
    let vals = cu.alloc(shape.clone(), DType::F32)?;
    let idxs = cu.alloc(shape, DType::I64)?;
    let rows = outer * inner;
    if rows > 0 && k > 0 {
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        launch!(cu, Kernel::TopK, cfg, x.ptr(), vals.ptr(), idxs.ptr(), outer as i64, n as i64, inner as i64, k, largest as i32)?;
    }
    Ok((vals, idxs))
}

#[cfg(test)]
mod tests {
    use crate::backend::Backend;
    use crate::plan::DType;
    use crate::precision::round_in_place;
    use crate::tensor::Tensor;


    /// The device's f32 -> bf16 / fp16 casts (four at a time, and the one-element kernel for
    /// lengths 4 does not divide) round exactly as the CPU does, ties and extremes included, and
    /// widen back exactly.
    #[test]
    fn half_casts_round_as_the_cpu() {
        let Some(cu) = crate::cuda::test_backend() else { return };
        let mut x: Vec<f32> = vec![1.0 + 2f32.powi(-9), 1.0 + 3.0 * 2f32.powi(-9), -0.0, 65504.0, 1e-8, -3.0e38, f32::INFINITY];
        let mut s = 7u32;
        while x.len() < 4099 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            x.push(f32::from_bits(s & 0x7f7f_ffff | (s & 1) << 31));
        }
        for n in [4096usize, 4099] {
            for d in [DType::Bf16, DType::F16] {
                let xs = x[..n].to_vec();
                let buf = cu.upload(&Tensor::f32(vec![n], xs.clone())).unwrap();
                let half = super::cast(&cu, &buf, d).unwrap();
                // Back to f32 (a 16-bit K/V cache read by an fp32 kernel): exact.
                let wide = cu.download(&super::cast(&cu, &half, DType::F32).unwrap()).unwrap();
                let got = cu.download(&half).unwrap();
                assert_eq!(wide.as_f32().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>(), got.as_f32().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{d:?} widened");
                let mut want = xs;
                round_in_place(d, &mut want);
                let got = got.as_f32().unwrap();
                let bad = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan())).count();
                assert_eq!(bad, 0, "{d:?}, {n} elements: {bad} differ");
            }
        }
    }
}
