//! RMS normalisation (ONNX RMSNormalization-23). The mean of squares is accumulated in f64 and
//! each output is computed in f64 then rounded once to f32, so the oracle is at least as
//! accurate as any fp32 kernel it is compared with.

use crate::error::OpError;
use crate::op_bail;
use crate::tensor::Tensor;

use super::shape::{broadcast_shape, broadcast_strides, expect_f32, norm_axis, strided_offsets};

/// Checks that `scale` broadcasts to the normalised dims x[axis..]; returns the normalised axis.
pub(crate) fn rms_norm_axis(x: &[usize], scale: &[usize], axis: i64) -> Result<usize, OpError> {
    if x.is_empty() {
        op_bail!("rms_norm: x must have rank >= 1, got a scalar");
    }
    let axis = norm_axis("rms_norm", axis, x.len())?;
    let inner = &x[axis..];
    let fits = scale.len() <= inner.len()
        && broadcast_shape("rms_norm", scale, inner).map(|s| s == inner).unwrap_or(false);
    if !fits {
        op_bail!("rms_norm: scale shape {scale:?} does not broadcast to the normalised dims {inner:?} (x {x:?}, axis {axis})");
    }
    Ok(axis)
}

/// `x / sqrt(mean(x^2 over dims axis..rank) + eps) * scale`, with `scale` broadcast
/// (numpy rules, unidirectionally) to the normalised dims `x.shape[axis..]`; negative axis
/// counts from the end.
pub(crate) fn rms_norm(x: &Tensor, scale: &Tensor, eps: f32, axis: i64) -> Result<Tensor, OpError> {
    let xv = expect_f32("rms_norm", "x", x)?;
    let sv = expect_f32("rms_norm", "scale", scale)?;
    let axis = rms_norm_axis(&x.shape, &scale.shape, axis)?;
    let inner = &x.shape[axis..];
    let n: usize = inner.iter().product();
    let s_full: Vec<f64> = strided_offsets(inner, &broadcast_strides(&scale.shape, inner), 0)
        .into_iter()
        .map(|o| sv[o] as f64)
        .collect();
    let mut out = Vec::with_capacity(xv.len());
    if n > 0 {
        for row in xv.chunks(n) {
            let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n as f64;
            let rms = (ms + eps as f64).sqrt();
            out.extend(row.iter().zip(&s_full).map(|(&v, &s)| (v as f64 / rms * s) as f32));
        }
    }
    Ok(Tensor::f32(x.shape.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    #[test]
    fn last_axis_matches_naive() {
        let mut g = Lcg::new(30);
        let x = g.tensor(&[3, 4, 16]);
        let s = g.tensor(&[16]);
        let y = rms_norm(&x, &s, 1e-5, -1).unwrap();
        let (xv, sv) = (x.as_f32().unwrap(), s.as_f32().unwrap());
        let mut want = vec![0f32; xv.len()];
        for r in 0..12 {
            let mut ss = 0f64;
            for c in 0..16 {
                ss += (xv[r * 16 + c] as f64).powi(2);
            }
            let inv = 1.0 / (ss / 16.0 + 1e-5f32 as f64).sqrt();
            for c in 0..16 {
                want[r * 16 + c] = (xv[r * 16 + c] as f64 * inv * sv[c] as f64) as f32;
            }
        }
        assert_close(y.as_f32().unwrap(), &want, 1e-7);
    }

    #[test]
    fn multi_dim_axis_with_broadcast_scale() {
        let mut g = Lcg::new(31);
        let x = g.tensor(&[2, 3, 4]);
        let s = g.tensor(&[1, 4]);
        let y = rms_norm(&x, &s, 0.5, 1).unwrap();
        let (xv, sv) = (x.as_f32().unwrap(), s.as_f32().unwrap());
        let mut want = vec![0f32; 24];
        for b in 0..2 {
            let ss: f64 = (0..12).map(|i| (xv[b * 12 + i] as f64).powi(2)).sum();
            let rms = (ss / 12.0 + 0.5).sqrt();
            for i in 0..12 {
                want[b * 12 + i] = (xv[b * 12 + i] as f64 / rms * sv[i % 4] as f64) as f32;
            }
        }
        assert_close(y.as_f32().unwrap(), &want, 1e-7);
        // A full-shape scale and a scalar scale also broadcast.
        let full = g.tensor(&[3, 4]);
        assert!(rms_norm(&x, &full, 1e-6, -2).is_ok());
        let one = Tensor::f32(vec![], vec![2.0]);
        let y1 = rms_norm(&x, &one, 1e-6, 0).unwrap();
        assert_eq!(y1.shape, x.shape);
        assert!(rms_norm(&x, &g.tensor(&[3]), 1e-6, -1).unwrap_err().0.contains("scale"));
        assert!(rms_norm(&x, &g.tensor(&[2, 3, 4]), 1e-6, 1).is_err());
        assert!(rms_norm(&x, &s, 1e-6, 3).unwrap_err().0.contains("axis"));
    }
}
