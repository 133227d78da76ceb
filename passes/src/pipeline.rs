//! The pass pipeline: one ordered list, each ordering constraint commented. The CLI checks
//! pass names against it. Verification runs after every pass.

use melior::ir::Module;

use crate::canonicalize::Canonicalize;
use crate::fold_kv_repeat::FoldKvRepeat;
use crate::fuse_silu::FuseSilu;
use crate::fuse_silu_mul::FuseSiluMul;
use crate::raise_attention::RaiseAttention;
use crate::raise_l2_norm::RaiseL2Norm;
use crate::raise_rms_norm::RaiseRmsNorm;
use crate::raise_rope::RaiseRope;
use crate::raise_sdpa::RaiseSdpa;
use crate::reroll_loops::RerollLoops;
use crate::rope_token_layout::RopeTokenLayout;
use crate::sink_into_loop::SinkIntoLoop;
use crate::hoist_loop_invariants::HoistLoopInvariants;
use crate::matmul_weight_precision::MatmulWeightPrecision;
use lt2_ir::Elem;
use crate::{Pass, PassError};

/// Every pass, in pipeline order.
pub static PASSES: &[&(dyn Pass + Sync)] = &[
    // First: cancel the importer's transposes and drop dead shape ops.
    &Canonicalize,
    // Unrolled copies of the looped layers (torch exports) → lt2.loop; needs duplicate weights
    // merged (canonicalize) and comes before the passes that rewrite the body, so they see it once.
    &RerollLoops,
    // What the unrolled export computes after the loops from every loop's state (Ouro's exit
    // gates) moves into the rerolled loop, where early exit finds it.
    &SinkIntoLoop,
    // Pattern raising: decomposed norms become fused ops; needs constants visible (canonicalize
    // has merged duplicates) and leaves the dead chain for the next canonicalize.
    &RaiseRmsNorm,
    // GDN's q/k L2 norms → lt2.rms_norm with a 1/sqrt(D) scale; same preconditions.
    &RaiseL2Norm,
    // HF's rotate_half RoPE below opset 23 → lt2.rope; same preconditions.
    &RaiseRope,
    // Heads-first RoPE over a transpose runs on the token layout; the final canonicalize
    // cancels the moved transpose against attention's packing.
    &RopeTokenLayout,
    // MatMul/Softmax attention with a causal mask → lt2.attention (what decode needs); reads
    // the reshapes that canonicalize left in place; the next canonicalize drops the dead chain.
    &RaiseAttention,
    // What raise-attention leaves: torch's SDPA decomposition (exports below opset 23) with
    // the mask the model built, as a fused attention taking that mask (codegen's causal-mask
    // check then decides whether it decodes); before fold-kv-repeat, which reads its K / V.
    &RaiseSdpa,
    // Fused attention fed K / V heads copied for GQA (torch's repeat_kv) reads the heads once;
    // after raise-attention, which makes fused attention of its own.
    &FoldKvRepeat,
    &FuseSilu,
    // silu(g) * u → one op; needs the silus fuse-silu makes.
    &FuseSiluMul,
    // Moves weights out of loops; leaves duplicates behind for the next canonicalize.
    &HoistLoopInvariants,
    // Merges the hoisted duplicate weights.
    &Canonicalize,
];

/// Passes chosen by compile options rather than always run; after `PASSES`, in this order.
static OPTION_PASSES: &[&(dyn Pass + Sync)] = &[&MatmulWeightPrecision(Elem::Bf16), &MatmulWeightPrecision(Elem::F16)];

/// How to run the pipeline.
#[derive(Default, Clone)]
pub struct PipelineOptions {
    /// Print the IR after every pass (to stderr via the callback).
    pub print_after_all: bool,
    /// Print the IR after the named pass only.
    pub print_after: Option<String>,
    /// Run only the first N optional passes (to bisect a mismatch).
    pub opt_bisect_limit: Option<usize>,
    /// Skip every optional pass.
    pub no_opt: bool,
    /// `--dtype bf16|fp16`: matrix products read their weights in this type (None: fp32).
    pub matmul_weights: Option<Elem>,
}

/// Runs the pipeline; `print` receives (pass name, IR text) where printing was asked for.
pub fn run_pipeline(module: &mut Module, opts: &PipelineOptions, print: &mut dyn FnMut(&str, &str)) -> Result<Vec<(String, usize, std::time::Duration)>, PassError> {
    if let Some(p) = &opts.print_after {
        if pass_by_name(p).is_none() {
            let names: Vec<&str> = PASSES.iter().chain(OPTION_PASSES).map(|x| x.name()).collect();
            return Err(PassError::Unknown(p.clone(), names.join(", ")));
        }
    }
    let mut stats = Vec::new();
    let mut optional_run = 0;
    let chosen = OPTION_PASSES.iter().copied().filter(|p| match opts.matmul_weights {
        Some(e) => p.name() == MatmulWeightPrecision(e).name(),
        None => false,
    });
    for pass in PASSES.iter().copied().chain(chosen) {
        if !pass.is_required() {
            if opts.no_opt || opts.opt_bisect_limit.is_some_and(|l| optional_run >= l) {
                continue;
            }
            optional_run += 1;
        }
        let t = std::time::Instant::now();
        let n = pass.run(module)?;
        stats.push((pass.name().to_string(), n, t.elapsed()));
        lt2_ir::verify::verify_module(module, Some(pass.name()))?;
        if opts.print_after_all || opts.print_after.as_deref() == Some(pass.name()) {
            print(pass.name(), &module.as_operation().to_string());
        }
    }
    Ok(stats)
}

/// The pass registered under `name` (the CLI and IR tests look passes up by name).
pub fn pass_by_name(name: &str) -> Option<&'static (dyn Pass + Sync)> {
    PASSES.iter().chain(OPTION_PASSES).copied().find(|p| p.name() == name)
}
