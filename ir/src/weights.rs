//! The weights that travel beside the IR: every `lt2.weight {name}` refers to one entry here
//! (ONNX initializers, and constants the importer folded). Kept out of the IR so printing and
//! passes stay cheap however large the model is.

use std::sync::Arc;

use crate::types::Elem;

#[cfg(target_endian = "big")]
compile_error!("model.bin stores little-endian weights; big-endian hosts are not supported");

/// A weight's bytes: owned, or shared f32 data viewed as bytes without a copy (multi-GB models
/// must not be duplicated on their way to model.bin).
#[derive(Clone, Debug, PartialEq)]
pub enum WeightBytes {
    Raw(Vec<u8>),
    F32(Arc<Vec<f32>>),
}

impl WeightBytes {
    /// Little-endian bytes in row-major order.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WeightBytes::Raw(v) => v,
            // SAFETY: f32 has no padding or invalid bit patterns, u8 has alignment 1, and the
            // length covers exactly the vector's initialised elements; little-endian is asserted above.
            WeightBytes::F32(v) => unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) },
        }
    }
}

/// One weight's data, little-endian bytes in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightData {
    pub name: String,
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub data: WeightBytes,
}

/// All weights of a model, by name, in creation order.
#[derive(Clone, Debug, Default)]
pub struct WeightStore {
    entries: Vec<WeightData>,
    index: std::collections::HashMap<String, usize>,
}

impl WeightStore {
    /// Adds a weight unless one of that name exists; returns its name.
    pub fn insert(&mut self, w: WeightData) -> String {
        let name = w.name.clone();
        if !self.index.contains_key(&name) {
            self.index.insert(name.clone(), self.entries.len());
            self.entries.push(w);
        }
        name
    }
    pub fn get(&self, name: &str) -> Option<&WeightData> {
        self.index.get(name).map(|&i| &self.entries[i])
    }
    pub fn entries(&self) -> &[WeightData] {
        &self.entries
    }
    pub fn total_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.data.as_bytes().len()).sum()
    }
}
