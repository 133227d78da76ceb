//! Matrix products: Linear (x W + b) and ONNX MatMul with numpy batch broadcasting. f32
//! throughout, through matrixmultiply's blocked sgemm (SIMD, all cores; `MATMUL_NUM_THREADS`
//! caps the threads); products of at most 4 rows (decode steps) stream the weights instead.
//! Sums run in other orders on the two paths, so prefill and decode agree to f32 rounding.

use crate::error::OpError;
use crate::op_bail;
use crate::tensor::Tensor;

use super::shape::{broadcast_shape, broadcast_strides, expect_f32, strided_offsets};

/// Rows up to which a product streams the weights once per row instead of packing them (a
/// decode step's M is the batch: packing all of B for one row costs more than the product).
const STREAM_ROWS: usize = 4;

/// `out[m, n] = a[m, k] * b[k, n]` where b's element (p, j) lies at `b[p * rsb + j * csb]`.
fn gemm(a: &[f32], b: &[f32], (rsb, csb): (usize, usize), out: &mut [f32], m: usize, k: usize, n: usize) {
    if m > STREAM_ROWS || (rsb != 1 && csb != 1) {
        return gemm_strided(m, k, n, a, (k, 1), b, (rsb, csb), out, n);
    }
    // One thread: splitting the columns over this machine's two cores made decode slower
    // (memory-bound; measured 14.6 vs 27.5 ms per Ouro-d512 step).
    for i in 0..m {
        let (arow, orow) = (&a[i * k..(i + 1) * k], &mut out[i * n..(i + 1) * n]);
        if csb == 1 {
            // b [K, N] row-major: out row += a[p] * b row p.
            orow.fill(0.0);
            for (p, &av) in arow.iter().enumerate() {
                for (o, &bv) in orow.iter_mut().zip(&b[p * rsb..p * rsb + n]) {
                    *o += av * bv;
                }
            }
        } else {
            // b read transposed from [N, K]: one dot product per output.
            for (j, o) in orow.iter_mut().enumerate() {
                *o = dot(arow, &b[j * csb..j * csb + k]);
            }
        }
    }
}

/// x · y in 8 interleaved partial sums (vectorisable; a single running sum is not).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc.remainder().iter().zip(yc.remainder()).map(|(&a, &b)| a * b).sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `c[i * rsc + j] = sum_p a[i * rsa + p * csa] * b[p * rsb + j * csb]` for an m×k times k×n
/// product over strided views (a head's rows inside [B, L, H*D], a transposed operand).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided(m: usize, k: usize, n: usize, a: &[f32], (rsa, csa): (usize, usize), b: &[f32], (rsb, csb): (usize, usize), c: &mut [f32], rsc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            c[i * rsc..i * rsc + n].fill(0.0);
        }
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(a.len() > last(m, rsa, k, csa) && b.len() > last(k, rsb, n, csb) && c.len() > last(m, rsc, n, 1), "gemm operands too short");
    // SAFETY: the bounds above cover every element sgemm reads and writes; `c` does not alias
    // `a` or `b` (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), rsa as isize, csa as isize, b.as_ptr(), rsb as isize, csb as isize, 0.0, c.as_mut_ptr(), rsc as isize, 1);
    }
}

/// The checked dims of a Linear (shared with the CUDA backend): x is [M (flattened), K], the
/// output `shape` is x's leading dims then N.
pub(crate) struct LinearDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub shape: Vec<usize>,
}

/// Checks x [..., K], w [K, N] (or [N, K] when `transpose_w`) and bias [N].
pub(crate) fn linear_dims(x: &[usize], w: &[usize], bias: Option<&[usize]>, transpose_w: bool) -> Result<LinearDims, OpError> {
    let Some((&k, lead)) = x.split_last() else { op_bail!("linear: x must have rank >= 1, got a scalar") };
    if w.len() != 2 {
        op_bail!("linear: w must be 2-D, got shape {w:?}");
    }
    let (wk, n) = if transpose_w { (w[1], w[0]) } else { (w[0], w[1]) };
    if wk != k {
        op_bail!("linear: x {x:?} has K = {k} but w {w:?} (transpose_w = {transpose_w}) has K = {wk}");
    }
    if let Some(b) = bias {
        if b != [n] {
            op_bail!("linear: bias must have shape [{n}], got {b:?}");
        }
    }
    let mut shape = lead.to_vec();
    shape.push(n);
    Ok(LinearDims { m: lead.iter().product(), k, n, shape })
}

