//! The execution plan stored in model.bin: a backend-neutral list of steps over numbered
//! values, one graph per function (the main graph and each loop body). Encoded with prost so
//! the format is compact, versioned by field tags, and readable without MLIR.

/// What model.bin describes: its signature, its weights and the graphs to run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Manifest {
    /// Which compiler wrote this file (free text, for `lt2c inspect`).
    #[prost(string, tag = "1")]
    pub producer: String,
    /// The model's inputs, in ONNX graph order, keyed by their ONNX names.
    #[prost(message, repeated, tag = "2")]
    pub inputs: Vec<TensorSig>,
    /// The model's outputs, in ONNX graph order.
    #[prost(message, repeated, tag = "3")]
    pub outputs: Vec<TensorSig>,
    /// Where each weight lies in the weight blob.
    #[prost(message, repeated, tag = "4")]
    pub weights: Vec<WeightEntry>,
    /// Graph 0 is the entry point; the others are loop bodies referenced by `Loop.body`.
    #[prost(message, repeated, tag = "5")]
    pub graphs: Vec<Graph>,
    /// Present when the model is a language model lt2c can decode incrementally.
    #[prost(message, optional, tag = "6")]
    pub decode: Option<DecodeInfo>,
    /// The CUDA kernels compiled ahead of time (cubins per architecture, and PTX), whose bytes
    /// follow the weights in the data blob. Empty when the compiler had no NVRTC: the runtime
    /// then compiles them when the model loads. Files written before this field read as empty.
    #[prost(message, repeated, tag = "7")]
    pub kernels: Vec<KernelImage>,
}

/// One kernel source file (`codegen/kernels/<file>`) compiled for one target.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KernelImage {
    /// The source file's name, e.g. `gdn.cu`.
    #[prost(string, tag = "1")]
    pub file: String,
    /// The target: a real architecture (`sm_80`, `sm_90a`) for a cubin, a virtual one
    /// (`compute_80`) for PTX.
    #[prost(string, tag = "2")]
    pub arch: String,
    /// Cubin or PTX.
    #[prost(enumeration = "ImageKind", tag = "3")]
    pub kind: i32,
    /// Where the bytes lie in the data blob (64-byte aligned), filled in by the writer.
    #[prost(uint64, tag = "4")]
    pub offset: u64,
    /// How many bytes (PTX: the text, without a terminating NUL).
    #[prost(uint64, tag = "5")]
    pub nbytes: u64,
    /// xxh3-64 of the sources and options the image was compiled from: a runtime uses the image
    /// only when its own kernel sources hash the same (`cuda::prebuilt::source_hash`).
    #[prost(uint64, tag = "6")]
    pub source_hash: u64,
    /// The compiler that made it, e.g. `NVRTC 13.0` (for `lt2c inspect`).
    #[prost(string, tag = "7")]
    pub compiler: String,
}

/// What a `KernelImage` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ImageKind {
    /// A cubin (ELF) for one real architecture.
    Cubin = 0,
    /// PTX text, JIT-compiled by the driver for the device at load.
    Ptx = 1,
}

/// How to run a language model incrementally: which input holds token ids, which output holds
/// logits, and the symbol of the sequence dim (the chunk length in a decode session).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DecodeInfo {
    #[prost(string, tag = "1")]
    pub ids_input: String,
    #[prost(string, tag = "2")]
    pub logits_output: String,
    #[prost(string, tag = "3")]
    pub seq_symbol: String,
    /// Empty when decode can be derived; else why not (shown when a session is asked for).
    #[prost(string, tag = "4")]
    pub not_decodable: String,
    /// What the compiler did to make decode derivable (e.g. an explicit mask seen to be causal).
    #[prost(string, repeated, tag = "5")]
    pub notes: Vec<String>,
}

/// Element types a plan value can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DType {
    F32 = 0,
    I64 = 1,
    Bool = 2,
    /// Only weights of matrix products (`--dtype bf16`); see `precision.rs`.
    Bf16 = 3,
    /// Only weights of matrix products (`--dtype fp16`).
    F16 = 4,
}

