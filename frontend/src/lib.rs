//! lt2-frontend: ONNX → lt2 MLIR. Reads the protobuf (tract-onnx's prost types), checks every
//! op is supported before importing (reporting all that are not), then imports the graph:
//! shape arithmetic is evaluated at compile time over symbolic dims, `Loop` becomes
//! `lt2.loop`, and standard / `com.microsoft` ops map to lt2 ops.

mod attrs;
pub mod error;
mod import;
mod ops;
mod tensor;
pub mod value;

use std::collections::BTreeSet;
use std::path::Path;

use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, ValueInfoProto};

use lt2_ir::builder::{Arg, FuncBuilder};
use lt2_ir::{Elem, TensorType};
use lt2_runtime::dim::Dim;

pub use error::FrontendError;
use import::Importer;
use value::{Known, Value};
pub use lt2_ir::{WeightData, WeightStore};

/// An imported model: lt2 MLIR text (parsed and verified by the caller's context), the weights
/// it refers to, and warnings worth showing the user.
pub struct Imported {
    pub mlir: String,
    pub weights: WeightStore,
    pub warnings: Vec<String>,
    /// The half type that holds most of the model's float initializer elements (an export of a
    /// `.half()` or bf16 model), if one does: the precision its author chose for the weights.
    pub half_weights: Option<HalfType>,
}

/// A 16-bit float type of ONNX initializers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfType {
    F16,
    Bf16,
}

/// The half type holding more than half of the float initializer elements, if any.
fn half_weights(g: &tract_onnx::pb::GraphProto) -> Option<HalfType> {
    let (mut all, mut f16, mut bf16) = (0u64, 0u64, 0u64);
    for t in &g.initializer {
        let n: u64 = t.dims.iter().map(|&d| d.max(0) as u64).product();
        match t.data_type {
            tensor::dt::FLOAT16 => f16 += n,
            tensor::dt::BFLOAT16 => bf16 += n,
            d if tensor::is_float(d) => {}
            _ => continue,
        }
        all += n;
    }
    if 2 * f16 > all {
        Some(HalfType::F16)
    } else if 2 * bf16 > all {
        Some(HalfType::Bf16)
    } else {
        None
    }
}

/// Ops introduced after opset 18 that real exports carry while stamped with an older opset.
const NEWER_OPS: &[(&str, i64)] = &[("Attention", 23), ("RMSNormalization", 23), ("RotaryEmbedding", 23), ("LinearAttention", 27), ("CausalConvWithState", 27)];

/// Reads and imports an ONNX file.
pub fn import_file(path: &Path) -> Result<Imported, FrontendError> {
    let bytes = std::fs::read(path).map_err(|e| FrontendError::Load { path: path.display().to_string(), reason: e.to_string() })?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| FrontendError::Load {
        path: path.display().to_string(),
        reason: format!("not a valid ONNX protobuf ({e})"),
    })?;
    drop(bytes);
    import_model(&model, path.parent())
}

