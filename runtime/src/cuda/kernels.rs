//! The CUDA C++ kernel sources (`codegen/kernels/*.cu`, embedded at build time), the kernels
//! each file defines, and their compilation with NVRTC. `lt2c MODEL.onnx` compiles every file
//! ahead of time into model.bin (`prebuilt.rs`); files are compiled here when a model loads only
//! where model.bin has no image for the device (for its architecture, in parallel). Compiles are
//! cached: in the process per architecture, and on disk (`$LT2C_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/lt2c`, else `~/.cache/lt2c`) keyed by the sources, options, architecture and
//! NVRTC version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::nvrtc::{self, NvrtcError};

/// `common.cuh`, included by every file.
pub const COMMON: &str = include_str!("../../../codegen/kernels/common.cuh");

/// One kernel source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelFile {
    Elementwise,
    Reduce,
    Softmax,
    RmsNorm,
    Gather,
    Layout,
    Index,
    CausalConv,
    Gdn,
    Attention,
    Rope,
    Sparse,
}

impl KernelFile {
    pub const ALL: [KernelFile; 12] = [
        KernelFile::Elementwise,
        KernelFile::Reduce,
        KernelFile::Softmax,
        KernelFile::RmsNorm,
        KernelFile::Gather,
        KernelFile::Layout,
        KernelFile::Index,
        KernelFile::CausalConv,
        KernelFile::Gdn,
        KernelFile::Attention,
        KernelFile::Rope,
        KernelFile::Sparse,
    ];

    /// The file's name under `codegen/kernels/`.
    pub fn file_name(self) -> &'static str {
        match self {
            KernelFile::Elementwise => "elementwise.cu",
            KernelFile::Reduce => "reduce.cu",
            KernelFile::Softmax => "softmax.cu",
            KernelFile::RmsNorm => "rms_norm.cu",
            KernelFile::Gather => "gather.cu",
            KernelFile::Layout => "layout.cu",
            KernelFile::Index => "index.cu",
            KernelFile::CausalConv => "causal_conv.cu",
            KernelFile::Gdn => "gdn.cu",
            KernelFile::Attention => "attention.cu",
            KernelFile::Rope => "rope.cu",
            KernelFile::Sparse => "sparse.cu",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            KernelFile::Elementwise => include_str!("../../../codegen/kernels/elementwise.cu"),
            KernelFile::Reduce => include_str!("../../../codegen/kernels/reduce.cu"),
            KernelFile::Softmax => include_str!("../../../codegen/kernels/softmax.cu"),
            KernelFile::RmsNorm => include_str!("../../../codegen/kernels/rms_norm.cu"),
            KernelFile::Gather => include_str!("../../../codegen/kernels/gather.cu"),
            KernelFile::Layout => include_str!("../../../codegen/kernels/layout.cu"),
            KernelFile::Index => include_str!("../../../codegen/kernels/index.cu"),
            KernelFile::CausalConv => include_str!("../../../codegen/kernels/causal_conv.cu"),
            KernelFile::Gdn => include_str!("../../../codegen/kernels/gdn.cu"),
            KernelFile::Attention => include_str!("../../../codegen/kernels/attention.cu"),
            KernelFile::Rope => include_str!("../../../codegen/kernels/rope.cu"),
            KernelFile::Sparse => include_str!("../../../codegen/kernels/sparse.cu"),
        }
    }
}

/// How an attention kernel finds k and v in memory: fp32, or a K/V cache kept in bf16 / fp16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvElem {
    F32,
    Bf16,
    F16,
}

impl KvElem {
    /// The form of a buffer of this dtype, if attention reads it as k / v.
    pub fn of(d: crate::plan::DType) -> Option<KvElem> {
        match d {
            crate::plan::DType::F32 => Some(KvElem::F32),
            crate::plan::DType::Bf16 => Some(KvElem::Bf16),
            crate::plan::DType::F16 => Some(KvElem::F16),
            _ => None,
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            KvElem::F32 => "f32",
            KvElem::Bf16 => "bf16kv",
            KvElem::F16 => "f16kv",
        }
    }
}

