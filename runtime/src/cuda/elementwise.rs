//! Launch wrappers for elementwise ops with numpy broadcasting (Binary, Unary); the `Bcast`
//! view they share with Compare and Where. Semantics: `cpu/elementwise.rs`.

use crate::cpu::shape::{broadcast_shape, broadcast_strides};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{BinaryKind, DType, UnaryKind};

use super::kernels::{Kernel, Ty};
use super::{device_repr, grid_for, launch, Cuda, CudaBuf};

pub(crate) const MAX_RANK: usize = 8;

/// common.cuh `Bcast`: up to three operands read with (broadcast) strides over `dims`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bcast {
    rank: i32,
    pad: i32,
    n: i64,
    dims: [i64; MAX_RANK],
    st: [[i64; MAX_RANK]; 3],
}
device_repr!(Bcast);

impl Bcast {
    /// Elements of the output.
    pub(crate) fn n_elems(&self) -> usize {
        self.n as usize
    }

    /// Whether two operands can be read four contiguous outputs at a time (elementwise.cu
    /// `lt2_binary4_f32`): the innermost dim a multiple of 4, each operand's innermost stride 0
    /// or 1 (its offsets are then multiples of 4 at every fourth output), buffers 16-byte aligned.
    fn vec4(&self, ptrs: &[u64]) -> bool {
        let r = self.rank as usize - 1;
        self.n > 0 && self.dims[r] % 4 == 0 && self.st[..2].iter().all(|s| s[r] == 0 || s[r] == 1) && aligned16(ptrs)
    }
}

/// Whether every device address is 16-byte aligned (float4 access).
pub(crate) fn aligned16(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p % 16 == 0)
}

/// Merges adjacent dims that every operand walks contiguously and drops size-1 dims, so most
/// views become rank 1 or 2. `st[k]` are operand k's strides over `dims`.
pub(crate) fn collapse(dims: &[usize], st: &[Vec<isize>]) -> (Vec<i64>, Vec<Vec<i64>>) {
    let mut od: Vec<i64> = Vec::new();
    let mut os: Vec<Vec<i64>> = vec![Vec::new(); st.len()];
    for (d, &n) in dims.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = !od.is_empty() && st.iter().enumerate().all(|(k, s)| *os[k].last().unwrap() == s[d] as i64 * n as i64);
        if mergeable {
            *od.last_mut().unwrap() *= n as i64;
            for (k, s) in st.iter().enumerate() {
                *os[k].last_mut().unwrap() = s[d] as i64;
            }
        } else {
            od.push(n as i64);
            for (k, s) in st.iter().enumerate() {
                os[k].push(s[d] as i64);
            }
        }
    }
    if od.is_empty() {
        od.push(1);
        for s in &mut os {
            s.push(0);
        }
    }
    (od, os)
}

/// The broadcast view of `shapes` (one to three operands) over their broadcast shape `out`.
pub(crate) fn bcast(op: &str, out: &[usize], shapes: &[&[usize]]) -> Result<Bcast, OpError> {
    let st: Vec<Vec<isize>> = shapes.iter().map(|s| broadcast_strides(s, out)).collect();
    let (dims, sts) = collapse(out, &st);
    if dims.len() > MAX_RANK {
        op_bail!("{op}: broadcasting over {} non-mergeable dims is more than the CUDA backend's {MAX_RANK}", dims.len());
    }
    let mut p = Bcast { rank: dims.len() as i32, pad: 0, n: out.iter().product::<usize>() as i64, dims: [1; MAX_RANK], st: [[0; MAX_RANK]; 3] };
    p.dims[..dims.len()].copy_from_slice(&dims);
    for (k, s) in sts.iter().enumerate() {
        p.st[k][..s.len()].copy_from_slice(s);
    }
    Ok(p)
}

