//! lt2-codegen: lt2 MLIR → the backend-neutral execution plan (`lower`), the CUDA kernels
//! compiled ahead of time (`compile_kernels`), and model.bin (`write_model`): the plan, the
//! signature, the weights and the kernels in one checked file.

pub mod causal_mask;
pub mod lower;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use melior::ir::Module;

use lt2_ir::WeightStore;
use lt2_runtime::cuda::{nvrtc, prebuilt};
use lt2_runtime::format::{self, WeightBytes};
use lt2_runtime::plan::{DType, Manifest};
use lt2_runtime::precision;

/// Why a module could not be lowered or written.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("{origin}: {op}: {reason}")]
    Lower { op: String, origin: String, reason: String },
    #[error(transparent)]
    Ir(#[from] lt2_ir::IrError),
    #[error(transparent)]
    Runtime(#[from] lt2_runtime::RuntimeError),
    #[error(transparent)]
    Nvrtc(#[from] nvrtc::NvrtcError),
}

pub use prebuilt::Prebuilt;

/// The CUDA kernels compiled for model.bin, or why there are none.
pub enum KernelBuild {
    /// Every kernel file for every target (`prebuilt::targets`).
    Compiled {
        /// The images, file by file.
        images: Vec<Prebuilt>,
        /// The compiler, e.g. `NVRTC 13.0`.
        compiler: String,
        /// Seconds the compile took (less where the disk cache held images).
        seconds: f64,
    },
    /// NVRTC could not be loaded (the reason): the runtime compiles the kernels at load.
    Unavailable(String),
}

/// Compiles every CUDA kernel file with NVRTC to a cubin for sm_80 and sm_90a and to PTX for
/// compute_80, for model.bin. Needs no GPU. Where NVRTC cannot be loaded, returns
/// `Unavailable`; a kernel that does not compile is an error.
pub fn compile_kernels() -> Result<KernelBuild, CodegenError> {
    let t = Instant::now();
    let (_, v) = match nvrtc::available() {
        Ok(a) => a,
        Err(why) => return Ok(KernelBuild::Unavailable(why)),
    };
    let images = prebuilt::compile_all()?;
    Ok(KernelBuild::Compiled { images, compiler: format!("NVRTC {}.{}", v.0, v.1), seconds: t.elapsed().as_secs_f64() })
}

/// Bytes of the reduced-precision weights (`name@bf16`), converted from their f32 sources.
fn converted_weights(manifest: &Manifest, weights: &WeightStore) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for w in &manifest.weights {
        let d = DType::try_from(w.dtype).unwrap_or(DType::F32);
        if matches!(d, DType::Bf16 | DType::F16) {
            let src = weights.get(lower::weight_source(&w.name, d)).map(|t| t.data.as_bytes()).unwrap_or(&[]);
            let f: Vec<f32> = src.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            out.insert(w.name.clone(), precision::encode(d, &f));
        }
    }
    out
}

/// The bytes of each manifest weight, in manifest order.
fn weight_views<'w>(manifest: &Manifest, weights: &'w WeightStore, converted: &'w HashMap<String, Vec<u8>>) -> Vec<WeightBytes<'w>> {
    manifest
        .weights
        .iter()
        .map(|w| WeightBytes { bytes: converted.get(&w.name).map(|v| &v[..]).or_else(|| weights.get(&w.name).map(|d| d.data.as_bytes())).unwrap_or(&[]) })
        .collect()
}

/// Lowers the module and encodes model.bin bytes, without kernels (the runtime compiles them
/// at load on a GPU).
pub fn encode_model(module: &Module, weights: &WeightStore) -> Result<Vec<u8>, CodegenError> {
    let manifest: Manifest = lower::lower(module, weights)?;
    let converted = converted_weights(&manifest, weights);
    let views = weight_views(&manifest, weights, &converted);
    Ok(format::encode(manifest, &views, &[]))
}

/// Lowers the module and writes model.bin to `path` with the given kernel images (from
/// `compile_kernels`; none is valid); returns the file size and the notes lowering left for the
/// user (`DecodeInfo::notes`).
pub fn write_model(module: &Module, weights: &WeightStore, kernels: &[Prebuilt], path: &Path) -> Result<(usize, Vec<String>), CodegenError> {
    let mut manifest: Manifest = lower::lower(module, weights)?;
    manifest.kernels = kernels.iter().map(|k| k.entry.clone()).collect();
    let kernel_bytes: Vec<&[u8]> = kernels.iter().map(|k| &k.bytes[..]).collect();
    let converted = converted_weights(&manifest, weights);
    let views = weight_views(&manifest, weights, &converted);
    let notes = manifest.decode.as_ref().map(|d| d.notes.clone()).unwrap_or_default();
    Ok((format::write_model_file(path, manifest.clone(), &views, &kernel_bytes)? as usize, notes))
}
