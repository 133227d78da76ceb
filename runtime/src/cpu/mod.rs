//! The CPU reference backend: plain-Rust fp32 semantics of every plan op. It is the oracle
//! the CUDA backend and CI compare against, so clarity beats speed here.

pub(crate) mod attention;
pub(crate) mod conv;
mod elementwise;
pub(crate) mod gdn;
pub(crate) mod linalg;
pub(crate) mod norm;
pub(crate) mod reduce;
pub(crate) mod rope;
mod select;
pub(crate) mod shape;
pub(crate) mod sparse;

use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::Backend;
use crate::error::{OpError, RuntimeError};
use crate::format::ModelFile;
use crate::plan::{DType, Op};
use crate::tensor::{Data, Tensor};

/// The CPU reference backend: host tensors, fp32 semantics of every op.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl Backend for Cpu {
    type Buf = Rc<Tensor>;
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn load_weights(&self, file: &ModelFile) -> Result<Vec<Rc<Tensor>>, RuntimeError> {
        let mut weights = Vec::with_capacity(file.manifest.weights.len());
        for (i, w) in file.manifest.weights.iter().enumerate() {
            let bytes = file.weight_bytes(i);
            let shape: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            let data = match DType::try_from(w.dtype) {
                Ok(DType::F32) if bytes.len() == 4 * n => Data::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
                Ok(DType::I64) if bytes.len() == 8 * n => {
                    Data::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
                }
                Ok(DType::Bool) if bytes.len() == n => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
                // bf16/fp16 weights hold values fp32 represents exactly: compute on those.
                Ok(d @ (DType::Bf16 | DType::F16)) if bytes.len() == 2 * n => Data::F32(crate::precision::decode(d, bytes)),
                _ => {
                    return Err(RuntimeError::Corrupt(format!(
                        "weight `{}`: dtype {} with {} bytes does not fit shape {:?}",
                        w.name,
                        w.dtype,
                        bytes.len(),
                        shape
                    )))
                }
            };
            weights.push(Rc::new(Tensor { shape, data }));
        }
        Ok(weights)
    }
    fn upload(&self, t: &Tensor) -> Result<Rc<Tensor>, OpError> {
        Ok(Rc::new(t.clone()))
    }
    fn download(&self, b: &Rc<Tensor>) -> Result<Tensor, OpError> {
        Ok((**b).clone())
    }
    fn shape(&self, b: &Rc<Tensor>) -> Vec<usize> {
        b.shape.clone()
    }
    fn run_op(&self, op: &Op, inputs: &[Option<&Rc<Tensor>>], env: &HashMap<String, i64>) -> Result<Vec<Rc<Tensor>>, OpError> {
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(|t| t.map(|r| &**r)).collect();
        Ok(run_op(op, &refs, env)?.into_iter().map(Rc::new).collect())
    }
    fn stack(&self, xs: &[Rc<Tensor>]) -> Result<Rc<Tensor>, OpError> {
        let first = xs.first().ok_or_else(|| OpError::new("no iterations to stack"))?;
        if xs.iter().any(|x| x.shape != first.shape || x.dtype() != first.dtype()) {
            return Err(OpError::new("a scan output changed shape or dtype across iterations"));
        }
        let mut shape = vec![xs.len()];
        shape.extend(&first.shape);
        let data = match &first.data {
            Data::F32(_) => Data::F32(xs.iter().flat_map(|x| x.as_f32().unwrap_or(&[]).iter().copied()).collect()),
            Data::I64(_) => Data::I64(xs.iter().flat_map(|x| x.as_i64().unwrap_or(&[]).iter().copied()).collect()),
            Data::Bool(_) => Data::Bool(xs.iter().flat_map(|x| if let Data::Bool(v) = &x.data { v.clone() } else { vec![] }).collect()),
        };
        Ok(Rc::new(Tensor { shape, data }))
    }
    fn nbytes(&self, b: &Rc<Tensor>) -> usize {
        b.numel() * crate::precision::stored_size(b.dtype())
    }
}

