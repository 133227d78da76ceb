//! Tensor types of lt2 IR as Rust values: element type plus dims, each static or dynamic
//! (`?`). Symbolic names of dynamic dims are tracked beside the IR, not in the type.

use std::fmt;

/// Element types lt2 IR uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    I64,
    I1,
    /// Reduced-precision weights of matrix products (`--dtype bf16`).
    Bf16,
    /// Reduced-precision weights of matrix products (`--dtype fp16`).
    F16,
}

impl Elem {
    pub fn mlir(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::I64 => "i64",
            Elem::I1 => "i1",
            Elem::Bf16 => "bf16",
            Elem::F16 => "f16",
        }
    }
}

/// A ranked tensor type; `None` dims print as `?`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dims: Vec<Option<i64>>,
    pub elem: Elem,
}

impl TensorType {
    pub fn new(dims: Vec<Option<i64>>, elem: Elem) -> TensorType {
        TensorType { dims, elem }
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Parses `tensor<?x4xf32>`-style text (what MLIR prints for ranked tensors).
    pub fn parse(s: &str) -> Option<TensorType> {
        let inner = s.trim().strip_prefix("tensor<")?.strip_suffix('>')?;
        let parts: Vec<&str> = inner.split('x').collect();
        let (elem_s, dims_s) = parts.split_last()?;
        let elem = match *elem_s {
            "f32" => Elem::F32,
            "i64" => Elem::I64,
            "i1" => Elem::I1,
            "bf16" => Elem::Bf16,
            "f16" => Elem::F16,
            _ => return None,
        };
        let mut dims = Vec::new();
        for d in dims_s {
            dims.push(if *d == "?" { None } else { Some(d.parse().ok()?) });
        }
        Some(TensorType { dims, elem })
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tensor<")?;
        for d in &self.dims {
            match d {
                Some(n) => write!(f, "{n}x")?,
                None => write!(f, "?x")?,
            }
        }
        write!(f, "{}>", self.elem.mlir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn print_parse() {
        for s in ["tensor<?x?x64xf32>", "tensor<i64>", "tensor<3xi1>", "tensor<8x4xbf16>", "tensor<2xf16>"] {
            assert_eq!(TensorType::parse(s).unwrap().to_string(), s);
        }
        assert!(TensorType::parse("tensor<4xbf17>").is_none());
    }
}
