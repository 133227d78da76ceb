//! Reductions (ONNX ReduceSum / ReduceMean / ReduceMax). f32 sums and means accumulate in f64
//! in row-major order of the input and round once; int64 sums wrap.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::ReduceKind;
use crate::tensor::{Data, Tensor};

use super::shape::{norm_axis, strided_offsets, strides};

/// Which of `rank` axes `axes` reduces (empty = all; negative ones count from the end).
pub(crate) fn reduced_axes(op: &str, axes: &[i64], rank: usize) -> Result<Vec<bool>, OpError> {
    let mut reduced = vec![axes.is_empty(); rank];
    for &a in axes {
        let a = norm_axis(op, a, rank)?;
        if reduced[a] {
            op_bail!("{op}: axis {a} is listed twice in {axes:?}");
        }
        reduced[a] = true;
    }
    Ok(reduced)
}

/// Reduces `x` over `axes` (empty = all axes; negative ones are accepted too), keeping them
/// as size-1 dims when `keepdims`. Max over an empty set gives -inf (int64: i64::MIN); Mean
/// over an empty set gives NaN (f32) or an error (int64).
pub(crate) fn reduce(x: &Tensor, kind: ReduceKind, axes: &[i64], keepdims: bool) -> Result<Tensor, OpError> {
    let op = format!("reduce {kind:?}");
    let r = x.shape.len();
    let reduced = reduced_axes(&op, axes, r)?;
    let kept: Vec<usize> = (0..r).map(|d| if reduced[d] { 1 } else { x.shape[d] }).collect();
    let count: usize = (0..r).filter(|&d| reduced[d]).map(|d| x.shape[d]).product();
    let kst = strides(&kept);
    let view: Vec<isize> = (0..r).map(|d| if reduced[d] { 0 } else { kst[d] as isize }).collect();
    // For every input element (row-major), the output slot it reduces into.
    let slot = strided_offsets(&x.shape, &view, 0);
    let n_out: usize = kept.iter().product();
    let data = match &x.data {
        Data::F32(v) => Data::F32(match kind {
            ReduceKind::Sum | ReduceKind::Mean => {
                let mut acc = vec![0f64; n_out];
                for (&s, &e) in slot.iter().zip(v) {
                    acc[s] += e as f64;
                }
                let div = if kind == ReduceKind::Mean { count as f64 } else { 1.0 };
                acc.into_iter().map(|a| (a / div) as f32).collect()
            }
            ReduceKind::Max => {
                let mut acc = vec![f32::NEG_INFINITY; n_out];
                for (&s, &e) in slot.iter().zip(v) {
                    // NaN propagates: once acc is NaN no comparison replaces it.
                    if e > acc[s] || e.is_nan() {
                        acc[s] = e;
                    }
                }
                acc
            }
        }),
        Data::I64(v) => Data::I64(match kind {
            ReduceKind::Sum | ReduceKind::Mean => {
                let mut acc = vec![0i64; n_out];
                for (&s, &e) in slot.iter().zip(v) {
                    acc[s] = acc[s].wrapping_add(e);
                }
                if kind == ReduceKind::Mean {
                    if count == 0 {
                        op_bail!("{op}: int64 mean over an empty set");
                    }
                    acc.iter_mut().for_each(|a| *a /= count as i64);
                }
                acc
            }
            ReduceKind::Max => {
                let mut acc = vec![i64::MIN; n_out];
                for (&s, &e) in slot.iter().zip(v) {
                    acc[s] = acc[s].max(e);
                }
                acc
            }
        }),
        Data::Bool(_) => op_bail!("{op}: bool input is not supported"),
    };
    let shape = if keepdims { kept } else { (0..r).filter(|&d| !reduced[d]).map(|d| x.shape[d]).collect() };
    Ok(Tensor { shape, data })
}