/// Name, element type and shape of a graph input or output. Dims are dim expressions
/// (see `dim.rs`): a number, a symbol such as `batch`, or arithmetic over them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorSig {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(enumeration = "DType", tag = "2")]
    pub dtype: i32,
    #[prost(string, repeated, tag = "3")]
    pub dims: Vec<String>,
}

/// One weight: its bytes lie at `offset` (64-byte aligned) in the weight blob.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WeightEntry {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(enumeration = "DType", tag = "2")]
    pub dtype: i32,
    #[prost(uint64, repeated, tag = "3")]
    pub shape: Vec<u64>,
    #[prost(uint64, tag = "4")]
    pub offset: u64,
    #[prost(uint64, tag = "5")]
    pub nbytes: u64,
}

/// A function: values `0..num_values`, of which `inputs` are bound by the caller; steps run
/// in order; `outputs` are returned.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Graph {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub num_values: u32,
    #[prost(uint32, repeated, tag = "3")]
    pub inputs: Vec<u32>,
    #[prost(uint32, repeated, tag = "4")]
    pub outputs: Vec<u32>,
    #[prost(message, repeated, tag = "5")]
    pub steps: Vec<Step>,
}

/// One operation. `inputs` hold value ids, or `ABSENT` for an omitted optional input.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Step {
    #[prost(int64, repeated, tag = "1")]
    pub inputs: Vec<i64>,
    #[prost(uint32, repeated, tag = "2")]
    pub outputs: Vec<u32>,
    /// Where the step came from (the MLIR location / ONNX node name), for error messages.
    #[prost(string, tag = "3")]
    pub origin: String,
    /// Nonzero for ops that carry state across calls in a decode session (GDN state, conv tail,
    /// KV, index keys): the cache this step reads and extends, one per enclosing loop iteration.
    #[prost(uint32, tag = "4")]
    pub cache_slot: u32,
    /// Bytes of cache this step keeps per sequence: fixed, and per token of context.
    #[prost(uint64, tag = "5")]
    pub cache_fixed_bytes: u64,
    #[prost(uint64, tag = "6")]
    pub cache_token_bytes: u64,
    #[prost(
        oneof = "Op",
        tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40"
    )]
    pub op: Option<Op>,
}

/// Marks an omitted optional input in `Step::inputs`.
pub const ABSENT: i64 = -1;

