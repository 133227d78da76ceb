//! The op set of the `lt2` dialect as a Rust enum, and typed accessors for their attributes.
//! Lowering matches exhaustively on `Lt2Op`, so a new op without a lowering fails to compile.

use melior::ir::attribute::{
    ArrayAttribute, DenseI64ArrayAttribute, FloatAttribute, IntegerAttribute, StringAttribute,
};
use melior::ir::operation::OperationLike;
use melior::ir::Attribute;

use crate::error::IrError;

macro_rules! lt2_ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every op of the `lt2` dialect.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Lt2Op { $($variant),* }

        impl Lt2Op {
            /// All ops, in definition order.
            pub const ALL: &'static [Lt2Op] = &[$(Lt2Op::$variant),*];

            /// The full MLIR op name, e.g. `lt2.gdn`.
            pub fn name(self) -> &'static str {
                match self { $(Lt2Op::$variant => concat!("lt2.", $name)),* }
            }

            /// The op for a full MLIR op name, if it is an lt2 op.
            pub fn from_name(name: &str) -> Option<Lt2Op> {
                match name { $(concat!("lt2.", $name) => Some(Lt2Op::$variant),)* _ => None }
            }
        }
    };
}

lt2_ops! {
    Weight => "weight", Constant => "constant", Embed => "embed", Gather => "gather", RmsNorm => "rms_norm",
    Linear => "linear", MatMul => "matmul",
    Add => "add", Sub => "sub", Mul => "mul", Div => "div", Pow => "pow",
    Neg => "neg", Exp => "exp", Sigmoid => "sigmoid", Softplus => "softplus", Sqrt => "sqrt",
    Silu => "silu", Log => "log", Tanh => "tanh", Relu => "relu", Reciprocal => "reciprocal",
    Abs => "abs", Sin => "sin", Cos => "cos",
    ReduceSum => "reduce_sum", ReduceMean => "reduce_mean", ReduceMax => "reduce_max",
    Reshape => "reshape", Transpose => "transpose", Expand => "expand", Range => "range",
    Concat => "concat", Slice => "slice", CausalConv => "causal_conv", Gdn => "gdn",
    Attention => "attention", Rope => "rope", Loop => "loop",
    Softmax => "softmax", Where => "where", Compare => "compare", Cast => "cast", Trilu => "trilu",
    LightningIndexer => "lightning_indexer", SparseAttention => "sparse_attention", TopK => "topk",
    Min => "min", Max => "max", SiluMul => "silu_mul", CumSum => "cumsum",
    DimValues => "dim_values",
}

/// The name of the terminator that ends an `lt2.loop` region.
pub const LOOP_YIELD: &str = "gpu.yield";
/// Most loop-carried values an `lt2.loop` can have (one optional operand segment each).
pub const MAX_CARRIED: usize = 8;

fn attr<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<Attribute<'c>, IrError> {
    op.attribute(name).map_err(|_| IrError::Attribute {
        op: op_name(op),
        attr: name.into(),
        reason: "is missing".into(),
    })
}

fn op_name<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> String {
    op.name().as_string_ref().as_str().unwrap_or("?").to_string()
}

fn bad<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str, what: &str) -> IrError {
    IrError::Attribute { op: op_name(op), attr: name.into(), reason: format!("is not {what}") }
}

/// An integer (or bool) attribute.
pub fn attr_i64<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<i64, IrError> {
    let a = attr(op, name)?;
    IntegerAttribute::try_from(a).map(|i| i.value()).map_err(|_| bad(op, name, "an integer"))
}

/// A bool attribute (an i1 integer).
pub fn attr_bool<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<bool, IrError> {
    attr_i64(op, name).map(|v| v != 0)
}

/// A float attribute.
pub fn attr_f32<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<f32, IrError> {
    let a = attr(op, name)?;
    FloatAttribute::try_from(a).map(|f| f.value() as f32).map_err(|_| bad(op, name, "a float"))
}

/// A string attribute.
pub fn attr_str<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<String, IrError> {
    let a = attr(op, name)?;
    StringAttribute::try_from(a).map(|s| s.value().to_string()).map_err(|_| bad(op, name, "a string"))
}

/// A `array<i64: ...>` attribute.
pub fn attr_i64s<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<Vec<i64>, IrError> {
    let a = attr(op, name)?;
    let d = DenseI64ArrayAttribute::try_from(a).map_err(|_| bad(op, name, "an i64 array"))?;
    (0..d.len()).map(|i| d.element(i).map_err(|_| bad(op, name, "an i64 array"))).collect()
}

/// An array of strings (dim expressions).
pub fn attr_strs<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>, name: &str) -> Result<Vec<String>, IrError> {
    let a = attr(op, name)?;
    let arr = ArrayAttribute::try_from(a).map_err(|_| bad(op, name, "an array"))?;
    (0..arr.len())
        .map(|i| {
            let e = arr.element(i).map_err(|_| bad(op, name, "an array of strings"))?;
            StringAttribute::try_from(e).map(|s| s.value().to_string()).map_err(|_| bad(op, name, "an array of strings"))
        })
        .collect()
}

/// Which lt2 op an operation is, if any.
pub fn lt2_op<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> Option<Lt2Op> {
    Lt2Op::from_name(&op_name(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_round_trip_and_are_in_the_dialect_definition() {
        for op in Lt2Op::ALL {
            assert_eq!(Lt2Op::from_name(op.name()), Some(*op));
            let short = op.name().trim_start_matches("lt2.");
            assert!(crate::context::LT2_IRDL.contains(&format!("irdl.operation @{short} ")), "{short} not in IRDL");
        }
        assert_eq!(Lt2Op::from_name("lt2.nope"), None);
    }
}

/// The `sym_name` of a symbol op such as `func.func`.
pub fn attr_sym_name<'c: 'a, 'a>(op: &impl OperationLike<'c, 'a>) -> Option<String> {
    attr_str(op, "sym_name").ok()
}
