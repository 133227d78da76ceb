//! Ouro's early exit: with an exit threshold below 1, a token stops looping after the first loop
//! τ whose cumulative exit probability 1 − Π_{j≤τ}(1 − λ_j) reaches the threshold, and its
//! output is its state after loop τ. A chunk (one decode token, or a prompt) stops running loops
//! once every token in it has exited; the K/V entries the skipped loops would have written are
//! copies of the last loop run (see `decode::copy_to_skipped_iterations`). Tokens that exit
//! before the rest of their chunk keep their exit-loop state, as Ouro's reference selects it.
//! With the default threshold 1.0 none of this runs: every loop runs and results are exact.

use crate::backend::Backend;
use crate::error::OpError;
use crate::plan::{self, Op};
use crate::tensor::{Data, Tensor};

/// Per-token exit bookkeeping of one loop run under an exit threshold.
pub struct ExitTracker<T> {
    threshold: f32,
    /// [batch, length] of the chunk, from the first λ.
    tokens: Option<(usize, usize)>,
    /// Π_{j≤τ}(1 − λ_j) per token.
    survive: Vec<f32>,
    exited: Vec<bool>,
    /// Per carried value: the exited tokens' rows at their exit loop (None: nobody exited yet,
    /// or the value has no per-token rows).
    selected: Vec<Option<T>>,
}

impl<T: Clone> ExitTracker<T> {
    /// A tracker for one loop run with `num_carried` carried values.
    pub fn new(threshold: f32, num_carried: usize) -> ExitTracker<T> {
        ExitTracker { threshold, tokens: None, survive: Vec::new(), exited: Vec::new(), selected: vec![None; num_carried] }
    }

    /// Tokens of the chunk (batch × length), once a gate has been seen.
    pub fn chunk_len(&self) -> Option<usize> {
        self.tokens.map(|(_, l)| l)
    }

    /// Reads loop τ's gate λ [B, L(, 1)] and the carried values after it; returns true when
    /// every token has exited.
    pub fn observe<B: Backend<Buf = T>>(&mut self, b: &B, lambda: &T, carried: &[T]) -> Result<bool, OpError> {
        let lam = b.download(lambda)?;
        let shape = lam.shape.clone();
        let ok = (shape.len() == 2 || (shape.len() == 3 && shape[2] == 1)) && matches!(lam.data, Data::F32(_));
        if !ok {
            return Err(OpError::new(format!("the exit gate has shape {shape:?}; early exit needs one float per token ([batch, length] or [batch, length, 1])")));
        }
        let (bsz, len) = (shape[0], shape[1]);
        match self.tokens {
            None => {
                self.tokens = Some((bsz, len));
                self.survive = vec![1.0; bsz * len];
                self.exited = vec![false; bsz * len];
            }
            Some(t) if t != (bsz, len) => return Err(OpError::new(format!("the exit gate changed shape between loops: {t:?} then {:?}", (bsz, len)))),
            Some(_) => {}
        }
        let lam = lam.as_f32().unwrap_or(&[]);
        let mut newly = vec![false; lam.len()];
        for (i, &l) in lam.iter().enumerate() {
            self.survive[i] *= 1.0 - l;
            if !self.exited[i] && 1.0 - self.survive[i] >= self.threshold {
                newly[i] = true;
                self.exited[i] = true;
            }
        }
        if newly.iter().any(|&x| x) {
            for (i, c) in carried.iter().enumerate() {
                if let Some(mask) = self.mask_for(b, c, &newly)? {
                    let prev = self.selected[i].clone().unwrap_or_else(|| c.clone());
                    self.selected[i] = Some(select(b, &mask, c, &prev)?);
                }
            }
        }
        Ok(self.exited.iter().all(|&x| x))
    }

    /// The loop's carried results: each exited token's rows from its exit loop, the others'
    /// from the last loop run.
    pub fn finish<B: Backend<Buf = T>>(&self, b: &B, carried: Vec<T>) -> Result<Vec<T>, OpError> {
        if !self.exited.iter().any(|&x| x) {
            return Ok(carried);
        }
        carried
            .into_iter()
            .zip(&self.selected)
            .map(|(c, sel)| match sel {
                Some(s) => match self.mask_for(b, &c, &self.exited)? {
                    Some(mask) => select(b, &mask, s, &c),
                    None => Ok(c),
                },
                None => Ok(c),
            })
            .collect()
    }

    /// A bool mask [B, L, 1, …] broadcastable over `c` when `c` has per-token rows.
    fn mask_for<B: Backend<Buf = T>>(&self, b: &B, c: &T, which: &[bool]) -> Result<Option<T>, OpError> {
        let Some((bsz, len)) = self.tokens else { return Ok(None) };
        let shape = b.shape(c);
        if shape.len() < 2 || shape[0] != bsz || shape[1] != len {
            return Ok(None);
        }
        let mut ms = vec![bsz, len];
        ms.resize(shape.len(), 1);
        b.upload(&Tensor { shape: ms, data: Data::Bool(which.to_vec()) }).map(Some)
    }
}

fn select<B: Backend>(b: &B, mask: &B::Buf, a: &B::Buf, other: &B::Buf) -> Result<B::Buf, OpError> {
    let env = Default::default();
    Ok(b.run_op(&Op::Where(plan::Where {}), &[Some(mask), Some(a), Some(other)], &env)?.remove(0))
}
