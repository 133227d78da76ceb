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

/// The bytes of each manifest weight, in manifest order.
fn weight_views<'w>(manifest: &Manifest, weights: &'w WeightStore) -> Vec<WeightBytes<'w>> {
    manifest.weights.iter().map(|w| WeightBytes { bytes: weights.get(&w.name).map(|d| d.data.as_bytes()).unwrap_or(&[]) }).collect()
}

/// Lowers the module and encodes model.bin bytes.
pub fn encode_model(module: &Module, weights: &WeightStore) -> Result<Vec<u8>, CodegenError> {
    let manifest: Manifest = lower::lower(module, weights)?;
    let views = weight_views(&manifest, weights);
    Ok(format::encode(manifest, &views))
}

/// Lowers the module and writes model.bin to `path`; returns the file size.
pub fn write_model(module: &Module, weights: &WeightStore, path: &Path) -> Result<usize, CodegenError> {
    let manifest: Manifest = lower::lower(module, weights)?;
    let views = weight_views(&manifest, weights);
    Ok(format::write_model_file(path, manifest.clone(), &views)? as usize)
}