/// The checked dims of a MatMul (shared with the CUDA backend): per batch [M, K] x [K, N];
/// `batch_a` / `batch_b` broadcast to `batch`; `shape` is the output's.
pub(crate) struct MatmulDims {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub batch_a: Vec<usize>,
    pub batch_b: Vec<usize>,
    pub batch: Vec<usize>,
    pub shape: Vec<usize>,
}

impl MatmulDims {
    /// Element offsets of each batch's [M, K] block of `a` and [K, N] block of `b`, in the
    /// row-major order of `batch`.
    pub(crate) fn batch_offsets(&self) -> (Vec<usize>, Vec<usize>) {
        let scaled = |s: Vec<isize>, f: usize| s.into_iter().map(|v| v * f as isize).collect::<Vec<_>>();
        let offs_a = strided_offsets(&self.batch, &scaled(broadcast_strides(&self.batch_a, &self.batch), self.m * self.k), 0);
        let offs_b = strided_offsets(&self.batch, &scaled(broadcast_strides(&self.batch_b, &self.batch), self.k * self.n), 0);
        (offs_a, offs_b)
    }
}

/// ONNX MatMul shapes: a 1-D `a` is a row [1, K] and a 1-D `b` a column [K, 1], whose added
/// dim is removed from the result.
pub(crate) fn matmul_dims(a: &[usize], b: &[usize]) -> Result<MatmulDims, OpError> {
    if a.is_empty() || b.is_empty() {
        op_bail!("matmul: operands must have rank >= 1, got {a:?} and {b:?}");
    }
    let sa: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let sb: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (batch_a, mk) = sa.split_at(sa.len() - 2);
    let (batch_b, kn) = sb.split_at(sb.len() - 2);
    let (m, k, n) = (mk[0], mk[1], kn[1]);
    if kn[0] != k {
        op_bail!("matmul: inner dims differ: a {a:?} has K = {k}, b {b:?} has K = {}", kn[0]);
    }
    let batch = broadcast_shape("matmul", batch_a, batch_b)?;
    let mut shape = batch.clone();
    if a.len() > 1 {
        shape.push(m);
    }
    if b.len() > 1 {
        shape.push(n);
    }
    Ok(MatmulDims { m, k, n, batch_a: batch_a.to_vec(), batch_b: batch_b.to_vec(), batch, shape })
}

/// Linear: x [..., K] times w [K, N] (or w [N, K] when `transpose_w`), plus bias [N] added
/// after the sum -> [..., N].
pub(crate) fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, transpose_w: bool) -> Result<Tensor, OpError> {
    let xv = expect_f32("linear", "x", x)?;
    let wv = expect_f32("linear", "w", w)?;
    let LinearDims { m, k, n, shape } = linear_dims(&x.shape, &w.shape, bias.map(|b| &b.shape[..]), transpose_w)?;
    let bv = match bias {
        Some(b) => Some(expect_f32("linear", "bias", b)?),
        None => None,
    };
    let mut out = vec![0f32; m * n];
    // w [K, N], or [N, K] read transposed.
    let strides = if transpose_w { (1, k) } else { (n, 1) };
    gemm(xv, wv, strides, &mut out, m, k, n);
    if let Some(bv) = bv {
        for row in out.chunks_mut(n.max(1)) {
            for (o, &b) in row.iter_mut().zip(bv) {
                *o += b;
            }
        }
    }
    Ok(Tensor::f32(shape, out))
}

