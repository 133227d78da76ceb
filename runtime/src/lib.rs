//! lt2-runtime: loads model.bin and runs its plan. It ships to GPU hosts, so it links no
//! MLIR: the plan format (`plan`), the file format (`format`), the CPU reference backend
//! (`cpu`, `exec`), the CUDA backend (`cuda`) and device selection (`device`).

pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod decode;
pub mod session;
pub mod step_graph;
pub mod device;
pub mod dim;
pub mod early_exit;
pub mod error;
pub mod exec;
pub mod format;
pub mod npz;
pub mod plan;
pub mod precision;
pub mod sampling;
pub mod tensor;

pub use error::RuntimeError;
