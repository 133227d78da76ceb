//! lt2-ir: the `lt2` MLIR dialect. Its IRDL definition (`lt2.irdl.mlir`) is loaded into every
//! context lt2c makes, so each op is verified when IR is parsed; `builder` emits ops with typed
//! Rust functions (the one place op names and attribute spellings are written), `ops` reads
//! them back, and `verify` checks what IRDL cannot.

pub mod builder;
pub mod context;
pub mod error;
pub mod ops;
pub mod types;
pub mod verify;
pub mod weights;

pub use context::{new_context, parse_module};
pub use error::IrError;
pub use ops::Lt2Op;
pub use types::{Elem, TensorType};
pub use weights::{WeightBytes, WeightData, WeightStore};