/// Element widths of the dtype-agnostic kernels (copies, gathers, selects): bool, bf16 / fp16,
/// f32, i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    W1,
    W2,
    W4,
    W8,
}

impl Width {
    pub const ALL: [Width; 4] = [Width::W1, Width::W2, Width::W4, Width::W8];
    pub fn of_bytes(n: usize) -> Width {
        match n {
            1 => Width::W1,
            2 => Width::W2,
            4 => Width::W4,
            _ => Width::W8,
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Width::W1 => "w1",
            Width::W2 => "w2",
            Width::W4 => "w4",
            Width::W8 => "w8",
        }
    }
}

/// Element types of the typed kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    F32,
    I64,
    Bool,
}

impl Ty {
    fn suffix(self) -> &'static str {
        match self {
            Ty::F32 => "f32",
            Ty::I64 => "i64",
            Ty::Bool => "bool",
        }
    }
}

/// Every kernel the backend launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Binary(Ty),
    /// f32 Binary, four contiguous outputs per thread (float4 loads and stores).
    Binary4,
    Unary(Ty),
    /// f32 Unary, four elements per thread.
    Unary4,
    Compare(Ty),
    Where(Width),
    Cast,
    /// f32 to bf16 / fp16, four elements per thread (the operands of reduced-precision products).
    CastHalf4,
    Reduce(Ty),
    CumSum(Ty),
    Softmax,
    RmsNorm,
    RmsNormRows,
    Gather(Width),
    Copy(Width),
    WriteBytes,
    /// Rows written at a token count read from device memory (fixed-capacity caches).
    WriteRows,
    /// Holds the stream while the profiler enqueues an op.
    Spin,
    Range,
    /// Positions offset by a token count read from device memory.
    RangePast,
    Trilu(Width),
    TopK,
    CausalConv,
    CausalConvState,
    Gdn,
    GdnChunkPrep,
    GdnChunkState,
    GdnChunkOut,
    Attention,
    AttentionTiled,
    /// Tensor-core prefill attention over bf16 (false) or fp16 (true) operands.
    AttentionMma(bool),
    /// One query over a long cache, split over keys; k and v as stored (fp32, or a K/V cache kept in
    /// bf16 / fp16).
    AttentionSplit(KvElem),
    AttentionCombine,
    Rope,
    IndexerScores,
    IndexerScoresRows,
    IndexerTopK,
    IndexerTopKRank,
    SparseAttention,
    SparseAttentionTiled,
    SparseCombine,
}

impl Kernel {
    /// Every kernel, with each variant it is instantiated for.
    pub fn all() -> Vec<Kernel> {
        let mut v = vec![
            Kernel::Binary(Ty::F32),
            Kernel::Binary(Ty::I64),
            Kernel::Binary4,
            Kernel::Unary(Ty::F32),
            Kernel::Unary(Ty::I64),
            Kernel::Unary4,
            Kernel::Compare(Ty::F32),
            Kernel::Compare(Ty::I64),
            Kernel::Compare(Ty::Bool),
            Kernel::Cast,
            Kernel::CastHalf4,
            Kernel::Reduce(Ty::F32),
            Kernel::Reduce(Ty::I64),
            Kernel::CumSum(Ty::F32),
            Kernel::CumSum(Ty::I64),
            Kernel::Softmax,
            Kernel::RmsNorm,
            Kernel::RmsNormRows,
            Kernel::WriteBytes,
            Kernel::WriteRows,
            Kernel::Spin,
            Kernel::Range,
            Kernel::RangePast,
            Kernel::TopK,
            Kernel::CausalConv,
            Kernel::CausalConvState,
            Kernel::Gdn,
            Kernel::GdnChunkPrep,
            Kernel::GdnChunkState,
            Kernel::GdnChunkOut,
            Kernel::Attention,
            Kernel::AttentionTiled,
            Kernel::AttentionMma(false),
            Kernel::AttentionMma(true),
            Kernel::AttentionSplit(KvElem::F32),
            Kernel::AttentionSplit(KvElem::Bf16),
            Kernel::AttentionSplit(KvElem::F16),
            Kernel::AttentionCombine,
            Kernel::Rope,
            Kernel::IndexerScores,
            Kernel::IndexerScoresRows,
            Kernel::IndexerTopK,
            Kernel::IndexerTopKRank,
            Kernel::SparseAttention,
            Kernel::SparseAttentionTiled,
            Kernel::SparseCombine,
        ];
        for w in Width::ALL {
            v.extend([Kernel::Where(w), Kernel::Gather(w), Kernel::Copy(w), Kernel::Trilu(w)]);
        }
        v
    }

