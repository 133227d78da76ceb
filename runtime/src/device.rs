//! Device selection for `--device cpu|cuda|auto`: what the user asked for, what is present,
//! and which backend runs, with the reason said out loud.

use crate::error::RuntimeError;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    Cuda,
    Auto,
}

/// The backend that will run, and why it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceChoice {
    pub backend: Backend,
    pub reason: String,
}

/// Backends this runtime can execute a plan on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
        }
    }
}

/// Whether the CUDA driver library can be loaded. cudarc panics when it cannot, so this is
/// asked before any cudarc call.
pub fn cuda_driver_present() -> Result<(), String> {
    // SAFETY: loading the NVIDIA driver library runs its initialisers, as every CUDA program does.
    match unsafe { libloading::Library::new("libcuda.so.1") } {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the CUDA driver library libcuda.so.1 could not be loaded ({e}); install the NVIDIA driver")),
    }
}

/// Picks the backend for a request.
pub fn choose(req: DeviceRequest) -> Result<DeviceChoice, RuntimeError> {
    let no_cuda_backend = "this lt2c build has no CUDA backend yet";
    match req {
        DeviceRequest::Cpu => Ok(DeviceChoice { backend: Backend::Cpu, reason: "requested with --device cpu".into() }),
        DeviceRequest::Cuda => {
            let why = match cuda_driver_present() {
                Err(e) => e,
                Ok(()) => format!("a CUDA driver is present, but {no_cuda_backend}"),
            };
            Err(RuntimeError::Device { device: "cuda".into(), reason: why })
        }
        DeviceRequest::Auto => {
            let reason = match cuda_driver_present() {
                Err(e) => format!("auto: no usable GPU: {e}"),
                Ok(()) => format!("auto: {no_cuda_backend}"),
            };
            Ok(DeviceChoice { backend: Backend::Cpu, reason })
        }
    }
}
