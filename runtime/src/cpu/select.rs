//! Softmax, selection and comparison ops that decomposed attention and masks are made of:
//! Softmax, Where, Equal/Less/Greater/And/Or/Not, Cast, Trilu.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::{CompareKind, DType};
use crate::tensor::{Data, Tensor};

use super::shape::{broadcast_shape, broadcast_strides, expect_f32, norm_axis, strided_offsets};

/// Softmax along `axis` (f32; the row max is subtracted first; accumulation in f64).
pub(crate) fn softmax(x: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let v = expect_f32("softmax", "x", x)?;
    let ax = norm_axis("softmax", axis, x.shape.len().max(1))?;
    if x.shape.is_empty() {
        return Ok(Tensor::f32(vec![], vec![1.0]));
    }
    let n = x.shape[ax];
    let inner: usize = x.shape[ax + 1..].iter().product();
    let outer: usize = x.shape[..ax].iter().product();
    let mut out = vec![0f32; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let m = (0..n).map(|j| v[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                continue; // an all -inf row: zeros, as ONNX Attention's errata asks
            }
            let s: f64 = (0..n).map(|j| ((v[at(j)] - m) as f64).exp()).sum();
            for j in 0..n {
                out[at(j)] = (((v[at(j)] - m) as f64).exp() / s) as f32;
            }
        }
    }
    Ok(Tensor::f32(x.shape.clone(), out))
}

/// Where(cond, a, b) with three-way broadcasting.
pub(crate) fn where_(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let Data::Bool(cv) = &c.data else { op_bail!("where: condition must be bool, got {:?}", c.dtype()) };
    if a.dtype() != b.dtype() {
        op_bail!("where: branches differ in dtype ({:?} vs {:?})", a.dtype(), b.dtype());
    }
    let out = broadcast_shape("where", &broadcast_shape("where", &c.shape, &a.shape)?, &b.shape)?;
    let oc = strided_offsets(&out, &broadcast_strides(&c.shape, &out), 0);
    let oa = strided_offsets(&out, &broadcast_strides(&a.shape, &out), 0);
    let ob = strided_offsets(&out, &broadcast_strides(&b.shape, &out), 0);
    let pick = |i: usize| cv[oc[i]];
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32((0..oc.len()).map(|i| if pick(i) { x[oa[i]] } else { y[ob[i]] }).collect()),
        (Data::I64(x), Data::I64(y)) => Data::I64((0..oc.len()).map(|i| if pick(i) { x[oa[i]] } else { y[ob[i]] }).collect()),
        (Data::Bool(x), Data::Bool(y)) => Data::Bool((0..oc.len()).map(|i| if pick(i) { x[oa[i]] } else { y[ob[i]] }).collect()),
        _ => unreachable!("dtypes checked equal"),
    };
    Ok(Tensor { shape: out, data })
}

/// Comparisons (f32 or i64 operands) and logic (bool operands) → bool, with broadcasting.
/// `Not` takes one operand.
pub(crate) fn compare(a: &Tensor, b: Option<&Tensor>, kind: CompareKind) -> Result<Tensor, OpError> {
    let op = format!("compare {kind:?}");
    if kind == CompareKind::Not {
        let Data::Bool(v) = &a.data else { op_bail!("{op}: operand must be bool") };
        return Ok(Tensor { shape: a.shape.clone(), data: Data::Bool(v.iter().map(|x| !x).collect()) });
    }
    let b = b.ok_or_else(|| OpError::new(format!("{op}: needs two operands")))?;
    if a.dtype() != b.dtype() {
        op_bail!("{op}: operand dtypes differ ({:?} vs {:?})", a.dtype(), b.dtype());
    }
    let out = broadcast_shape(&op, &a.shape, &b.shape)?;
    let oa = strided_offsets(&out, &broadcast_strides(&a.shape, &out), 0);
    let ob = strided_offsets(&out, &broadcast_strides(&b.shape, &out), 0);
    fn cmp<T: PartialOrd>(k: CompareKind, x: T, y: T) -> bool {
        match k {
            CompareKind::Eq => x == y,
            CompareKind::Lt => x < y,
            CompareKind::Le => x <= y,
            CompareKind::Gt => x > y,
            CompareKind::Ge => x >= y,
            _ => false,
        }
    }
    let logic = matches!(kind, CompareKind::And | CompareKind::Or);
    let r: Vec<bool> = match (&a.data, &b.data) {
        (Data::Bool(x), Data::Bool(y)) if logic => {
            oa.iter().zip(&ob).map(|(&i, &j)| if kind == CompareKind::And { x[i] && y[j] } else { x[i] || y[j] }).collect()
        }
        (_, _) if logic => op_bail!("{op}: operands must be bool"),
        (Data::F32(x), Data::F32(y)) => oa.iter().zip(&ob).map(|(&i, &j)| cmp(kind, x[i], y[j])).collect(),
        (Data::I64(x), Data::I64(y)) => oa.iter().zip(&ob).map(|(&i, &j)| cmp(kind, x[i], y[j])).collect(),
        (Data::Bool(x), Data::Bool(y)) if kind == CompareKind::Eq => oa.iter().zip(&ob).map(|(&i, &j)| x[i] == y[j]).collect(),
        _ => op_bail!("{op}: {:?} operands are not supported", a.dtype()),
    };
    Ok(Tensor { shape: out, data: Data::Bool(r) })
}

