//! Elementwise ops: binary arithmetic with numpy broadcasting and the unary functions, with
//! numerically safe sigmoid / softplus / SiLU.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::{BinaryKind, UnaryKind};
use crate::tensor::{Data, Tensor};

use super::shape::{broadcast_shape, broadcast_strides, strided_offsets};

/// Logistic sigmoid without overflow for large |x| (exp is only taken of a non-positive value).
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + e^x) computed as max(x, 0) + ln(1 + e^-|x|): no overflow, no loss for large |x|.
pub(crate) fn softplus(x: f32) -> f32 {
    let pos = if x > 0.0 { x } else { 0.0 };
    pos + (-x.abs()).exp().ln_1p()
}

/// SiLU / swish: x * sigmoid(x).
pub(crate) fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// `n` outputs written by `fill(chunk, first index)`; long outputs (a prefill's activations) in
/// chunks on all cores.
fn par_fill(n: usize, fill: impl Fn(&mut [f32], usize) + Sync) -> Vec<f32> {
    const MIN_PER_THREAD: usize = 1 << 15;
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get()).min(n / MIN_PER_THREAD).max(1);
    let mut out = vec![0f32; n];
    if threads == 1 {
        fill(&mut out, 0);
        return out;
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|sc| {
        for (c, o) in out.chunks_mut(per).enumerate() {
            let fill = &fill;
            sc.spawn(move || fill(o, c * per));
        }
    });
    out
}

/// `f` over every element; long inputs on all cores (`par_fill`).
pub(crate) fn par_map(v: &[f32], f: fn(f32) -> f32) -> Vec<f32> {
    par_fill(v.len(), |o, s| o.iter_mut().zip(&v[s..]).for_each(|(o, &p)| *o = f(p)))
}

/// `f(a[i], b[i])` over two same-shape inputs; long ones on all cores (`par_fill`).
fn par_zip(a: &[f32], b: &[f32], f: fn(f32, f32) -> f32) -> Vec<f32> {
    par_fill(a.len(), |o, s| o.iter_mut().zip(&a[s..]).zip(&b[s..]).for_each(|((o, &p), &q)| *o = f(p, q)))
}

/// `f(a[i], b[j])` over the broadcast of the two shapes, in row-major order of `out`.
fn zip_broadcast<T: Copy>(a: &[T], sa: &[usize], b: &[T], sb: &[usize], out: &[usize], f: impl Fn(T, T) -> T) -> Vec<T> {
    if sa == sb {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    if b.len() == 1 && sa == out {
        return a.iter().map(|&x| f(x, b[0])).collect();
    }
    if a.len() == 1 && sb == out {
        return b.iter().map(|&y| f(a[0], y)).collect();
    }
    let oa = strided_offsets(out, &broadcast_strides(sa, out), 0);
    let ob = strided_offsets(out, &broadcast_strides(sb, out), 0);
    oa.iter().zip(&ob).map(|(&i, &j)| f(a[i], b[j])).collect()
}

/// Binary arithmetic with numpy broadcasting: f32 for every kind; int64 for Add, Sub, Mul
/// (wrapping), Div (truncating toward zero, as ONNX Runtime; division by zero is an error), Min
/// and Max.
pub(crate) fn binary(a: &Tensor, b: &Tensor, kind: BinaryKind) -> Result<Tensor, OpError> {
    let op = format!("binary {kind:?}");
    if a.dtype() != b.dtype() {
        op_bail!("{op}: operand dtypes differ ({:?} vs {:?})", a.dtype(), b.dtype());
    }
    let out = broadcast_shape(&op, &a.shape, &b.shape)?;
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let f: fn(f32, f32) -> f32 = match kind {
                BinaryKind::Add => |p, q| p + q,
                BinaryKind::Sub => |p, q| p - q,
                BinaryKind::Mul => |p, q| p * q,
                BinaryKind::Div => |p, q| p / q,
                BinaryKind::Pow => f32::powf,
                BinaryKind::Min => f32::min,
                BinaryKind::Max => f32::max,
                BinaryKind::SiluMul => |p, q| silu(p) * q,
            };
            Data::F32(if a.shape == b.shape { par_zip(x, y, f) } else { zip_broadcast(x, &a.shape, y, &b.shape, &out, f) })
        }
        (Data::I64(x), Data::I64(y)) => {
            let f: fn(i64, i64) -> i64 = match kind {
                BinaryKind::Add => i64::wrapping_add,
                BinaryKind::Sub => i64::wrapping_sub,
                BinaryKind::Mul => i64::wrapping_mul,
                BinaryKind::Div => {
                    if out.iter().product::<usize>() > 0 && y.contains(&0) {
                        op_bail!("{op}: int64 division by zero");
                    }
                    i64::wrapping_div
                }
                BinaryKind::Pow | BinaryKind::SiluMul => op_bail!("{op}: int64 operands are not supported (only f32)"),
                BinaryKind::Min => |p: i64, q: i64| p.min(q),
                BinaryKind::Max => |p: i64, q: i64| p.max(q),
            };
            Data::I64(zip_broadcast(x, &a.shape, y, &b.shape, &out, f))
        }
        _ => op_bail!("{op}: {:?} operands are not supported", a.dtype()),
    };
    Ok(Tensor { shape: out, data })
}

