//! DSA-style sparse attention (the `lt2` ONNX domain, onnx-ops.md): the lightning indexer picks
//! each query's top-k earlier tokens; sparse attention attends only to those.

use crate::error::OpError;
use crate::op_bail;
use crate::tensor::{Data, Tensor};

use super::shape::expect_f32;

/// The checked dims of a lightning indexer (shared with the CUDA backend).
pub(crate) struct IndexerDims {
    pub b: usize,
    pub t: usize,
    pub s: usize,
    pub d: usize,
    /// relu_weighted (else mean_dot).
    pub weighted: bool,
}

/// Checks q_index [B,T,H*D], k_index [B,S,D], the score name and the weights' presence and shape.
pub(crate) fn indexer_dims([q, k]: [&[usize]; 2], w: Option<&[usize]>, heads: usize, score: &str) -> Result<IndexerDims, OpError> {
    let op = "lightning_indexer";
    let (&[b, t, qw], &[kb, s, d]) = (q, k) else {
        op_bail!("{op}: q_index must be [B,T,H*D] and k_index [B,S,D], got {q:?} and {k:?}")
    };
    if kb != b || heads == 0 || qw != heads * d {
        op_bail!("{op}: q_index {q:?} must be [B,T,{heads}*D] with k_index {k:?} = [B,S,D]");
    }
    if t > s {
        op_bail!("{op}: more queries ({t}) than keys ({s})");
    }
    let weighted = match score {
        "mean_dot" => false,
        "relu_weighted" => true,
        other => op_bail!("{op}: score `{other}` is unknown (mean_dot, relu_weighted)"),
    };
    match (weighted, w) {
        (true, Some(w)) if w != [b, t, heads] => op_bail!("{op}: weights must be [B,T,H] = [{b},{t},{heads}], got {w:?}"),
        (true, None) => op_bail!("{op}: score relu_weighted needs the weights input"),
        (false, Some(_)) => op_bail!("{op}: score mean_dot takes no weights input"),
        _ => {}
    }
    Ok(IndexerDims { b, t, s, d, weighted })
}

/// The checked dims of a sparse attention (shared with the CUDA backend).
pub(crate) struct SparseDims {
    pub b: usize,
    pub t: usize,
    pub s: usize,
    /// Indices per query.
    pub kk: usize,
    pub dk: usize,
    pub dv: usize,
}

/// Checks query [B,T,Hq*Dk], key [B,S,Hkv*Dk], value [B,S,Hkv*Dv], indices [B,T,K], heads.
pub(crate) fn sparse_dims([q, k, v, idx]: [&[usize]; 4], q_heads: usize, kv_heads: usize) -> Result<SparseDims, OpError> {
    let op = "sparse_attention";
    let (&[b, t, qw], &[kb, s, kw], &[vb, vs, vw], &[ib, it, kk]) = (q, k, v, idx) else {
        op_bail!("{op}: expected rank-3 query/key/value/indices, got {q:?} {k:?} {v:?} {idx:?}")
    };
    if q_heads == 0 || kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        op_bail!("{op}: q_heads {q_heads} must be a positive multiple of kv_heads {kv_heads}");
    }
    if kb != b || vb != b || ib != b || vs != s || it != t || qw % q_heads != 0 || vw % kv_heads != 0 || kw != kv_heads * (qw / q_heads) {
        op_bail!("{op}: shapes disagree: query {q:?}, key {k:?}, value {v:?}, indices {idx:?}");
    }
    Ok(SparseDims { b, t, s, kk, dk: qw / q_heads, dv: vw / kv_heads })
}

