//! Decode sessions: prefill prompts, then decode one token per sequence per step, with one
//! cache per (loop, layer) derived by the compiler (see `decode.rs`). Sequences of different
//! lengths each keep their own caches; the CPU backend runs them one at a time.

use std::collections::HashMap;

use crate::backend::Backend;
use crate::decode::{LoopCounts, RunState};
use crate::error::RuntimeError;
use crate::exec::Model;
use crate::plan::{DecodeInfo, Graph, Op};
use crate::tensor::Tensor;

/// How a session is set up.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Most tokens (prompt + generated) a sequence may hold.
    pub max_context: usize,
    /// Approximate: one KV cache shared by all loops (see `RunState`).
    pub share_kv_across_loops: bool,
    /// Ouro's early exit: a token stops looping once its cumulative exit probability reaches
    /// this (in (0, 1]); 1.0 runs every loop and is exact. See `early_exit.rs`.
    pub exit_threshold: f32,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { max_context: 4096, share_kv_across_loops: false, exit_threshold: 1.0 }
    }
}

/// Cache memory of a session, known before it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheReport {
    /// Bytes per sequence independent of length (GDN states, conv tails).
    pub fixed_per_seq: u64,
    /// Bytes per sequence per token of context (K/V, index keys, latents).
    pub per_token_per_seq: u64,
    /// Windowed attention stops growing after this many tokens per layer; counted as full here.
    pub max_context: u64,
}

impl CacheReport {
    /// Bytes for `seqs` sequences at full context.
    pub fn total(&self, seqs: u64) -> u64 {
        seqs * (self.fixed_per_seq + self.per_token_per_seq * self.max_context)
    }
}

/// A prefill/decode session over a compiled language model.
pub struct Session<'m, B: Backend> {
    model: &'m Model<B>,
    info: DecodeInfo,
    opts: SessionOptions,
    seqs: Vec<(RunState<B::Buf>, usize)>,
}

impl<'m, B: Backend> Session<'m, B> {
    /// Opens a session; fails with the reason when the model cannot be decoded incrementally.
    pub fn new(model: &'m Model<B>, opts: SessionOptions) -> Result<Session<'m, B>, RuntimeError> {
        let info = model.file().manifest.decode.clone().ok_or_else(|| RuntimeError::Session(
            "this model has no token-ids input and logits output (expected int64 [batch, seq] -> float [batch, seq, vocab])".into(),
        ))?;
        if !info.not_decodable.is_empty() {
            return Err(RuntimeError::Session(format!("lt2c cannot derive decode for this model: {}", info.not_decodable)));
        }
        let bad = RuntimeError::Session;
        let t = opts.exit_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(bad(format!("exit threshold {t} is outside (0, 1]")));
        }
        if t < 1.0 {
            let has_gate = model.file().manifest.graphs.iter().flat_map(|g| &g.steps).any(|s| matches!(&s.op, Some(Op::Loop(l)) if l.exit_gate_scan.is_some()));
            if !has_gate {
                return Err(bad("an exit threshold needs an exit gate (Ouro's per-loop sigmoid, a scan output of a Loop); this model has none, or its loop was unrolled".into()));
            }
            if opts.share_kv_across_loops {
                return Err(bad("an exit threshold cannot be combined with a KV cache shared across loops (the shared cache is written by the last loop, which early exit skips)".into()));
            }
        }
        Ok(Session { model, info, opts, seqs: Vec::new() })
    }

    /// Loop iterations run and skipped by early exit, summed over the session's sequences.
    pub fn loop_iterations(&self) -> LoopCounts {
        self.seqs.iter().fold(LoopCounts::default(), |a, (s, _)| LoopCounts { run: a.run + s.loop_iterations.run, skipped: a.skipped + s.loop_iterations.skipped })
    }

