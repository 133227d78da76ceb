//! Lowering: walks `func.func @main` and its `lt2.loop` regions and emits one plan graph per
//! region. Values get dense per-graph ids; values a loop region reads from outside become its
//! captured inputs. The match over `Lt2Op` is exhaustive: an op without a lowering does not
//! compile.

use std::collections::HashMap;

use melior::ir::attribute::{ArrayAttribute, AttributeLike, DictionaryAttribute, StringAttribute};
use melior::ir::block::BlockLike;
use melior::ir::operation::{OperationLike, OperationRef};
use melior::ir::{BlockRef, Module, RegionLike, Value, ValueLike};

use lt2_ir::ops::{self, attr_bool, attr_f32, attr_i64, attr_i64s, attr_str, attr_strs, Lt2Op, LOOP_YIELD};
use lt2_ir::{Elem, TensorType, WeightStore};
use lt2_runtime::plan::{self, DType, Graph, Manifest, Op, Step, TensorSig, WeightEntry, ABSENT};

use crate::CodegenError;

fn dtype(e: Elem) -> DType {
    match e {
        Elem::F32 => DType::F32,
        Elem::I64 => DType::I64,
        Elem::I1 => DType::Bool,
        Elem::Bf16 => DType::Bf16,
        Elem::F16 => DType::F16,
    }
}

/// The manifest name of a weight stored in reduced precision: `<source>@bf16` / `<source>@f16`.
/// `weight_source` inverts it; the writer converts the source's f32 data.
pub fn reduced_weight_name(source: &str, d: DType) -> String {
    format!("{source}@{}", if d == DType::F16 { "f16" } else { "bf16" })
}

/// The f32 source of a reduced-precision manifest weight (see `reduced_weight_name`).
pub fn weight_source(name: &str, d: DType) -> &str {
    match d {
        DType::Bf16 => name.strip_suffix("@bf16").unwrap_or(name),
        DType::F16 => name.strip_suffix("@f16").unwrap_or(name),
        _ => name,
    }
}

fn key(v: Value) -> usize {
    v.to_raw().ptr as usize
}

/// One graph under construction: MLIR value → plan value id.
struct GraphCx {
    ids: HashMap<usize, u32>,
    graph: Graph,
}

impl GraphCx {
    fn new(name: &str) -> GraphCx {
        GraphCx { ids: HashMap::new(), graph: Graph { name: name.into(), ..Default::default() } }
    }
    fn define(&mut self, v: Value) -> u32 {
        let id = self.graph.num_values;
        self.graph.num_values += 1;
        self.ids.insert(key(v), id);
        id
    }
}

struct Lowering<'w> {
    graphs: Vec<Graph>,
    weight_index: HashMap<&'w str, u32>,
    /// The manifest's weights: the store's, then reduced-precision copies made for casts.
    entries: Vec<WeightEntry>,
    /// Cache slots handed out to stateful steps so far.
    slots: u32,
}

/// Lowers a verified lt2 module to a plan manifest (weights listed, offsets filled by the writer).
pub fn lower(module: &Module, weights: &WeightStore) -> Result<Manifest, CodegenError> {
    let mut main = None;
    let mut op = module.body().first_operation();
    while let Some(o) = op {
        if o.name().as_string_ref().as_str() == Ok("func.func") && ops::attr_sym_name(&o).as_deref() == Some("main") {
            main = Some(o);
        }
        op = o.next_in_block();
    }
    let main = main.ok_or_else(|| CodegenError::Lower { op: "module".into(), origin: "module".into(), reason: "no func.func @main".into() })?;
    let mut lw = Lowering { graphs: vec![Graph::default()], weight_index: HashMap::new(), entries: Vec::new(), slots: 0 };
    for (i, w) in weights.entries().iter().enumerate() {
        lw.weight_index.insert(w.name.as_str(), i as u32);
        lw.entries.push(WeightEntry { name: w.name.clone(), dtype: dtype(w.elem) as i32, shape: w.shape.iter().map(|&d| d as u64).collect(), offset: 0, nbytes: 0 });
    }
    let block = main.region(0).ok().and_then(|r| r.first_block()).ok_or_else(|| CodegenError::Lower { op: "func.func".into(), origin: "@main".into(), reason: "empty function".into() })?;
    let mut cx = GraphCx::new("main");
    for i in 0..block.argument_count() {
        let a = block.argument(i).map_err(|e| lower_err("func.func", "@main", e.to_string()))?;
        let id = cx.define(a.into());
        cx.graph.inputs.push(id);
    }
    let rets = lw.lower_block(&mut cx, block, "func.return")?;
    cx.graph.outputs = rets;
    lw.graphs[0] = cx.graph;
    let (inputs, outputs) = signature(&main, block)?;
    let mut graphs = lw.graphs;
    let entries = prune_weights(&mut graphs, lw.entries);
    let mut manifest = Manifest { producer: format!("lt2c {}", env!("CARGO_PKG_VERSION")), inputs, outputs, weights: entries, graphs, decode: None, ..Default::default() };
    let notes = crate::causal_mask::fold_causal_masks(&mut manifest);
    manifest.decode = decode_info(&mut manifest);
    if let Some(d) = &mut manifest.decode {
        d.notes = notes;
    }
    Ok(manifest)
}

