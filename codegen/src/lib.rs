//! lt2-codegen: lt2 MLIR → the backend-neutral execution plan (`lower`), and model.bin
//! (`write_model`): the plan, the signature and the weights in one checked file.

pub mod lower;

use std::path::Path;

use melior::ir::Module;

use lt2_ir::WeightStore;
use lt2_runtime::format::{self, WeightBytes};
use lt2_runtime::plan::Manifest;

/// Why a module could not be lowered or written.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("{origin}: {op}: {reason}")]
    Lower { op: String, origin: String, reason: String },
    #[error(transparent)]
    Ir(#[from] lt2_ir::IrError),
    #[error(transparent)]
    Runtime(#[from] lt2_runtime::RuntimeError),
}

/// Lowers the module and encodes model.bin bytes.
pub fn encode_model(module: &Module, weights: &WeightStore) -> Result<Vec<u8>, CodegenError> {
    let manifest: Manifest = lower::lower(module, weights)?;
    let bytes: Vec<WeightBytes> = manifest
        .weights
        .iter()
        .map(|w| WeightBytes { bytes: weights.get(&w.name).map(|d| d.bytes.as_slice()).unwrap_or(&[]) })
        .collect();
    Ok(format::encode(manifest, &bytes))
}

/// Lowers the module and writes model.bin to `path`; returns the file size.
pub fn write_model(module: &Module, weights: &WeightStore, path: &Path) -> Result<usize, CodegenError> {
    let bytes = encode_model(module, weights)?;
    format::write_file(path, &bytes)?;
    Ok(bytes.len())
}