    /// The file that defines the kernel.
    pub fn file(self) -> KernelFile {
        match self {
            Kernel::Binary(_) | Kernel::Binary4 | Kernel::Unary(_) | Kernel::Unary4 | Kernel::Compare(_) | Kernel::Where(_) | Kernel::Cast | Kernel::CastHalf4 => KernelFile::Elementwise,
            Kernel::Reduce(_) | Kernel::CumSum(_) => KernelFile::Reduce,
            Kernel::Softmax => KernelFile::Softmax,
            Kernel::RmsNorm | Kernel::RmsNormRows => KernelFile::RmsNorm,
            Kernel::Gather(_) => KernelFile::Gather,
            Kernel::Copy(_) | Kernel::WriteBytes | Kernel::WriteRows | Kernel::Spin => KernelFile::Layout,
            Kernel::Range | Kernel::RangePast | Kernel::Trilu(_) | Kernel::TopK => KernelFile::Index,
            Kernel::CausalConv | Kernel::CausalConvState => KernelFile::CausalConv,
            Kernel::Gdn | Kernel::GdnChunkPrep | Kernel::GdnChunkState | Kernel::GdnChunkOut => KernelFile::Gdn,
            Kernel::Attention | Kernel::AttentionTiled | Kernel::AttentionMma(_) | Kernel::AttentionSplit(_) | Kernel::AttentionCombine => KernelFile::Attention,
            Kernel::Rope => KernelFile::Rope,
            Kernel::IndexerScores
            | Kernel::IndexerScoresRows
            | Kernel::IndexerTopK
            | Kernel::IndexerTopKRank
            | Kernel::SparseAttention
            | Kernel::SparseAttentionTiled
            | Kernel::SparseCombine => KernelFile::Sparse,
        }
    }

