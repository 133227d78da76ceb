//! Decode sessions: prefill prompts, then decode one token per sequence per step, with one
//! cache per (loop, layer) derived by the compiler (see `decode.rs`). Sequences whose prompts
//! have the same length form a group that runs as one batch (one [n, len] run per step, caches
//! batched along dim 0); groups of different lengths run one after another. Under early exit a
//! group stops looping once every token in it has exited.

use std::collections::HashMap;

use crate::backend::Backend;
use crate::decode::{use_capacity, LoopCounts, RunState};
use crate::error::{OpError, RuntimeError};
use crate::exec::Model;
use crate::plan::{DecodeInfo, Graph, Op};
use crate::step_graph::Replay;
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
    groups: Vec<Group<B::Buf>>,
    /// Number of sequences (the members of all groups).
    num_seqs: usize,
    /// Why decode steps run op by op rather than recorded and replayed (`step_graph.rs`);
    /// None: they are recorded.
    not_recorded: Option<String>,
}

/// Sequences of equal length run as one batch.
struct Group<T> {
    state: RunState<T>,
    /// Indices of the member sequences, in batch order.
    members: Vec<usize>,
    /// Tokens each member holds.
    len: usize,
    /// The recorded decode step, once the caches have fixed capacity and a step was recorded.
    recorded: Option<RecordedStep<T>>,
    /// Recordings that failed; after two the group decodes op by op (over its fixed caches).
    failed_recordings: u32,
}

/// A decode step recorded once and replayed: token ids go into `ids`, logits come out of
/// `logits`, both buffers fixed in the recording.
struct RecordedStep<T> {
    replay: Box<dyn Replay>,
    ids: T,
    logits: T,
    /// Loop iterations one step runs (the executor counts them only while recording).
    loop_iterations: u64,
}

