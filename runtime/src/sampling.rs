//! Choosing the next token from logits: greedy, or sampling with temperature, top-k and top-p
//! from a seeded generator (the same seed gives the same tokens).

/// Sampling settings; temperature 0 is greedy.
#[derive(Clone, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
}

/// A small PCG-style generator, so runs are reproducible without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let x = (self.0 ^ (self.0 >> 33)).wrapping_mul(0xff51afd7ed558ccd);
        ((x ^ (x >> 33)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The index of the largest logit (the lowest index on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// Picks a token.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut Rng) -> usize {
    if s.temperature <= 0.0 || logits.is_empty() {
        return argmax(logits);
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    if s.top_k > 0 {
        idx.truncate(s.top_k);
    }
    let m = logits[idx[0]] as f64;
    let mut p: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - m) / s.temperature as f64).exp()).collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    if s.top_p > 0.0 && s.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = p.len();
        for (j, &x) in p.iter().enumerate() {
            acc += x;
            if acc >= s.top_p as f64 {
                keep = j + 1;
                break;
            }
        }
        p.truncate(keep);
        idx.truncate(keep);
        let z: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= z);
    }
    let r = rng.next_f64();
    let mut acc = 0.0;
    for (j, &x) in p.iter().enumerate() {
        acc += x;
        if r < acc {
            return idx[j];
        }
    }
    idx[p.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn greedy_topk_topp_and_seeds() {
        let l = [0.1f32, 3.0, 2.9, -1.0];
        let g = Sampling { temperature: 0.0, top_k: 0, top_p: 1.0 };
        assert_eq!(sample(&l, &g, &mut Rng::new(1)), 1);
        let k1 = Sampling { temperature: 1.0, top_k: 1, top_p: 1.0 };
        for seed in 0..20 {
            assert_eq!(sample(&l, &k1, &mut Rng::new(seed)), 1);
        }
        let t = Sampling { temperature: 1.0, top_k: 2, top_p: 1.0 };
        let picks: Vec<usize> = (0..200).map(|s| sample(&l, &t, &mut Rng::new(s))).collect();
        assert!(picks.iter().all(|&p| p == 1 || p == 2) && picks.contains(&1) && picks.contains(&2));
        let p = Sampling { temperature: 1.0, top_k: 0, top_p: 0.3 };
        assert!((0..50).all(|s| sample(&l, &p, &mut Rng::new(s)) == 1));
        let a: Vec<usize> = (0..10).map(|_| 0).scan(Rng::new(7), |r, _| Some(sample(&l, &t, r))).collect();
        let b: Vec<usize> = (0..10).map(|_| 0).scan(Rng::new(7), |r, _| Some(sample(&l, &t, r))).collect();
        assert_eq!(a, b);
    }
}
