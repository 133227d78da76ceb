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
    /// Set once the caches have fixed capacity (a decode step recorded as a graph,
    /// `step_graph.rs`): stateful steps then update them in place.
    pub fixed: Option<FixedCaches<T>>,
}

/// Caches of fixed capacity: K/V are [B, cap, ...] with rows past.. unset, and the token count
/// lives in device memory so that a recorded step reads it instead of baking it in.
pub struct FixedCaches<T> {
    /// i64 [1] on the device: tokens the caches held before the running step.
    pub past: T,
    /// Rows of every K/V cache.
    pub cap: usize,
}

/// How many loop iterations ran and how many early exit skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopCounts {
    pub run: u64,
    pub skipped: u64,
}

impl<T> Default for RunState<T> {
    fn default() -> Self {
        RunState {
            past: 0,
            caches: HashMap::new(),
            share_kv_across_loops: false,
            exit_threshold: 1.0,
            loop_iterations: LoopCounts::default(),
            last_logits_only: false,
            seq_slots: HashMap::new(),
            fixed: None,
        }
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
    if st.fixed.is_some() {
        return run_in_place(b, op, step, ins, env, st, iters, key);
    }
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
            let k = concat_seq(b, cache.first(), &b.to_kv_cache(&req(&ins, 1)?, a)?, env)?;
            let v = concat_seq(b, cache.get(1), &b.to_kv_cache(&req(&ins, 2)?, a)?, env)?;
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

/// `run_stateful` over fixed-capacity caches: nothing launched depends on the cache length or
/// replaces a cache buffer, so the step can be recorded once and replayed (`step_graph.rs`).
#[allow(clippy::too_many_arguments)]
fn run_in_place<B: Backend>(
    b: &B,
    op: &Op,
    step: &Step,
    mut ins: Vec<Option<B::Buf>>,
    env: &HashMap<String, i64>,
    st: &mut RunState<B::Buf>,
    iters: &[(i64, i64)],
    key: CacheKey,
) -> Result<Vec<B::Buf>, OpError> {
    let g = b.step_graphs().ok_or_else(|| OpError::new("fixed-capacity caches on a backend that cannot record steps"))?;
    let past = match &st.fixed {
        Some(f) => f.past.clone(),
        None => return Err(OpError::new("caches are not of fixed capacity")),
    };
    match op {
        Op::Range(r) => Ok(vec![g.range_past(r, &past, env)?]),
        Op::CausalConv(_) | Op::Gdn(_) => {
            if ins.len() < 4 {
                ins.resize(4, None);
            }
            if ins[3].is_some() {
                return Err(OpError::new("the model passes its own state; a decode session cannot add one"));
            }
            let state = st.caches.get(&key).and_then(|c| c.first().cloned()).ok_or_else(|| OpError::new("no state cached by the prefill"))?;
            ins[3] = Some(state.clone());
            let r: Vec<Option<&B::Buf>> = ins.iter().map(|t| t.as_ref()).collect();
            let outs = b.run_op(op, &r, env)?;
            // The cache keeps its buffer (a recorded step reads it there next time).
            g.copy_into(&state, &outs[1])?;
            Ok(outs)
        }
        Op::Attention(a) => {
            if ins.get(3).is_some_and(|m| m.is_some()) {
                return Err(OpError::new("an attention mask cannot be decoded over fixed-capacity caches"));
            }
            st.seq_slots.insert(step.cache_slot, a.window_left);
            // Shared across loops: every loop writes row `past` and the last one's stays.
            let key = if st.share_kv_across_loops && !iters.is_empty() { (step.cache_slot, vec![]) } else { key };
            let cache = st.caches.get(&key).ok_or_else(|| OpError::new("no K/V cached by the prefill"))?;
            let (kc, vc) = match (cache.first(), cache.get(1)) {
                (Some(k), Some(v)) => (k, v),
                _ => return Err(OpError::new("K/V cache entry is incomplete")),
            };
            Ok(vec![g.attention_cached(a, &req(&ins, 0)?, [&req(&ins, 1)?, &req(&ins, 2)?], [kc, vc], &past)?])
        }
        Op::LightningIndexer(ix) => {
            let cache = st.caches.get(&key).and_then(|c| c.first()).ok_or_else(|| OpError::new("no index keys cached by the prefill"))?;
            let w = ins.get(2).cloned().flatten();
            Ok(vec![g.indexer_cached(ix, &req(&ins, 0)?, &req(&ins, 1)?, w.as_ref(), cache, &past)?])
        }
        Op::SparseAttention(sa) => {
            let cache = st.caches.get(&key).ok_or_else(|| OpError::new("no K/V cached by the prefill"))?;
            let (kc, vc) = match (cache.first(), cache.get(1)) {
                (Some(k), Some(v)) => (k, v),
                _ => return Err(OpError::new("K/V cache entry is incomplete")),
            };
            Ok(vec![g.sparse_attention_cached(sa, &req(&ins, 0)?, [&req(&ins, 1)?, &req(&ins, 2)?], [kc, vc], &req(&ins, 3)?, &past)?])
        }
        _ => {
            let r: Vec<Option<&B::Buf>> = ins.iter().map(|t| t.as_ref()).collect();
            b.run_op(op, &r, env)
        }
    }
}

/// Switches the caches of `st` (holding `len` tokens) to fixed capacity `cap`, or grows them
/// to it: every K/V cache becomes [B, cap, ...] with its rows at their positions (a windowed
/// cache's rows end at `len`), and the token count gets its device buffer.
pub fn use_capacity<B: Backend>(b: &B, st: &mut RunState<B::Buf>, len: usize, cap: usize) -> Result<(), OpError> {
    let g = b.step_graphs().ok_or_else(|| OpError::new("this backend cannot record decode steps"))?;
    if len >= cap {
        return Err(OpError::new(format!("a capacity of {cap} rows cannot hold {len} tokens and the next")));
    }
    let grow = st.fixed.is_some();
    for ((slot, _), entry) in st.caches.iter_mut() {
        if !st.seq_slots.contains_key(slot) {
            continue;
        }
        for t in entry.iter_mut() {
            let rows = b.shape(t).get(1).copied().unwrap_or(0);
            // Fixed already: all `rows` (the old capacity) move; else the rows end at `len`.
            let at = if grow { 0 } else { len.checked_sub(rows).ok_or_else(|| OpError::new(format!("a cache holds {rows} rows for {len} tokens")))? };
            *t = g.with_capacity(t, cap, at)?;
        }
    }
    if st.fixed.is_none() {
        let past = b.upload(&crate::tensor::Tensor::i64(vec![1], vec![len as i64]))?;
        st.fixed = Some(FixedCaches { past, cap });
    } else if let Some(f) = st.fixed.as_mut() {
        f.cap = cap;
    }
    Ok(())
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
