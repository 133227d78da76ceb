//! What the importer knows about each ONNX value: either its contents at compile time
//! (`Known`: initializers, constants, and shape arithmetic, whose integers may be symbolic
//! dims such as `seq`), or a runtime tensor in the IR with a symbolic shape (`Rt`).

use std::sync::Arc;

use lt2_ir::builder::Val;
use lt2_ir::{Elem, TensorType};
use lt2_runtime::dim::Dim;
use lt2_runtime::plan::DType;

/// Compile-time contents.
#[derive(Clone, Debug, PartialEq)]
pub enum KnownData {
    /// Shared: initializers can be large, and the importer hands values around by clone.
    F32(Arc<Vec<f32>>),
    /// Integers, possibly symbolic (shape arithmetic).
    I64(Vec<Dim>),
    Bool(Vec<bool>),
}

/// A tensor whose contents the compiler knows. `source` names the initializer it is, if it is
/// one unchanged (so it is stored once, under its ONNX name).
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    pub shape: Vec<usize>,
    pub data: KnownData,
    pub source: Option<String>,
}

impl Known {
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Known {
        Known { shape, data: KnownData::F32(Arc::new(v)), source: None }
    }
    pub fn i64(shape: Vec<usize>, v: Vec<Dim>) -> Known {
        Known { shape, data: KnownData::I64(v), source: None }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn elem(&self) -> Elem {
        match self.data {
            KnownData::F32(_) => Elem::F32,
            KnownData::I64(_) => Elem::I64,
            KnownData::Bool(_) => Elem::I1,
        }
    }
    pub fn dtype(&self) -> DType {
        match self.data {
            KnownData::F32(_) => DType::F32,
            KnownData::I64(_) => DType::I64,
            KnownData::Bool(_) => DType::Bool,
        }
    }
    /// The elements as f32 (integers converted; symbolic ones as 0).
    pub fn data_f32(&self) -> Vec<f32> {
        match &self.data {
            KnownData::F32(v) => v.to_vec(),
            KnownData::I64(v) => v.iter().map(|d| d.as_const().unwrap_or(0) as f32).collect(),
            KnownData::Bool(v) => v.iter().map(|&b| b as i64 as f32).collect(),
        }
    }
    /// The integers as dims, if this is an integer tensor.
    pub fn dims(&self) -> Option<&[Dim]> {
        match &self.data {
            KnownData::I64(v) => Some(v),
            _ => None,
        }
    }
    /// The integers as numbers, if they are all constant.
    pub fn ints(&self) -> Option<Vec<i64>> {
        self.dims()?.iter().map(|d| d.as_const()).collect()
    }
    /// A scalar (or one-element) value as f64, if numeric and constant.
    pub fn scalar_f64(&self) -> Option<f64> {
        if self.numel() != 1 {
            return None;
        }
        match &self.data {
            KnownData::F32(v) => Some(v[0] as f64),
            KnownData::I64(v) => v[0].as_const().map(|x| x as f64),
            KnownData::Bool(v) => Some(v[0] as i64 as f64),
        }
    }
    /// Little-endian bytes, if every element is a number (no symbols).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        Some(match &self.data {
            KnownData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            KnownData::I64(v) => v.iter().map(|d| d.as_const().map(|x| x.to_le_bytes())).collect::<Option<Vec<_>>>()?.concat(),
            KnownData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        })
    }
    /// The tensor's type in the IR.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.shape.iter().map(|&d| Some(d as i64)).collect(), self.elem())
    }
    pub fn shape_dims(&self) -> Vec<Dim> {
        self.shape.iter().map(|&d| Dim::Const(d as i64)).collect()
    }
}

/// A tensor computed at run time: its IR value and its symbolic shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Rt {
    pub val: Val,
    pub shape: Vec<Dim>,
}

impl Rt {
    pub fn elem(&self) -> Elem {
        self.val.ty.elem
    }
}

/// The importer's view of one ONNX value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Known(Known),
    Rt(Rt),
    /// A value lt2c cannot compute (e.g. symbolic integers needed at run time); an error only
    /// if something consumes it (GroupQueryAttention's seqlens_k inputs are read by nobody).
    Unavailable(String),
}

impl Value {
    pub fn shape(&self) -> Vec<Dim> {
        match self {
            Value::Known(k) => k.shape_dims(),
            Value::Rt(r) => r.shape.clone(),
            Value::Unavailable(_) => vec![],
        }
    }
    pub fn elem(&self) -> Elem {
        match self {
            Value::Known(k) => k.elem(),
            Value::Rt(r) => r.elem(),
            Value::Unavailable(_) => Elem::I64,
        }
    }
    pub fn rank(&self) -> usize {
        match self {
            Value::Known(k) => k.shape.len(),
            Value::Rt(r) => r.shape.len(),
            Value::Unavailable(_) => 0,
        }
    }
}

/// The IR type for a symbolic shape: constant dims stay, the rest become `?`.
pub fn tensor_type(shape: &[Dim], elem: Elem) -> TensorType {
    TensorType::new(shape.iter().map(|d| d.as_const()).collect(), elem)
}

/// Numpy broadcasting of symbolic shapes; None when two dims cannot be proven compatible.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n].clone() } else { Dim::Const(1) };
        let db = if i + b.len() >= n { b[i + b.len() - n].clone() } else { Dim::Const(1) };
        out.push(match (&da, &db) {
            _ if da == db => da,
            (Dim::Const(1), _) => db,
            (_, Dim::Const(1)) => da,
            _ => return None,
        });
    }
    Some(out)
}

/// Normalises a possibly negative axis for a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// The product of dims.
pub fn product(dims: &[Dim]) -> Dim {
    dims.iter().cloned().fold(Dim::Const(1), Dim::mul)
}
