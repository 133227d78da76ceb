//! What a backend provides to the shared plan executor (`exec.rs`), decode caches
//! (`decode.rs`) and sessions: its buffer type, weights, transfers and one function per plan op.
//! The CPU reference backend (`cpu/`) is one; the CUDA backend is another.

use std::collections::HashMap;

use crate::error::{OpError, RuntimeError};
use crate::format::ModelFile;
use crate::plan::Op;
use crate::step_graph::StepGraphs;
use crate::tensor::Tensor;

/// A device that executes plan ops on its own buffers.
pub trait Backend: Sized {
    /// A tensor living on the device (cheap to clone: reference counted).
    type Buf: Clone;
    /// Short name for messages (`cpu`, `cuda`).
    fn name(&self) -> &'static str;
    /// Loads the model's weights onto the device.
    fn load_weights(&self, file: &ModelFile) -> Result<Vec<Self::Buf>, RuntimeError>;
    /// Copies a host tensor to the device.
    fn upload(&self, t: &Tensor) -> Result<Self::Buf, OpError>;
    /// Copies a device buffer to the host.
    fn download(&self, b: &Self::Buf) -> Result<Tensor, OpError>;
    /// The buffer's shape.
    fn shape(&self, b: &Self::Buf) -> Vec<usize>;
    /// Runs one non-control op (everything but `Weight` and `Loop`).
    fn run_op(&self, op: &Op, inputs: &[Option<&Self::Buf>], env: &HashMap<String, i64>) -> Result<Vec<Self::Buf>, OpError>;
    /// Stacks equally shaped buffers along a new leading axis (Loop scan outputs).
    fn stack(&self, xs: &[Self::Buf]) -> Result<Self::Buf, OpError>;
    /// Bytes a buffer holds (cache accounting).
    fn nbytes(&self, b: &Self::Buf) -> usize;
    /// Recording and replaying decode steps (`step_graph.rs`), where the backend can and it is
    /// not switched off; None: every step runs op by op.
    fn step_graphs(&self) -> Option<&dyn StepGraphs<Self::Buf>> {
        None
    }
    /// Device memory of activations and caches so far, where the backend tracks it (CUDA's
    /// arena); None on the CPU.
    fn memory_usage(&self) -> Option<MemoryUsage> {
        None
    }
    /// New K/V rows of attention `a` in the form its cache keeps them. A backend may keep the
    /// caches of a bf16 / fp16 attention in that type (its kernels round k and v to it anyway:
    /// only the bytes change); the default keeps fp32, as the CPU does.
    fn to_kv_cache(&self, t: &Self::Buf, _a: &crate::plan::Attention) -> Result<Self::Buf, OpError> {
        Ok(t.clone())
    }
}

/// Device memory of a backend's activations and caches (`Backend::memory_usage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The most bytes in use at once.
    pub peak_bytes: u64,
    /// Bytes of device memory reserved for them (mapped), in use or free.
    pub mapped_bytes: u64,
}