/// Whether and how the model decodes incrementally: an int64 [batch, seq] input and a float
/// [batch, seq, vocab] output, every sequence-mixing op a stateful one. Marks the ranges that
/// count token positions.
fn decode_info(m: &mut Manifest) -> Option<plan::DecodeInfo> {
    let ids = m.inputs.iter().find(|s| s.dtype == DType::I64 as i32 && s.dims.len() == 2)?;
    let seq = ids.dims[1].clone();
    let logits = m.outputs.iter().find(|s| s.dtype == DType::F32 as i32 && s.dims.len() == 3 && s.dims[1] == seq)?;
    let mut why = Vec::new();
    if m.inputs.len() != 1 {
        let others: Vec<String> = m.inputs.iter().filter(|s| s.name != ids.name).map(|s| format!("`{}`", s.name)).collect();
        why.push(format!(
            "the model has inputs besides the token ids ({}); a decode session feeds token ids only (export the model with `{}` as its one input)",
            others.join(", "),
            ids.name
        ));
    }
    if seq.parse::<i64>().is_ok() {
        why.push(format!("the sequence length is fixed at {seq}"));
    }
    for g in &mut m.graphs {
        for s in &mut g.steps {
            match &mut s.op {
                Some(Op::Range(r)) if r.size.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == ':')).any(|t| t == seq) => r.positional = true,
                Some(Op::MatMul(_)) | Some(Op::Softmax(_)) | Some(Op::Trilu(_)) => {
                    let w = format!("`{}` is decomposed attention (MatMul/Softmax/mask); decode is derived only for fused attention ops", s.origin);
                    if why.len() < 3 {
                        why.push(w);
                    }
                }
                Some(Op::Attention(a)) if a.top_left => why.push(format!("`{}` aligns its causal mask top-left", s.origin)),
                Some(Op::Attention(_)) if s.inputs.get(3).is_some_and(|&m| m != plan::ABSENT) => {
                    why.push(format!("`{}` takes an explicit attention mask, whose shape follows the whole sequence", s.origin))
                }
                _ => {}
            }
        }
    }
    Some(plan::DecodeInfo { ids_input: ids.name.clone(), logits_output: logits.name.clone(), seq_symbol: seq, not_decodable: why.join("; "), notes: vec![] })
}

/// Static dims of an op's operand or result type (None for a dynamic one).
fn static_dims(ty: &str) -> Vec<Option<i64>> {
    TensorType::parse(ty).map(|t| t.dims).unwrap_or_default()
}