    /// The kernel's symbol: `lt2_<name>_<variant>` (the one place names are formed).
    pub fn symbol(self) -> String {
        let (name, variant) = match self {
            Kernel::Binary(t) => ("binary", t.suffix()),
            Kernel::Unary(t) => ("unary", t.suffix()),
            Kernel::Binary4 => ("binary4", "f32"),
            Kernel::Unary4 => ("unary4", "f32"),
            Kernel::Compare(t) => ("compare", t.suffix()),
            Kernel::Where(w) => ("where", w.suffix()),
            Kernel::Cast => ("cast", ""),
            Kernel::CastHalf4 => ("cast_half4", ""),
            Kernel::Reduce(t) => ("reduce", t.suffix()),
            Kernel::CumSum(t) => ("cumsum", t.suffix()),
            Kernel::Softmax => ("softmax", "f32"),
            Kernel::RmsNorm => ("rms_norm", "f32"),
            Kernel::RmsNormRows => ("rms_norm_rows", "f32"),
            Kernel::Gather(w) => ("gather", w.suffix()),
            Kernel::Copy(w) => ("copy", w.suffix()),
            Kernel::WriteBytes => ("write_bytes", ""),
            Kernel::WriteRows => ("write_rows", "w4"),
            Kernel::Spin => ("spin", ""),
            Kernel::Range => ("range", "i64"),
            Kernel::RangePast => ("range_past", "i64"),
            Kernel::Trilu(w) => ("trilu", w.suffix()),
            Kernel::TopK => ("topk", "f32"),
            Kernel::CausalConv => ("causal_conv", "f32"),
            Kernel::CausalConvState => ("causal_conv_state", "f32"),
            Kernel::Gdn => ("gdn", "f32"),
            Kernel::GdnChunkPrep => ("gdn_chunk_prep", "f32"),
            Kernel::GdnChunkState => ("gdn_chunk_state", "f32"),
            Kernel::GdnChunkOut => ("gdn_chunk_out", "f32"),
            Kernel::Attention => ("attention", "f32"),
            Kernel::AttentionTiled => ("attention_tiled", "f32"),
            Kernel::AttentionMma(f16) => ("attention_mma", if f16 { "f16" } else { "bf16" }),
            Kernel::AttentionSplit(e) => ("attention_split", e.suffix()),
            Kernel::AttentionCombine => ("attention_combine", "f32"),
            Kernel::Rope => ("rope", "f32"),
            Kernel::IndexerScores => ("indexer_scores", "f32"),
            Kernel::IndexerScoresRows => ("indexer_scores_rows", "f32"),
            Kernel::IndexerTopK => ("indexer_topk", "f32"),
            Kernel::IndexerTopKRank => ("indexer_topk_rank", "f32"),
            Kernel::SparseAttention => ("sparse_attention", "f32"),
            Kernel::SparseAttentionTiled => ("sparse_attention_tiled", "f32"),
            Kernel::SparseCombine => ("sparse_combine", "f32"),
        };
        if variant.is_empty() {
            format!("lt2_{name}")
        } else {
            format!("lt2_{name}_{variant}")
        }
    }
}

/// NVRTC options every file is compiled with (besides the architecture). Full-precision
/// division and square roots (NVRTC's defaults) keep fp32 results within rounding of the CPU.
pub const OPTIONS: &[&str] = &["--std=c++17"];

/// Compiles one file for `arch` (e.g. `sm_90a`), with extra options.
pub fn compile_file(f: KernelFile, arch: &str, extra: &[&str]) -> Result<nvrtc::Compiled, NvrtcError> {
    let mut opts: Vec<&str> = OPTIONS.to_vec();
    opts.extend_from_slice(extra);
    nvrtc::compile(f.file_name(), f.source(), &[("common.cuh", COMMON)], arch, &opts)
}

/// The disk cache of compiled kernels.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LT2C_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("lt2c"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lt2c"))
}

fn cache_key(f: KernelFile, arch: &str, nvrtc_version: (i32, i32)) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [COMMON, f.source(), arch, &OPTIONS.join(" "), &format!("{nvrtc_version:?}")] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    let ext = if nvrtc::is_virtual(arch) { "ptx" } else { "cubin" };
    format!("{}-{arch}-{:032x}.{ext}", f.file_name().trim_end_matches(".cu"), h.digest128())
}

/// One file compiled for `arch` (`sm_XX`: the cubin; `compute_XX`: the PTX), from the disk cache
/// when it holds it; a fresh compile is stored there (best effort).
pub fn compile_cached(f: KernelFile, arch: &str) -> Result<Vec<u8>, NvrtcError> {
    let version = nvrtc::available().map(|a| a.1).unwrap_or((0, 0));
    let path = cache_dir().map(|d| d.join(cache_key(f, arch, version)));
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return Ok(bytes);
    }
    let image = compile_file(f, arch, &[])?.image().to_vec();
    if let Some(p) = path {
        // Best effort: write then rename, so a concurrent reader never sees half a file.
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if p.parent().map(std::fs::create_dir_all).map(|r| r.is_ok()).unwrap_or(false) && std::fs::write(&tmp, &image).is_ok() {
            let _ = std::fs::rename(&tmp, &p);
        }
    }
    Ok(image)
}