/// The instruction set of the plan. Semantics are those of the ONNX op named in each doc
/// comment unless stated; the CPU backend (`cpu/`) is their executable definition.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    /// () -> weight `index` of the manifest.
    #[prost(message, tag = "10")]
    Weight(Weight),
    /// (table [N, ...], ids int64 [...]) -> [..., ...]: rows of `table` (ONNX Gather, axis 0).
    #[prost(message, tag = "11")]
    Embed(Embed),
    /// (x, scale) -> x / sqrt(mean(x^2 over axes axis..) + eps) * scale (RMSNormalization-23).
    #[prost(message, tag = "12")]
    RmsNorm(RmsNorm),
    /// (x [..., K], w [K, N] or [N, K] if transpose_w, bias [N]?) -> [..., N].
    #[prost(message, tag = "13")]
    Linear(Linear),
    /// (a, b) -> numpy-style batched matmul with broadcasting (MatMul).
    #[prost(message, tag = "14")]
    MatMul(MatMul),
    /// (a, b) -> elementwise with numpy broadcasting.
    #[prost(message, tag = "15")]
    Binary(Binary),
    /// (x) -> elementwise function.
    #[prost(message, tag = "16")]
    Unary(Unary),
    /// (x) -> reduction over `axes` (ReduceSum / ReduceMean / ReduceMax).
    #[prost(message, tag = "17")]
    Reduce(Reduce),
    /// (x) -> same data, new shape (dim expressions, fully resolved: no 0 / -1).
    #[prost(message, tag = "18")]
    Reshape(Reshape),
    /// (x) -> permuted axes.
    #[prost(message, tag = "19")]
    Transpose(Transpose),
    /// (x) -> broadcast to `shape` (ONNX Expand: bidirectional broadcast).
    #[prost(message, tag = "20")]
    Expand(Expand),
    /// () -> int64 [size]: start, start+delta, ...
    #[prost(message, tag = "21")]
    Range(Range),
    /// (xs...) -> concatenation along `axis`.
    #[prost(message, tag = "22")]
    Concat(Concat),
    /// (x [B, L, C] channels-last, w [C, k], bias [C]?, state [B, C, k-1]?) ->
    /// (y [B, L, C], state_out [B, C, k-1]): depthwise causal conv (CausalConvWithState-27,
    /// but channels-last), optional SiLU.
    #[prost(message, tag = "23")]
    CausalConv(CausalConv),
    /// (q [B,T,Hq*K], k [B,T,Hkv*K], v [B,T,Hkv*V], state [B,Hkv,K,V]?, decay?, beta?) ->
    /// (o [B,T,Hq*V], state_out): LinearAttention-27.
    #[prost(message, tag = "24")]
    Gdn(Gdn),
    /// (q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv]) -> [B,Lq,Hq*Dv] (Attention-23, 3-D form).
    #[prost(message, tag = "25")]
    Attention(Attention),
    /// (x [B,L,H*D], cos [P, R/2], sin [P, R/2], position_ids [B,L]) -> RotaryEmbedding-23.
    #[prost(message, tag = "26")]
    Rope(Rope),
    /// (carried..., captured...) -> carried results: runs graph `body` `trip_count` times.
    /// The body's inputs are (iteration int64 scalar, carried..., captured...), its outputs the
    /// next carried values.
    #[prost(message, tag = "27")]
    Loop(Loop),
    /// (x) -> x[starts:ends:steps] along `axes` (ONNX Slice with constant bounds).
    #[prost(message, tag = "28")]
    Slice(Slice),
    /// (data, indices int64) -> ONNX Gather along `axis`.
    #[prost(message, tag = "29")]
    Gather(Gather),
    /// (x) -> softmax along `axis` (Softmax-13).
    #[prost(message, tag = "30")]
    Softmax(Softmax),
    /// (cond bool, a, b) -> elementwise select with broadcasting (Where).
    #[prost(message, tag = "31")]
    Where(Where),
    /// (a, b) -> bool, elementwise with broadcasting (Equal / Less / Greater / ...).
    #[prost(message, tag = "32")]
    Compare(Compare),
    /// (x) -> x converted to `to`.
    #[prost(message, tag = "33")]
    Cast(Cast),
    /// (x [..., N, M]) -> lower (or upper) triangle of the last two dims, offset `k` (Trilu).
    #[prost(message, tag = "34")]
    Trilu(Trilu),
    /// (q_index [B,T,H*D], k_index [B,S,D], weights [B,T,H]?) -> int64 [B,T,top_k]:
    /// lt2::LightningIndexer (onnx-ops.md).
    #[prost(message, tag = "35")]
    LightningIndexer(LightningIndexer),
    /// (q [B,T,Hq*Dk], k [B,S,Hkv*Dk], v [B,S,Hkv*Dv], indices [B,T,K]) -> [B,T,Hq*Dv]:
    /// lt2::SparseAttention (onnx-ops.md).
    #[prost(message, tag = "36")]
    SparseAttention(SparseAttention),
    /// (x) -> (values, int64 indices): the `k` largest (or smallest) along `axis`, sorted, ties
    /// to the lower index (TopK-11).
    #[prost(message, tag = "37")]
    TopK(TopK),
    /// () -> a small constant stored in the plan itself.
    #[prost(message, tag = "38")]
    Constant(Constant),
    /// (x) -> running sum along `axis` (CumSum-14), f32 or int64.
    #[prost(message, tag = "39")]
    CumSum(CumSum),
    /// () -> int64 values of dim expressions (ONNX shape arithmetic used as data, e.g. a
    /// sequence length in index arithmetic), evaluated when the model runs.
    #[prost(message, tag = "40")]
    DimValues(DimValues),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DimValues {
    /// One dim expression per element.
    #[prost(string, repeated, tag = "1")]
    pub dims: Vec<String>,
    /// The output's shape: `[]` (one value) or `[len(dims)]`.
    #[prost(uint64, repeated, tag = "2")]
    pub shape: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CumSum {
    #[prost(int64, tag = "1")]
    pub axis: i64,
    /// Element i sums the elements before it, not itself.
    #[prost(bool, tag = "2")]
    pub exclusive: bool,
    /// Sums run from the end of the axis.
    #[prost(bool, tag = "3")]
    pub reverse: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Constant {
    #[prost(enumeration = "DType", tag = "1")]
    pub dtype: i32,
    #[prost(uint64, repeated, tag = "2")]
    pub shape: Vec<u64>,
    /// F32 values (also bool as 0/1).
    #[prost(float, repeated, tag = "3")]
    pub f32s: Vec<f32>,
    #[prost(int64, repeated, tag = "4")]
    pub i64s: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TopK {
    #[prost(int64, tag = "1")]
    pub axis: i64,
    #[prost(bool, tag = "2")]
    pub largest: bool,
    /// A dim expression (e.g. `min(2048,seq)`).
    #[prost(string, tag = "3")]
    pub k: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Softmax {
    #[prost(int64, tag = "1")]
    pub axis: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Where {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CompareKind {
    Eq = 0,
    Lt = 1,
    Le = 2,
    Gt = 3,
    Ge = 4,
    And = 5,
    Or = 6,
    Not = 7,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    #[prost(enumeration = "CompareKind", tag = "1")]
    pub kind: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Cast {
    #[prost(enumeration = "DType", tag = "1")]
    pub to: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trilu {
    #[prost(bool, tag = "1")]
    pub upper: bool,
    #[prost(int64, tag = "2")]
    pub k: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct LightningIndexer {
    #[prost(uint32, tag = "1")]
    pub num_heads: u32,
    #[prost(uint32, tag = "2")]
    pub top_k: u32,
    /// "mean_dot" or "relu_weighted".
    #[prost(string, tag = "3")]
    pub score: String,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseAttention {
    #[prost(uint32, tag = "1")]
    pub q_heads: u32,
    #[prost(uint32, tag = "2")]
    pub kv_heads: u32,
    #[prost(float, tag = "3")]
    pub scale: f32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Weight {
    #[prost(uint32, tag = "1")]
    pub index: u32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Embed {}
#[derive(Clone, PartialEq, prost::Message)]
pub struct RmsNorm {
    #[prost(float, tag = "1")]
    pub epsilon: f32,
    #[prost(int64, tag = "2")]
    pub axis: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Linear {
    #[prost(bool, tag = "1")]
    pub transpose_w: bool,
    /// F32, or Bf16/F16 when the weight is stored so: the activation operand is rounded to the
    /// same type and the product accumulates in fp32 (tensor-core GEMM).
    #[prost(enumeration = "DType", tag = "2")]
    pub operand_dtype: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct MatMul {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BinaryKind {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Pow = 4,
    Min = 5,
    Max = 6,
    /// silu(a) * b (SwiGLU's product, `lt2.silu_mul`); f32 only.
    SiluMul = 7,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Binary {
    #[prost(enumeration = "BinaryKind", tag = "1")]
    pub kind: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum UnaryKind {
    Neg = 0,
    Exp = 1,
    Sigmoid = 2,
    Softplus = 3,
    Sqrt = 4,
    Silu = 5,
    Log = 6,
    Tanh = 7,
    Relu = 8,
    Reciprocal = 9,
    Abs = 10,
    Identity = 11,
    Sin = 12,
    Cos = 13,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unary {
    #[prost(enumeration = "UnaryKind", tag = "1")]
    pub kind: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReduceKind {
    Sum = 0,
    Mean = 1,
    Max = 2,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reduce {
    #[prost(enumeration = "ReduceKind", tag = "1")]
    pub kind: i32,
    /// Normalised (non-negative) axes.
    #[prost(int64, repeated, tag = "2")]
    pub axes: Vec<i64>,
    #[prost(bool, tag = "3")]
    pub keepdims: bool,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reshape {
    #[prost(string, repeated, tag = "1")]
    pub shape: Vec<String>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Transpose {
    #[prost(int64, repeated, tag = "1")]
    pub perm: Vec<i64>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Expand {
    #[prost(string, repeated, tag = "1")]
    pub shape: Vec<String>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Range {
    #[prost(int64, tag = "1")]
    pub start: i64,
    #[prost(int64, tag = "2")]
    pub delta: i64,
    #[prost(string, tag = "3")]
    pub size: String,
    /// Token positions over the sequence: in a decode session they start after the tokens
    /// already processed.
    #[prost(bool, tag = "4")]
    pub positional: bool,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Concat {
    #[prost(int64, tag = "1")]
    pub axis: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct CausalConv {
    /// "" (none) or "silu".
    #[prost(string, tag = "1")]
    pub activation: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum UpdateRule {
    GatedDelta = 0,
    Linear = 1,
    Gated = 2,
    Delta = 3,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gdn {
    #[prost(uint32, tag = "1")]
    pub q_heads: u32,
    #[prost(uint32, tag = "2")]
    pub kv_heads: u32,
    #[prost(float, tag = "3")]
    pub scale: f32,
    #[prost(enumeration = "UpdateRule", tag = "4")]
    pub update_rule: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attention {
    #[prost(uint32, tag = "1")]
    pub q_heads: u32,
    #[prost(uint32, tag = "2")]
    pub kv_heads: u32,
    #[prost(float, tag = "3")]
    pub scale: f32,
    #[prost(bool, tag = "4")]
    pub causal: bool,
    /// Keys before the query's position that stay visible; -1 = all (ONNX left_window_size).
    #[prost(int64, tag = "5")]
    pub window_left: i64,
    /// Keys after the query's position that stay visible; -1 = all (ONNX right_window_size).
    #[prost(int64, tag = "6")]
    pub window_right: i64,
    /// Query i sits at position i (ONNX Attention without a past) instead of i + Lk - Lq.
    #[prost(bool, tag = "7")]
    pub top_left: bool,
    /// `--dtype bf16|fp16`: q, k and v enter the products rounded to this type (DType; F32 or
    /// unset: full precision), as the weights of Linear do. Scores, softmax and sums stay fp32.
    #[prost(int32, tag = "8")]
    pub operand_dtype: i32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rope {
    #[prost(uint32, tag = "1")]
    pub num_heads: u32,
    #[prost(bool, tag = "2")]
    pub interleaved: bool,
    /// 0 = the whole head.
    #[prost(uint32, tag = "3")]
    pub rotary_dim: u32,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Loop {
    #[prost(uint32, tag = "1")]
    pub body: u32,
    #[prost(int64, tag = "2")]
    pub trip_count: i64,
    #[prost(uint32, tag = "3")]
    pub num_carried: u32,
    /// Index among the scan outputs of Ouro's per-loop exit gate λ (`sigmoid`, one value per
    /// token), found by codegen; lets a session stop looping a token early (`exit_threshold`).
    #[prost(uint32, optional, tag = "4")]
    pub exit_gate_scan: Option<u32>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Slice {
    #[prost(int64, repeated, tag = "1")]
    pub axes: Vec<i64>,
    #[prost(int64, repeated, tag = "2")]
    pub starts: Vec<i64>,
    #[prost(int64, repeated, tag = "3")]
    pub ends: Vec<i64>,
    #[prost(int64, repeated, tag = "4")]
    pub steps: Vec<i64>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gather {
    #[prost(int64, tag = "1")]
    pub axis: i64,
}