/// Binary arithmetic with broadcasting: f32 for every kind; int64 for all but Pow.
pub(crate) fn binary(cu: &Cuda, a: &CudaBuf, b: &CudaBuf, kind: BinaryKind) -> Result<CudaBuf, OpError> {
    let op = format!("binary {kind:?}");
    if a.dtype != b.dtype {
        op_bail!("{op}: operand dtypes differ ({:?} vs {:?})", a.dtype, b.dtype);
    }
    let ty = match (a.dtype, kind) {
        (DType::F32, _) => Ty::F32,
        (DType::I64, BinaryKind::Pow | BinaryKind::SiluMul) => op_bail!("{op}: int64 operands are not supported (only f32)"),
        (DType::I64, _) => Ty::I64,
        (d, _) => op_bail!("{op}: {d:?} operands are not supported"),
    };
    let shape = broadcast_shape(&op, &a.shape, &b.shape)?;
    let p = bcast(&op, &shape, &[&a.shape, &b.shape])?;
    let out = cu.alloc(shape, a.dtype)?;
    if p.n == 0 {
        return Ok(out);
    }
    if ty == Ty::F32 && p.vec4(&[a.ptr(), b.ptr(), out.ptr()]) {
        launch!(cu, Kernel::Binary4, grid_for(p.n as usize / 4, 256), a.ptr(), b.ptr(), out.ptr(), kind as i32, p)?;
        return Ok(out);
    }
    let cfg = grid_for(p.n as usize, 256);
    match ty {
        Ty::I64 => launch!(cu, Kernel::Binary(ty), cfg, a.ptr(), b.ptr(), out.ptr(), kind as i32, p, cu.err_ptr())?,
        _ => launch!(cu, Kernel::Binary(ty), cfg, a.ptr(), b.ptr(), out.ptr(), kind as i32, p)?,
    }
    Ok(out)
}

/// Elementwise unary function on f32 (Identity: any dtype; Neg, Abs, Relu also int64).
pub(crate) fn unary(cu: &Cuda, x: &CudaBuf, kind: UnaryKind) -> Result<CudaBuf, OpError> {
    if kind == UnaryKind::Identity {
        return Ok(x.clone());
    }
    let ty = match x.dtype {
        DType::F32 => Ty::F32,
        DType::I64 if matches!(kind, UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Relu) => Ty::I64,
        DType::I64 => op_bail!("unary {kind:?}: int64 input is not supported (only f32)"),
        d => op_bail!("unary {kind:?}: {d:?} input is not supported"),
    };
    let out = cu.alloc(x.shape.clone(), x.dtype)?;
    let n = x.numel();
    if ty == Ty::F32 && n % 4 == 0 && aligned16(&[x.ptr(), out.ptr()]) {
        launch!(cu, Kernel::Unary4, grid_for(n / 4, 256), x.ptr(), out.ptr(), kind as i32, (n / 4) as i64)?;
    } else if n > 0 {
        launch!(cu, Kernel::Unary(ty), grid_for(n, 256), x.ptr(), out.ptr(), kind as i32, n as i64)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_dims_and_keeps_broadcast_ones() {
        // Same shape: one dim.
        let (d, s) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![12, 4, 1]]);
        assert_eq!(d, vec![24]);
        assert_eq!(s, vec![vec![1], vec![1]]);
        // [2,3,4] + [4] broadcast: the second operand repeats every 4.
        let (d, s) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 0, 1]]);
        assert_eq!(d, vec![6, 4]);
        assert_eq!(s, vec![vec![4, 1], vec![0, 1]]);
        // Scalar output.
        let (d, s) = collapse(&[], &[vec![], vec![]]);
        assert_eq!((d, s), (vec![1], vec![vec![0], vec![0]]));
        // Size-1 dims vanish.
        let (d, _) = collapse(&[1, 5, 1], &[vec![5, 1, 1]]);
        assert_eq!(d, vec![5]);
    }

    /// Which broadcasts take the four-outputs-per-thread kernel (`Bcast::vec4`): exactly those
    /// whose every fourth output starts a run of four contiguous (stride 1) or equal (stride 0)
    /// elements of each operand, in 16-byte aligned buffers. Host logic only: runs without a GPU.
    #[test]
    fn float4_binaries_only_where_four_outputs_read_four_aligned_elements() {
        let aligned = [0x1000u64, 0x2000, 0x3000];
        for (a, b, want) in [
            (&[4usize, 64][..], &[4usize, 64][..], true), // same shapes
            (&[3, 5, 8], &[8], true),                      // a row vector
            (&[1], &[6, 12], true),                        // a scalar
            (&[2, 3, 8], &[3, 1], true),                   // one value per row of 8
            (&[5, 7], &[5, 7], false),                     // 35 elements
            (&[4, 6], &[6], false),                        // rows of 6: a run of 4 would cross a row
            (&[8, 3], &[3], false),
            (&[2, 6], &[2, 1], false),                     // one value per row of 6
        ] {
            let out = broadcast_shape("t", a, b).unwrap();
            let p = bcast("t", &out, &[a, b]).unwrap();
            assert_eq!(p.vec4(&aligned), want, "{a:?} {b:?}: {p:?}");
        }
        let p = bcast("t", &[4, 64], &[&[4, 64], &[4, 64]]).unwrap();
        assert!(!p.vec4(&[0x1000, 0x2004, 0x3000]), "a buffer off 16-byte alignment");
        assert!(aligned16(&[0, 16, 256]) && !aligned16(&[8]));
    }
}
