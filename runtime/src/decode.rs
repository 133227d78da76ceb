//! Incremental execution: the same plan runs a prompt (prefill) and then one token at a time
//! (decode), with every stateful step reading and extending its cache. One cache per step and
//! per enclosing loop iteration, i.e. per (loop τ, layer ℓ): GDN state, conv tail, K/V of full
//! and windowed attention, index keys and latents of sparse attention.

use std::collections::HashMap;

use crate::backend::Backend;
use crate::error::OpError;
use crate::plan::{self, Op, Step};

/// Identifies one cache: the step's cache slot and the iteration of each enclosing loop.
pub type CacheKey = (u32, Vec<i64>);

/// The caches of one sequence (or one batch run together) and how many tokens they hold.
pub struct RunState<T> {
    /// Tokens already processed (positions of the next chunk start here).
    pub past: i64,
    pub caches: HashMap<CacheKey, Vec<T>>,
    /// Approximate mode: all loops of an attention step share one KV cache, written by the
    /// last loop (T-fold less KV memory; Ouro reports little quality loss).
    pub share_kv_across_loops: bool,
    /// Ouro's early exit (see `early_exit.rs`): below 1, a chunk stops looping once every token's
    /// cumulative exit probability reaches it. 1.0 (the default) runs every loop: exact.
    pub exit_threshold: f32,
    /// Loop iterations run and skipped by early exit so far.
    pub loop_iterations: LoopCounts,
    /// Only the last position's logits are needed (generation): the LM head runs on it alone.
    pub last_logits_only: bool,
    /// Caches that grow one entry per token (K/V, index keys, latents): slot -> window (-1: all).
    pub seq_slots: HashMap<u32, i64>,
}

/// How many loop iterations ran and how many early exit skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopCounts {
    pub run: u64,
    pub skipped: u64,
}

impl<T> Default for RunState<T> {
    fn default() -> Self {
        RunState { past: 0, caches: HashMap::new(), share_kv_across_loops: false, exit_threshold: 1.0, loop_iterations: LoopCounts::default(), last_logits_only: false, seq_slots: HashMap::new() }
    }
}

impl<T> RunState<T> {
    /// Bytes held by the caches now.
    pub fn cache_bytes<B: Backend<Buf = T>>(&self, b: &B) -> usize {
        self.caches.values().flatten().map(|t| b.nbytes(t)).sum()
    }
}

fn concat_seq<B: Backend>(b: &B, cache: Option<&B::Buf>, new: &B::Buf, env: &HashMap<String, i64>) -> Result<B::Buf, OpError> {
    match cache {
        None => Ok(new.clone()),
        Some(c) => Ok(b.run_op(&Op::Concat(plan::Concat { axis: 1 }), &[Some(c), Some(new)], env)?.remove(0)),
    }
}

/// Keeps the last `n` positions of a [B, S, ...] tensor.
fn keep_last<B: Backend>(b: &B, t: B::Buf, n: i64, env: &HashMap<String, i64>) -> Result<B::Buf, OpError> {
    let s = b.shape(&t).get(1).copied().unwrap_or(0) as i64;
    if n < 0 || s <= n {
        return Ok(t);
    }
    let op = Op::Slice(plan::Slice { axes: vec![1], starts: vec![s - n], ends: vec![s], steps: vec![1] });
    Ok(b.run_op(&op, &[Some(&t)], env)?.remove(0))
}

fn req<T: Clone>(ins: &[Option<T>], i: usize) -> Result<T, OpError> {
    ins.get(i).cloned().flatten().ok_or_else(|| OpError::new(format!("required input {i} is missing")))
}

