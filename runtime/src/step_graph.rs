//! Decode steps recorded once and replayed with one launch (CUDA graphs). A decode step of a
//! looped 1.3B model is about 3,000 small ops: enqueued one by one it is bound by host time
//! (about 7 us per op against well under 1 us of GPU work). A recorded step can be replayed only
//! if nothing it launches depends on the step: so the session switches the group's caches to
//! fixed capacity (K/V rows written in place at a token count held in device memory, GDN and
//! conv states overwritten in place) and feeds token ids through one device buffer. Backends
//! that cannot record (the CPU reference) leave `Backend::step_graphs` at None and every step
//! runs op by op; the session falls back the same way for what a recorded step cannot hold
//! (early exit, attention masks). Sparse attention's index-key and K/V caches are fixed-capacity
//! too: the indexer's top-k reads the token count on the device.

use std::collections::HashMap;

use crate::error::{OpError, RuntimeError};
use crate::plan;
use crate::tensor::Tensor;

/// What a backend provides to record and replay decode steps over fixed-capacity caches.
pub trait StepGraphs<T> {
    /// A cache of `cap` rows: a new [B, cap, ...] buffer holding the rows of `t` [B, n, ...] at
    /// rows `at` .. `at + n` (the others are never read before they are written).
    fn with_capacity(&self, t: &T, cap: usize, at: usize) -> Result<T, OpError>;
    /// Overwrites `dst` with a host tensor of the same size, in stream order (no wait).
    fn write(&self, dst: &T, t: &Tensor) -> Result<(), OpError>;
    /// Overwrites `dst` with `src` (same size): recurrent states updated in place.
    fn copy_into(&self, dst: &T, src: &T) -> Result<(), OpError>;
    /// A positional Range whose start is offset by the token count in `past` (i64 [1]).
    fn range_past(&self, r: &plan::Range, past: &T, env: &HashMap<String, i64>) -> Result<T, OpError>;
    /// Causal attention of one decode step over fixed-capacity caches: writes the new k, v rows
    /// at row `past` of the caches, then attends to rows 0 ..= past (see cuda/attention.rs).
    fn attention_cached(&self, a: &plan::Attention, q: &T, new: [&T; 2], cache: [&T; 2], past: &T) -> Result<T, OpError>;
    /// The lightning indexer of one decode step over a fixed-capacity index-key cache: writes the
    /// new keys at row `past`, then selects among rows 0 ..= past (see cuda/sparse.rs).
    fn indexer_cached(&self, ix: &plan::LightningIndexer, q: &T, k_new: &T, w: Option<&T>, cache: &T, past: &T) -> Result<T, OpError>;
    /// Sparse attention of one decode step over fixed-capacity K/V caches: writes the new rows at
    /// row `past`, then attends over the positions in `idx`.
    fn sparse_attention_cached(&self, sa: &plan::SparseAttention, q: &T, new: [&T; 2], cache: [&T; 2], idx: &T, past: &T) -> Result<T, OpError>;
    /// Records what `record` enqueues (nothing runs) into a replayable step. Every buffer the
    /// recording allocates stays reserved for the replays.
    fn capture(&self, record: &mut dyn FnMut() -> Result<(), RuntimeError>) -> Result<Box<dyn Replay>, RuntimeError>;
}

/// A recorded decode step.
pub trait Replay {
    /// Enqueues one replay of the step.
    fn replay(&self) -> Result<(), OpError>;
}

/// Why a model's decode steps cannot be recorded, or None when they can (checked once per
/// session, from the plan): the recorded step has no early exit and no attention mask (its
/// shape follows the cache length).
pub fn unsupported(m: &plan::Manifest, exit_threshold: f32) -> Option<String> {
    if exit_threshold < 1.0 {
        return Some("early exit decides on the host after every loop".into());
    }
    for s in m.graphs.iter().flat_map(|g| &g.steps).filter(|s| s.cache_slot != 0) {
        match &s.op {
            Some(plan::Op::Attention(_)) if s.inputs.get(3).is_some_and(|&i| i != plan::ABSENT) => {
                return Some("an attention mask input grows with the cache".into());
            }
            _ => {}
        }
    }
    None
}