/// lt2::LightningIndexer. q [B,T,H*D], k [B,S,D], weights [B,T,H]? → int64 [B,T,top_k]: for query
/// t (absolute position p = t+S-T) the positions s <= p with the highest scores, highest first,
/// ties to the lower s; -1 past the number of causal positions. Scores accumulate in f32:
/// `mean_dot` = mean_h(q[t,h]·k[s]); `relu_weighted` = sum_h w[t,h] * relu(q[t,h]·k[s]).
pub(crate) fn lightning_indexer(q: &Tensor, k: &Tensor, w: Option<&Tensor>, heads: usize, top_k: usize, score: &str) -> Result<Tensor, OpError> {
    let op = "lightning_indexer";
    let qv = expect_f32(op, "q_index", q)?;
    let kv = expect_f32(op, "k_index", k)?;
    let IndexerDims { b, t, s, d, weighted } = indexer_dims([&q.shape, &k.shape], w.map(|w| &w.shape[..]), heads, score)?;
    let wv = match w {
        Some(w) if weighted => Some(expect_f32(op, "weights", w)?),
        _ => None,
    };
    let mut out = vec![-1i64; b * t * top_k];
    let mut scores: Vec<(f32, usize)> = Vec::with_capacity(s);
    for bi in 0..b {
        for ti in 0..t {
            let p = ti + s - t;
            scores.clear();
            for si in 0..=p {
                let ks = &kv[(bi * s + si) * d..][..d];
                let mut acc = 0f32;
                for h in 0..heads {
                    let qh = &qv[((bi * t + ti) * heads + h) * d..][..d];
                    let dot: f32 = qh.iter().zip(ks).map(|(a, c)| a * c).sum();
                    acc += match wv {
                        Some(w) => w[(bi * t + ti) * heads + h] * dot.max(0.0),
                        None => dot,
                    };
                }
                if wv.is_none() {
                    acc /= heads as f32;
                }
                scores.push((acc, si));
            }
            // Highest first; ties to the lower position; NaN sorts last.
            scores.sort_by(|a, c| c.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Less).then(a.1.cmp(&c.1)));
            for (slot, &(_, si)) in scores.iter().take(top_k).enumerate() {
                out[(bi * t + ti) * top_k + slot] = si as i64;
            }
        }
    }
    Ok(Tensor::i64(vec![b, t, top_k], out))
}

/// lt2::SparseAttention. For each query and head: softmax over the selected positions of
/// scale * q·k_s, applied to v_s; indices are shared by all heads, -1 entries are skipped, and
/// a row with no valid index gives zeros. `scale` 0 means Dk^-1/2.
pub(crate) fn sparse_attention(q: &Tensor, k: &Tensor, v: &Tensor, idx: &Tensor, q_heads: usize, kv_heads: usize, scale: f32) -> Result<Tensor, OpError> {
    let op = "sparse_attention";
    let (qv, kv, vv) = (expect_f32(op, "query", q)?, expect_f32(op, "key", k)?, expect_f32(op, "value", v)?);
    let Data::I64(iv) = &idx.data else { op_bail!("{op}: indices must be int64") };
    let SparseDims { b, t, s, kk, dk, dv } = sparse_dims([&q.shape, &k.shape, &v.shape, &idx.shape], q_heads, kv_heads)?;
    let scale = if scale == 0.0 { (1.0 / (dk as f64).sqrt()) as f32 } else { scale };
    let group = q_heads / kv_heads;
    let mut out = vec![0f32; b * t * q_heads * dv];
    let mut sc = Vec::with_capacity(kk);
    for bi in 0..b {
        for ti in 0..t {
            let sel: Vec<usize> = iv[(bi * t + ti) * kk..][..kk]
                .iter()
                .filter(|&&x| x != -1)
                .map(|&x| if x < 0 || x as usize >= s { Err(OpError::new(format!("{op}: index {x} outside 0..{s}"))) } else { Ok(x as usize) })
                .collect::<Result<_, _>>()?;
            if sel.is_empty() {
                continue;
            }
            for h in 0..q_heads {
                let hk = h / group;
                let qh = &qv[((bi * t + ti) * q_heads + h) * dk..][..dk];
                sc.clear();
                let mut m = f32::NEG_INFINITY;
                for &si in &sel {
                    let ks = &kv[((bi * s + si) * kv_heads + hk) * dk..][..dk];
                    let x = scale * qh.iter().zip(ks).map(|(a, c)| a * c).sum::<f32>();
                    m = m.max(x);
                    sc.push(x);
                }
                let mut z = 0f32;
                for x in sc.iter_mut() {
                    *x = (*x - m).exp();
                    z += *x;
                }
                let o = &mut out[((bi * t + ti) * q_heads + h) * dv..][..dv];
                for (&si, &e) in sel.iter().zip(&sc) {
                    let vsrc = &vv[((bi * s + si) * kv_heads + hk) * dv..][..dv];
                    for (oo, &x) in o.iter_mut().zip(vsrc) {
                        *oo += (e / z) * x;
                    }
                }
            }
        }
    }
    Ok(Tensor::f32(vec![b, t, q_heads * dv], out))
}

