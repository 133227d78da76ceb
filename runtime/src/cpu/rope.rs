//! Rotary position embedding (ONNX RotaryEmbedding-23): interleaved pairs (2i, 2i+1) or
//! rotate-half pairs (i, i + R/2) over the first R dims of each head; f32.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;
use crate::tensor::Tensor;

use super::shape::expect_f32;

/// The checked dims of a rotary embedding (shared with the CUDA backend).
pub(crate) struct RopeDims {
    pub nb: usize,
    pub l: usize,
    pub h: usize,
    pub d: usize,
    /// R/2: rotated pairs per head.
    pub half: usize,
    /// x is [B, H, L, D] (else [B, L, H*D]).
    pub heads_first: bool,
    /// Rows of the cos/sin caches (P with position_ids, else B*L).
    pub positions: usize,
}

/// Checks x, cos, sin and the position ids' shape and dtype (see `rope`).
pub(crate) fn rope_dims([x, cos, sin]: [&[usize]; 3], position_ids: Option<(&[usize], DType)>, num_heads: usize, rotary_dim: usize) -> Result<RopeDims, OpError> {
    let op = "rope";
    // (B, L, H, D) and whether the layout is [B, H, L, D].
    let (nb, l, h, d, heads_first) = match *x {
        [nb, l, hd] => {
            if num_heads == 0 || hd % num_heads != 0 {
                op_bail!("{op}: hidden size {hd} of x {x:?} is not divisible by num_heads {num_heads}");
            }
            (nb, l, num_heads, hd / num_heads, false)
        }
        [nb, h, l, d] => {
            if num_heads != 0 && num_heads != h {
                op_bail!("{op}: num_heads {num_heads} disagrees with x [B, H, L, D] = {x:?}");
            }
            (nb, l, h, d, true)
        }
        _ => op_bail!("{op}: x must be [B, L, H*D] or [B, H, L, D], got shape {x:?}"),
    };
    let r = if rotary_dim == 0 { d } else { rotary_dim };
    if r > d || r % 2 != 0 {
        op_bail!("{op}: rotary_dim {r} must be even and at most the head size {d}");
    }
    let half = r / 2;
    if cos != sin {
        op_bail!("{op}: cos {cos:?} and sin {sin:?} differ in shape");
    }
    let positions = match position_ids {
        Some((p, dtype)) => {
            if dtype != DType::I64 {
                op_bail!("{op}: position_ids must be int64, got {dtype:?}");
            }
            if p != [nb, l] {
                op_bail!("{op}: position_ids must be [B, L] = [{nb}, {l}], got {p:?}");
            }
            let &[np, w] = cos else { op_bail!("{op}: with position_ids, cos/sin must be [P, R/2], got {cos:?}") };
            if w != half {
                op_bail!("{op}: cos/sin last dim {w} must be R/2 = {half}");
            }
            np
        }
        None => {
            if cos != [nb, l, half] {
                op_bail!("{op}: without position_ids, cos/sin must be [B, L, R/2] = [{nb}, {l}, {half}], got {cos:?}");
            }
            nb * l
        }
    };
    Ok(RopeDims { nb, l, h, d, half, heads_first, positions })
}