/// Imports a decoded model; `base_dir` locates external data.
pub fn import_model(model: &ModelProto, base_dir: Option<&Path>) -> Result<Imported, FrontendError> {
    let g = model.graph.as_ref().ok_or_else(|| FrontendError::Graph("the model has no graph".into()))?;
    let mut warnings = Vec::new();
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(1);
    if !model.functions.is_empty() {
        return Err(FrontendError::Graph("model-local functions are not supported yet".into()));
    }
    // Every unsupported op, reported together.
    let mut unsupported = BTreeSet::new();
    let mut newer = BTreeSet::new();
    walk_nodes(g, &mut |n| {
        if ops::lookup(&n.domain, &n.op_type).is_none() {
            let d = if n.domain.is_empty() { "ai.onnx".to_string() } else { n.domain.clone() };
            unsupported.insert(format!("{} (domain {d}, opset {opset})", n.op_type));
        }
        if n.domain.is_empty() {
            if let Some((_, v)) = NEWER_OPS.iter().find(|(o, v)| *o == n.op_type && opset < *v) {
                newer.insert(format!("{} (opset {v})", n.op_type));
            }
        }
    });
    if !unsupported.is_empty() {
        return Err(FrontendError::Unsupported { list: unsupported.into_iter().collect() });
    }
    if !newer.is_empty() {
        warnings.push(format!(
            "the model declares opset {opset} but uses {}; importing them with their published semantics (exporters stamp such models with an older opset)",
            newer.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    let initializer_names: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut args = Vec::new();
    let mut arg_shapes = Vec::new();
    for inp in g.input.iter().filter(|i| !initializer_names.contains(i.name.as_str())) {
        let (elem, dims) = value_info(inp)?;
        let ty = TensorType::new(dims.iter().map(Dim::as_const).collect(), elem);
        args.push(Arg { ty, dims: dims.iter().map(|d| d.to_string()).collect(), onnx_name: inp.name.clone() });
        arg_shapes.push((inp.name.clone(), dims));
    }
    let mut imp = Importer::new(FuncBuilder::new("main", args), opset, base_dir);
    walk_nodes(g, &mut |n| imp.used.extend(n.input.iter().filter(|s| !s.is_empty()).cloned()));
    imp.used.extend(g.output.iter().map(|o| o.name.clone()));
    walk_graphs(g, &mut |sub| imp.used.extend(sub.output.iter().map(|o| o.name.clone())));
    for (v, (name, dims)) in imp.b.args().into_iter().zip(arg_shapes) {
        imp.set(&name, Value::Rt(value::Rt { val: v, shape: dims }));
    }
    for t in &g.initializer {
        let mut k: Known = tensor::decode(t, base_dir).map_err(|e| FrontendError::Graph(format!("initializer `{}`: {e}", t.name)))?;
        k.source = Some(t.name.clone());
        imp.set(&t.name, Value::Known(k));
    }
    imp.import_nodes(g)?;
    let mut outs = Vec::new();
    for o in &g.output {
        let v = imp.lookup(&o.name).cloned().ok_or_else(|| FrontendError::Graph(format!("output `{}` is not computed by any node", o.name)))?;
        let fake = tract_onnx::pb::NodeProto { name: format!("output {}", o.name), op_type: "Output".into(), ..Default::default() };
        let r = imp.materialize(&fake, v)?;
        let dims = r.shape.iter().map(|d| d.to_string()).collect();
        outs.push((r.val, o.name.clone(), dims));
    }
    warnings.extend(imp.warnings.drain(..));
    let mlir = imp.b.finish(&outs).map_err(FrontendError::Graph)?;
    Ok(Imported { mlir, weights: imp.weights, warnings, half_weights: half_weights(g) })
}

/// Element type and symbolic dims of a graph input; unnamed dynamic dims get a name from the input.
fn value_info(v: &ValueInfoProto) -> Result<(Elem, Vec<Dim>), FrontendError> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
    use tract_onnx::pb::type_proto::Value as T;
    let bad = |r: &str| FrontendError::Graph(format!("input `{}`: {r}", v.name));
    let Some(T::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad("is not a tensor"));
    };
    // int32, double and half inputs are read as int64 and float32 (the runtime converts .npz
    // data; a caller passes float32 for a float16 input).
    let elem = match t.elem_type {
        e if tensor::is_float(e) => Elem::F32,
        tensor::dt::INT64 | tensor::dt::INT32 => Elem::I64,
        tensor::dt::BOOL => Elem::I1,
        other => return Err(bad(&format!("element type {other} is not supported (float, double, float16, bfloat16, int64, int32, bool)"))),
    };
    let shape = t.shape.as_ref().ok_or_else(|| bad("has no shape; lt2c needs the rank of every input"))?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(D::DimValue(n)) => Dim::Const(*n),
            Some(D::DimParam(p)) if !p.is_empty() && Dim::parse(p).map(|d| matches!(d, Dim::Sym(_))).unwrap_or(false) => Dim::sym(p),
            _ => Dim::sym(&format!("{}_d{i}", sanitize(&v.name))),
        })
        .collect();
    Ok((elem, dims))
}

fn sanitize(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if t.starts_with(|c: char| c.is_ascii_digit()) || t.is_empty() {
        format!("in_{t}")
    } else {
        t
    }
}

fn walk_nodes<'a>(g: &'a GraphProto, f: &mut impl FnMut(&'a tract_onnx::pb::NodeProto)) {
    for n in &g.node {
        f(n);
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                walk_nodes(sub, f);
            }
            for sub in &a.graphs {
                walk_nodes(sub, f);
            }
        }
    }
}

fn walk_graphs<'a>(g: &'a GraphProto, f: &mut impl FnMut(&'a GraphProto)) {
    for n in &g.node {
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                f(sub);
                walk_graphs(sub, f);
            }
        }
    }
}