/// Elementwise unary function on f32 (Identity: any dtype; Neg, Abs, Relu also int64).
pub(crate) fn unary(x: &Tensor, kind: UnaryKind) -> Result<Tensor, OpError> {
    if kind == UnaryKind::Identity {
        return Ok(x.clone());
    }
    let data = match &x.data {
        Data::F32(v) => {
            let f: fn(f32) -> f32 = match kind {
                UnaryKind::Neg => |p| -p,
                UnaryKind::Exp => f32::exp,
                UnaryKind::Sigmoid => sigmoid,
                UnaryKind::Softplus => softplus,
                UnaryKind::Sqrt => f32::sqrt,
                UnaryKind::Silu => silu,
                UnaryKind::Log => f32::ln,
                UnaryKind::Tanh => f32::tanh,
                // NaN stays NaN (a NaN comparison is false).
                UnaryKind::Relu => |p| if p < 0.0 { 0.0 } else { p },
                UnaryKind::Reciprocal => |p| 1.0 / p,
                UnaryKind::Abs => f32::abs,
                UnaryKind::Identity => |p| p,
                UnaryKind::Sin => f32::sin,
                UnaryKind::Cos => f32::cos,
            };
            Data::F32(par_map(v, f))
        }
        Data::I64(v) => {
            let f: fn(i64) -> i64 = match kind {
                UnaryKind::Neg => i64::wrapping_neg,
                UnaryKind::Abs => i64::wrapping_abs,
                UnaryKind::Relu => |p| p.max(0),
                _ => op_bail!("unary {kind:?}: int64 input is not supported (only f32)"),
            };
            Data::I64(v.iter().map(|&p| f(p)).collect())
        }
        Data::Bool(_) => op_bail!("unary {kind:?}: bool input is not supported"),
    };
    Ok(Tensor { shape: x.shape.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    #[test]
    fn binary_broadcasts_like_numpy() {
        let mut g = Lcg::new(10);
        let a = g.tensor(&[2, 1, 3]);
        let mut b = g.tensor(&[4, 1]);
        // Positive base for Pow.
        let a_pos = Tensor::f32(a.shape.clone(), f32s(&a).iter().map(|v| v.abs()).collect());
        if let Data::F32(v) = &mut b.data {
            v[0] = 2.5;
        }
        for kind in [BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul, BinaryKind::Div, BinaryKind::Pow, BinaryKind::Min, BinaryKind::Max, BinaryKind::SiluMul] {
            let y = binary(&a_pos, &b, kind).unwrap();
            assert_eq!(y.shape, vec![2, 4, 3]);
            let (av, bv) = (f32s(&a_pos), f32s(&b));
            let mut want = Vec::new();
            for i in 0..2 {
                for &bj in bv {
                    for k in 0..3 {
                        let (p, q) = (av[i * 3 + k], bj);
                        want.push(match kind {
                            BinaryKind::Add => p + q,
                            BinaryKind::Sub => p - q,
                            BinaryKind::Mul => p * q,
                            BinaryKind::Div => p / q,
                            BinaryKind::Pow => p.powf(q),
                            BinaryKind::Min => if p < q { p } else { q },
                            BinaryKind::Max => if p > q { p } else { q },
                            BinaryKind::SiluMul => p * (1.0 / (1.0 + (-p).exp())) * q,  // p > 0
                        });
                    }
                }
            }
            assert_eq!(f32s(&y), &want[..], "{kind:?}");
        }
        // Same shapes, scalar on the left.
        let s = Tensor::f32(vec![], vec![3.0]);
        let y = binary(&s, &a, BinaryKind::Sub).unwrap();
        assert_eq!(y.shape, a.shape);
        assert_eq!(f32s(&y)[4], 3.0 - f32s(&a)[4]);
        let y = binary(&a, &a, BinaryKind::Mul).unwrap();
        assert_eq!(f32s(&y)[5], f32s(&a)[5] * f32s(&a)[5]);
    }

    #[test]
    fn binary_int64_and_errors() {
        let a = Tensor::i64(vec![2, 2], vec![7, -7, 9, 10]);
        let b = Tensor::i64(vec![1], vec![2]);
        assert_eq!(binary(&a, &b, BinaryKind::Div).unwrap().as_i64().unwrap(), &[3, -3, 4, 5]);
        assert_eq!(binary(&a, &b, BinaryKind::Add).unwrap().as_i64().unwrap(), &[9, -5, 11, 12]);
        let c = Tensor::i64(vec![2, 1], vec![1, -1]);
        assert_eq!(binary(&a, &c, BinaryKind::Mul).unwrap().as_i64().unwrap(), &[7, -7, -9, -10]);
        assert_eq!(binary(&a, &c, BinaryKind::Sub).unwrap().as_i64().unwrap(), &[6, -8, 10, 11]);
        assert!(binary(&a, &Tensor::i64(vec![1], vec![0]), BinaryKind::Div).unwrap_err().0.contains("zero"));
        assert!(binary(&a, &b, BinaryKind::Pow).is_err());
        assert!(binary(&a, &Tensor::f32(vec![1], vec![1.0]), BinaryKind::Add).unwrap_err().0.contains("dtypes"));
        let e = binary(&Tensor::f32(vec![2, 3], vec![1.0; 6]), &Tensor::f32(vec![2], vec![1.0; 2]), BinaryKind::Add);
        assert!(e.unwrap_err().0.contains("broadcast"));
    }

    #[test]
    fn par_map_equals_the_serial_map() {
        let x: Vec<f32> = Lcg::new(12).vec(200_003).iter().map(|v| v * 8.0).collect();
        let want: Vec<f32> = x.iter().map(|&p| silu(p)).collect();
        assert_eq!(par_map(&x, silu), want);
        assert_eq!(par_map(&x[..5], silu), want[..5]);
        // Same-shape binaries split the same way.
        let y: Vec<f32> = Lcg::new(13).vec(200_003);
        let want: Vec<f32> = x.iter().zip(&y).map(|(&p, &q)| silu(p) * q).collect();
        let t = |v: &[f32]| Tensor::f32(vec![v.len()], v.to_vec());
        assert_eq!(binary(&t(&x), &t(&y), BinaryKind::SiluMul).unwrap().as_f32().unwrap(), &want[..]);
    }

    #[test]
    fn unary_matches_f64_formulas() {
        let mut g = Lcg::new(11);
        let x: Vec<f32> = g.vec(257).iter().map(|v| v * 8.0).collect();
        let t = Tensor::f32(vec![257], x.clone());
        let check = |kind: UnaryKind, f: &dyn Fn(f64) -> f64| {
            let y = unary(&t, kind).unwrap();
            let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
            assert_close(f32s(&y), &want, 1e-6);
        };
        check(UnaryKind::Sigmoid, &|v| 1.0 / (1.0 + (-v).exp()));
        check(UnaryKind::Softplus, &|v| (1.0 + v.exp()).ln());
        check(UnaryKind::Silu, &|v| v / (1.0 + (-v).exp()));
        check(UnaryKind::Exp, &|v| v.exp());
        check(UnaryKind::Tanh, &|v| v.tanh());
        check(UnaryKind::Neg, &|v| -v);
        check(UnaryKind::Abs, &|v| v.abs());
        check(UnaryKind::Relu, &|v| v.max(0.0));
        check(UnaryKind::Reciprocal, &|v| 1.0 / v);
        check(UnaryKind::Sin, &|v| v.sin());
        check(UnaryKind::Cos, &|v| v.cos());
        let pos = Tensor::f32(vec![257], x.iter().map(|v| v.abs()).collect());
        let y = unary(&pos, UnaryKind::Sqrt).unwrap();
        assert_close(f32s(&y), &x.iter().map(|v| v.abs().sqrt()).collect::<Vec<_>>(), 1e-7);
        let y = unary(&pos, UnaryKind::Log).unwrap();
        assert_close(f32s(&y), &x.iter().map(|v| (v.abs() as f64).ln() as f32).collect::<Vec<_>>(), 1e-6);
    }

    #[test]
    fn unary_is_safe_for_large_inputs() {
        let t = Tensor::f32(vec![4], vec![100.0, -100.0, 1000.0, -1000.0]);
        let sp = unary(&t, UnaryKind::Softplus).unwrap();
        let v = f32s(&sp);
        assert_eq!(v[0], 100.0);
        assert_eq!(v[2], 1000.0);
        // e^-100 is subnormal in f32: only a few significant bits survive.
        assert!(v[1] > 0.0 && ((v[1] as f64) / (-100f64).exp() - 1.0).abs() < 0.05);
        assert_eq!(v[3], 0.0);
        let sg = unary(&t, UnaryKind::Sigmoid).unwrap();
        assert_eq!(f32s(&sg), &[1.0, (-100f32).exp() / (1.0 + (-100f32).exp()), 1.0, 0.0]);
        let si = unary(&t, UnaryKind::Silu).unwrap();
        assert_eq!(f32s(&si)[0], 100.0);
        assert_eq!(f32s(&si)[3], 0.0);
        assert!(f32s(&si).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn unary_dtypes() {
        let i = Tensor::i64(vec![3], vec![-2, 0, 5]);
        assert_eq!(unary(&i, UnaryKind::Neg).unwrap().as_i64().unwrap(), &[2, 0, -5]);
        assert_eq!(unary(&i, UnaryKind::Relu).unwrap().as_i64().unwrap(), &[0, 0, 5]);
        assert_eq!(unary(&i, UnaryKind::Identity).unwrap(), i);
        assert!(unary(&i, UnaryKind::Exp).unwrap_err().0.contains("int64"));
        let b = Tensor { shape: vec![1], data: Data::Bool(vec![true]) };
        assert!(unary(&b, UnaryKind::Neg).is_err());
        assert_eq!(unary(&b, UnaryKind::Identity).unwrap(), b);
    }
}