/// Converts between f32, i64 and bool (f32 → i64 truncates toward zero, as ONNX Cast).
pub(crate) fn cast(x: &Tensor, to: DType) -> Result<Tensor, OpError> {
    let data = match (&x.data, to) {
        (d, t) if x.dtype() == t => d.clone(),
        (Data::F32(v), DType::I64) => Data::I64(v.iter().map(|&f| f as i64).collect()),
        (Data::F32(v), DType::Bool) => Data::Bool(v.iter().map(|&f| f != 0.0).collect()),
        (Data::I64(v), DType::F32) => Data::F32(v.iter().map(|&i| i as f32).collect()),
        (Data::I64(v), DType::Bool) => Data::Bool(v.iter().map(|&i| i != 0).collect()),
        (Data::Bool(v), DType::F32) => Data::F32(v.iter().map(|&b| b as i64 as f32).collect()),
        (Data::Bool(v), DType::I64) => Data::I64(v.iter().map(|&b| b as i64).collect()),
        _ => unreachable!("all dtype pairs covered"),
    };
    Ok(Tensor { shape: x.shape.clone(), data })
}

/// Keeps the lower (or upper) triangle of the last two dims: lower keeps j <= i + k, upper
/// keeps j >= i + k; the rest become zero / false.
pub(crate) fn trilu(x: &Tensor, upper: bool, k: i64) -> Result<Tensor, OpError> {
    let r = x.shape.len();
    if r < 2 {
        op_bail!("trilu: input must have rank >= 2, got {:?}", x.shape);
    }
    let (n, m) = (x.shape[r - 2], x.shape[r - 1]);
    let keep = |idx: usize| {
        let (i, j) = (((idx / m) % n.max(1)) as i64, (idx % m) as i64);
        if upper { j >= i + k } else { j <= i + k }
    };
    let data = match &x.data {
        Data::F32(v) => Data::F32(v.iter().enumerate().map(|(i, &e)| if keep(i) { e } else { 0.0 }).collect()),
        Data::I64(v) => Data::I64(v.iter().enumerate().map(|(i, &e)| if keep(i) { e } else { 0 }).collect()),
        Data::Bool(v) => Data::Bool(v.iter().enumerate().map(|(i, &e)| e && keep(i)).collect()),
    };
    Ok(Tensor { shape: x.shape.clone(), data })
}