/// Rotates x [B, L, H*D] (3-D, H = `num_heads`) or [B, H, L, D] (4-D) by the angles whose
/// cos / sin are cos_cache[position_ids[b, l]] ([P, R/2] caches, int64 `position_ids` [B, L]),
/// or cos[b, l] ([B, L, R/2]) when `position_ids` is absent. Pair (x1, x2) becomes
/// (cos x1 - sin x2, sin x1 + cos x2); dims R..D pass through. `rotary_dim` 0 means R = D.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    position_ids: Option<&Tensor>,
    num_heads: usize,
    interleaved: bool,
    rotary_dim: usize,
) -> Result<Tensor, OpError> {
    let op = "rope";
    let xv = expect_f32(op, "x", x)?;
    let cv = expect_f32(op, "cos", cos)?;
    let sv = expect_f32(op, "sin", sin)?;
    let RopeDims { nb, l, h, d, half, heads_first, positions } = rope_dims([&x.shape, &cos.shape, &sin.shape], position_ids.map(|p| (&p.shape[..], p.dtype())), num_heads, rotary_dim)?;
    // Row of the cos/sin caches for each (b, l).
    let rows: Vec<usize> = match position_ids {
        Some(p) => p
            .as_i64()
            .unwrap_or(&[])
            .iter()
            .map(|&pos| {
                if pos < 0 || pos as usize >= positions {
                    op_bail!("{op}: position id {pos} is outside the cos/sin cache of {positions} positions");
                }
                Ok(pos as usize)
            })
            .collect::<Result<_, _>>()?,
        None => (0..nb * l).collect(),
    };
    let mut out = xv.to_vec();
    for b in 0..nb {
        for li in 0..l {
            let row = rows[b * l + li];
            let (c, s) = (&cv[row * half..(row + 1) * half], &sv[row * half..(row + 1) * half]);
            for hi in 0..h {
                let base = if heads_first { ((b * h + hi) * l + li) * d } else { ((b * l + li) * h + hi) * d };
                let head = &mut out[base..base + d];
                for i in 0..half {
                    let (i1, i2) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let (x1, x2) = (head[i1], head[i2]);
                    head[i1] = c[i] * x1 - s[i] * x2;
                    head[i2] = s[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    Ok(Tensor::f32(x.shape.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    /// cos/sin caches [P, R/2] for theta: angle(p, i) = p * theta^(-2i/R).
    fn caches(p: usize, r: usize, theta: f64) -> (Tensor, Tensor) {
        let ang: Vec<f64> = (0..p).flat_map(|pos| (0..r / 2).map(move |i| pos as f64 * theta.powf(-2.0 * i as f64 / r as f64))).collect();
        (
            Tensor::f32(vec![p, r / 2], ang.iter().map(|a| a.cos() as f32).collect()),
            Tensor::f32(vec![p, r / 2], ang.iter().map(|a| a.sin() as f32).collect()),
        )
    }

    /// Rotates one head by explicit 2x2 rotation matrices [[c, -s], [s, c]] on the pair list.
    fn rotate_head(head: &[f32], c: &[f32], s: &[f32], interleaved: bool, r: usize) -> Vec<f32> {
        let mut o = head.to_vec();
        let pairs: Vec<(usize, usize)> =
            if interleaved { (0..r / 2).map(|i| (2 * i, 2 * i + 1)).collect() } else { (0..r / 2).map(|i| (i, i + r / 2)).collect() };
        for (i, &(a, b)) in pairs.iter().enumerate() {
            let m = [[c[i], -s[i]], [s[i], c[i]]];
            o[a] = m[0][0] * head[a] + m[0][1] * head[b];
            o[b] = m[1][0] * head[a] + m[1][1] * head[b];
        }
        o
    }

    #[test]
    fn three_d_with_positions_matches_explicit_rotation() {
        let (nb, l, h, d) = (2, 3, 2, 8);
        for (interleaved, r) in [(true, 8), (false, 8), (true, 4), (false, 6)] {
            let mut g = Lcg::new(100 + r as u64);
            let x = g.tensor(&[nb, l, h * d]);
            let (cos, sin) = caches(10, r, 1e4);
            let pos = Tensor::i64(vec![nb, l], vec![0, 1, 2, 7, 3, 9]);
            let rd = if r == d { 0 } else { r };
            let y = rope(&x, &cos, &sin, Some(&pos), h, interleaved, rd).unwrap();
            let (xv, cv, sv) = (x.as_f32().unwrap(), cos.as_f32().unwrap(), sin.as_f32().unwrap());
            let mut want = Vec::new();
            for (bl, &p) in pos.as_i64().unwrap().iter().enumerate() {
                let p = p as usize;
                for hi in 0..h {
                    let head = &xv[(bl * h + hi) * d..(bl * h + hi + 1) * d];
                    want.extend(rotate_head(head, &cv[p * r / 2..(p + 1) * r / 2], &sv[p * r / 2..(p + 1) * r / 2], interleaved, r));
                }
            }
            assert_close(y.as_f32().unwrap(), &want, 1e-7);
            // Dims past R are untouched; position 0 is the identity.
            assert_eq!(y.as_f32().unwrap()[r..d], xv[r..d]);
            assert_eq!(y.as_f32().unwrap()[..d], xv[..d]);
        }
    }

    #[test]
    fn four_d_and_no_position_ids_agree_with_three_d() {
        let (nb, l, h, d) = (2, 3, 3, 4);
        let mut g = Lcg::new(110);
        let x3 = g.tensor(&[nb, l, h * d]);
        let (cos, sin) = caches(8, d, 1e6);
        let pos = Tensor::i64(vec![nb, l], vec![5, 6, 7, 0, 1, 2]);
        let y3 = rope(&x3, &cos, &sin, Some(&pos), h, false, 0).unwrap();
        // [B, L, H, D] -> [B, H, L, D]
        let perm = |v: &[f32], to4: bool| {
            let mut o = vec![0f32; v.len()];
            for b in 0..nb {
                for li in 0..l {
                    for hi in 0..h {
                        for x in 0..d {
                            let i3 = ((b * l + li) * h + hi) * d + x;
                            let i4 = ((b * h + hi) * l + li) * d + x;
                            if to4 {
                                o[i4] = v[i3];
                            } else {
                                o[i3] = v[i4];
                            }
                        }
                    }
                }
            }
            o
        };
        let x4 = Tensor::f32(vec![nb, h, l, d], perm(x3.as_f32().unwrap(), true));
        let y4 = rope(&x4, &cos, &sin, Some(&pos), 0, false, 0).unwrap();
        assert_eq!(y4.shape, vec![nb, h, l, d]);
        assert_eq!(perm(y4.as_f32().unwrap(), false), y3.as_f32().unwrap());
        // Pre-gathered [B, L, R/2] caches without position_ids.
        let gather = |t: &Tensor| {
            let v = t.as_f32().unwrap();
            Tensor::f32(vec![nb, l, d / 2], pos.as_i64().unwrap().iter().flat_map(|&p| v[p as usize * 2..p as usize * 2 + 2].to_vec()).collect())
        };
        let yn = rope(&x3, &gather(&cos), &gather(&sin), None, h, false, 0).unwrap();
        assert_eq!(yn, y3);
    }

    #[test]
    fn rejects_bad_inputs() {
        let mut g = Lcg::new(120);
        let x = g.tensor(&[1, 2, 8]);
        let (cos, sin) = caches(4, 4, 1e4);
        let pos = Tensor::i64(vec![1, 2], vec![0, 1]);
        assert!(rope(&x, &cos, &sin, Some(&pos), 2, true, 0).is_ok());
        assert!(rope(&x, &cos, &sin, Some(&pos), 3, true, 0).unwrap_err().0.contains("num_heads"));
        assert!(rope(&x, &cos, &sin, Some(&pos), 1, true, 0).unwrap_err().0.contains("R/2"));
        assert!(rope(&x, &cos, &sin, Some(&pos), 2, true, 3).unwrap_err().0.contains("even"));
        assert!(rope(&x, &cos, &sin, Some(&Tensor::i64(vec![1, 2], vec![0, 4])), 2, true, 0).unwrap_err().0.contains("position id 4"));
        assert!(rope(&x, &cos, &sin, None, 2, true, 0).unwrap_err().0.contains("[B, L, R/2]"));
        assert!(rope(&x, &cos, &g.tensor(&[4, 3]), Some(&pos), 2, true, 0).unwrap_err().0.contains("differ"));
    }
}