/// Runs a stateful step (or a positional range) against the caches in `st`.
pub fn run_stateful<B: Backend>(
    b: &B,
    op: &Op,
    step: &Step,
    mut ins: Vec<Option<B::Buf>>,
    env: &HashMap<String, i64>,
    st: &mut RunState<B::Buf>,
    iters: &[(i64, i64)],
) -> Result<Vec<B::Buf>, OpError> {
    let run = |op: &Op, ins: &[Option<B::Buf>]| -> Result<Vec<B::Buf>, OpError> {
        let refs: Vec<Option<&B::Buf>> = ins.iter().map(|t| t.as_ref()).collect();
        b.run_op(op, &refs, env)
    };
    let path: Vec<i64> = iters.iter().map(|&(i, _)| i).collect();
    let key = (step.cache_slot, path);
    match op {
        Op::Range(r) => {
            let shifted = Op::Range(plan::Range { start: r.start + st.past * r.delta, ..r.clone() });
            run(&shifted, &ins)
        }
        Op::CausalConv(_) | Op::Gdn(_) => {
            // The state input (index 3 in both) comes from the cache; the final state goes back.
            if ins.len() < 4 {
                ins.resize(4, None);
            }
            if ins[3].is_some() {
                return Err(OpError::new("the model passes its own state; a decode session cannot add one"));
            }
            ins[3] = st.caches.get(&key).and_then(|c| c.first().cloned());
            let outs = run(op, &ins)?;
            st.caches.insert(key, vec![outs[1].clone()]);
            Ok(outs)
        }
        Op::Attention(a) => {
            st.seq_slots.insert(step.cache_slot, a.window_left);
            if a.top_left {
                return Err(OpError::new("attention aligned top-left (queries and keys of different lengths) cannot be decoded"));
            }
            let shared = st.share_kv_across_loops && !iters.is_empty();
            let key = if shared { (step.cache_slot, vec![]) } else { key };
            let cache = st.caches.get(&key).cloned().unwrap_or_default();
            let k = concat_seq(b, cache.first(), &req(&ins, 1)?, env)?;
            let v = concat_seq(b, cache.get(1), &req(&ins, 2)?, env)?;
            let outs = run(op, &[ins[0].clone(), Some(k.clone()), Some(v.clone())])?;
            let last_iteration = iters.iter().all(|&(i, n)| i == n - 1);
            if !shared || last_iteration {
                // A window of w keeps the current token and w-1 before it: later queries never
                // look further back than `window_left` positions.
                st.caches.insert(key, vec![keep_last(b, k, a.window_left, env)?, keep_last(b, v, a.window_left, env)?]);
            }
            Ok(outs)
        }
        Op::LightningIndexer(_) => {
            st.seq_slots.insert(step.cache_slot, -1);
            let cache = st.caches.get(&key).cloned().unwrap_or_default();
            let k = concat_seq(b, cache.first(), &req(&ins, 1)?, env)?;
            let mut ins2 = ins.clone();
            ins2[1] = Some(k.clone());
            let outs = run(op, &ins2)?;
            st.caches.insert(key, vec![k]);
            Ok(outs)
        }
        Op::SparseAttention(_) => {
            st.seq_slots.insert(step.cache_slot, -1);
            let cache = st.caches.get(&key).cloned().unwrap_or_default();
            let k = concat_seq(b, cache.first(), &req(&ins, 1)?, env)?;
            let v = concat_seq(b, cache.get(1), &req(&ins, 2)?, env)?;
            let outs = run(op, &[ins[0].clone(), Some(k.clone()), Some(v.clone()), ins.get(3).cloned().flatten()])?;
            st.caches.insert(key, vec![k, v]);
            Ok(outs)
        }
        _ => run(op, &ins),
    }
}

/// Early exit stopped a loop after iteration `last` of `trip` (at loop depth `prefix.len()`):
/// gives every per-token cache of the skipped iterations the `chunk` newest entries of
/// iteration `last`, so later tokens at those depths still see this chunk ("exit-depth K/V").
/// Recurrent states (GDN, conv tails) of skipped iterations are left as they were.
pub fn copy_to_skipped_iterations<B: Backend>(b: &B, st: &mut RunState<B::Buf>, prefix: &[i64], last: i64, trip: i64, chunk: usize) -> Result<(), OpError> {
    let env = HashMap::new();
    let d = prefix.len();
    let sources: Vec<(CacheKey, i64)> = st
        .caches
        .keys()
        .filter(|(slot, path)| path.len() > d && path[..d] == *prefix && path[d] == last && st.seq_slots.contains_key(slot))
        .map(|k| (k.clone(), st.seq_slots[&k.0]))
        .collect();
    for ((slot, path), window) in sources {
        let newest: Vec<B::Buf> = st.caches[&(slot, path.clone())].iter().map(|t| keep_last(b, t.clone(), chunk as i64, &env)).collect::<Result<_, _>>()?;
        for it in last + 1..trip {
            let mut p = path.clone();
            p[d] = it;
            let key = (slot, p);
            let old = st.caches.remove(&key).unwrap_or_default();
            let grown: Vec<B::Buf> = newest
                .iter()
                .enumerate()
                .map(|(i, n)| concat_seq(b, old.get(i), n, &env).and_then(|t| keep_last(b, t, window, &env)))
                .collect::<Result<_, _>>()?;
            st.caches.insert(key, grown);
        }
    }
    Ok(())
}
