//! Depthwise causal 1-D convolution with carried state (ONNX CausalConvWithState-27, but
//! channels-last [B, L, C]). Sums run in f32 over the taps j = 0..k, then the bias is added,
//! then the optional SiLU, as in the ONNX reference.

use crate::error::OpError;
use crate::op_bail;
use crate::tensor::Tensor;

use super::elementwise::silu;
use super::shape::expect_f32;

/// The checked dims of a causal convolution (shared with the CUDA backend).
pub(crate) struct ConvDims {
    pub nb: usize,
    pub l: usize,
    pub c: usize,
    /// Kernel size (taps).
    pub k: usize,
    pub silu: bool,
}

/// Checks the activation and the shapes of x [B, L, C], weight [C, k] or [C, 1, k], bias [C]
/// and state [B, C, k-1] (see `causal_conv`).
pub(crate) fn conv_dims(x: &[usize], w: &[usize], bias: Option<&[usize]>, state: Option<&[usize]>, activation: &str) -> Result<ConvDims, OpError> {
    let silu = match activation {
        "" | "none" => false,
        "silu" | "swish" => true,
        other => op_bail!("causal_conv: unsupported activation {other:?} (expected \"\", \"none\", \"silu\" or \"swish\")"),
    };
    let &[nb, l, c] = x else { op_bail!("causal_conv: x must be [B, L, C], got shape {x:?}") };
    let k = match *w {
        [wc, k] | [wc, 1, k] if wc == c => k,
        _ => op_bail!("causal_conv: weight must be [C, k] or [C, 1, k] with C = {c}, got shape {w:?}"),
    };
    if k == 0 {
        op_bail!("causal_conv: kernel size is 0 (weight shape {w:?})");
    }
    if let Some(b) = bias.filter(|b| *b != [c]) {
        op_bail!("causal_conv: bias must be [{c}], got shape {b:?}");
    }
    if let Some(s) = state.filter(|s| *s != [nb, c, k - 1]) {
        op_bail!("causal_conv: state must be [B, C, k-1] = [{nb}, {c}, {}], got shape {s:?}", k - 1);
    }
    Ok(ConvDims { nb, l, c, k, silu })
}