/// ONNX MatMul: [..., M, K] x [..., K, N] -> [broadcast(...), M, N]; a 1-D `a` is a row
/// [1, K] and a 1-D `b` a column [K, 1], whose added dim is removed from the result.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let av = expect_f32("matmul", "a", a)?;
    let bv = expect_f32("matmul", "b", b)?;
    let dims = matmul_dims(&a.shape, &b.shape)?;
    let (m, k, n) = (dims.m, dims.k, dims.n);
    let (offs_a, offs_b) = dims.batch_offsets();
    let mut out = vec![0f32; offs_a.len() * m * n];
    for (bi, (&oa, &ob)) in offs_a.iter().zip(&offs_b).enumerate() {
        gemm(&av[oa..oa + m * k], &bv[ob..ob + k * n], (n, 1), &mut out[bi * m * n..(bi + 1) * m * n], m, k, n);
    }
    Ok(Tensor::f32(dims.shape, out))
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    /// Naive f64 dot-product reference: c[i][j] = sum_p a(i, p) * b(p, j).
    fn naive(m: usize, k: usize, n: usize, a: impl Fn(usize, usize) -> f32, b: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let mut c = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                c.push((0..k).map(|p| a(i, p) as f64 * b(p, j) as f64).sum::<f64>() as f32);
            }
        }
        c
    }

    #[test]
    fn linear_both_layouts_with_bias() {
        let mut g = Lcg::new(20);
        let x = g.tensor(&[2, 3, 5]);
        let w = g.tensor(&[5, 4]);
        let bias = g.tensor(&[4]);
        let (xv, wv, bv) = (f32s(&x), f32s(&w), f32s(&bias));
        let y = linear(&x, &w, Some(&bias), false).unwrap();
        assert_eq!(y.shape, vec![2, 3, 4]);
        let mut want = naive(6, 5, 4, |i, p| xv[i * 5 + p], |p, j| wv[p * 4 + j]);
        for (i, v) in want.iter_mut().enumerate() {
            *v += bv[i % 4];
        }
        assert_close(f32s(&y), &want, 1e-6);
        // The same weights stored [N, K].
        let wt = Tensor::f32(vec![4, 5], (0..20).map(|i| wv[(i % 5) * 4 + i / 5]).collect());
        let yt = linear(&x, &wt, Some(&bias), true).unwrap();
        assert_eq!(f32s(&yt), f32s(&y));
        let y0 = linear(&x, &w, None, false).unwrap();
        assert_close(f32s(&y0), &naive(6, 5, 4, |i, p| xv[i * 5 + p], |p, j| wv[p * 4 + j]), 1e-6);
        assert!(linear(&x, &wt, None, false).unwrap_err().0.contains("K = 5"));
        assert!(linear(&x, &w, Some(&g.tensor(&[5])), false).unwrap_err().0.contains("bias"));
        assert!(linear(&x, &g.tensor(&[5]), None, false).is_err());
    }

    #[test]
    fn matmul_broadcasts_batches() {
        let mut g = Lcg::new(21);
        let a = g.tensor(&[2, 1, 3, 4]);
        let b = g.tensor(&[5, 4, 2]);
        let y = matmul(&a, &b).unwrap();
        assert_eq!(y.shape, vec![2, 5, 3, 2]);
        let (av, bv, yv) = (f32s(&a), f32s(&b), f32s(&y));
        for i in 0..2 {
            for j in 0..5 {
                let want = naive(3, 4, 2, |r, p| av[(i * 3 + r) * 4 + p], |p, c| bv[(j * 4 + p) * 2 + c]);
                let got = &yv[(i * 5 + j) * 6..(i * 5 + j + 1) * 6];
                assert_close(got, &want, 1e-6);
            }
        }
    }

    #[test]
    fn matmul_one_dimensional_operands() {
        let mut g = Lcg::new(22);
        let u = g.tensor(&[4]);
        let v = g.tensor(&[4]);
        let dot = matmul(&u, &v).unwrap();
        assert_eq!(dot.shape, Vec::<usize>::new());
        let (uv, vv) = (f32s(&u), f32s(&v));
        assert_close(f32s(&dot), &naive(1, 4, 1, |_, p| uv[p], |p, _| vv[p]), 1e-6);
        let b = g.tensor(&[2, 4, 3]);
        let bv = f32s(&b);
        let y = matmul(&u, &b).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        for i in 0..2 {
            let want = naive(1, 4, 3, |_, p| uv[p], |p, c| bv[(i * 4 + p) * 3 + c]);
            assert_close(&f32s(&y)[i * 3..i * 3 + 3], &want, 1e-6);
        }
        let a = g.tensor(&[2, 3, 4]);
        let av = f32s(&a);
        let y = matmul(&a, &v).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_close(f32s(&y), &naive(6, 4, 1, |r, p| av[r * 4 + p], |p, _| vv[p]), 1e-6);
        assert!(matmul(&a, &g.tensor(&[3])).unwrap_err().0.contains("inner dims"));
        assert!(matmul(&g.tensor(&[2, 3, 4]), &g.tensor(&[3, 4, 2])).unwrap_err().0.contains("broadcast"));
    }

    #[test]
    fn matmul_64x256_is_fast_and_right() {
        let mut g = Lcg::new(23);
        let a = g.tensor(&[64, 256]);
        let b = g.tensor(&[256, 256]);
        let t = std::time::Instant::now();
        let y = matmul(&a, &b).unwrap();
        let dt = t.elapsed();
        let (av, bv) = (f32s(&a), f32s(&b));
        assert_close(f32s(&y), &naive(64, 256, 256, |i, p| av[i * 256 + p], |p, j| bv[p * 256 + j]), 1e-6);
        assert!(dt.as_millis() < 500, "64x256x256 matmul took {dt:?}");
    }
}
