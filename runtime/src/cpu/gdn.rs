//! Linear attention with a matrix state (ONNX LinearAttention-27: Gated DeltaNet and its
//! linear / gated / delta special cases), as the token recurrence. The state is kept in f32
//! and every sum runs in index order, one token after another: this is the definition the
//! chunked GPU kernels are compared with.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::UpdateRule;
use crate::tensor::Tensor;

use super::shape::expect_f32;

/// The checked dims of a linear attention step (shared with the CUDA backend).
pub(crate) struct GdnDims {
    pub nb: usize,
    pub t: usize,
    pub dk: usize,
    pub dv: usize,
    pub gated: bool,
    pub delta: bool,
    /// decay is [B,T,Hkv*K] (else [B,T,Hkv]).
    pub g_per_dim: bool,
    /// beta is [B,T,Hkv] (else [B,T,1]).
    pub beta_per_head: bool,
}

/// Checks the shapes of q, k, v and of the optional state, decay and beta against the update
/// rule (see `linear_attention`).
pub(crate) fn gdn_dims([q, k, v]: [&[usize]; 3], [state, decay, beta]: [Option<&[usize]>; 3], q_heads: usize, kv_heads: usize, rule: UpdateRule) -> Result<GdnDims, OpError> {
    let op = "linear_attention";
    if q_heads == 0 || kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        op_bail!("{op}: q_heads ({q_heads}) must be a positive multiple of kv_heads ({kv_heads})");
    }
    let (&[nb, t, qw], &[kb, kt, kw], &[vb, vt, vw]) = (q, k, v) else {
        op_bail!("{op}: q, k, v must be rank 3 [B, T, H*D], got {:?}, {:?}, {:?}", q, k, v)
    };
    if (kb, kt) != (nb, t) || (vb, vt) != (nb, t) {
        op_bail!("{op}: q {:?}, k {:?}, v {:?} disagree on [B, T]", q, k, v);
    }
    if qw % q_heads != 0 || vw % kv_heads != 0 {
        op_bail!("{op}: q width {qw} / v width {vw} not divisible by q_heads {q_heads} / kv_heads {kv_heads}");
    }
    let (dk, dv) = (qw / q_heads, vw / kv_heads);
    if kw != kv_heads * dk {
        op_bail!("{op}: k width {kw} must be kv_heads * K = {kv_heads} * {dk} (K from q {:?})", q);
    }
    let gated = matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta);
    let delta = matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta);
    // decay: per head (stride 0 over K) or per key dim.
    let g_per_dim = match (gated, decay) {
        (true, Some(d)) => {
            if d == [nb, t, kv_heads] {
                false
            } else if d == [nb, t, kv_heads * dk] {
                true
            } else {
                op_bail!("{op}: decay must be [B, T, Hkv] = [{nb}, {t}, {kv_heads}] or [B, T, Hkv*K] = [{nb}, {t}, {}], got {d:?}", kv_heads * dk)
            }
        }
        (true, None) => op_bail!("{op}: update rule {rule:?} requires the decay input"),
        (false, Some(_)) => op_bail!("{op}: update rule {rule:?} takes no decay input"),
        (false, None) => false,
    };
    let beta_per_head = match (delta, beta) {
        (true, Some(b)) => {
            if b == [nb, t, kv_heads] {
                true
            } else if b == [nb, t, 1] {
                false
            } else {
                op_bail!("{op}: beta must be [B, T, Hkv] = [{nb}, {t}, {kv_heads}] or [B, T, 1], got {b:?}")
            }
        }
        (true, None) => op_bail!("{op}: update rule {rule:?} requires the beta input"),
        (false, Some(_)) => op_bail!("{op}: update rule {rule:?} takes no beta input"),
        (false, None) => false,
    };
    if let Some(s) = state {
        if s != [nb, kv_heads, dk, dv] {
            op_bail!("{op}: state must be [B, Hkv, K, V] = [{nb}, {kv_heads}, {dk}, {dv}], got {s:?}");
        }
    }
    Ok(GdnDims { nb, t, dk, dv, gated, delta, g_per_dim, beta_per_head })
}