/// Running sums along `axis` (ONNX CumSum): element i holds the sum of elements 0..=i (0..i
/// when `exclusive`; counted from the end when `reverse`). f32 sums accumulate in f32 in axis
/// order, as the CUDA kernel does; int64 sums wrap.
pub(crate) fn cumsum(x: &Tensor, axis: i64, exclusive: bool, reverse: bool) -> Result<Tensor, OpError> {
    let a = norm_axis("cumsum", axis, x.shape.len())?;
    let n = x.shape[a];
    let inner: usize = x.shape[a + 1..].iter().product();
    let outer: usize = x.shape[..a].iter().product();
    fn scan<T: Copy + Default>(v: &[T], outer: usize, n: usize, inner: usize, exclusive: bool, reverse: bool, add: fn(T, T) -> T) -> Vec<T> {
        let mut out = vec![T::default(); v.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = T::default();
                for s in 0..n {
                    let j = if reverse { n - 1 - s } else { s };
                    let at = (o * n + j) * inner + i;
                    if exclusive {
                        out[at] = acc;
                        acc = add(acc, v[at]);
                    } else {
                        acc = add(acc, v[at]);
                        out[at] = acc;
                    }
                }
            }
        }
        out
    }
    let data = match &x.data {
        Data::F32(v) => Data::F32(scan(v, outer, n, inner, exclusive, reverse, |p, q| p + q)),
        Data::I64(v) => Data::I64(scan(v, outer, n, inner, exclusive, reverse, i64::wrapping_add)),
        _ => op_bail!("cumsum: input must be f32 or int64, got {:?}", x.dtype()),
    };
    Ok(Tensor { shape: x.shape.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    #[test]
    fn reduces_outer_and_inner_axes() {
        let mut g = Lcg::new(40);
        let x = g.tensor(&[2, 3, 4]);
        let xv = x.as_f32().unwrap();
        let at = |a: usize, b: usize, c: usize| xv[(a * 3 + b) * 4 + c];
        for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
            let mut want = Vec::new();
            for b in 0..3 {
                let vals: Vec<f32> = (0..2).flat_map(|a| (0..4).map(move |c| (a, c))).map(|(a, c)| at(a, b, c)).collect();
                want.push(match kind {
                    ReduceKind::Sum => vals.iter().map(|&v| v as f64).sum::<f64>() as f32,
                    ReduceKind::Mean => (vals.iter().map(|&v| v as f64).sum::<f64>() / 8.0) as f32,
                    ReduceKind::Max => vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                });
            }
            let y = reduce(&x, kind, &[0, 2], true).unwrap();
            assert_eq!(y.shape, vec![1, 3, 1]);
            assert_close(y.as_f32().unwrap(), &want, 1e-7);
            let y = reduce(&x, kind, &[2, -3], false).unwrap();
            assert_eq!(y.shape, vec![3]);
            assert_close(y.as_f32().unwrap(), &want, 1e-7);
        }
    }

    #[test]
    fn empty_axes_reduce_everything() {
        let mut g = Lcg::new(41);
        let x = g.tensor(&[3, 5]);
        let y = reduce(&x, ReduceKind::Mean, &[], false).unwrap();
        assert_eq!(y.shape, Vec::<usize>::new());
        let want = x.as_f32().unwrap().iter().map(|&v| v as f64).sum::<f64>() / 15.0;
        assert_close(y.as_f32().unwrap(), &[want as f32], 1e-7);
        assert_eq!(reduce(&x, ReduceKind::Sum, &[], true).unwrap().shape, vec![1, 1]);
    }

    #[test]
    fn int64_and_errors() {
        let x = Tensor::i64(vec![2, 3], vec![1, -5, 3, 4, 2, 9]);
        assert_eq!(reduce(&x, ReduceKind::Sum, &[1], false).unwrap(), Tensor::i64(vec![2], vec![-1, 15]));
        assert_eq!(reduce(&x, ReduceKind::Max, &[0], true).unwrap(), Tensor::i64(vec![1, 3], vec![4, 2, 9]));
        assert_eq!(reduce(&x, ReduceKind::Mean, &[1], false).unwrap(), Tensor::i64(vec![2], vec![0, 5]));
        assert!(reduce(&x, ReduceKind::Sum, &[2], false).unwrap_err().0.contains("out of range"));
        assert!(reduce(&x, ReduceKind::Sum, &[1, -1], false).unwrap_err().0.contains("twice"));
        let e = Tensor::f32(vec![2, 0], vec![]);
        let m = reduce(&e, ReduceKind::Max, &[1], false).unwrap();
        assert_eq!(m.as_f32().unwrap(), &[f32::NEG_INFINITY; 2]);
        assert_eq!(reduce(&e, ReduceKind::Sum, &[1], false).unwrap().as_f32().unwrap(), &[0.0; 2]);
    }

    #[test]
    fn cumsum_all_modes_on_a_middle_axis() {
        // x [2, 3, 2]; scan axis 1.
        let x = Tensor::i64(vec![2, 3, 2], vec![1, 2, 3, 4, 5, 6, -1, 10, 7, 0, 2, 3]);
        let y = |e, r| cumsum(&x, 1, e, r).unwrap().as_i64().unwrap().to_vec();
        assert_eq!(y(false, false), [1, 2, 4, 6, 9, 12, -1, 10, 6, 10, 8, 13]);
        assert_eq!(y(true, false), [0, 0, 1, 2, 4, 6, 0, 0, -1, 10, 6, 10]);
        assert_eq!(y(false, true), [9, 12, 8, 10, 5, 6, 8, 13, 9, 3, 2, 3]);
        assert_eq!(y(true, true), [8, 10, 5, 6, 0, 0, 9, 3, 2, 3, 0, 0]);
        let f = Tensor::f32(vec![4], vec![0.5, 0.25, -1.0, 2.0]);
        assert_eq!(cumsum(&f, -1, false, false).unwrap().as_f32().unwrap(), &[0.5, 0.75, -0.25, 1.75]);
        assert!(cumsum(&f, 1, false, false).unwrap_err().0.contains("out of range"));
    }
}