    /// Cache memory per sequence, from the plan.
    pub fn cache_report(&self) -> CacheReport {
        let m = &self.model.file().manifest;
        let (mut fixed, mut per_tok) = (0u64, 0u64);
        fn walk(graphs: &[Graph], g: usize, mult: u64, fixed: &mut u64, per_tok: &mut u64, share: bool) {
            for s in &graphs[g].steps {
                if let Some(Op::Loop(l)) = &s.op {
                    walk(graphs, l.body as usize, mult * l.trip_count.max(0) as u64, fixed, per_tok, share);
                }
                let m = if share && matches!(s.op, Some(Op::Attention(_))) { 1 } else { mult };
                *fixed += s.cache_fixed_bytes * m;
                *per_tok += s.cache_token_bytes * m;
            }
        }
        if !m.graphs.is_empty() {
            walk(&m.graphs, 0, 1, &mut fixed, &mut per_tok, self.opts.share_kv_across_loops);
        }
        CacheReport { fixed_per_seq: fixed, per_token_per_seq: per_tok, max_context: self.opts.max_context as u64 }
    }

    /// Bytes the caches hold now.
    pub fn cache_bytes(&self) -> usize {
        self.seqs.iter().map(|(s, _)| s.cache_bytes(self.model.backend())).sum()
    }

    /// Drops every sequence and its caches.
    pub fn reset(&mut self) {
        self.seqs.clear();
    }

    /// Tokens held by each sequence.
    pub fn lengths(&self) -> Vec<usize> {
        self.seqs.iter().map(|(_, n)| *n).collect()
    }

    fn check_room(&self, seq: usize, have: usize, add: usize) -> Result<(), RuntimeError> {
        if have + add > self.opts.max_context {
            return Err(RuntimeError::BadInput {
                name: self.info.ids_input.clone(),
                reason: format!(
                    "sequence {seq} would hold {} tokens, more than the session's context capacity of {} (raise max_context)",
                    have + add,
                    self.opts.max_context
                ),
            });
        }
        Ok(())
    }

    /// Runs `ids` through sequence `i`'s caches; returns logits [len, vocab].
    fn extend(&mut self, i: usize, ids: &[i64]) -> Result<Tensor, RuntimeError> {
        let (have, name) = (self.seqs[i].1, self.info.ids_input.clone());
        self.check_room(i, have, ids.len())?;
        let inputs = HashMap::from([(name, Tensor::i64(vec![1, ids.len()], ids.to_vec()))]);
        let (st, n) = &mut self.seqs[i];
        st.past = *n as i64;
        let outs = self.model.run_with(&inputs, Some(st))?;
        *n += ids.len();
        let (_, logits) = outs.into_iter().find(|(k, _)| *k == self.info.logits_output).ok_or_else(|| RuntimeError::Corrupt("logits output missing".into()))?;
        let v = *logits.shape.last().unwrap_or(&0);
        Ok(Tensor { shape: vec![ids.len(), v], data: logits.data })
    }

    /// Starts one sequence per prompt (replacing any earlier ones) and returns each prompt's
    /// logits [len, vocab].
    pub fn prefill(&mut self, prompts: &[Vec<i64>]) -> Result<Vec<Tensor>, RuntimeError> {
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(RuntimeError::BadInput { name: self.info.ids_input.clone(), reason: format!("prompt {i} is empty") });
            }
            self.check_room(i, 0, p.len())?;
        }
        self.seqs = prompts.iter().map(|_| (RunState { share_kv_across_loops: self.opts.share_kv_across_loops, exit_threshold: self.opts.exit_threshold, ..Default::default() }, 0)).collect();
        (0..prompts.len()).map(|i| self.extend(i, &prompts[i])).collect()
    }

    /// Feeds one new token to every sequence; returns each sequence's logits [vocab].
    pub fn decode(&mut self, next: &[i64]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        if next.len() != self.seqs.len() {
            return Err(RuntimeError::BadInput {
                name: self.info.ids_input.clone(),
                reason: format!("decode got {} tokens for {} sequences", next.len(), self.seqs.len()),
            });
        }
        (0..next.len()).map(|i| self.extend(i, &next[i..=i]).map(|t| t.as_f32().unwrap_or(&[]).to_vec())).collect()
    }
}