/// Rows of fixed-capacity caches for `need` tokens: an eighth more (at least 32), so a long
/// generation re-records a few times rather than every token, within `max_context`.
fn capacity_for(need: usize, max_context: usize) -> usize {
    (need + (need / 8).max(32)).next_multiple_of(32).min(max_context.max(need))
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
                return Err(bad("an exit threshold needs an exit gate (Ouro's per-loop sigmoid, a scan output of a Loop); this model has none (or its unrolled loop did not reroll: see `lt2c --pass-timing`)".into()));
            }
            if opts.share_kv_across_loops {
                return Err(bad("an exit threshold cannot be combined with a KV cache shared across loops (the shared cache is written by the last loop, which early exit skips)".into()));
            }
        }
        let not_recorded = match model.backend().step_graphs() {
            None => Some(format!("the {} backend runs decode steps op by op", model.backend().name())),
            Some(_) => crate::step_graph::unsupported(&model.file().manifest, opts.exit_threshold),
        };
        Ok(Session { model, info, opts, groups: Vec::new(), num_seqs: 0, not_recorded })
    }

    /// Whether decode steps are recorded and replayed (`decode_mode` says why not).
    pub fn decode_recorded(&self) -> bool {
        self.not_recorded.is_none()
    }

    /// How decode steps run: recorded once and replayed (CUDA graph), or op by op and why.
    pub fn decode_mode(&self) -> String {
        match &self.not_recorded {
            None => "decode steps recorded once and replayed (CUDA graph)".into(),
            Some(why) => format!("decode steps op by op: {why}"),
        }
    }

    /// Loop iterations run and skipped by early exit, summed over the session's sequences.
    pub fn loop_iterations(&self) -> LoopCounts {
        self.groups.iter().fold(LoopCounts::default(), |a, g| LoopCounts { run: a.run + g.state.loop_iterations.run, skipped: a.skipped + g.state.loop_iterations.skipped })
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
        self.groups.iter().map(|g| g.state.cache_bytes(self.model.backend())).sum()
    }

    /// Drops every sequence and its caches.
    pub fn reset(&mut self) {
        self.groups.clear();
        self.num_seqs = 0;
    }

    /// Tokens held by each sequence.
    pub fn lengths(&self) -> Vec<usize> {
        let mut out = vec![0; self.num_seqs];
        for g in &self.groups {
            for &m in &g.members {
                out[m] = g.len;
            }
        }
        out
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

    /// Runs `ids` (one row of `len` tokens per member) through group `gi`'s caches; returns
    /// each member's logits [len, vocab], or only the last position's [1, vocab] with
    /// `last_only` (only that row leaves the device).
    fn extend(&mut self, gi: usize, ids: Vec<i64>, len: usize, last_only: bool) -> Result<Vec<Tensor>, RuntimeError> {
        let (have, n, first) = (self.groups[gi].len, self.groups[gi].members.len(), self.groups[gi].members[0]);
        self.check_room(first, have, len)?;
        let inputs = HashMap::from([(self.info.ids_input.clone(), Tensor::i64(vec![n, len], ids))]);
        let g = &mut self.groups[gi];
        g.state.past = have as i64;
        g.state.last_logits_only = last_only;
        let t0 = std::time::Instant::now();
        let outs = self.model.run_on_device(&inputs, Some(&mut g.state))?;
        let enqueued = t0.elapsed();
        g.len += len;
        let (_, logits) = outs.into_iter().find(|(k, _)| *k == self.info.logits_output).ok_or_else(|| RuntimeError::Corrupt("logits output missing".into()))?;
        let b = self.model.backend();
        let dev = |e: crate::error::OpError| RuntimeError::Device { device: b.name().into(), reason: e.0 };
        let rows = if last_only { 1 } else { len };
        let have_rows = b.shape(&logits).get(1).copied().unwrap_or(0);
        let logits = if last_only && have_rows > 1 {
            let last = Op::Slice(crate::plan::Slice { axes: vec![1], starts: vec![have_rows as i64 - 1], ends: vec![have_rows as i64], steps: vec![1] });
            b.run_op(&last, &[Some(&logits)], &HashMap::new()).map_err(dev)?.remove(0)
        } else {
            logits
        };
        let logits = b.download(&logits).map_err(dev)?;
        if std::env::var_os("LT2C_STEP_TIMES").is_some() {
            // Host-bound or device-bound: the executor enqueues asynchronously, the download waits.
            eprintln!("step of {len} token(s): ops enqueued in {:.3} ms, then waited {:.3} ms for the device", enqueued.as_secs_f64() * 1e3, (t0.elapsed() - enqueued).as_secs_f64() * 1e3);
        }
        let v = *logits.shape.last().unwrap_or(&0);
        let data = logits.as_f32().ok_or_else(|| RuntimeError::Corrupt("logits are not float".into()))?;
        Ok(data.chunks(rows * v.max(1)).map(|c| Tensor::f32(vec![rows, v], c.to_vec())).collect())
    }

    /// Starts one sequence per prompt (replacing any earlier ones) and returns each prompt's
    /// logits [len, vocab].
    pub fn prefill(&mut self, prompts: &[Vec<i64>]) -> Result<Vec<Tensor>, RuntimeError> {
        self.prefill_rows(prompts, false)
    }

    /// Like `prefill`, but returns only each prompt's last logits [vocab] (what generation
    /// needs; the other rows never leave the device).
    pub fn prefill_last(&mut self, prompts: &[Vec<i64>]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        Ok(self.prefill_rows(prompts, true)?.into_iter().map(|t| t.as_f32().unwrap_or(&[]).to_vec()).collect())
    }

    fn prefill_rows(&mut self, prompts: &[Vec<i64>], last_only: bool) -> Result<Vec<Tensor>, RuntimeError> {
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(RuntimeError::BadInput { name: self.info.ids_input.clone(), reason: format!("prompt {i} is empty") });
            }
            self.check_room(i, 0, p.len())?;
        }
        self.groups.clear();
        self.num_seqs = prompts.len();
        for (i, p) in prompts.iter().enumerate() {
            match self.groups.iter_mut().find(|g| prompts[g.members[0]].len() == p.len()) {
                Some(g) => g.members.push(i),
                None => self.groups.push(Group {
                    state: RunState { share_kv_across_loops: self.opts.share_kv_across_loops, exit_threshold: self.opts.exit_threshold, ..Default::default() },
                    members: vec![i],
                    len: 0,
                    recorded: None,
                    failed_recordings: 0,
                }),
            }
        }
        let mut out = vec![Tensor::f32(vec![0], vec![]); prompts.len()];
        for gi in 0..self.groups.len() {
            let members = self.groups[gi].members.clone();
            let len = prompts[members[0]].len();
            let ids: Vec<i64> = members.iter().flat_map(|&m| prompts[m].iter().copied()).collect();
            for (m, t) in members.into_iter().zip(self.extend(gi, ids, len, last_only)?) {
                out[m] = t;
            }
        }
        Ok(out)
    }

    /// Feeds one new token to every sequence; returns each sequence's logits [vocab].
    pub fn decode(&mut self, next: &[i64]) -> Result<Vec<Vec<f32>>, RuntimeError> {
        if next.len() != self.num_seqs {
            return Err(RuntimeError::BadInput {
                name: self.info.ids_input.clone(),
                reason: format!("decode got {} tokens for {} sequences", next.len(), self.num_seqs),
            });
        }
        let mut out = vec![Vec::new(); next.len()];
        for gi in 0..self.groups.len() {
            let members = self.groups[gi].members.clone();
            let ids: Vec<i64> = members.iter().map(|&m| next[m]).collect();
            let rows = if self.not_recorded.is_none() { self.decode_replayed(gi, ids)? } else { self.extend(gi, ids, 1, true)? };
            for (m, t) in members.into_iter().zip(rows) {
                out[m] = t.as_f32().unwrap_or(&[]).to_vec();
            }
        }
        Ok(out)
    }

    /// One decode step of group `gi` as a replay of its recorded step (`step_graph.rs`). The
    /// first step switches the caches to fixed capacity and runs op by op; the next records
    /// the step, and later ones replay it. A full capacity grows and records again.
    fn decode_replayed(&mut self, gi: usize, ids: Vec<i64>) -> Result<Vec<Tensor>, RuntimeError> {
        let model = self.model;
        let b = model.backend();
        let dev = |e: OpError| RuntimeError::Device { device: b.name().into(), reason: e.0 };
        let graphs = b.step_graphs().ok_or_else(|| RuntimeError::Session("this backend cannot record decode steps".into()))?;
        let (have, n, first) = (self.groups[gi].len, self.groups[gi].members.len(), self.groups[gi].members[0]);
        self.check_room(first, have, 1)?;
        let past = crate::tensor::Tensor::i64(vec![1], vec![have as i64]);
        let cap = self.groups[gi].state.fixed.as_ref().map(|f| f.cap);
        if cap.is_none_or(|c| have + 1 > c) {
            let g = &mut self.groups[gi];
            g.recorded = None;
            use_capacity(b, &mut g.state, have, capacity_for(have + 1, self.opts.max_context)).map_err(dev)?;
            if let Some(f) = &g.state.fixed {
                graphs.write(&f.past, &past).map_err(dev)?;
            }
            return self.extend(gi, ids, 1, true);
        }
        let ids = Tensor::i64(vec![n, 1], ids);
        let inputs = HashMap::from([(self.info.ids_input.clone(), ids.clone())]);
        let logits_name = &self.info.logits_output;
        let g = &mut self.groups[gi];
        if let Some(f) = &g.state.fixed {
            graphs.write(&f.past, &past).map_err(dev)?;
        }
        if g.recorded.is_none() && g.failed_recordings >= 2 {
            // Recording keeps failing: op by op over the fixed caches.
            let ids = ids.as_i64().unwrap_or(&[]).to_vec();
            return self.extend(gi, ids, 1, true);
        }
        let t0 = std::time::Instant::now();
        match &g.recorded {
            Some(r) => graphs.write(&r.ids, &ids).map_err(dev)?,
            None => {
                let ids_buf = b.upload(&ids).map_err(dev)?;
                g.state.past = have as i64;
                g.state.last_logits_only = true;
                let before = g.state.loop_iterations.run;
                let mut logits = None;
                let state = &mut g.state;
                let recording = graphs.capture(&mut || {
                    let outs = model.run_on_buffers(&inputs, vec![ids_buf.clone()], Some(&mut *state))?;
                    logits = outs.into_iter().find(|(k, _)| k == logits_name).map(|(_, t)| t);
                    Ok(())
                });
                let loop_iterations = g.state.loop_iterations.run - before;
                g.state.loop_iterations.run = before;
                match (recording, logits) {
                    (Ok(replay), Some(logits)) => g.recorded = Some(RecordedStep { replay, ids: ids_buf, logits, loop_iterations }),
                    (Ok(_), None) => return Err(RuntimeError::Corrupt("logits output missing".into())),
                    (Err(e), _) => {
                        // Nothing ran: the caches are as they were. This step goes op by op.
                        g.failed_recordings += 1;
                        eprintln!("note: recording the decode step failed, running it op by op: {e}");
                        let ids = ids.as_i64().unwrap_or(&[]).to_vec();
                        return self.extend(gi, ids, 1, true);
                    }
                }
            }
        }
        let r = g.recorded.as_ref().ok_or_else(|| RuntimeError::Corrupt("no recorded step".into()))?;
        r.replay.replay().map_err(dev)?;
        let enqueued = t0.elapsed();
        g.state.loop_iterations.run += r.loop_iterations;
        g.len += 1;
        let logits = b.download(&r.logits).map_err(dev)?;
        if std::env::var_os("LT2C_STEP_TIMES").is_some() {
            eprintln!("step of 1 token (replayed): enqueued in {:.3} ms, then waited {:.3} ms for the device", enqueued.as_secs_f64() * 1e3, (t0.elapsed() - enqueued).as_secs_f64() * 1e3);
        }
        let v = *logits.shape.last().unwrap_or(&0);
        let data = logits.as_f32().ok_or_else(|| RuntimeError::Corrupt("logits are not float".into()))?;
        Ok(data.chunks(v.max(1)).map(|c| Tensor::f32(vec![1, v], c.to_vec())).collect())
    }
}