/// y[b,t,c] = act(sum_j w[c,j] * xpad[b,t+j,c] + bias[c]), where xpad is `state` [B, C, k-1]
/// (zeros if absent) followed by x [B, L, C] along time; tap k-1 multiplies the current token.
/// Returns (y [B, L, C], state_out [B, C, k-1] = the last k-1 entries of xpad). The weight is
/// [C, k] or [C, 1, k]; `activation` is "" / "none" or "silu" / "swish".
pub(crate) fn causal_conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    state: Option<&Tensor>,
    activation: &str,
) -> Result<(Tensor, Tensor), OpError> {
    let ConvDims { nb, l, c, k, silu: apply_silu } = conv_dims(&x.shape, &w.shape, bias.map(|b| &b.shape[..]), state.map(|s| &s.shape[..]), activation)?;
    let xv = expect_f32("causal_conv", "x", x)?;
    let wv = expect_f32("causal_conv", "weight", w)?;
    let bv = bias.map(|b| expect_f32("causal_conv", "bias", b)).transpose()?;
    let sv = state.map(|s| expect_f32("causal_conv", "state", s)).transpose()?;
    let p = k - 1;
    let mut y = vec![0f32; nb * l * c];
    let mut st = vec![0f32; nb * c * p];
    // Row-major over time, all channels of a row at once (contiguous, vectorisable): input row
    // t - p + j is the state's column t + j for t + j < p, else x's row t + j - p.
    let mut wt = vec![0f32; k * c]; // taps transposed: [j][ch]
    for ch in 0..c {
        for j in 0..k {
            wt[j * c + ch] = wv[ch * k + j];
        }
    }
    let mut past = vec![0f32; p * c]; // the state as rows: [j][ch]
    for b in 0..nb {
        match sv {
            Some(sv) => {
                for ch in 0..c {
                    for j in 0..p {
                        past[j * c + ch] = sv[(b * c + ch) * p + j];
                    }
                }
            }
            None => past.fill(0.0),
        }
        let xb = &xv[b * l * c..(b + 1) * l * c];
        let row = |i: usize| -> &[f32] { if i < p { &past[i * c..(i + 1) * c] } else { &xb[(i - p) * c..(i - p + 1) * c] } };
        for t in 0..l {
            let yr = &mut y[(b * l + t) * c..(b * l + t + 1) * c];
            yr.fill(0.0);
            for j in 0..k {
                let (xr, wr) = (row(t + j), &wt[j * c..(j + 1) * c]);
                for ((acc, &xi), &wi) in yr.iter_mut().zip(xr).zip(wr) {
                    *acc += wi * xi;
                }
            }
            if let Some(bv) = bv {
                yr.iter_mut().zip(bv).for_each(|(a, &bi)| *a += bi);
            }
            if apply_silu {
                yr.iter_mut().for_each(|a| *a = silu(*a));
            }
        }
        // The new state: the last p input rows (older state rows where l < p), channel-major.
        for j in 0..p {
            let r = row(l + j);
            for ch in 0..c {
                st[(b * c + ch) * p + j] = r[ch];
            }
        }
    }
    Ok((Tensor::f32(vec![nb, l, c], y), Tensor::f32(vec![nb, c, p], st)))
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    #[test]
    fn hand_computed_values_with_state_and_bias() {
        // B=1, L=2, C=2, k=3. x[t, c]; w[c, j]; state[c, :] = two past inputs (oldest first).
        let x = Tensor::f32(vec![1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let w = Tensor::f32(vec![2, 1, 3], vec![1.0, 2.0, 3.0, -1.0, 0.5, 2.0]);
        let bias = Tensor::f32(vec![2], vec![0.5, -1.0]);
        let state = Tensor::f32(vec![1, 2, 2], vec![5.0, 6.0, 7.0, 8.0]);
        let (y, st) = causal_conv(&x, &w, Some(&bias), Some(&state), "").unwrap();
        // channel 0: xpad = [5, 6, 1, 3]; t0 = 1*5 + 2*6 + 3*1 + 0.5 = 20.5; t1 = 1*6 + 2*1 + 3*3 + 0.5 = 17.5
        // channel 1: xpad = [7, 8, 2, 4]; t0 = -7 + 4 + 4 - 1 = 0; t1 = -8 + 1 + 8 - 1 = 0
        assert_eq!(y.as_f32().unwrap(), &[20.5, 0.0, 17.5, 0.0]);
        assert_eq!(st.shape, vec![1, 2, 2]);
        assert_eq!(st.as_f32().unwrap(), &[1.0, 3.0, 2.0, 4.0]);
        // No state: zeros in front; [C, k] weight layout; silu.
        let w2 = Tensor::f32(vec![2, 3], w.as_f32().unwrap().to_vec());
        let (y, st) = causal_conv(&x, &w2, None, None, "silu").unwrap();
        // channel 0: xpad = [0, 0, 1, 3]: t0 = 3, t1 = 2 + 9 = 11; channel 1: xpad = [0, 0, 2, 4]: t0 = 4, t1 = 1 + 8 = 9
        let s = |v: f32| v / (1.0 + (-v).exp());
        assert_close(y.as_f32().unwrap(), &[s(3.0), s(4.0), s(11.0), s(9.0)], 1e-7);
        assert_eq!(st.as_f32().unwrap(), &[1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn short_input_keeps_older_state() {
        // L = 1 < k - 1 = 3: the new state is the old state shifted by one plus x.
        let x = Tensor::f32(vec![1, 1, 1], vec![9.0]);
        let w = Tensor::f32(vec![1, 4], vec![1.0, 10.0, 100.0, 1000.0]);
        let state = Tensor::f32(vec![1, 1, 3], vec![1.0, 2.0, 3.0]);
        let (y, st) = causal_conv(&x, &w, None, Some(&state), "none").unwrap();
        assert_eq!(y.as_f32().unwrap(), &[1.0 + 20.0 + 300.0 + 9000.0]);
        assert_eq!(st.as_f32().unwrap(), &[2.0, 3.0, 9.0]);
        // k = 1: empty state.
        let (y, st) = causal_conv(&x, &Tensor::f32(vec![1, 1], vec![2.0]), None, None, "").unwrap();
        assert_eq!(y.as_f32().unwrap(), &[18.0]);
        assert_eq!(st.shape, vec![1, 1, 0]);
    }

    #[test]
    fn chunked_run_equals_full_run() {
        let mut g = Lcg::new(50);
        let (nb, l, c, k) = (2, 7, 5, 4);
        let x = g.tensor(&[nb, l, c]);
        let w = g.tensor(&[c, 1, k]);
        let bias = g.tensor(&[c]);
        let state = g.tensor(&[nb, c, k - 1]);
        let (y_full, st_full) = causal_conv(&x, &w, Some(&bias), Some(&state), "silu").unwrap();
        // Naive reference from an explicitly built padded array [B, k-1+L, C].
        let (xv, wv, bv, sv) = (x.as_f32().unwrap(), w.as_f32().unwrap(), bias.as_f32().unwrap(), state.as_f32().unwrap());
        let pad = |b: usize, t: usize, ch: usize| if t < k - 1 { sv[(b * c + ch) * (k - 1) + t] } else { xv[(b * l + t - (k - 1)) * c + ch] };
        let mut want = vec![0f32; nb * l * c];
        for b in 0..nb {
            for t in 0..l {
                for ch in 0..c {
                    let mut acc = 0f32;
                    for j in 0..k {
                        acc += wv[ch * k + j] * pad(b, t + j, ch);
                    }
                    let v = acc + bv[ch];
                    want[(b * l + t) * c + ch] = v * (1.0 / (1.0 + (-v).exp()));
                }
            }
        }
        assert_close(y_full.as_f32().unwrap(), &want, 1e-6);
        // Split the sequence 3 + 4 and carry the state.
        let split = |t0: usize, t1: usize| {
            let mut v = Vec::new();
            for b in 0..nb {
                v.extend_from_slice(&xv[(b * l + t0) * c..(b * l + t1) * c]);
            }
            Tensor::f32(vec![nb, t1 - t0, c], v)
        };
        let (y1, s1) = causal_conv(&split(0, 3), &w, Some(&bias), Some(&state), "silu").unwrap();
        let (y2, s2) = causal_conv(&split(3, l), &w, Some(&bias), Some(&s1), "silu").unwrap();
        assert_eq!(s2, st_full);
        let yf = y_full.as_f32().unwrap();
        for b in 0..nb {
            assert_eq!(&y1.as_f32().unwrap()[b * 3 * c..(b + 1) * 3 * c], &yf[b * l * c..(b * l + 3) * c]);
            assert_eq!(&y2.as_f32().unwrap()[b * 4 * c..(b + 1) * 4 * c], &yf[(b * l + 3) * c..(b + 1) * l * c]);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut g = Lcg::new(51);
        let x = g.tensor(&[1, 3, 4]);
        let w = g.tensor(&[4, 3]);
        assert!(causal_conv(&x, &g.tensor(&[3, 3]), None, None, "").unwrap_err().0.contains("weight"));
        assert!(causal_conv(&x, &w, Some(&g.tensor(&[3])), None, "").unwrap_err().0.contains("bias"));
        assert!(causal_conv(&x, &w, None, Some(&g.tensor(&[1, 4, 3])), "").unwrap_err().0.contains("state"));
        assert!(causal_conv(&x, &w, None, None, "gelu").unwrap_err().0.contains("activation"));
        assert!(causal_conv(&g.tensor(&[3, 4]), &w, None, None, "").unwrap_err().0.contains("[B, L, C]"));
    }
}
