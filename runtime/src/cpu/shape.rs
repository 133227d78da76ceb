//! Shape and indexing ops (Embed, Gather, Reshape, Transpose, Expand, Range, Concat, Slice)
//! for every dtype, plus the index and broadcasting helpers the other CPU kernels share.

use std::collections::HashMap;

use crate::dim::Dim;
use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;
use crate::tensor::{Data, Tensor};

// ---------------------------------------------------------------------------------------------
// Helpers shared by the CPU kernels.
// ---------------------------------------------------------------------------------------------

/// Row-major strides (in elements) of a contiguous tensor of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The source offsets, listed in row-major order over `shape`, of the strided view whose
/// element `idx` lies at `base + sum_i idx[i] * strides[i]`. Empty when `shape` has a 0 dim.
pub(crate) fn strided_offsets(shape: &[usize], strides: &[isize], base: isize) -> Vec<usize> {
    debug_assert_eq!(shape.len(), strides.len());
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(base as usize);
        return out;
    }
    let last = r - 1;
    let (len_last, st_last) = (shape[last], strides[last]);
    let mut idx = vec![0usize; r];
    let mut off = base;
    loop {
        let mut o = off;
        for _ in 0..len_last {
            out.push(o as usize);
            o += st_last;
        }
        // Advance the odometer over dims 0..last.
        let mut d = last;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
}

/// A new buffer of the same dtype holding `data[offsets[i]]` for each i.
pub(crate) fn take(data: &Data, offsets: &[usize]) -> Data {
    match data {
        Data::F32(v) => Data::F32(offsets.iter().map(|&o| v[o]).collect()),
        Data::I64(v) => Data::I64(offsets.iter().map(|&o| v[o]).collect()),
        Data::Bool(v) => Data::Bool(offsets.iter().map(|&o| v[o]).collect()),
    }
}

/// The numpy broadcast of two shapes (right-aligned; each dim pair equal or one of them 1).
pub(crate) fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let r = a.len().max(b.len());
    let mut out = vec![0usize; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            op_bail!("{op}: shapes {a:?} and {b:?} cannot be broadcast (dim {da} vs {db})")
        };
    }
    Ok(out)
}

/// Strides, aligned to `out`, for reading a contiguous tensor of `shape` broadcast to `out`:
/// 0 for missing leading dims and for dims of size 1. `shape` must broadcast to `out`.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<isize> {
    let st = strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| if i < lead || shape[i - lead] == 1 { 0 } else { st[i - lead] as isize })
        .collect()
}

/// Normalises an ONNX axis in `[-rank, rank)` to `0..rank`.
pub(crate) fn norm_axis(op: &str, axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        op_bail!("{op}: axis {axis} is out of range for rank {rank}");
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// The f32 elements of `t`, or an error naming the op and the operand.
pub(crate) fn expect_f32<'a>(op: &str, what: &str, t: &'a Tensor) -> Result<&'a [f32], OpError> {
    match &t.data {
        Data::F32(v) => Ok(v),
        _ => Err(OpError::new(format!("{op}: {what} must be f32, got {:?}", t.dtype()))),
    }
}