#[cfg(test)]
mod tests {
    use super::super::attention::attention;
    use super::super::shape::test_util::*;
    use super::*;

    #[test]
    fn indexer_picks_top_scores_with_ties_to_lower_index_and_pads() {
        // H = 1, D = 1: score = q * k[s]. k = [1, 3, 3, 2]; q = 1 for every query.
        let q = Tensor::f32(vec![1, 4, 1], vec![1.0; 4]);
        let k = Tensor::f32(vec![1, 4, 1], vec![1.0, 3.0, 3.0, 2.0]);
        let y = lightning_indexer(&q, &k, None, 1, 3, "mean_dot").unwrap();
        assert_eq!(y.as_i64().unwrap(), &[0, -1, -1, 1, 0, -1, 1, 2, 0, 1, 2, 3]);
        // Decode-style: one query at the last position of 4 keys.
        let y1 = lightning_indexer(&Tensor::f32(vec![1, 1, 1], vec![-1.0]), &k, None, 1, 2, "mean_dot").unwrap();
        assert_eq!(y1.as_i64().unwrap(), &[0, 3]);
    }

    #[test]
    fn relu_weighted_score() {
        // H = 2, D = 1; w = [2, 1]; q = [1, -1]: score = 2*relu(k) + relu(-k).
        let q = Tensor::f32(vec![1, 3, 2], vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0]);
        let k = Tensor::f32(vec![1, 3, 1], vec![-3.0, 1.0, 0.5]);
        let w = Tensor::f32(vec![1, 3, 2], vec![2.0, 1.0, 2.0, 1.0, 2.0, 1.0]);
        let y = lightning_indexer(&q, &k, Some(&w), 2, 3, "relu_weighted").unwrap();
        // scores: s0 = 3, s1 = 2, s2 = 1
        assert_eq!(y.as_i64().unwrap(), &[0, -1, -1, 0, 1, -1, 0, 1, 2]);
        assert!(lightning_indexer(&q, &k, None, 2, 3, "relu_weighted").is_err());
    }

    #[test]
    fn sparse_attention_over_all_causal_positions_is_causal_attention() {
        let (b, t, hq, hkv, dk, dv) = (2, 5, 4, 1, 6, 3);
        let mut g = Lcg::new(7);
        let q = g.tensor(&[b, t, hq * dk]);
        let k = g.tensor(&[b, t, hkv * dk]);
        let v = g.tensor(&[b, t, hkv * dv]);
        let mut ix = vec![-1i64; b * t * t];
        for bi in 0..b {
            for ti in 0..t {
                for s in 0..=ti {
                    ix[(bi * t + ti) * t + s] = (ti - s) as i64; // any order
                }
            }
        }
        let idx = Tensor::i64(vec![b, t, t], ix);
        let y = sparse_attention(&q, &k, &v, &idx, hq, hkv, 0.0).unwrap();
        let want = attention(&q, &k, &v, hq, hkv, 0.0, true, (-1, -1), false).unwrap();
        assert!(rel_err(y.as_f32().unwrap(), want.as_f32().unwrap()) < 1e-6);
        let bad = Tensor::i64(vec![b, t, t], vec![9; b * t * t]);
        assert!(sparse_attention(&q, &k, &v, &bad, hq, hkv, 0.0).is_err());
        let none = Tensor::i64(vec![b, t, 1], vec![-1; b * t]);
        assert!(sparse_attention(&q, &k, &v, &none, hq, hkv, 0.0).unwrap().as_f32().unwrap().iter().all(|&x| x == 0.0));
    }
}
