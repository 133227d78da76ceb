//! Errors the runtime reports: bad model files, bad inputs, failed steps, missing devices.

use crate::dim::DimError;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("not an lt2c model file (bad magic bytes); compile an ONNX model with `lt2c MODEL.onnx -o MODEL.bin`")]
    BadMagic,
    #[error("model.bin format version {found} is not supported by this runtime (it reads version {supported}); recompile the model with this lt2c")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("model.bin is corrupt: {0}")]
    Corrupt(String),
    #[error("input `{name}`: {reason}")]
    BadInput { name: String, reason: String },
    #[error("step {step} ({op}, from {origin}): {reason}")]
    Step { step: usize, op: String, origin: String, reason: String },
    #[error(transparent)]
    Dim(#[from] DimError),
    #[error("{0}")]
    Npz(String),
    /// A decode session cannot be opened as asked.
    #[error("cannot open a decode session: {0}")]
    Session(String),
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },
}

/// Why one op could not run; the executor wraps it with the step's position and origin.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct OpError(pub String);

impl OpError {
    pub fn new(msg: impl Into<String>) -> OpError {
        OpError(msg.into())
    }
}

impl From<DimError> for OpError {
    fn from(e: DimError) -> OpError {
        OpError(e.to_string())
    }
}

/// `Err(OpError)` with a formatted message.
#[macro_export]
macro_rules! op_bail {
    ($($t:tt)*) => { return Err($crate::error::OpError::new(format!($($t)*))) };
}
