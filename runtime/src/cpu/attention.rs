//! Scaled dot-product attention (ONNX Attention-23, 3-D form) with GQA and bottom-right
//! causal masking. f32 throughout; the softmax subtracts the row max before exponentiating.

use crate::error::OpError;
use crate::op_bail;
use crate::tensor::Tensor;

use super::linalg::gemm_strided;
use super::shape::{broadcast_shape, broadcast_strides, expect_f32};
use crate::tensor::Data;

/// The checked dims of an attention op (shared with the CUDA backend).
pub(crate) struct AttnDims {
    pub nb: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

/// Checks q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv] and the head counts.
pub(crate) fn attention_dims([q, k, v]: [&[usize]; 3], q_heads: usize, kv_heads: usize) -> Result<AttnDims, OpError> {
    let op = "attention";
    if q_heads == 0 || kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        op_bail!("{op}: q_heads ({q_heads}) must be a positive multiple of kv_heads ({kv_heads})");
    }
    let (&[nb, lq, qw], &[kb, lk, kw], &[vb, lv, vw]) = (q, k, v) else {
        op_bail!("{op}: q, k, v must be rank 3 [B, L, H*D], got {:?}, {:?}, {:?}", q, k, v)
    };
    if kb != nb || vb != nb || lv != lk {
        op_bail!("{op}: q {:?}, k {:?}, v {:?} disagree on batch or key length", q, k, v);
    }
    if qw % q_heads != 0 || vw % kv_heads != 0 {
        op_bail!("{op}: q width {qw} / v width {vw} not divisible by q_heads {q_heads} / kv_heads {kv_heads}");
    }
    let (d, dv) = (qw / q_heads, vw / kv_heads);
    if kw != kv_heads * d {
        op_bail!("{op}: k width {kw} must be kv_heads * D = {kv_heads} * {d} (D from q {:?})", q);
    }
    Ok(AttnDims { nb, lq, lk, d, dv })
}

/// The strides of an attention mask of `shape` broadcast to [B, Hq, Lq, Lk] (checked).
pub(crate) fn mask_strides(shape: &[usize], full: [usize; 4]) -> Result<Vec<isize>, OpError> {
    if shape.len() > 4 || broadcast_shape("attention", shape, &full)? != full {
        op_bail!("attention: mask {shape:?} does not broadcast to [B, Hq, Lq, Lk] = {full:?}");
    }
    Ok(broadcast_strides(shape, &full))
}

/// softmax(scale * q k^T) v per head, for q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv]
/// -> [B,Lq,Hq*Dv]. Query head h reads kv head h / (Hq/Hkv); `scale` 0 means D^-1/2. When
/// `causal`, query i sees key j iff j <= i + Lk - Lq (bottom-right alignment); a row that sees
/// no key gives zeros. `window` = (left, right) bounds keys to `pos-left ..= pos+right` around
/// the query's absolute position `pos = i + Lk - Lq` (ONNX Attention-25 window sizes; -1 = no
/// bound): a causal window of w tokens is (w-1, 0). `top_left` puts query i at position i
/// instead (ONNX Attention without a past).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    causal: bool,
    window: (i64, i64),
    top_left: bool,
) -> Result<Tensor, OpError> {
    attention_masked(q, k, v, None, q_heads, kv_heads, scale, causal, window, top_left)
}