/// (fixed bytes, bytes per token) of the cache of a stateful op, as the GPU keeps it.
fn cache_cost(kind: Lt2Op, o: &OperationRef) -> Option<(u64, u64)> {
    let prod = |d: &[Option<i64>]| -> u64 { d.iter().map(|x| x.unwrap_or(0).max(0) as u64).product() };
    let res = |i: usize| o.result(i).ok().map(|r| static_dims(&r.r#type().to_string())).unwrap_or_default();
    let opnd = |i: usize| o.operand(i).ok().map(|r| static_dims(&r.r#type().to_string())).unwrap_or_default();
    let last = |d: Vec<Option<i64>>| d.last().copied().flatten().unwrap_or(0).max(0) as u64;
    match kind {
        Lt2Op::CausalConv | Lt2Op::Gdn => Some((4 * prod(res(1).get(1..).unwrap_or(&[])), 0)),
        Lt2Op::Attention => {
            // A bf16 / fp16 attention keeps its K/V cache in that type on the GPU (rows of whole
            // 16-byte chunks: runtime `Backend::to_kv_cache`); the CPU keeps fp32.
            let half = matches!(attr_str(o, "operand_type").ok().as_deref(), Some("bf16" | "f16"));
            let bytes = |w: u64| if half && w % 8 == 0 { 2 * w } else { 4 * w };
            Some((0, bytes(last(opnd(1))) + bytes(last(opnd(2)))))
        }
        Lt2Op::LightningIndexer => Some((0, 4 * last(opnd(1)))),
        Lt2Op::SparseAttention => Some((0, 4 * (last(opnd(1)) + last(opnd(2))))),
        _ => None,
    }
}

fn lower_err(op: &str, origin: &str, reason: impl Into<String>) -> CodegenError {
    CodegenError::Lower { op: op.into(), origin: origin.into(), reason: reason.into() }
}

/// Graph inputs/outputs from `lt2.name` / `lt2.dims` argument and result attributes.
fn signature(main: &OperationRef, block: BlockRef) -> Result<(Vec<TensorSig>, Vec<TensorSig>), CodegenError> {
    let read = |attr_name: &str, types: Vec<String>| -> Result<Vec<TensorSig>, CodegenError> {
        let arr = main.attribute(attr_name).ok().and_then(|a| ArrayAttribute::try_from(a).ok());
        let mut out = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            let dict = arr.and_then(|a| a.element(i).ok()).and_then(|d| DictionaryAttribute::try_from(d).ok());
            let name = dict
                .and_then(|d| d.element_by_name("lt2.name"))
                .and_then(|s| StringAttribute::try_from(s).ok())
                .map(|s| s.value().to_string())
                .unwrap_or_else(|| format!("{}{i}", if attr_name == "arg_attrs" { "input" } else { "output" }));
            let t = TensorType::parse(ty).ok_or_else(|| lower_err("func.func", "@main", format!("unsupported signature type {ty}")))?;
            let dims = match dict.and_then(|d| d.element_by_name("lt2.dims")).and_then(|a| ArrayAttribute::try_from(a).ok()) {
                Some(a) => (0..a.len())
                    .map(|j| a.element(j).ok().and_then(|e| StringAttribute::try_from(e).ok()).map(|s| s.value().to_string()).unwrap_or_default())
                    .collect(),
                None => t.dims.iter().enumerate().map(|(j, d)| d.map(|n| n.to_string()).unwrap_or_else(|| format!("{name}_d{j}"))).collect(),
            };
            out.push(TensorSig { name, dtype: dtype(t.elem) as i32, dims });
        }
        Ok(out)
    };
    let arg_types: Vec<String> = (0..block.argument_count()).filter_map(|i| block.argument(i).ok()).map(|a| a.r#type().to_string()).collect();
    let ret = block.terminator().ok_or_else(|| lower_err("func.func", "@main", "no return"))?;
    let ret_types: Vec<String> = ret.operands().map(|v| v.r#type().to_string()).collect();
    Ok((read("arg_attrs", arg_types)?, read("res_attrs", ret_types)?))
}

impl Lowering<'_> {
    /// Lowers the ops of a block into `cx`; returns the ids of the terminator's operands.
    fn lower_block(&mut self, cx: &mut GraphCx, block: BlockRef, terminator: &str) -> Result<Vec<u32>, CodegenError> {
        let mut op = block.first_operation();
        while let Some(o) = op {
            let name = o.name().as_string_ref().as_str().unwrap_or("?").to_string();
            let origin = origin_of(&o);
            if name == terminator {
                return o.operands().map(|v| cx.ids.get(&key(v)).copied().ok_or_else(|| lower_err(&name, &origin, "returns an undefined value"))).collect();
            }
            let kind = ops::lt2_op(&o).ok_or_else(|| lower_err(&name, &origin, "is not an lt2 op; nothing lowers it"))?;
            self.lower_op(cx, &o, kind, &origin)?;
            op = o.next_in_block();
        }
        Err(lower_err(terminator, "block", "block has no terminator"))
    }

    fn lower_op(&mut self, cx: &mut GraphCx, o: &OperationRef, kind: Lt2Op, origin: &str) -> Result<(), CodegenError> {
        let name = kind.name();
        let e = |r: String| lower_err(name, origin, r);
        let mut inputs: Vec<i64> = Vec::new();
        // Optional operands are absent from the operand list; map them by segment sizes.
        let segs = o.attribute("operandSegmentSizes").ok().map(|a| a.to_string());
        let operand_ids: Vec<i64> = o
            .operands()
            .map(|v| cx.ids.get(&key(v)).map(|&i| i as i64).ok_or_else(|| e("uses a value defined outside what it can see".into())))
            .collect::<Result<_, _>>()?;
        match (&segs, kind) {
            (Some(s), Lt2Op::CausalConv | Lt2Op::Gdn) => {
                let sizes: Vec<usize> = s.trim_start_matches("array<i32:").trim_end_matches('>').split(',').filter_map(|x| x.trim().parse().ok()).collect();
                let mut it = operand_ids.into_iter();
                for sz in sizes {
                    inputs.push(if sz == 1 { it.next().unwrap_or(ABSENT) } else { ABSENT });
                }
            }
            _ => inputs = operand_ids,
        }
        let ierr = |err: lt2_ir::IrError| lower_err(name, origin, err.to_string());
        let op = match kind {
            Lt2Op::Weight => {
                let w = attr_str(o, "name").map_err(ierr)?;
                let index = *self.weight_index.get(w.as_str()).ok_or_else(|| e(format!("weight `{w}` has no data")))?;
                Op::Weight(plan::Weight { index })
            }
            Lt2Op::Constant => constant_op(o).map_err(|r| e(r))?,
            Lt2Op::Embed => Op::Embed(plan::Embed {}),
            Lt2Op::Gather => Op::Gather(plan::Gather { axis: attr_i64(o, "axis").map_err(ierr)? }),
            Lt2Op::RmsNorm => Op::RmsNorm(plan::RmsNorm { epsilon: attr_f32(o, "epsilon").map_err(ierr)?, axis: attr_i64(o, "axis").map_err(ierr)? }),
            Lt2Op::Linear => {
                let w = o.operand(1).map_err(|x| e(x.to_string()))?.r#type().to_string();
                let operand_dtype = match TensorType::parse(&w).map(|t| t.elem) {
                    Some(el @ (Elem::Bf16 | Elem::F16)) => dtype(el),
                    _ => DType::F32,
                };
                Op::Linear(plan::Linear { transpose_w: attr_bool(o, "transpose_w").map_err(ierr)?, operand_dtype: operand_dtype as i32 })
            }
            Lt2Op::MatMul => Op::MatMul(plan::MatMul {}),
            Lt2Op::Add => binary(plan::BinaryKind::Add),
            Lt2Op::Sub => binary(plan::BinaryKind::Sub),
            Lt2Op::Mul => binary(plan::BinaryKind::Mul),
            Lt2Op::Div => binary(plan::BinaryKind::Div),
            Lt2Op::Pow => binary(plan::BinaryKind::Pow),
            Lt2Op::Min => binary(plan::BinaryKind::Min),
            Lt2Op::Max => binary(plan::BinaryKind::Max),
            Lt2Op::SiluMul => binary(plan::BinaryKind::SiluMul),
            Lt2Op::TopK => Op::TopK(plan::TopK { axis: attr_i64(o, "axis").map_err(ierr)?, largest: attr_bool(o, "largest").map_err(ierr)?, k: attr_str(o, "k").map_err(ierr)? }),
            Lt2Op::Neg => unary(plan::UnaryKind::Neg),
            Lt2Op::Exp => unary(plan::UnaryKind::Exp),
            Lt2Op::Sigmoid => unary(plan::UnaryKind::Sigmoid),
            Lt2Op::Softplus => unary(plan::UnaryKind::Softplus),
            Lt2Op::Sqrt => unary(plan::UnaryKind::Sqrt),
            Lt2Op::Silu => unary(plan::UnaryKind::Silu),
            Lt2Op::Log => unary(plan::UnaryKind::Log),
            Lt2Op::Tanh => unary(plan::UnaryKind::Tanh),
            Lt2Op::Relu => unary(plan::UnaryKind::Relu),
            Lt2Op::Reciprocal => unary(plan::UnaryKind::Reciprocal),
            Lt2Op::Abs => unary(plan::UnaryKind::Abs),
            Lt2Op::Sin => unary(plan::UnaryKind::Sin),
            Lt2Op::Cos => unary(plan::UnaryKind::Cos),
            Lt2Op::ReduceSum | Lt2Op::ReduceMean | Lt2Op::ReduceMax => {
                let k = match kind {
                    Lt2Op::ReduceSum => plan::ReduceKind::Sum,
                    Lt2Op::ReduceMean => plan::ReduceKind::Mean,
                    _ => plan::ReduceKind::Max,
                };
                Op::Reduce(plan::Reduce { kind: k as i32, axes: attr_i64s(o, "axes").map_err(ierr)?, keepdims: attr_bool(o, "keepdims").map_err(ierr)? })
            }
            Lt2Op::Reshape => Op::Reshape(plan::Reshape { shape: attr_strs(o, "shape").map_err(ierr)? }),
            Lt2Op::Transpose => Op::Transpose(plan::Transpose { perm: attr_i64s(o, "perm").map_err(ierr)? }),
            Lt2Op::Expand => Op::Expand(plan::Expand { shape: attr_strs(o, "shape").map_err(ierr)? }),
            Lt2Op::Range => Op::Range(plan::Range { start: attr_i64(o, "start").map_err(ierr)?, delta: attr_i64(o, "delta").map_err(ierr)?, size: attr_str(o, "size").map_err(ierr)?, positional: false }),
            Lt2Op::Concat => Op::Concat(plan::Concat { axis: attr_i64(o, "axis").map_err(ierr)? }),
            Lt2Op::Slice => Op::Slice(plan::Slice {
                axes: attr_i64s(o, "axes").map_err(ierr)?,
                starts: attr_i64s(o, "starts").map_err(ierr)?,
                ends: attr_i64s(o, "ends").map_err(ierr)?,
                steps: attr_i64s(o, "steps").map_err(ierr)?,
            }),
            Lt2Op::CausalConv => Op::CausalConv(plan::CausalConv { activation: attr_str(o, "activation").map_err(ierr)? }),
            Lt2Op::Gdn => {
                let rule = match attr_str(o, "update_rule").map_err(ierr)?.as_str() {
                    "gated_delta" => plan::UpdateRule::GatedDelta,
                    "linear" => plan::UpdateRule::Linear,
                    "gated" => plan::UpdateRule::Gated,
                    "delta" => plan::UpdateRule::Delta,
                    other => return Err(e(format!("unknown update_rule `{other}`"))),
                };
                // Plan order: (q, k, v, state, decay, beta) as LinearAttention-27.
                let (q, k, v, g, b, s) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5]);
                inputs = vec![q, k, v, s, g, b];
                Op::Gdn(plan::Gdn {
                    q_heads: attr_i64(o, "q_heads").map_err(ierr)? as u32,
                    kv_heads: attr_i64(o, "kv_heads").map_err(ierr)? as u32,
                    scale: attr_f32(o, "scale").map_err(ierr)?,
                    update_rule: rule as i32,
                })
            }
            Lt2Op::Attention => Op::Attention(plan::Attention {
                q_heads: attr_i64(o, "q_heads").map_err(ierr)? as u32,
                kv_heads: attr_i64(o, "kv_heads").map_err(ierr)? as u32,
                scale: attr_f32(o, "scale").map_err(ierr)?,
                causal: attr_bool(o, "causal").map_err(ierr)?,
                window_left: attr_i64(o, "window_left").map_err(ierr)?,
                window_right: attr_i64(o, "window_right").map_err(ierr)?,
                top_left: attr_bool(o, "top_left").map_err(ierr)?,
                operand_dtype: match attr_str(o, "operand_type").ok().as_deref() {
                    Some("bf16") => plan::DType::Bf16,
                    Some("f16") => plan::DType::F16,
                    None | Some("f32") => plan::DType::F32,
                    Some(other) => return Err(lower_err("lt2.attention", origin, format!("operand_type `{other}` is not bf16, f16 or f32"))),
                } as i32,
            }),
            Lt2Op::Softmax => Op::Softmax(plan::Softmax { axis: attr_i64(o, "axis").map_err(ierr)? }),
            Lt2Op::Where => Op::Where(plan::Where {}),
            Lt2Op::Compare => {
                let k = match attr_str(o, "predicate").map_err(ierr)?.as_str() {
                    "eq" => plan::CompareKind::Eq,
                    "lt" => plan::CompareKind::Lt,
                    "le" => plan::CompareKind::Le,
                    "gt" => plan::CompareKind::Gt,
                    "ge" => plan::CompareKind::Ge,
                    "and" => plan::CompareKind::And,
                    "or" => plan::CompareKind::Or,
                    "not" => plan::CompareKind::Not,
                    other => return Err(e(format!("unknown predicate `{other}`"))),
                };
                Op::Compare(plan::Compare { kind: k as i32 })
            }
            Lt2Op::Cast => {
                let ty = o.result(0).map_err(|x| e(x.to_string()))?.r#type().to_string();
                let t = TensorType::parse(&ty).ok_or_else(|| e(format!("unsupported result type {ty}")))?;
                match t.elem {
                    // A weight cast to bf16/fp16 (matmul-weights-*) becomes a weight stored so.
                    Elem::Bf16 | Elem::F16 => {
                        let src = o.operand(0).map_err(|x| e(x.to_string()))?;
                        let def = melior::ir::operation::OperationResult::try_from(src).ok().map(|r| r.owner()).filter(|d| ops::lt2_op(d) == Some(Lt2Op::Weight));
                        let Some(def) = def else { return Err(e(format!("only weights can be cast to {}; activations stay f32", t.elem.mlir()))) };
                        let name = attr_str(&def, "name").map_err(ierr)?;
                        inputs.clear();
                        Op::Weight(plan::Weight { index: self.reduced_weight(&name, dtype(t.elem)).map_err(e)? })
                    }
                    _ => Op::Cast(plan::Cast { to: dtype(t.elem) as i32 }),
                }
            }
            Lt2Op::DimValues => {
                let dims = attr_strs(o, "dims").map_err(ierr)?;
                let ty = o.result(0).map_err(|x| e(x.to_string()))?.r#type().to_string();
                let rank = TensorType::parse(&ty).map(|t| t.dims.len()).ok_or_else(|| e(format!("unparsable type {ty}")))?;
                let shape = if rank == 0 { vec![] } else { vec![dims.len() as u64] };
                Op::DimValues(plan::DimValues { dims, shape })
            }
            Lt2Op::CumSum => Op::CumSum(plan::CumSum { axis: attr_i64(o, "axis").map_err(ierr)?, exclusive: attr_bool(o, "exclusive").map_err(ierr)?, reverse: attr_bool(o, "reverse").map_err(ierr)? }),
            Lt2Op::Trilu => Op::Trilu(plan::Trilu { upper: attr_bool(o, "upper").map_err(ierr)?, k: attr_i64(o, "k").map_err(ierr)? }),
            Lt2Op::LightningIndexer => Op::LightningIndexer(plan::LightningIndexer {
                num_heads: attr_i64(o, "num_heads").map_err(ierr)? as u32,
                top_k: attr_i64(o, "top_k").map_err(ierr)? as u32,
                score: attr_str(o, "score").map_err(ierr)?,
            }),
            Lt2Op::SparseAttention => Op::SparseAttention(plan::SparseAttention {
                q_heads: attr_i64(o, "q_heads").map_err(ierr)? as u32,
                kv_heads: attr_i64(o, "kv_heads").map_err(ierr)? as u32,
                scale: attr_f32(o, "scale").map_err(ierr)?,
            }),
            Lt2Op::Rope => Op::Rope(plan::Rope {
                num_heads: attr_i64(o, "num_heads").map_err(ierr)? as u32,
                interleaved: attr_bool(o, "interleaved").map_err(ierr)?,
                rotary_dim: attr_i64(o, "rotary_dim").map_err(ierr)? as u32,
            }),
            Lt2Op::Loop => return self.lower_loop(cx, o, inputs, origin),
        };
        let outputs: Vec<u32> = o.results().map(|r| cx.define(r.into())).collect();
        let mut step = Step { inputs, outputs, origin: origin.to_string(), op: Some(op), ..Default::default() };
        if let Some((fixed, per_token)) = cache_cost(kind, o) {
            self.slots += 1;
            step.cache_slot = self.slots;
            step.cache_fixed_bytes = fixed;
            step.cache_token_bytes = per_token;
        }
        cx.graph.steps.push(step);
        Ok(())
    }

    /// The index of `source`'s copy in type `d`, added to the manifest on first use.
    fn reduced_weight(&mut self, source: &str, d: DType) -> Result<u32, String> {
        let name = reduced_weight_name(source, d);
        if let Some(i) = self.entries.iter().position(|w| w.name == name) {
            return Ok(i as u32);
        }
        let src = self.weight_index.get(source).map(|&i| &self.entries[i as usize]).ok_or_else(|| format!("weight `{source}` has no data"))?;
        if src.dtype != DType::F32 as i32 {
            return Err(format!("weight `{source}` is not f32; only f32 weights are stored in reduced precision"));
        }
        let entry = WeightEntry { name, dtype: d as i32, shape: src.shape.clone(), offset: 0, nbytes: 0 };
        self.entries.push(entry);
        Ok(self.entries.len() as u32 - 1)
    }

    fn lower_loop(&mut self, cx: &mut GraphCx, o: &OperationRef, carried: Vec<i64>, origin: &str) -> Result<(), CodegenError> {
        let e = |r: String| lower_err("lt2.loop", origin, r);
        let trip = attr_i64(o, "trip_count").map_err(|x| e(x.to_string()))?;
        let block = o.region(0).ok().and_then(|r| r.first_block()).ok_or_else(|| e("no body".into()))?;
        let index = self.graphs.len() as u32;
        self.graphs.push(Graph::default());
        let mut body = GraphCx::new(&format!("loop{index}"));
        for i in 0..block.argument_count() {
            let a = block.argument(i).map_err(|x| e(x.to_string()))?;
            let id = body.define(a.into());
            body.graph.inputs.push(id);
        }
        // Captures: values of the enclosing graph the region reads. Give each a body input.
        let mut captured: Vec<i64> = Vec::new();
        let mut seen = HashMap::new();
        collect_captures(block, &mut |v: Value| {
            if let Some(&outer) = cx.ids.get(&key(v)) {
                if !seen.contains_key(&key(v)) && !body.ids.contains_key(&key(v)) {
                    seen.insert(key(v), ());
                    captured.push(outer as i64);
                    let id = body.define(v);
                    body.graph.inputs.push(id);
                }
            }
        });
        let outs = self.lower_block(&mut body, block, LOOP_YIELD)?;
        body.graph.outputs = outs;
        let num_carried = carried.len() as u32;
        let exit_gate_scan = exit_gate_scan(&body.graph, num_carried as usize);
        self.graphs[index as usize] = body.graph;
        let mut inputs = carried;
        inputs.extend(captured);
        let outputs: Vec<u32> = o.results().map(|r| cx.define(r.into())).collect();
        cx.graph.steps.push(Step { inputs, outputs, origin: origin.to_string(), op: Some(Op::Loop(plan::Loop { body: index, trip_count: trip, num_carried, exit_gate_scan })), ..Default::default() });
        Ok(())
    }
}

/// Calls `f` on every operand of every op in the block (recursively into nested regions).
fn collect_captures(block: BlockRef, f: &mut dyn FnMut(Value)) {
    let mut op = block.first_operation();
    while let Some(o) = op {
        for v in o.operands() {
            f(v);
        }
        for r in o.regions() {
            let mut b = r.first_block();
            while let Some(bb) = b {
                collect_captures(bb, f);
                b = bb.next_in_region();
            }
        }
        op = o.next_in_block();
    }
}

fn binary(k: plan::BinaryKind) -> Op {
    Op::Binary(plan::Binary { kind: k as i32 })
}

fn unary(k: plan::UnaryKind) -> Op {
    Op::Unary(plan::Unary { kind: k as i32 })
}

/// The op's location as text: the ONNX node it came from.
fn origin_of(o: &OperationRef) -> String {
    let s = o.location().to_string();
    s.trim_start_matches("loc(").trim_end_matches(')').trim_matches('"').to_string()
}

/// A plan constant from an `lt2.constant`'s dense attribute.
fn constant_op(o: &OperationRef) -> Result<Op, String> {
    let ty = o.result(0).map_err(|x| x.to_string())?.r#type().to_string();
    let t = TensorType::parse(&ty).ok_or_else(|| format!("unsupported constant type {ty}"))?;
    let shape: Vec<u64> = t.dims.iter().map(|d| d.unwrap_or(0).max(0) as u64).collect();
    let attr = o.attribute("value").map_err(|_| "constant without a value".to_string())?;
    let raw = attr.to_raw();
    // SAFETY: `raw` is a live attribute of a verified op; IRDL guarantees dense int-or-fp elements.
    let (n, splat) = unsafe { (mlir_sys::mlirElementsAttrGetNumElements(raw) as usize, mlir_sys::mlirDenseElementsAttrIsSplat(raw)) };
    let idx = |i: usize| if splat { 0 } else { i as isize };
    let mut c = plan::Constant { dtype: dtype(t.elem) as i32, shape, f32s: vec![], i64s: vec![] };
    // SAFETY: indices are below the element count; the element type matches the accessor.
    unsafe {
        match t.elem {
            Elem::F32 => c.f32s = (0..n).map(|i| mlir_sys::mlirDenseElementsAttrGetFloatValue(raw, idx(i))).collect(),
            Elem::I64 => c.i64s = (0..n).map(|i| mlir_sys::mlirDenseElementsAttrGetInt64Value(raw, idx(i))).collect(),
            Elem::I1 => c.f32s = (0..n).map(|i| mlir_sys::mlirDenseElementsAttrGetBoolValue(raw, idx(i)) as i64 as f32).collect(),
            Elem::Bf16 | Elem::F16 => return Err(format!("constants of type {} are not supported", t.elem.mlir())),
        }
    }
    Ok(Op::Constant(c))
}

/// Finds Ouro's exit gate among a loop body's scan outputs: the one scan output computed by a
/// sigmoid (λ_τ = sigmoid(h·w + b)). None when there is no such output or more than one.
fn exit_gate_scan(body: &Graph, num_carried: usize) -> Option<u32> {
    let sigmoid_of = |id: u32| {
        body.steps.iter().any(|s| s.outputs.first() == Some(&id) && matches!(&s.op, Some(Op::Unary(u)) if u.kind == plan::UnaryKind::Sigmoid as i32))
    };
    let gates: Vec<u32> = body.outputs.iter().skip(num_carried).enumerate().filter(|(_, &id)| sigmoid_of(id)).map(|(k, _)| k as u32).collect();
    match gates[..] {
        [k] => Some(k),
        _ => None,
    }
}

/// Drops `Weight` steps whose value nothing reads and the weights no step loads (an f32 weight
/// replaced by its bf16 copy), renumbering the rest; returns the weights kept.
fn prune_weights(graphs: &mut [Graph], entries: Vec<WeightEntry>) -> Vec<WeightEntry> {
    for g in graphs.iter_mut() {
        let mut read: std::collections::HashSet<u32> = g.outputs.iter().copied().collect();
        for s in &g.steps {
            read.extend(s.inputs.iter().filter(|&&i| i != ABSENT).map(|&i| i as u32));
        }
        g.steps.retain(|s| !matches!(s.op, Some(Op::Weight(_))) || s.outputs.iter().any(|o| read.contains(o)));
    }
    let mut used = vec![false; entries.len()];
    for s in graphs.iter().flat_map(|g| &g.steps) {
        if let Some(Op::Weight(w)) = &s.op {
            if let Some(u) = used.get_mut(w.index as usize) {
                *u = true;
            }
        }
    }
    let mut remap = vec![u32::MAX; entries.len()];
    let mut kept = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        if used[i] {
            remap[i] = kept.len() as u32;
            kept.push(e);
        }
    }
    for s in graphs.iter_mut().flat_map(|g| g.steps.iter_mut()) {
        if let Some(Op::Weight(w)) = &mut s.op {
            w.index = remap[w.index as usize];
        }
    }
    kept
}