/// Runs the recurrence for q [B,T,Hq*K], k [B,T,Hkv*K], v [B,T,Hkv*V] from `state`
/// [B,Hkv,K,V] (zeros if absent). Per kv head and token, with g = decay (per head [B,T,Hkv] or
/// per key dim [B,T,Hkv*K]) and beta ([B,T,Hkv] or [B,T,1]):
///   gated / gated_delta: S = exp(g) S (row i of S scaled by exp(g_i));
///   delta / gated_delta: u = beta (v - S^T k), else u = v;   S += k u^T;
///   each query head h (kv head h / (Hq/Hkv)): o_h = scale * (S^T q_h).
/// `scale` 0 means K^-1/2. Returns (o [B,T,Hq*V], final state [B,Hkv,K,V]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    state: Option<&Tensor>,
    decay: Option<&Tensor>,
    beta: Option<&Tensor>,
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    rule: UpdateRule,
) -> Result<(Tensor, Tensor), OpError> {
    let op = "linear_attention";
    let qv = expect_f32(op, "q", q)?;
    let kv = expect_f32(op, "k", k)?;
    let vv = expect_f32(op, "v", v)?;
    let GdnDims { nb, t, dk, dv, gated, delta, g_per_dim, beta_per_head: b_per_head } =
        gdn_dims([&q.shape, &k.shape, &v.shape], [state.map(|s| &s.shape[..]), decay.map(|d| &d.shape[..]), beta.map(|b| &b.shape[..])], q_heads, kv_heads, rule)?;
    let gv = match decay {
        Some(d) if gated => expect_f32(op, "decay", d)?,
        _ => &[][..],
    };
    let bv = match beta {
        Some(b) if delta => expect_f32(op, "beta", b)?,
        _ => &[][..],
    };
    let mut s_all = match state {
        Some(s) => expect_f32(op, "state", s)?.to_vec(),
        None => vec![0f32; nb * kv_heads * dk * dv],
    };
    let scale = if scale == 0.0 { (1.0 / (dk as f64).sqrt()) as f32 } else { scale };
    let group = q_heads / kv_heads;

    let x = HeadInputs { qv, kv, vv, gv, bv, t, dk, dv, q_heads, kv_heads, group, gated, delta, g_per_dim, b_per_head, scale };
    // One (batch, kv head) recurrence per task, each into its own state slice and output rows
    // [T, group, V]; long inputs run the tasks on all cores (decode steps stay on one thread).
    let tasks = nb * kv_heads;
    let mut outs = vec![0f32; tasks * t * group * dv];
    let threads = if t * dk * dv * tasks >= 1 << 20 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(tasks) } else { 1 };
    let per = tasks.div_ceil(threads.max(1));
    let work = s_all.chunks_mut(per * dk * dv).zip(outs.chunks_mut(per * t * group * dv)).enumerate();
    if threads <= 1 {
        for (w, (s, o)) in work {
            x.run(w * per, s, o);
        }
    } else {
        std::thread::scope(|sc| {
            for (w, (s, o)) in work {
                let x = &x;
                sc.spawn(move || x.run(w * per, s, o));
            }
        });
    }
    // [B, Hkv, T, group, V] -> [B, T, Hq, V]
    let mut o = vec![0f32; nb * t * q_heads * dv];
    for b in 0..nb {
        for h in 0..kv_heads {
            for ti in 0..t {
                let src = &outs[((b * kv_heads + h) * t + ti) * group * dv..((b * kv_heads + h) * t + ti + 1) * group * dv];
                o[((b * t + ti) * q_heads + h * group) * dv..((b * t + ti) * q_heads + (h + 1) * group) * dv].copy_from_slice(src);
            }
        }
    }
    Ok((Tensor::f32(vec![nb, t, q_heads * dv], o), Tensor::f32(vec![nb, kv_heads, dk, dv], s_all)))
}

/// What every (batch, kv head) recurrence of one call reads (see `linear_attention`).
struct HeadInputs<'a> {
    qv: &'a [f32],
    kv: &'a [f32],
    vv: &'a [f32],
    gv: &'a [f32],
    bv: &'a [f32],
    t: usize,
    dk: usize,
    dv: usize,
    q_heads: usize,
    kv_heads: usize,
    group: usize,
    gated: bool,
    delta: bool,
    g_per_dim: bool,
    b_per_head: bool,
    scale: f32,
}