/// Runs one non-control-flow op. `inputs[i]` is None for an omitted optional input; `env`
/// binds the dim symbols (`batch`, `seq`, ...) used by shape attributes.
pub fn run_op(
    op: &Op,
    inputs: &[Option<&Tensor>],
    env: &HashMap<String, i64>,
) -> Result<Vec<Tensor>, OpError> {
    match op {
        Op::Embed(_) => shape::embed(req(inputs, 0)?, req(inputs, 1)?).map(one),
        Op::Gather(a) => shape::gather(req(inputs, 0)?, req(inputs, 1)?, a.axis).map(one),
        Op::RmsNorm(a) => norm::rms_norm(req(inputs, 0)?, req(inputs, 1)?, a.epsilon, a.axis).map(one),
        Op::Linear(a) => {
            let x = req(inputs, 0)?;
            match DType::try_from(a.operand_dtype) {
                // Reduced-precision weights: multiply the activation rounded the same way.
                Ok(d @ (DType::Bf16 | DType::F16)) => {
                    let mut xr = x.clone();
                    if let Data::F32(v) = &mut xr.data {
                        crate::precision::round_in_place(d, v);
                    }
                    linalg::linear(&xr, req(inputs, 1)?, opt(inputs, 2), a.transpose_w).map(one)
                }
                _ => linalg::linear(x, req(inputs, 1)?, opt(inputs, 2), a.transpose_w).map(one),
            }
        }
        Op::MatMul(_) => linalg::matmul(req(inputs, 0)?, req(inputs, 1)?).map(one),
        Op::Binary(a) => elementwise::binary(req(inputs, 0)?, req(inputs, 1)?, a.kind()).map(one),
        Op::Unary(a) => elementwise::unary(req(inputs, 0)?, a.kind()).map(one),
        Op::Reduce(a) => reduce::reduce(req(inputs, 0)?, a.kind(), &a.axes, a.keepdims).map(one),
        Op::DimValues(a) => shape::dim_values(&a.dims, &a.shape, env).map(one),
        Op::CumSum(a) => reduce::cumsum(req(inputs, 0)?, a.axis, a.exclusive, a.reverse).map(one),
        Op::Reshape(a) => shape::reshape(req(inputs, 0)?, &a.shape, env).map(one),
        Op::Transpose(a) => shape::transpose(req(inputs, 0)?, &a.perm).map(one),
        Op::Expand(a) => shape::expand(req(inputs, 0)?, &a.shape, env).map(one),
        Op::Range(a) => shape::range(a.start, a.delta, &a.size, env).map(one),
        Op::Concat(a) => {
            let xs: Vec<&Tensor> = inputs.iter().map(|t| t.ok_or_else(|| OpError::new("concat input missing"))).collect::<Result<_, _>>()?;
            shape::concat(&xs, a.axis).map(one)
        }
        Op::Slice(a) => shape::slice(req(inputs, 0)?, &a.axes, &a.starts, &a.ends, &a.steps).map(one),
        Op::CausalConv(a) => {
            let (y, st) = conv::causal_conv(req(inputs, 0)?, req(inputs, 1)?, opt(inputs, 2), opt(inputs, 3), &a.activation)?;
            Ok(vec![y, st])
        }
        Op::Gdn(a) => {
            let (o, st) = gdn::linear_attention(
                req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?, opt(inputs, 3), opt(inputs, 4), opt(inputs, 5),
                a.q_heads as usize, a.kv_heads as usize, a.scale, a.update_rule(),
            )?;
            Ok(vec![o, st])
        }
        Op::Attention(a) => {
            // Reduced-precision operands (`--dtype`): q, k, v rounded as the CUDA kernels load them.
            fn round_operand(x: &Tensor, d: Result<DType, prost::UnknownEnumValue>) -> std::borrow::Cow<'_, Tensor> {
                match d {
                Ok(d @ (DType::Bf16 | DType::F16)) => {
                    let mut xr = x.clone();
                    if let Data::F32(v) = &mut xr.data {
                        crate::precision::round_in_place(d, v);
                    }
                    std::borrow::Cow::Owned(xr)
                }
                    _ => std::borrow::Cow::Borrowed(x),
                }
            }
            let d = || DType::try_from(a.operand_dtype);
            let (q, k, v) = (round_operand(req(inputs, 0)?, d()), round_operand(req(inputs, 1)?, d()), round_operand(req(inputs, 2)?, d()));
            attention::attention_masked(&q, &k, &v, opt(inputs, 3), a.q_heads as usize, a.kv_heads as usize, a.scale, a.causal, (a.window_left, a.window_right), a.top_left)
                .map(one)
        }
        Op::Rope(a) => rope::rope(
            req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?, opt(inputs, 3), a.num_heads as usize, a.interleaved, a.rotary_dim as usize,
        )
        .map(one),
        Op::Softmax(a) => select::softmax(req(inputs, 0)?, a.axis).map(one),
        Op::Where(_) => select::where_(req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?).map(one),
        Op::Compare(a) => select::compare(req(inputs, 0)?, opt(inputs, 1), a.kind()).map(one),
        Op::Cast(a) => select::cast(req(inputs, 0)?, a.to()).map(one),
        Op::Trilu(a) => select::trilu(req(inputs, 0)?, a.upper, a.k).map(one),
        Op::LightningIndexer(a) => {
            sparse::lightning_indexer(req(inputs, 0)?, req(inputs, 1)?, opt(inputs, 2), a.num_heads as usize, a.top_k as usize, &a.score).map(one)
        }
        Op::SparseAttention(a) => sparse::sparse_attention(
            req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?, req(inputs, 3)?, a.q_heads as usize, a.kv_heads as usize, a.scale,
        )
        .map(one),
        Op::TopK(a) => {
            let (v, i) = select::top_k(req(inputs, 0)?, a.axis, a.largest, &a.k, env)?;
            Ok(vec![v, i])
        }
        Op::Weight(_) | Op::Loop(_) | Op::Constant(_) => Err(OpError::new("control op reached run_op; the executor handles it")),
    }
}

fn one(t: Tensor) -> Vec<Tensor> {
    vec![t]
}

fn req<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, OpError> {
    inputs.get(i).copied().flatten().ok_or_else(|| OpError::new(format!("required input {i} is missing")))
}

fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}