/// Evaluates dim-expression strings with `env`; each must be a non-negative integer.
pub(crate) fn eval_dims(op: &str, dims: &[String], env: &HashMap<String, i64>) -> Result<Vec<usize>, OpError> {
    dims.iter()
        .enumerate()
        .map(|(i, s)| {
            let v = Dim::parse(s)
                .and_then(|d| d.eval(env))
                .map_err(|e| OpError::new(format!("{op}: shape dim {i} `{s}`: {e}")))?;
            if v < 0 {
                op_bail!("{op}: shape dim {i} `{s}` evaluates to {v}, which is negative");
            }
            Ok(v as usize)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Ops.
// ---------------------------------------------------------------------------------------------

/// Embed: rows of `table` [N, ...] picked by int64 `ids` (ONNX Gather on axis 0; negative ids
/// count from the end).
pub(crate) fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor, OpError> {
    if table.shape.is_empty() {
        op_bail!("embed: table must have rank >= 1, got a scalar");
    }
    gather_impl("embed", table, ids, 0)
}

/// ONNX Gather: `out[a.., i.., b..] = data[a.., indices[i..], b..]` along `axis` (negative
/// axis and indices count from the end). Any data dtype; indices int64.
pub(crate) fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    gather_impl("gather", data, indices, axis)
}

fn gather_impl(op: &str, data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let idx = match indices.as_i64() {
        Some(v) => v,
        None => op_bail!("{op}: indices must be int64, got {:?}", indices.dtype()),
    };
    if data.shape.is_empty() {
        op_bail!("{op}: data must have rank >= 1, got a scalar");
    }
    let axis = norm_axis(op, axis, data.shape.len())?;
    let s = data.shape[axis];
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut rows = Vec::with_capacity(idx.len());
    for &i in idx {
        if i < -(s as i64) || i >= s as i64 {
            op_bail!("{op}: index {i} is out of range for axis {axis} of size {s} (data shape {:?})", data.shape);
        }
        rows.push(if i < 0 { (i + s as i64) as usize } else { i as usize });
    }
    let mut offsets = Vec::with_capacity(outer * rows.len() * inner);
    for o in 0..outer {
        for &r in &rows {
            let base = (o * s + r) * inner;
            offsets.extend(base..base + inner);
        }
    }
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    Ok(Tensor { shape, data: take(&data.data, &offsets) })
}

/// Reshape to dim expressions evaluated with `env` (fully resolved: no ONNX 0 / -1 codes).
pub(crate) fn reshape(x: &Tensor, shape: &[String], env: &HashMap<String, i64>) -> Result<Tensor, OpError> {
    let dims = eval_dims("reshape", shape, env)?;
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(x.numel()) {
        op_bail!(
            "reshape: cannot reshape {:?} ({} elements) to {:?} = {dims:?}",
            x.shape,
            x.numel(),
            shape
        );
    }
    Ok(Tensor { shape: dims, data: x.data.clone() })
}

/// The axis order of ONNX Transpose for rank `r`: `perm` checked, or reversed when empty.
pub(crate) fn transpose_perm(perm: &[i64], r: usize) -> Result<Vec<usize>, OpError> {
    if perm.is_empty() {
        return Ok((0..r).rev().collect());
    }
    if perm.len() != r {
        op_bail!("transpose: perm {perm:?} has {} entries but the input has rank {r}", perm.len());
    }
    let mut seen = vec![false; r];
    let mut p = Vec::with_capacity(r);
    for &a in perm {
        if a < 0 || a as usize >= r || seen[a as usize] {
            op_bail!("transpose: perm {perm:?} is not a permutation of 0..{r}");
        }
        seen[a as usize] = true;
        p.push(a as usize);
    }
    Ok(p)
}

/// ONNX Transpose: `out.shape[i] = x.shape[perm[i]]`; an empty `perm` reverses the axes.
pub(crate) fn transpose(x: &Tensor, perm: &[i64]) -> Result<Tensor, OpError> {
    let perm = transpose_perm(perm, x.shape.len())?;
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let view: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    let offsets = strided_offsets(&shape, &view, 0);
    Ok(Tensor { shape, data: take(&x.data, &offsets) })
}

/// ONNX Expand: broadcasts `x` and the evaluated `shape` bidirectionally (numpy rules).
pub(crate) fn expand(x: &Tensor, shape: &[String], env: &HashMap<String, i64>) -> Result<Tensor, OpError> {
    let target = eval_dims("expand", shape, env)?;
    let out = broadcast_shape("expand", &x.shape, &target)?;
    let offsets = strided_offsets(&out, &broadcast_strides(&x.shape, &out), 0);
    Ok(Tensor { shape: out, data: take(&x.data, &offsets) })
}

/// DimValues: the int64 values of dim expressions, shaped `shape` (`[]` or `[len(dims)]`).
pub(crate) fn dim_values(dims: &[String], shape: &[u64], env: &HashMap<String, i64>) -> Result<Tensor, OpError> {
    let mut v = Vec::with_capacity(dims.len());
    for d in dims {
        let e = crate::dim::Dim::parse(d).map_err(|e| OpError::new(format!("dim_values: {e}")))?;
        v.push(e.eval(env).map_err(|e| OpError::new(format!("dim_values: {e}")))?);
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if shape.iter().product::<usize>() != v.len() {
        op_bail!("dim_values: {} values for shape {shape:?}", v.len());
    }
    Ok(Tensor::i64(shape, v))
}

/// Range: int64 `[n]` with `start + i * delta`, where `n` is the evaluated `size` expression.
pub(crate) fn range(start: i64, delta: i64, size: &String, env: &HashMap<String, i64>) -> Result<Tensor, OpError> {
    let n = eval_dims("range", std::slice::from_ref(size), env)?[0];
    let mut v = Vec::with_capacity(n);
    for i in 0..n as i64 {
        match i.checked_mul(delta).and_then(|d| d.checked_add(start)) {
            Some(x) => v.push(x),
            None => op_bail!("range: start {start} + {i} * delta {delta} overflows int64"),
        }
    }
    Ok(Tensor::i64(vec![n], v))
}

/// The checked axis and output shape of ONNX Concat of inputs with these shapes and dtypes
/// (negative axis counts from the end): they share dtype, rank and all dims but `axis`.
pub(crate) fn concat_shape(xs: &[(&[usize], DType)], axis: i64) -> Result<(usize, Vec<usize>), OpError> {
    let Some(&(first, dtype)) = xs.first() else { op_bail!("concat: no inputs") };
    let r = first.len();
    if r == 0 {
        op_bail!("concat: inputs must have rank >= 1, got a scalar");
    }
    let axis = norm_axis("concat", axis, r)?;
    let mut shape = first.to_vec();
    shape[axis] = 0;
    for (i, &(s, d)) in xs.iter().enumerate() {
        if d != dtype {
            op_bail!("concat: input {i} is {d:?} but input 0 is {dtype:?}");
        }
        let same_others = s.len() == r && (0..r).all(|a| a == axis || s[a] == first[a]);
        if !same_others {
            op_bail!("concat: input {i} has shape {s:?}, incompatible with input 0 {first:?} along axis {axis}");
        }
        shape[axis] += s[axis];
    }
    Ok((axis, shape))
}

/// ONNX Concat along `axis` (negative counts from the end); inputs share dtype, rank and all
/// dims but `axis`.
pub(crate) fn concat(xs: &[&Tensor], axis: i64) -> Result<Tensor, OpError> {
    let sigs: Vec<(&[usize], DType)> = xs.iter().map(|x| (x.shape.as_slice(), x.dtype())).collect();
    let (axis, shape) = concat_shape(&sigs, axis)?;
    let first = xs[0];
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();

    fn join<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        for o in 0..outer {
            for &(v, chunk) in parts {
                out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        out
    }
    macro_rules! join_as {
        ($variant:ident) => {{
            let mut parts = Vec::with_capacity(xs.len());
            for x in xs {
                if let Data::$variant(v) = &x.data {
                    parts.push((v.as_slice(), x.shape[axis] * inner));
                }
            }
            Data::$variant(join(&parts, outer))
        }};
    }
    let data = match &first.data {
        Data::F32(_) => join_as!(F32),
        Data::I64(_) => join_as!(I64),
        Data::Bool(_) => join_as!(Bool),
    };
    Ok(Tensor { shape, data })
}

/// The strided view ONNX Slice with constant bounds takes of a tensor of `in_shape`: for each
/// listed axis (empty `axes` = 0, 1, ...; negative counts from the end), `starts:ends:steps`
/// (empty `steps` = all 1) with ONNX clamping. Returns (shape, strides, base offset).
pub(crate) fn slice_view(in_shape: &[usize], axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<(Vec<usize>, Vec<isize>, isize), OpError> {
    let r = in_shape.len();
    if starts.len() != ends.len() {
        op_bail!("slice: {} starts but {} ends", starts.len(), ends.len());
    }
    let axes: Vec<usize> = if axes.is_empty() {
        if starts.len() > r {
            op_bail!("slice: {} starts for an input of rank {r}", starts.len());
        }
        (0..starts.len()).collect()
    } else {
        if axes.len() != starts.len() {
            op_bail!("slice: {} axes but {} starts", axes.len(), starts.len());
        }
        axes.iter().map(|&a| norm_axis("slice", a, r)).collect::<Result<_, _>>()?
    };
    if !steps.is_empty() && steps.len() != starts.len() {
        op_bail!("slice: {} steps but {} starts", steps.len(), starts.len());
    }
    let st = strides(&in_shape);
    let mut shape = in_shape.to_vec();
    let mut view: Vec<isize> = st.iter().map(|&s| s as isize).collect();
    let mut base: isize = 0;
    let mut seen = vec![false; r];
    for (i, &a) in axes.iter().enumerate() {
        if seen[a] {
            op_bail!("slice: axis {a} is listed twice");
        }
        seen[a] = true;
        let step = if steps.is_empty() { 1 } else { steps[i] };
        if step == 0 {
            op_bail!("slice: step for axis {a} is 0");
        }
        let dim = in_shape[a] as i64;
        let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = (wrap(starts[i]), wrap(ends[i]));
        let (start, len) = if dim == 0 {
            (0, 0)
        } else if step > 0 {
            let (s, e) = (start.clamp(0, dim), end.clamp(0, dim));
            (s, if e > s { (e - s - 1) / step + 1 } else { 0 })
        } else {
            let (s, e) = (start.clamp(0, dim - 1), end.clamp(-1, dim - 1));
            (s, if s > e { (s - e - 1) / (-step) + 1 } else { 0 })
        };
        shape[a] = len as usize;
        base += start as isize * st[a] as isize;
        // With len <= 1 the stride is never applied; avoid overflow for huge steps.
        view[a] = if len > 1 { step as isize * st[a] as isize } else { 0 };
    }
    Ok((shape, view, base))
}

/// ONNX Slice with constant bounds (see `slice_view`).
pub(crate) fn slice(x: &Tensor, axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> Result<Tensor, OpError> {
    let (shape, view, base) = slice_view(&x.shape, axes, starts, ends, steps)?;
    let offsets = strided_offsets(&shape, &view, base);
    Ok(Tensor { shape, data: take(&x.data, &offsets) })
}

// ---------------------------------------------------------------------------------------------
// Test helpers shared by the CPU kernels' unit tests.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
pub(crate) mod test_util {
    use std::collections::HashMap;

    use crate::tensor::Tensor;

    /// A tiny deterministic linear congruential generator (Knuth's MMIX constants).
    pub(crate) struct Lcg(u64);

    impl Lcg {
        pub(crate) fn new(seed: u64) -> Lcg {
            Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
        }
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f32 {
            (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
        }
        /// Magnitude in [0.05, 1), random sign: never zero.
        pub(crate) fn nonzero(&mut self) -> f32 {
            let m = 0.05 + 0.95 * self.unit();
            if self.next_u32() & 1 == 0 {
                m
            } else {
                -m
            }
        }
        pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.nonzero()).collect()
        }
        pub(crate) fn tensor(&mut self, shape: &[usize]) -> Tensor {
            let n = shape.iter().product();
            Tensor::f32(shape.to_vec(), self.vec(n))
        }
    }

    /// ‖a − b‖ / ‖b‖ (f64), or ‖a − b‖ when b is all zero. Lengths must match.
    pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len(), "length mismatch");
        let (mut num, mut den) = (0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            num += (x as f64 - y as f64).powi(2);
            den += (y as f64).powi(2);
        }
        if den == 0.0 {
            num.sqrt()
        } else {
            (num / den).sqrt()
        }
    }

    /// Asserts ‖a − b‖/‖b‖ <= tol.
    pub(crate) fn assert_close(a: &[f32], b: &[f32], tol: f64) {
        let e = rel_err(a, b);
        assert!(e <= tol, "relative error {e:e} > {tol:e}");
    }

    pub(crate) fn env(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    #[test]
    fn embed_picks_rows_and_wraps_negative_ids() {
        let mut g = Lcg::new(1);
        let table = g.tensor(&[4, 3]);
        let ids = Tensor::i64(vec![2, 2], vec![1, 3, 0, -1]);
        let y = embed(&table, &ids).unwrap();
        assert_eq!(y.shape, vec![2, 2, 3]);
        let t = f32s(&table);
        let mut want = Vec::new();
        for r in [1, 3, 0, 3] {
            want.extend_from_slice(&t[r * 3..r * 3 + 3]);
        }
        assert_eq!(f32s(&y), &want[..]);
        assert!(embed(&table, &Tensor::i64(vec![1], vec![4])).unwrap_err().0.contains("out of range"));
        assert!(embed(&table, &Tensor::f32(vec![1], vec![1.0])).unwrap_err().0.contains("int64"));
    }

    #[test]
    fn gather_matches_explicit_loops_on_a_middle_axis() {
        // data [2, 5, 3] i64, indices [2, 2], axis -2 -> out [2, 2, 2, 3].
        let data: Vec<i64> = (0..30).map(|i| i * 7 - 11).collect();
        let x = Tensor::i64(vec![2, 5, 3], data.clone());
        let idx = vec![4, -5, 2, -1];
        let y = gather(&x, &Tensor::i64(vec![2, 2], idx.clone()), -2).unwrap();
        assert_eq!(y.shape, vec![2, 2, 2, 3]);
        let mut want = Vec::new();
        for a in 0..2 {
            for &i in &idx {
                let i = if i < 0 { i + 5 } else { i } as usize;
                for b in 0..3 {
                    want.push(data[(a * 5 + i) * 3 + b]);
                }
            }
        }
        assert_eq!(y.as_i64().unwrap(), &want[..]);
        // Scalar index drops the axis; Bool data works too.
        let bx = Tensor { shape: vec![3, 2], data: Data::Bool(vec![true, false, false, false, true, true]) };
        let by = gather(&bx, &Tensor::i64(vec![], vec![2]), 0).unwrap();
        assert_eq!(by, Tensor { shape: vec![2], data: Data::Bool(vec![true, true]) });
        assert!(gather(&x, &Tensor::i64(vec![1], vec![5]), 1).is_err());
        assert!(gather(&x, &Tensor::i64(vec![1], vec![0]), 3).is_err());
    }

    #[test]
    fn reshape_evaluates_symbolic_dims() {
        let mut g = Lcg::new(2);
        let x = g.tensor(&[2, 3, 4]);
        let e = env(&[("batch", 2), ("seq", 3)]);
        let y = reshape(&x, &["batch".into(), "seq*4".into()], &e).unwrap();
        assert_eq!(y.shape, vec![2, 12]);
        assert_eq!(y.data, x.data);
        let err = reshape(&x, &["batch".into(), "seq".into()], &e).unwrap_err();
        assert!(err.0.contains("reshape") && err.0.contains("24 elements"), "{err}");
        assert!(reshape(&x, &["n".into()], &e).unwrap_err().0.contains("not bound"));
        assert!(reshape(&x, &["0-24".into()], &e).unwrap_err().0.contains("negative"));
    }

    #[test]
    fn transpose_matches_explicit_loops() {
        let mut g = Lcg::new(3);
        let x = g.tensor(&[2, 3, 4]);
        let y = transpose(&x, &[2, 0, 1]).unwrap();
        assert_eq!(y.shape, vec![4, 2, 3]);
        let (xv, yv) = (f32s(&x), f32s(&y));
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(yv[(c * 2 + a) * 3 + b], xv[(a * 3 + b) * 4 + c]);
                }
            }
        }
        let r = transpose(&x, &[]).unwrap();
        assert_eq!(r.shape, vec![4, 3, 2]);
        assert_eq!(f32s(&r)[(3 * 3 + 1) * 2 + 1], xv[(3 + 1) * 4 + 3]);
        let i = Tensor::i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(transpose(&i, &[1, 0]).unwrap().as_i64().unwrap(), &[1, 4, 2, 5, 3, 6]);
        assert!(transpose(&x, &[0, 0, 1]).is_err());
        assert!(transpose(&x, &[0, 1]).is_err());
    }

    #[test]
    fn expand_broadcasts_bidirectionally() {
        let mut g = Lcg::new(4);
        let x = g.tensor(&[3, 1]);
        let y = expand(&x, &["2".into(), "1".into(), "n".into()], &env(&[("n", 4)])).unwrap();
        assert_eq!(y.shape, vec![2, 3, 4]);
        let (xv, yv) = (f32s(&x), f32s(&y));
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(yv[(a * 3 + b) * 4 + c], xv[b]);
                }
            }
        }
        let bx = Tensor { shape: vec![1], data: Data::Bool(vec![true]) };
        assert_eq!(expand(&bx, &["3".into()], &env(&[])).unwrap().data, Data::Bool(vec![true; 3]));
        assert!(expand(&x, &["2".into(), "5".into()], &env(&[])).unwrap_err().0.contains("broadcast"));
    }

    #[test]
    fn range_uses_the_size_expression() {
        let y = range(5, -2, &"n+1".to_string(), &env(&[("n", 3)])).unwrap();
        assert_eq!(y, Tensor::i64(vec![4], vec![5, 3, 1, -1]));
        assert_eq!(range(0, 1, &"0".to_string(), &env(&[])).unwrap().shape, vec![0]);
        assert!(range(i64::MAX, 1, &"2".to_string(), &env(&[])).is_err());
    }

    #[test]
    fn concat_along_an_axis() {
        let mut g = Lcg::new(5);
        let a = g.tensor(&[2, 1, 3]);
        let b = g.tensor(&[2, 2, 3]);
        let y = concat(&[&a, &b], -2).unwrap();
        assert_eq!(y.shape, vec![2, 3, 3]);
        let (av, bv, yv) = (f32s(&a), f32s(&b), f32s(&y));
        for o in 0..2 {
            for j in 0..3 {
                for c in 0..3 {
                    let want = if j == 0 { av[o * 3 + c] } else { bv[(o * 2 + j - 1) * 3 + c] };
                    assert_eq!(yv[(o * 3 + j) * 3 + c], want);
                }
            }
        }
        let i = concat(&[&Tensor::i64(vec![2], vec![1, 2]), &Tensor::i64(vec![1], vec![3])], 0).unwrap();
        assert_eq!(i, Tensor::i64(vec![3], vec![1, 2, 3]));
        let t = Tensor { shape: vec![1], data: Data::Bool(vec![true]) };
        let f = Tensor { shape: vec![2], data: Data::Bool(vec![false, true]) };
        assert_eq!(concat(&[&t, &f], 0).unwrap().data, Data::Bool(vec![true, false, true]));
        assert!(concat(&[&a, &g.tensor(&[2, 2, 4])], 1).unwrap_err().0.contains("incompatible"));
        assert!(concat(&[&a, &Tensor::i64(vec![2, 1, 3], vec![0; 6])], 1).is_err());
    }

    #[test]
    fn slice_follows_onnx_clamping_and_negative_steps() {
        let data: Vec<i64> = (0..30).collect();
        let x = Tensor::i64(vec![5, 6], data.clone());
        // rows 1, 3 (start 1, end 100 clamps to 5, step 2); cols 5, 3, 1 (start -1, end -inf, step -2).
        let y = slice(&x, &[1, 0], &[-1, 1], &[i64::MIN, 100], &[-2, 2]).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(y.as_i64().unwrap(), &[11, 9, 7, 23, 21, 19]);
        // Default axes and steps; negative end.
        let z = slice(&x, &[], &[0, 2], &[2, -1], &[]).unwrap();
        assert_eq!(z.as_i64().unwrap(), &[2, 3, 4, 8, 9, 10]);
        // Reverse everything.
        let rev = slice(&x, &[0], &[i64::MAX], &[i64::MIN], &[-1]).unwrap();
        assert_eq!(rev.as_i64().unwrap()[..6], data[24..30]);
        // Empty results.
        assert_eq!(slice(&x, &[0], &[3], &[2], &[1]).unwrap().shape, vec![0, 6]);
        assert_eq!(slice(&x, &[1], &[7], &[9], &[]).unwrap().shape, vec![5, 0]);
        // Float data, last axis via -1, huge step.
        let mut g = Lcg::new(6);
        let f = g.tensor(&[2, 4]);
        let s = slice(&f, &[-1], &[1], &[4], &[i64::MAX]).unwrap();
        assert_eq!(f32s(&s), &[f32s(&f)[1], f32s(&f)[5]]);
        assert!(slice(&x, &[0], &[0], &[1], &[0]).unwrap_err().0.contains("step"));
        assert!(slice(&x, &[0, 0], &[0, 0], &[1, 1], &[]).unwrap_err().0.contains("twice"));
        assert!(slice(&x, &[2], &[0], &[1], &[]).is_err());
    }

    #[test]
    fn strided_offsets_handles_scalars_and_empty() {
        assert_eq!(strided_offsets(&[], &[], 3), vec![3]);
        assert!(strided_offsets(&[2, 0], &[1, 1], 0).is_empty());
        assert_eq!(strided_offsets(&[2, 2], &[1, 2], 0), vec![0, 2, 1, 3]);
    }
}