impl HeadInputs<'_> {
    /// The recurrences of tasks first.. (task = b * Hkv + h), as many as `states` holds [K, V]
    /// states; outputs into `outs`, [T, group, V] per task.
    fn run(&self, first: usize, states: &mut [f32], outs: &mut [f32]) {
        let HeadInputs { qv, kv, vv, gv, bv, t, dk, dv, q_heads, kv_heads, group, gated, delta, g_per_dim, b_per_head, scale } = *self;
        let mut u = vec![0f32; dv];
        for (n, (s, out)) in states.chunks_mut(dk * dv).zip(outs.chunks_mut(t * group * dv)).enumerate() {
            let (b, h) = ((first + n) / kv_heads, (first + n) % kv_heads);
            for ti in 0..t {
                let bt = b * t + ti;
                let kt = &kv[(bt * kv_heads + h) * dk..(bt * kv_heads + h + 1) * dk];
                let vt = &vv[(bt * kv_heads + h) * dv..(bt * kv_heads + h + 1) * dv];
                if gated {
                    for i in 0..dk {
                        let g = if g_per_dim { gv[(bt * kv_heads + h) * dk + i] } else { gv[bt * kv_heads + h] };
                        let e = g.exp();
                        s[i * dv..(i + 1) * dv].iter_mut().for_each(|x| *x *= e);
                    }
                }
                if delta {
                    let beta_t = if b_per_head { bv[bt * kv_heads + h] } else { bv[bt] };
                    // u = beta * (v - S^T k), S^T k summed over i in order.
                    u.fill(0.0);
                    for i in 0..dk {
                        let ki = kt[i];
                        for (uj, &sij) in u.iter_mut().zip(&s[i * dv..(i + 1) * dv]) {
                            *uj += sij * ki;
                        }
                    }
                    for (uj, &vj) in u.iter_mut().zip(vt) {
                        *uj = beta_t * (vj - *uj);
                    }
                } else {
                    u.copy_from_slice(vt);
                }
                for i in 0..dk {
                    let ki = kt[i];
                    for (sij, &uj) in s[i * dv..(i + 1) * dv].iter_mut().zip(&u) {
                        *sij += ki * uj;
                    }
                }
                for g in 0..group {
                    let hq = h * group + g;
                    let qt = &qv[(bt * q_heads + hq) * dk..(bt * q_heads + hq + 1) * dk];
                    let ot = &mut out[(ti * group + g) * dv..(ti * group + g + 1) * dv];
                    for i in 0..dk {
                        let qi = qt[i];
                        for (oj, &sij) in ot.iter_mut().zip(&s[i * dv..(i + 1) * dv]) {
                            *oj += sij * qi;
                        }
                    }
                    ot.iter_mut().for_each(|x| *x *= scale);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::shape::test_util::*;
    use super::*;

    type Mat = Vec<Vec<f32>>; // [K][V]

    struct Case {
        q: Tensor,
        k: Tensor,
        v: Tensor,
        s0: Tensor,
        g: Tensor,
        beta: Tensor,
    }

    /// Random inputs; decay is log-space in [-0.5, -0.05), beta in (0, 1).
    #[allow(clippy::too_many_arguments)]
    fn case(seed: u64, nb: usize, t: usize, hq: usize, hkv: usize, dk: usize, dv: usize, g_per_dim: bool, beta_per_head: bool) -> Case {
        let mut r = Lcg::new(seed);
        let g_w = if g_per_dim { hkv * dk } else { hkv };
        let b_w = if beta_per_head { hkv } else { 1 };
        let g: Vec<f32> = (0..nb * t * g_w).map(|_| -0.05 - 0.45 * r.unit()).collect();
        let beta: Vec<f32> = (0..nb * t * b_w).map(|_| 0.05 + 0.9 * r.unit()).collect();
        Case {
            q: r.tensor(&[nb, t, hq * dk]),
            k: r.tensor(&[nb, t, hkv * dk]),
            v: r.tensor(&[nb, t, hkv * dv]),
            s0: r.tensor(&[nb, hkv, dk, dv]),
            g: Tensor::f32(vec![nb, t, g_w], g),
            beta: Tensor::f32(vec![nb, t, b_w], beta),
        }
    }

    /// Naive reference with explicit per-head matrices, written from the textbook formulas:
    /// D = diag(exp g); S' = D S; u = beta (v - S'^T k); S'' = S' + k u^T; o = scale * S''^T q.
    #[allow(clippy::too_many_arguments)]
    fn naive(c: &Case, rule: UpdateRule, hq: usize, hkv: usize, dk: usize, dv: usize, scale: f32, with_state: bool) -> (Vec<f32>, Vec<f32>) {
        let (nb, t) = (c.q.shape[0], c.q.shape[1]);
        let (q, k, v, s0, g, beta) =
            (c.q.as_f32().unwrap(), c.k.as_f32().unwrap(), c.v.as_f32().unwrap(), c.s0.as_f32().unwrap(), c.g.as_f32().unwrap(), c.beta.as_f32().unwrap());
        let g_w = c.g.shape[2];
        let b_w = c.beta.shape[2];
        let mut out = vec![0f32; nb * t * hq * dv];
        let mut fin = Vec::new();
        for b in 0..nb {
            // States of all kv heads, advanced token by token (time-major, unlike the kernel).
            let mut st: Vec<Mat> = (0..hkv)
                .map(|h| (0..dk).map(|i| (0..dv).map(|j| if with_state { s0[((b * hkv + h) * dk + i) * dv + j] } else { 0.0 }).collect()).collect())
                .collect();
            for ti in 0..t {
                for (h, s) in st.iter_mut().enumerate() {
                    let kvec: Vec<f32> = (0..dk).map(|i| k[((b * t + ti) * hkv + h) * dk + i]).collect();
                    let vvec: Vec<f32> = (0..dv).map(|j| v[((b * t + ti) * hkv + h) * dv + j]).collect();
                    if matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta) {
                        let diag: Vec<f32> = (0..dk)
                            .map(|i| if g_w == hkv { g[(b * t + ti) * hkv + h] } else { g[((b * t + ti) * hkv + h) * dk + i] }.exp())
                            .collect();
                        let scaled: Mat = (0..dk).map(|i| (0..dv).map(|j| diag[i] * s[i][j]).collect()).collect();
                        *s = scaled;
                    }
                    let u: Vec<f32> = if matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta) {
                        let bt = if b_w == hkv { beta[(b * t + ti) * hkv + h] } else { beta[b * t + ti] };
                        (0..dv)
                            .map(|j| {
                                let mut r = 0f32;
                                for i in 0..dk {
                                    r += s[i][j] * kvec[i];
                                }
                                bt * (vvec[j] - r)
                            })
                            .collect()
                    } else {
                        vvec
                    };
                    let outer: Mat = (0..dk).map(|i| (0..dv).map(|j| kvec[i] * u[j]).collect()).collect();
                    for i in 0..dk {
                        for j in 0..dv {
                            s[i][j] += outer[i][j];
                        }
                    }
                }
                for h in 0..hq {
                    let s = &st[h / (hq / hkv)];
                    for j in 0..dv {
                        let mut acc = 0f32;
                        for i in 0..dk {
                            acc += s[i][j] * q[((b * t + ti) * hq + h) * dk + i];
                        }
                        out[((b * t + ti) * hq + h) * dv + j] = scale * acc;
                    }
                }
            }
            for s in &st {
                for row in s {
                    fin.extend_from_slice(row);
                }
            }
        }
        (out, fin)
    }

    fn run(c: &Case, rule: UpdateRule, hq: usize, hkv: usize, scale: f32, with_state: bool) -> (Tensor, Tensor) {
        let gated = matches!(rule, UpdateRule::Gated | UpdateRule::GatedDelta);
        let delta = matches!(rule, UpdateRule::Delta | UpdateRule::GatedDelta);
        linear_attention(
            &c.q,
            &c.k,
            &c.v,
            with_state.then_some(&c.s0),
            gated.then_some(&c.g),
            delta.then_some(&c.beta),
            hq,
            hkv,
            scale,
            rule,
        )
        .unwrap()
    }

    #[test]
    fn every_rule_matches_the_naive_recurrence() {
        let (hq, hkv, dk, dv) = (4, 2, 5, 3);
        for (n, rule) in [UpdateRule::GatedDelta, UpdateRule::Linear, UpdateRule::Gated, UpdateRule::Delta].into_iter().enumerate() {
            for (g_per_dim, beta_per_head, with_state) in [(false, true, true), (true, false, false), (true, true, true)] {
                let c = case(60 + n as u64, 2, 6, hq, hkv, dk, dv, g_per_dim, beta_per_head);
                let scale = 0.37;
                let (o, s) = run(&c, rule, hq, hkv, scale, with_state);
                assert_eq!(o.shape, vec![2, 6, hq * dv]);
                assert_eq!(s.shape, vec![2, hkv, dk, dv]);
                let (want_o, want_s) = naive(&c, rule, hq, hkv, dk, dv, scale, with_state);
                assert_close(o.as_f32().unwrap(), &want_o, 1e-6);
                assert_close(s.as_f32().unwrap(), &want_s, 1e-6);
            }
        }
    }

    #[test]
    fn one_token_identity() {
        // gated_delta, g = 0, beta = 1, zero state, one token: S = k v^T, o = scale (q.k) v.
        let (hq, hkv, dk, dv) = (2, 1, 4, 3);
        let mut r = Lcg::new(70);
        let q = r.tensor(&[1, 1, hq * dk]);
        let k = r.tensor(&[1, 1, hkv * dk]);
        let v = r.tensor(&[1, 1, hkv * dv]);
        let g = Tensor::f32(vec![1, 1, hkv], vec![0.0]);
        let beta = Tensor::f32(vec![1, 1, 1], vec![1.0]);
        let (o, s) = linear_attention(&q, &k, &v, None, Some(&g), Some(&beta), hq, hkv, 0.0, UpdateRule::GatedDelta).unwrap();
        let (qv, kv, vv) = (q.as_f32().unwrap(), k.as_f32().unwrap(), v.as_f32().unwrap());
        let scale = 0.5f32; // 4^-1/2
        let mut want = Vec::new();
        for h in 0..hq {
            let qk: f32 = (0..dk).map(|i| qv[h * dk + i] * kv[i]).sum();
            want.extend(vv.iter().map(|&x| scale * qk * x));
        }
        assert_close(o.as_f32().unwrap(), &want, 1e-6);
        let outer: Vec<f32> = (0..dk).flat_map(|i| vv.iter().map(move |&x| kv[i] * x)).collect();
        assert_eq!(s.as_f32().unwrap(), &outer[..]);
    }

    #[test]
    fn chunked_run_equals_full_run() {
        let (hq, hkv, dk, dv) = (2, 2, 3, 4);
        let c = case(71, 1, 5, hq, hkv, dk, dv, false, true);
        let (o_full, s_full) = run(&c, UpdateRule::GatedDelta, hq, hkv, 0.0, true);
        let cut = |t: &Tensor, t0: usize, t1: usize| {
            let w = t.shape[2];
            Tensor::f32(vec![1, t1 - t0, w], t.as_f32().unwrap()[t0 * w..t1 * w].to_vec())
        };
        let (o1, s1) = linear_attention(
            &cut(&c.q, 0, 2), &cut(&c.k, 0, 2), &cut(&c.v, 0, 2), Some(&c.s0), Some(&cut(&c.g, 0, 2)), Some(&cut(&c.beta, 0, 2)),
            hq, hkv, 0.0, UpdateRule::GatedDelta,
        )
        .unwrap();
        let (o2, s2) = linear_attention(
            &cut(&c.q, 2, 5), &cut(&c.k, 2, 5), &cut(&c.v, 2, 5), Some(&s1), Some(&cut(&c.g, 2, 5)), Some(&cut(&c.beta, 2, 5)),
            hq, hkv, 0.0, UpdateRule::GatedDelta,
        )
        .unwrap();
        assert_eq!(s2, s_full);
        let mut o = o1.as_f32().unwrap().to_vec();
        o.extend_from_slice(o2.as_f32().unwrap());
        assert_eq!(&o[..], o_full.as_f32().unwrap());
    }

    /// A call long enough to run its (batch, head) recurrences on several threads gives exactly
    /// what single-threaded chunks of 8 tokens give (the same sums in the same order).
    #[test]
    fn threaded_run_equals_single_threaded_chunks() {
        let (nb, t, hq, hkv, dk, dv) = (2, 64, 8, 4, 32, 64);
        assert!(t * dk * dv * nb * hkv >= 1 << 20, "the full call must take the threaded path");
        let c = case(72, nb, t, hq, hkv, dk, dv, true, false);
        let (o_full, s_full) = run(&c, UpdateRule::GatedDelta, hq, hkv, 0.0, true);
        let cut = |x: &Tensor, t0: usize, t1: usize| {
            let (l, w) = (x.shape[1], x.shape[2]);
            let v = x.as_f32().unwrap();
            Tensor::f32(vec![nb, t1 - t0, w], (0..nb).flat_map(|b| v[(b * l + t0) * w..(b * l + t1) * w].to_vec()).collect())
        };
        let mut s = c.s0.clone();
        let mut o = vec![Vec::new(); nb];
        for t0 in (0..t).step_by(8) {
            let (oc, sc) = linear_attention(
                &cut(&c.q, t0, t0 + 8), &cut(&c.k, t0, t0 + 8), &cut(&c.v, t0, t0 + 8), Some(&s), Some(&cut(&c.g, t0, t0 + 8)), Some(&cut(&c.beta, t0, t0 + 8)),
                hq, hkv, 0.0, UpdateRule::GatedDelta,
            )
            .unwrap();
            let w = oc.shape[2];
            for (b, ob) in o.iter_mut().enumerate() {
                ob.extend_from_slice(&oc.as_f32().unwrap()[b * 8 * w..(b + 1) * 8 * w]);
            }
            s = sc;
        }
        assert_eq!(s, s_full);
        assert_eq!(&o.concat()[..], o_full.as_f32().unwrap());
    }

    #[test]
    fn rejects_bad_inputs() {
        let c = case(72, 1, 2, 2, 1, 3, 2, false, true);
        let la = |q: &Tensor, d: Option<&Tensor>, b: Option<&Tensor>, s: Option<&Tensor>, hq, hkv, rule| {
            linear_attention(q, &c.k, &c.v, s, d, b, hq, hkv, 0.0, rule).unwrap_err().0
        };
        let gd = UpdateRule::GatedDelta;
        assert!(la(&c.q, None, Some(&c.beta), None, 2, 1, gd).contains("requires the decay"));
        assert!(la(&c.q, Some(&c.g), None, None, 2, 1, gd).contains("requires the beta"));
        assert!(la(&c.q, Some(&c.g), None, None, 2, 1, UpdateRule::Linear).contains("no decay"));
        assert!(la(&c.q, Some(&c.g), Some(&c.beta), None, 2, 3, gd).contains("multiple"));
        let bad_s = Tensor::f32(vec![1, 1, 2, 3], vec![0.0; 6]);
        assert!(la(&c.q, Some(&c.g), Some(&c.beta), Some(&bad_s), 2, 1, gd).contains("state must be"));
        let bad_g = Tensor::f32(vec![1, 2, 2], vec![0.0; 4]);
        assert!(la(&c.q, Some(&bad_g), Some(&c.beta), None, 2, 1, gd).contains("decay must be"));
        let bad_b = Tensor::f32(vec![1, 2, 2], vec![0.0; 4]);
        assert!(la(&c.q, Some(&c.g), Some(&bad_b), None, 2, 1, gd).contains("beta must be"));
        let bad_q = Tensor::f32(vec![1, 2, 8], vec![1.0; 16]);
        assert!(la(&bad_q, Some(&c.g), Some(&c.beta), None, 2, 1, gd).contains("k width"));
    }
}