/// Cubins of every file for `arch`, compiled once per process (and reused from the disk cache).
pub fn cubins(arch: &str) -> Result<Arc<HashMap<KernelFile, Vec<u8>>>, NvrtcError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<HashMap<KernelFile, Vec<u8>>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(arch) {
        return Ok(c.clone());
    }
    let results: Vec<Result<(KernelFile, Vec<u8>), NvrtcError>> = std::thread::scope(|s| {
        let handles: Vec<_> = KernelFile::ALL.iter().map(|&f| s.spawn(move || compile_cached(f, arch).map(|b| (f, b)))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(NvrtcError { file: "?".into(), arch: arch.into(), log: "compiler thread panicked".into() }))).collect()
    });
    let mut map = HashMap::new();
    for r in results {
        let (f, c) = r?;
        map.insert(f, c);
    }
    let map = Arc::new(map);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(arch.to_string(), map.clone());
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ptxas's `-v` report: the largest spill store / load byte count it names.
    fn max_spill(log: &str) -> u64 {
        let mut worst = 0;
        for line in log.lines().filter(|l| l.contains("spill")) {
            let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            for w in words.windows(3) {
                if w[1] == "bytes" && w[2] == "spill" {
                    worst = worst.max(w[0].parse().unwrap_or(0));
                }
            }
        }
        worst
    }

    /// Every kernel file compiles with NVRTC for sm_80 and sm_90a, ptxas reports no register
    /// spills, and the cubin defines every symbol the backend launches. Skipped (with the
    /// reason) where NVRTC cannot be loaded.
    #[test]
    fn every_kernel_file_compiles_for_sm80_and_sm90a() {
        match nvrtc::available() {
            Ok((path, v)) => eprintln!("NVRTC {}.{} from {}", v.0, v.1, path.display()),
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
        let jobs: Vec<(KernelFile, &str)> = ["sm_80", "sm_90a"].iter().flat_map(|&a| KernelFile::ALL.iter().map(move |&f| (f, a))).collect();
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = jobs.iter().map(|&(f, arch)| s.spawn(move || (f, arch, compile_file(f, arch, &["-Xptxas=-v"])))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut failures = Vec::new();
        for (f, arch, r) in results {
            match r {
                Err(e) => failures.push(e.to_string()),
                Ok(c) => {
                    if max_spill(&c.log) > 0 {
                        failures.push(format!("{} for {arch}: ptxas reports register spills:\n{}", f.file_name(), c.log));
                    }
                    for k in Kernel::all().into_iter().filter(|k| k.file() == f) {
                        let sym = format!("\0{}\0", k.symbol());
                        if !c.cubin.windows(sym.len()).any(|w| w == sym.as_bytes()) {
                            failures.push(format!("{} for {arch}: the cubin has no symbol {}", f.file_name(), k.symbol()));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    #[test]
    fn symbols_are_unique_and_every_file_has_a_kernel() {
        let syms: Vec<String> = Kernel::all().iter().map(|k| k.symbol()).collect();
        let mut sorted = syms.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), syms.len(), "duplicate kernel symbols: {syms:?}");
        for f in KernelFile::ALL {
            assert!(Kernel::all().iter().any(|k| k.file() == f), "{} defines no kernel", f.file_name());
            assert!(f.source().contains("#include \"common.cuh\""), "{} does not include common.cuh", f.file_name());
        }
        assert_eq!(Kernel::Copy(Width::W4).symbol(), "lt2_copy_w4");
        assert_eq!(Kernel::Cast.symbol(), "lt2_cast");
    }

    #[test]
    fn spill_report_is_parsed() {
        let log = "ptxas         .     256 bytes stack frame, 12 bytes spill stores, 0 bytes spill loads";
        assert_eq!(max_spill(log), 12);
        assert_eq!(max_spill("ptxas info: 0 bytes spill stores, 0 bytes spill loads"), 0);
    }
}