/// TopK along `axis`: the k largest (or smallest) values, sorted, ties to the lower index;
/// returns (values, int64 indices). `k` is a dim expression evaluated with `env`.
pub(crate) fn top_k(x: &Tensor, axis: i64, largest: bool, k: &str, env: &std::collections::HashMap<String, i64>) -> Result<(Tensor, Tensor), OpError> {
    let v = expect_f32("top_k", "x", x)?;
    let ax = norm_axis("top_k", axis, x.shape.len())?;
    let k = crate::dim::Dim::parse(k).and_then(|d| d.eval(env)).map_err(|e| OpError::new(format!("top_k: k: {e}")))?;
    let n = x.shape[ax];
    if k < 0 || k as usize > n {
        op_bail!("top_k: k = {k} is outside 0..={n} (the size of axis {ax})");
    }
    let k = k as usize;
    let inner: usize = x.shape[ax + 1..].iter().product();
    let outer: usize = x.shape[..ax].iter().product();
    let mut shape = x.shape.clone();
    shape[ax] = k;
    let (mut vals, mut idxs) = (vec![0f32; outer * k * inner], vec![0i64; outer * k * inner]);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * n + j) * inner + i];
            order.clear();
            order.extend(0..n);
            order.sort_by(|&a, &b| {
                let c = at(a).partial_cmp(&at(b)).unwrap_or(std::cmp::Ordering::Equal);
                (if largest { c.reverse() } else { c }).then(a.cmp(&b))
            });
            for (r, &j) in order.iter().take(k).enumerate() {
                vals[(o * k + r) * inner + i] = at(j);
                idxs[(o * k + r) * inner + i] = j as i64;
            }
        }
    }
    Ok((Tensor::f32(shape.clone(), vals), Tensor::i64(shape, idxs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_match_hand_values() {
        let x = Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, f32::NEG_INFINITY]);
        let y = softmax(&x, -1).unwrap();
        let v = y.as_f32().unwrap();
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|a| a.exp()).collect();
        let s: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((v[i] as f64 - e[i] / s).abs() < 1e-7);
        }
        assert!((v[3] as f64 - 1.0 / (1.0 + 1f64.exp())).abs() < 1e-7);
        assert_eq!(v[5], 0.0);
        let y0 = softmax(&x, 0).unwrap();
        assert!((y0.as_f32().unwrap()[0] + y0.as_f32().unwrap()[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_k_sorts_with_ties_to_the_lower_index() {
        let x = Tensor::f32(vec![2, 4], vec![1.0, 3.0, 3.0, 2.0, 0.0, -1.0, 5.0, f32::NEG_INFINITY]);
        let env = std::collections::HashMap::from([("seq".to_string(), 2i64)]);
        let (v, i) = top_k(&x, 1, true, "min(3,seq+1)", &env).unwrap();
        assert_eq!(v.shape, vec![2, 3]);
        assert_eq!(i.as_i64().unwrap(), &[1, 2, 3, 2, 0, 1]);
        assert_eq!(v.as_f32().unwrap(), &[3.0, 3.0, 2.0, 5.0, 0.0, -1.0]);
        let (_, i) = top_k(&x, 0, false, "1", &env).unwrap();
        assert_eq!(i.as_i64().unwrap(), &[1, 1, 0, 1]);
        assert!(top_k(&x, 1, true, "5", &env).is_err());
    }

    #[test]
    fn where_compare_cast_trilu() {
        let pos = Tensor::i64(vec![3], vec![0, 1, 2]);
        let col = Tensor::i64(vec![3, 1], vec![0, 1, 2]);
        let mask = compare(&pos, Some(&col), CompareKind::Le).unwrap(); // j <= i
        assert_eq!(mask.shape, vec![3, 3]);
        let Data::Bool(m) = &mask.data else { panic!() };
        assert_eq!(m, &[true, false, false, true, true, false, true, true, true]);
        let s = Tensor::f32(vec![3, 3], (1..=9).map(|i| i as f32).collect());
        let ninf = Tensor::f32(vec![], vec![f32::NEG_INFINITY]);
        let w = where_(&mask, &s, &ninf).unwrap();
        assert_eq!(w.as_f32().unwrap()[1], f32::NEG_INFINITY);
        assert_eq!(w.as_f32().unwrap()[3], 4.0);
        let t = trilu(&s, false, 0).unwrap();
        assert_eq!(t.as_f32().unwrap(), &[1.0, 0.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0, 9.0]);
        let u = trilu(&s, true, 1).unwrap();
        assert_eq!(u.as_f32().unwrap(), &[0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0]);
        let c = cast(&mask, DType::F32).unwrap();
        assert_eq!(c.as_f32().unwrap()[0], 1.0);
        assert!(compare(&pos, Some(&s), CompareKind::Eq).is_err());
        assert!(trilu(&pos, false, 0).is_err());
    }
}
