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
    Cuda,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
        }
    }
}

/// Whether the CUDA driver library can be loaded. cudarc panics when it cannot, so this is
/// asked before any cudarc call.
pub fn cuda_driver_present() -> Result<(), String> {
    crate::cuda::libs::check(crate::cuda::libs::DRIVER)
}

/// Whether a usable GPU is present: the driver and cuBLASLt load and device 0 answers (NVRTC
/// is needed only where model.bin has no kernel image for the device). Ok holds the device's
/// description.
pub fn cuda_usable() -> Result<String, String> {
    crate::cuda::Cuda::probe()
}

/// Picks the backend for a request. `cuda` fails with the reason when no usable GPU is present;
/// `auto` falls back to the CPU, saying why.
pub fn choose(req: DeviceRequest) -> Result<DeviceChoice, RuntimeError> {
    match req {
        DeviceRequest::Cpu => Ok(DeviceChoice { backend: Backend::Cpu, reason: "requested with --device cpu".into() }),
        DeviceRequest::Cuda => match cuda_usable() {
            Ok(dev) => Ok(DeviceChoice { backend: Backend::Cuda, reason: format!("requested with --device cuda: {dev}") }),
            Err(why) => Err(RuntimeError::Device { device: "cuda".into(), reason: why }),
        },
        DeviceRequest::Auto => match cuda_usable() {
            Ok(dev) => Ok(DeviceChoice { backend: Backend::Cuda, reason: format!("auto: a usable GPU is present: {dev}") }),
            Err(why) => Ok(DeviceChoice { backend: Backend::Cpu, reason: format!("auto: no usable GPU: {why}") }),
        },
    }
}