/// `attention` with an optional mask broadcastable to [B, Hq, Lq, Lk] added to the scaled
/// scores: f32 values are added, bool false excludes the key (ONNX Attention's attn_mask).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_masked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    causal: bool,
    window: (i64, i64),
    top_left: bool,
) -> Result<Tensor, OpError> {
    let op = "attention";
    let qv = expect_f32(op, "q", q)?;
    let kv = expect_f32(op, "k", k)?;
    let vv = expect_f32(op, "v", v)?;
    let AttnDims { nb, lq, lk, d, dv } = attention_dims([&q.shape, &k.shape, &v.shape], q_heads, kv_heads)?;
    let scale = if scale == 0.0 { (1.0 / (d as f64).sqrt()) as f32 } else { scale };
    let group = q_heads / kv_heads;
    // The mask as an additive f32 [B, Hq, Lq, Lk] view: offsets into its data per (b, h, i, j).
    let mask_add: Option<(Vec<f32>, Vec<isize>)> = match mask {
        None => None,
        Some(m) => {
            let strides = mask_strides(&m.shape, [nb, q_heads, lq, lk])?;
            let vals: Vec<f32> = match &m.data {
                Data::F32(x) => x.clone(),
                Data::Bool(x) => x.iter().map(|&b| if b { 0.0 } else { f32::NEG_INFINITY }).collect(),
                Data::I64(_) => op_bail!("{op}: mask must be bool or f32"),
            };
            Some((vals, strides))
        }
    };
    // Per block of query rows and head: S = q k^T over the keys any row of the block sees
    // (one sgemm), the masked softmax row by row, then out = P v (one sgemm).
    const ROWS: usize = 128;
    let visible = |i: usize| -> (usize, usize) {
        let pos = if top_left { i as i64 } else { i as i64 + lk as i64 - lq as i64 };
        let mut n = if causal { (pos + 1).clamp(0, lk as i64) as usize } else { lk };
        if window.1 >= 0 {
            n = n.min((pos + window.1 + 1).clamp(0, lk as i64) as usize);
        }
        let lo = if window.0 >= 0 { (pos - window.0).clamp(0, lk as i64) as usize } else { 0 };
        (lo, n.max(lo))
    };
    let mut out = vec![0f32; nb * lq * q_heads * dv];
    let mut s = vec![0f32; ROWS.min(lq) * lk];
    for b in 0..nb {
        for h in 0..q_heads {
            let hk = h / group;
            for i0 in (0..lq).step_by(ROWS) {
                let rows = ROWS.min(lq - i0);
                // Both bounds grow with i: the block's keys are lo(first)..n(last).
                let (lo_b, n_b) = (visible(i0).0, visible(i0 + rows - 1).1.max(visible(i0).0));
                let kn = n_b - lo_b;
                let q0 = ((b * lq + i0) * q_heads + h) * d;
                let k0 = ((b * lk + lo_b) * kv_heads + hk) * d;
                gemm_strided(rows, d, kn, &qv[q0..], (q_heads * d, 1), &kv[k0.min(kv.len())..], (1, kv_heads * d), &mut s, kn);
                for r in 0..rows {
                    let i = i0 + r;
                    let (lo, n) = visible(i);
                    let row = &mut s[r * kn..(r + 1) * kn];
                    let mut max = f32::NEG_INFINITY;
                    for (jj, x) in row.iter_mut().enumerate() {
                        let j = lo_b + jj;
                        if j < lo || j >= n {
                            *x = f32::NEG_INFINITY;
                            continue;
                        }
                        *x *= scale;
                        if let Some((mv, ms)) = &mask_add {
                            *x += mv[(b as isize * ms[0] + h as isize * ms[1] + i as isize * ms[2] + j as isize * ms[3]) as usize];
                        }
                        max = max.max(*x);
                    }
                    if max == f32::NEG_INFINITY {
                        row.fill(0.0); // every visible key masked: zeros
                        continue;
                    }
                    let mut sum = 0f32;
                    for x in row.iter_mut() {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                    row.iter_mut().for_each(|x| *x /= sum);
                }
                let v0 = ((b * lk + lo_b) * kv_heads + hk) * dv;
                let o0 = ((b * lq + i0) * q_heads + h) * dv;
                gemm_strided(rows, kn, dv, &s, (kn, 1), &vv[v0.min(vv.len())..], (kv_heads * dv, 1), &mut out[o0..], q_heads * dv);
            }
        }
    }
    Ok(Tensor::f32(vec![nb, lq, q_heads * dv], out))
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    /// Explicit reference: full score matrix with -inf masking, row softmax, then P V.
    #[allow(clippy::too_many_arguments)]
    fn naive(q: &[f32], k: &[f32], v: &[f32], nb: usize, lq: usize, lk: usize, hq: usize, hkv: usize, d: usize, dv: usize, scale: f32, causal: bool) -> Vec<f32> {
        let mut out = vec![0f32; nb * lq * hq * dv];
        for b in 0..nb {
            for h in 0..hq {
                let hk = h * hkv / hq;
                let mut scores = vec![vec![f32::NEG_INFINITY; lk]; lq];
                for (i, row) in scores.iter_mut().enumerate() {
                    for (j, sc) in row.iter_mut().enumerate() {
                        if causal && j as i64 > i as i64 + lk as i64 - lq as i64 {
                            continue;
                        }
                        let mut dot = 0f32;
                        for x in 0..d {
                            dot += q[((b * lq + i) * hq + h) * d + x] * k[((b * lk + j) * hkv + hk) * d + x];
                        }
                        *sc = scale * dot;
                    }
                }
                for (i, row) in scores.iter().enumerate() {
                    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    if m == f32::NEG_INFINITY {
                        continue; // fully masked: zeros
                    }
                    let e: Vec<f32> = row.iter().map(|&s| (s - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for c in 0..dv {
                        let mut acc = 0f32;
                        for (j, &ej) in e.iter().enumerate() {
                            acc += (ej / z) * v[((b * lk + j) * hkv + hk) * dv + c];
                        }
                        out[((b * lq + i) * hq + h) * dv + c] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn sliding_window_keeps_the_last_w_keys() {
        // One head, D = 1, keys equal: the output is the mean of the visible values; 300 rows
        // cross the blocks of 128 query rows.
        for (l, w) in [(6usize, 3i64), (300, 37)] {
            let q = Tensor::f32(vec![1, l, 1], vec![1.0; l]);
            let k = Tensor::f32(vec![1, l, 1], vec![1.0; l]);
            let vals: Vec<f32> = (0..l).map(|j| (j % 7 * j % 5) as f32 + 1.0).collect();
            let v = Tensor::f32(vec![1, l, 1], vals.clone());
            let y = attention(&q, &k, &v, 1, 1, 1.0, true, (w - 1, 0), false).unwrap();
            for i in 0..l {
                let lo = i.saturating_sub(w as usize - 1);
                let want: f32 = vals[lo..=i].iter().sum::<f32>() / (i - lo + 1) as f32;
                assert!((y.as_f32().unwrap()[i] - want).abs() < 1e-5, "l {l} row {i}");
            }
        }
    }

    #[test]
    fn matches_explicit_softmax_with_gqa_and_masks() {
        let (nb, hq, hkv, d, dv) = (2, 4, 2, 8, 3);
        // Beyond 128 query rows the op works in blocks: block edges, more queries than keys
        // (leading rows see nothing, across blocks) and a non-causal block.
        for (lq, lk, causal) in [(5, 5, false), (5, 5, true), (3, 7, true), (6, 4, true), (1, 6, true), (3, 7, false), (300, 300, true), (200, 450, true), (260, 130, true), (129, 140, false)] {
            let mut g = Lcg::new(80 + (lq * 10 + lk) as u64);
            let q = g.tensor(&[nb, lq, hq * d]);
            let k = g.tensor(&[nb, lk, hkv * d]);
            let v = g.tensor(&[nb, lk, hkv * dv]);
            let y = attention(&q, &k, &v, hq, hkv, 0.0, causal, (-1, -1), false).unwrap();
            assert_eq!(y.shape, vec![nb, lq, hq * dv]);
            let scale = (1.0 / (d as f64).sqrt()) as f32;
            let want = naive(q.as_f32().unwrap(), k.as_f32().unwrap(), v.as_f32().unwrap(), nb, lq, lk, hq, hkv, d, dv, scale, causal);
            assert_close(y.as_f32().unwrap(), &want, 1e-6);
        }
    }

    #[test]
    fn fully_masked_rows_are_zero_and_large_scores_are_stable() {
        // Lq = 4 > Lk = 2, causal: query i sees keys j <= i - 2, so rows 0 and 1 see nothing.
        let mut g = Lcg::new(90);
        let q = g.tensor(&[1, 4, 2]);
        let k = g.tensor(&[1, 2, 2]);
        let v = g.tensor(&[1, 2, 3]);
        let y = attention(&q, &k, &v, 1, 1, 1e4, true, (-1, -1), false).unwrap();
        let yv = y.as_f32().unwrap();
        assert!(yv[..6].iter().all(|&x| x == 0.0));
        // Row 2 sees only key 0: output = v[0].
        assert_eq!(&yv[6..9], &v.as_f32().unwrap()[..3]);
        // Huge scale: no overflow, no NaN.
        assert!(yv.iter().all(|x| x.is_finite()));
        // One key, no mask: the softmax weight is exactly 1, so every row is v[0].
        let y1 = attention(&g.tensor(&[1, 3, 2]), &g.tensor(&[1, 1, 2]), &v.clone(), 1, 1, 0.0, false, (-1, -1), false);
        assert!(y1.unwrap_err().0.contains("key length"));
        let v1 = Tensor::f32(vec![1, 1, 3], v.as_f32().unwrap()[..3].to_vec());
        let y1 = attention(&g.tensor(&[1, 3, 2]), &g.tensor(&[1, 1, 2]), &v1, 1, 1, 0.0, false, (-1, -1), false).unwrap();
        assert_eq!(y1.as_f32().unwrap(), &[v1.as_f32().unwrap(), v1.as_f32().unwrap(), v1.as_f32().unwrap()].concat()[..]);
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut g = Lcg::new(91);
        let q = g.tensor(&[1, 2, 8]);
        let k = g.tensor(&[1, 3, 4]);
        let v = g.tensor(&[1, 3, 6]);
        assert!(attention(&q, &k, &v, 2, 1, 0.0, false, (-1, -1), false).is_ok());
        assert!(attention(&q, &k, &v, 2, 3, 0.0, false, (-1, -1), false).unwrap_err().0.contains("multiple"));
        assert!(attention(&q, &k, &v, 1, 1, 0.0, false, (-1, -1), false).unwrap_err().0.contains("k width"));
        assert!(attention(&q, &k, &g.tensor(&[1, 2, 6]), 2, 1, 0.0, false, (-1, -1), false).unwrap_err().0.contains("key length"));
        assert!(attention(&g.tensor(&[2, 8]), &k, &v, 2, 1, 0.0, false, (-1, -1), false).unwrap_err().0.contains("rank 3"));
    }
}
