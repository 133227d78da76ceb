//! The weights that travel beside the IR: every `lt2.weight {name}` refers to one entry here
//! (ONNX initializers, and constants the importer folded). Kept out of the IR so printing and
//! passes stay cheap however large the model is.

use crate::types::Elem;

/// One weight's data, little-endian bytes in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightData {
    pub name: String,
    pub elem: Elem,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
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
        self.entries.iter().map(|e| e.bytes.len()).sum()
    }
}
