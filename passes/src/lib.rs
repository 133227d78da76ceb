//! lt2-passes: rewrites of lt2 MLIR, one pass per file, and the pipeline that orders them
//! (`pipeline.rs`). Every pass keeps the module verifiable; the pipeline verifies after each.

pub mod canonicalize;
pub mod fold_kv_repeat;
pub mod fuse_silu;
pub mod fuse_silu_mul;
pub mod hoist_loop_invariants;
pub mod matmul_weight_precision;
pub mod pipeline;
pub mod raise_attention;
pub mod raise_l2_norm;
pub mod raise_rms_norm;
pub mod raise_rope;
pub mod raise_sdpa;
pub mod reroll_loops;
pub mod rope_token_layout;
pub mod sink_into_loop;
mod raw;

use melior::ir::Module;

pub use pipeline::{run_pipeline, PipelineOptions, PASSES};

/// A rewrite of an lt2 module.
pub trait Pass {
    /// The CLI name, e.g. `canonicalize`.
    fn name(&self) -> &'static str;
    /// Whether later stages need it for correctness (required) or it only speeds things up.
    fn is_required(&self) -> bool;
    /// Rewrites the module in place; returns how many rewrites it made.
    fn run(&self, module: &mut Module) -> Result<usize, PassError>;
}

/// A pass failed, or left IR that does not verify.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("pass `{pass}`: {reason}")]
    Failed { pass: String, reason: String },
    #[error(transparent)]
    Verify(#[from] lt2_ir::IrError),
    #[error("unknown pass `{0}`; passes: {1}")]
    Unknown(String, String),
}
