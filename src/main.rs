//! lt2c: compile looped linear-time transformers from ONNX and run them.
//!
//! `lt2c MODEL.onnx -o MODEL.bin` compiles; `lt2c run MODEL.bin --inputs IN.npz --outputs
//! OUT.npz` runs; `lt2c inspect MODEL.bin` describes a compiled model. Built without the
//! default `compiler` feature, lt2c is the runtime-only binary (run, inspect).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
#[cfg(feature = "compiler")]
use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use lt2_runtime::backend::Backend;
use lt2_runtime::cpu::Cpu;
use lt2_runtime::cuda::Cuda;
use lt2_runtime::device::{self, DeviceChoice, DeviceRequest};
use lt2_runtime::exec::{op_name, Model};
use lt2_runtime::format::ModelFile;
use lt2_runtime::npz;
use lt2_runtime::plan::DType;

#[derive(Parser)]
#[command(name = "lt2c", version, about = "Compiler and runtime for looped linear-time transformers (LT2, Ouro) from ONNX",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  lt2c model.onnx -o model.bin\n  lt2c run model.bin --inputs in.npz --outputs out.npz\n  lt2c inspect model.bin")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[cfg(feature = "compiler")]
    #[command(flatten)]
    compile: CompileArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile an ONNX model to model.bin (the default command).
    #[cfg(feature = "compiler")]
    Compile(CompileArgs),
    /// Run a compiled model on inputs from an .npz file.
    Run(RunArgs),
    /// Generate tokens from a prompt: prefill, then decode one token at a time.
    Generate(GenerateArgs),
    /// Describe a compiled model: signature, plan, weights, format version.
    Inspect {
        /// The model.bin to describe.
        model: PathBuf,
    },
    /// Run the pass pipeline on lt2 MLIR text and print the result.
    #[cfg(feature = "compiler")]
    Opt {
        /// An .mlir file (lt2 dialect).
        input: PathBuf,
        #[command(flatten)]
        passes: PassArgs,
    },
}

#[cfg(feature = "compiler")]
#[derive(Args, Default)]
struct CompileArgs {
    /// The ONNX model to compile.
    input: Option<PathBuf>,
    /// Where to write model.bin (default: the input with extension .bin).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print IR instead of writing model.bin: `mlir` (after the pass pipeline) or `mlir-imported`.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// Do not embed CUDA kernels (cubins for sm_80 and sm_90a, PTX for compute_80); a GPU host
    /// then compiles them with NVRTC when the model loads.
    #[arg(long)]
    no_kernels: bool,
    #[command(flatten)]
    passes: PassArgs,
}

#[cfg(feature = "compiler")]
#[derive(Args, Default, Clone)]
struct PassArgs {
    /// Print the IR after every pass (to stderr).
    #[arg(long)]
    print_ir_after_all: bool,
    /// Print the IR after the named pass (to stderr).
    #[arg(long)]
    print_ir_after: Option<String>,
    /// Run only the first N optional passes (to find the pass behind a mismatch).
    #[arg(long)]
    opt_bisect_limit: Option<usize>,
    /// Skip every optional pass.
    #[arg(long)]
    no_opt: bool,
    /// Print each pass's rewrite count and time.
    #[arg(long)]
    pass_timing: bool,
    /// Precision of matrix-product weights and operands (accumulation, activations between ops,
    /// norms and recurrent state stay fp32). bf16/fp16 halve weight memory and use tensor cores.
    /// Default: bf16 when most of the ONNX's float initializers are bf16 (a bf16 export), else
    /// fp32 (an fp16 export gets a hint to pass --dtype fp16).
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
}

#[cfg(feature = "compiler")]
#[derive(Clone, Copy, Default, ValueEnum)]
enum DtypeArg {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

#[cfg(feature = "compiler")]
#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Mlir,
    MlirImported,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("prompt").required(true).args(["prompt_ids", "prompt_file"])))]
struct GenerateArgs {
    /// The compiled model.
    model: PathBuf,
    /// Prompt token ids, comma separated (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Vec<i64>,
    /// A file of prompt token ids, separated by commas or whitespace: for prompts longer than a
    /// command line holds (about 20K ids).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// How many tokens to generate.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// Run this many copies of the prompt as one batch (throughput measurement): the first
    /// copy samples, every copy is fed its tokens, and tokens and logits are reported for it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens a sequence may hold (prompt + generated).
    #[arg(long, default_value_t = 4096)]
    max_context: usize,
    /// Approximate: share one KV cache across loops (T-fold less KV memory).
    #[arg(long)]
    share_kv_across_loops: bool,
    /// Ouro's early exit: stop looping a token once its cumulative exit probability reaches this
    /// (0 < t <= 1; 1 runs every loop and is exact). Needs a model with an exit gate.
    #[arg(long, default_value_t = 1.0)]
    exit_threshold: f32,
    /// Which backend runs the model.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Run the prefill this many times first, untimed, each in a session of its own: the first
    /// prefill of a process pays one-time costs (cuBLASLt's algorithm choice, loading kernels), so
    /// `prefill_ms` is then a warm prefill's time; `--json` reports the first as `prefill_cold_ms`.
    #[arg(long, default_value_t = 0)]
    warmup_prefills: u32,
    /// Write the logits that chose each new token to this .npz (array `logits`, [new_tokens, vocab]).
    #[arg(long)]
    logits_out: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    /// The compiled model.
    model: PathBuf,
    /// Inputs, keyed by the ONNX graph's input names.
    #[arg(long)]
    inputs: PathBuf,
    /// Where to write the outputs, keyed by the ONNX graph's output names.
    #[arg(long)]
    outputs: PathBuf,
    /// Which backend runs the model.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Run the model this many times and report the fastest run (the first one includes
    /// one-time set-up such as cuBLASLt's algorithm choice).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        #[cfg(feature = "compiler")]
        Some(Cmd::Compile(a)) => compile(a),
        Some(Cmd::Run(a)) => run(a),
        Some(Cmd::Generate(a)) => generate(a),
        Some(Cmd::Inspect { model }) => inspect(&model),
        #[cfg(feature = "compiler")]
        Some(Cmd::Opt { input, passes }) => opt(&input, &passes),
        #[cfg(feature = "compiler")]
        None => compile(cli.compile),
        #[cfg(not(feature = "compiler"))]
        None => Err(anyhow::anyhow!("this lt2c is the runtime-only build: use `lt2c run` or `lt2c inspect`")),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(feature = "compiler")]
fn pipeline_opts(p: &PassArgs) -> lt2_passes::PipelineOptions {
    lt2_passes::PipelineOptions {
        print_after_all: p.print_ir_after_all,
        print_after: p.print_ir_after.clone(),
        opt_bisect_limit: p.opt_bisect_limit,
        no_opt: p.no_opt,
        matmul_weights: match p.dtype.unwrap_or_default() {
            DtypeArg::Fp32 => None,
            DtypeArg::Bf16 => Some(lt2_ir::Elem::Bf16),
            DtypeArg::Fp16 => Some(lt2_ir::Elem::F16),
        },
    }
}

#[cfg(feature = "compiler")]
fn run_passes(module: &mut melior::ir::Module, p: &PassArgs) -> Result<()> {
    let stats = lt2_passes::run_pipeline(module, &pipeline_opts(p), &mut |pass, ir| {
        eprintln!("// ----- IR after {pass} -----\n{ir}");
    })?;
    if p.pass_timing {
        for (name, n, t) in stats {
            eprintln!("pass {name:<24} {n:>5} rewrites {:>8.3} ms", t.as_secs_f64() * 1e3);
        }
    }
    Ok(())
}

#[cfg(feature = "compiler")]
fn compile(mut a: CompileArgs) -> Result<()> {
    let Some(input) = a.input else {
        bail!("no model given: `lt2c MODEL.onnx -o MODEL.bin` (see `lt2c --help`)");
    };
    let t0 = std::time::Instant::now();
    let size = std::fs::metadata(&input).map(|m| m.len()).with_context(|| format!("cannot read {}", input.display()))?;
    let big = size > (64 << 20);
    if big {
        eprintln!("importing {} ({:.0} MB)...", input.display(), size as f64 / 1e6);
    }
    let imported = lt2_frontend::import_file(&input).with_context(|| format!("importing {}", input.display()))?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    if a.passes.dtype.is_none() {
        // bf16 exports get bf16 products; fp16 ones a hint only: fp16 products have not run on
        // a GPU yet (bf16 ones are in scripts/gpu-check.sh).
        match imported.half_weights {
            Some(lt2_frontend::HalfType::Bf16) => {
                a.passes.dtype = Some(DtypeArg::Bf16);
                eprintln!("the ONNX weights are bf16: matrix products in bf16 (--dtype bf16); pass --dtype fp32 for fp32 products");
            }
            Some(lt2_frontend::HalfType::F16) => {
                eprintln!("note: the ONNX weights are fp16, computed in fp32 here; --dtype fp16 stores them in half the bytes and runs the matrix products in fp16")
            }
            None => {}
        }
    }
    let t_import = t0.elapsed();
    let context = lt2_ir::new_context()?;
    let mut module = lt2_ir::parse_module(&context, &imported.mlir).context("the importer produced IR that does not verify (an lt2c bug)")?;
    lt2_ir::verify::verify_module(&module, Some("import"))?;
    if let Some(Emit::MlirImported) = a.emit {
        return emit(&module.as_operation().to_string());
    }
    // The kernels do not depend on the model: they compile while it is optimised and lowered.
    let kernels = Joined((a.emit.is_none() && !a.no_kernels).then(|| std::thread::spawn(lt2_codegen::compile_kernels)));
    let t1 = std::time::Instant::now();
    run_passes(&mut module, &a.passes)?;
    if let Some(Emit::Mlir) = a.emit {
        return emit(&module.as_operation().to_string());
    }
    let t_passes = t1.elapsed();
    let out = a.output.unwrap_or_else(|| input.with_extension("bin"));
    if big {
        eprintln!("imported in {:.1} s; passes {:.2} s; writing {}...", t_import.as_secs_f64(), t_passes.as_secs_f64(), out.display());
    }
    let images = match kernels.join() {
        None => Vec::new(),
        Some(Err(_)) => bail!("the kernel compiler thread panicked"),
        Some(Ok(r)) => match r.context("compiling the CUDA kernels")? {
            lt2_codegen::KernelBuild::Unavailable(why) => {
                eprintln!("warning: CUDA kernels not embedded; a GPU host will JIT-compile them with NVRTC at load: {why}");
                Vec::new()
            }
            lt2_codegen::KernelBuild::Compiled { images, compiler, seconds } => {
                let bytes: usize = images.iter().map(|k| k.bytes.len()).sum();
                let targets: Vec<String> = lt2_runtime::cuda::prebuilt::targets().iter().map(|(a, k)| format!("{a} {k:?}").to_lowercase()).collect();
                eprintln!("kernels: {} images ({}) with {compiler}, {:.1} MiB, {seconds:.2} s", images.len(), targets.join(", "), bytes as f64 / (1 << 20) as f64);
                images
            }
        },
    };
    let (size, notes) = lt2_codegen::write_model(&module, &imported.weights, &images, &out)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "compiled {} -> {} ({:.1} MiB, {} weights, {:.2} s)",
        input.display(),
        out.display(),
        size as f64 / (1 << 20) as f64,
        imported.weights.entries().len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A thread joined when dropped, on every path out of `compile`: exiting the process while it
/// loads or runs NVRTC can deadlock in the dynamic loader.
#[cfg(feature = "compiler")]
struct Joined<T>(Option<std::thread::JoinHandle<T>>);

#[cfg(feature = "compiler")]
impl<T> Joined<T> {
    /// Waits for the thread; None when none was started.
    fn join(mut self) -> Option<std::thread::Result<T>> {
        self.0.take().map(|h| h.join())
    }
}

#[cfg(feature = "compiler")]
impl<T> Drop for Joined<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

#[cfg(feature = "compiler")]
fn opt(input: &Path, p: &PassArgs) -> Result<()> {
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let context = lt2_ir::new_context()?;
    let mut module = lt2_ir::parse_module(&context, &text).with_context(|| format!("parsing {}", input.display()))?;
    lt2_ir::verify::verify_module(&module, None)?;
    run_passes(&mut module, p)?;
    emit(&module.as_operation().to_string())
}

/// Writes text to stdout; a closed pipe (`| head`) is not an error.
#[cfg(feature = "compiler")]
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The backend a run uses, opened.
enum Opened {
    Cpu(DeviceChoice),
    Cuda(Cuda, DeviceChoice),
}

/// Chooses and opens the backend for `file`: `--device cuda` fails with the reason when the GPU
/// cannot be used; `auto` falls back to the CPU (saying why) when a GPU is present but fails to
/// start or to load the kernels. The reason says where the kernels came from.
fn open_backend(d: DeviceArg, file: &ModelFile) -> Result<Opened> {
    let choice = device::choose(device_request(d))?;
    match choice.backend {
        device::Backend::Cpu => Ok(Opened::Cpu(choice)),
        device::Backend::Cuda => match Cuda::new().and_then(|cu| cu.load_kernels(Some(file)).map(str::to_string).map(|k| (cu, k))) {
            Ok((cu, kernels)) => Ok(Opened::Cuda(cu, DeviceChoice { reason: format!("{}; {kernels}", choice.reason), ..choice })),
            Err(e) if matches!(d, DeviceArg::Auto) => {
                Ok(Opened::Cpu(DeviceChoice { backend: device::Backend::Cpu, reason: format!("auto: the GPU could not be used: {e}") }))
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn run(a: RunArgs) -> Result<()> {
    let file = ModelFile::open(&a.model)?;
    match open_backend(a.device, &file)? {
        Opened::Cpu(choice) => run_on(Cpu, file, &choice, &a),
        Opened::Cuda(cu, choice) => run_on(cu, file, &choice, &a),
    }
}

fn run_on<B: Backend>(backend: B, file: ModelFile, choice: &DeviceChoice, a: &RunArgs) -> Result<()> {
    let model = Model::load(backend, file)?;
    let inputs: HashMap<_, _> = npz::read_npz(&a.inputs)?;
    let unused = lt2_runtime::exec::unused_inputs(&model.file().manifest.inputs, &inputs);
    if !unused.is_empty() {
        eprintln!("note: ignoring arrays that are not model inputs: {}", unused.join(", "));
    }
    let mut best = f64::INFINITY;
    let mut outs = Vec::new();
    for _ in 0..a.repeat.max(1) {
        let t = std::time::Instant::now();
        outs = model.run(&inputs)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    npz::write_npz(&a.outputs, &outs)?;
    for (name, t) in &outs {
        eprintln!("output {name}: {:?} {:?}", t.dtype(), t.shape);
    }
    let runs = if a.repeat > 1 { format!(" (fastest of {})", a.repeat) } else { String::new() };
    eprintln!("ran on {} ({}) in {best:.2} ms{runs}; wrote {}", choice.backend.name(), choice.reason, a.outputs.display());
    Ok(())
}

fn device_request(d: DeviceArg) -> DeviceRequest {
    match d {
        DeviceArg::Cpu => DeviceRequest::Cpu,
        DeviceArg::Cuda => DeviceRequest::Cuda,
        DeviceArg::Auto => DeviceRequest::Auto,
    }
}

fn generate(mut a: GenerateArgs) -> Result<()> {
    if let Some(p) = &a.prompt_file {
        a.prompt_ids = read_prompt_file(p)?;
    }
    let file = ModelFile::open(&a.model)?;
    match open_backend(a.device, &file)? {
        Opened::Cpu(choice) => generate_on(Cpu, file, &choice, &a),
        Opened::Cuda(cu, choice) => generate_on(cu, file, &choice, &a),
    }
}

/// Token ids from a file, separated by commas or whitespace.
fn read_prompt_file(p: &std::path::Path) -> Result<Vec<i64>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(p).with_context(|| format!("reading the prompt file {}", p.display()))?;
    let ids = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<i64>().with_context(|| format!("{}: `{t}` is not a token id", p.display())))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        anyhow::bail!("{}: no token ids", p.display());
    }
    Ok(ids)
}

fn generate_on<B: Backend>(backend: B, file: ModelFile, choice: &DeviceChoice, a: &GenerateArgs) -> Result<()> {
    use lt2_runtime::sampling::{sample, Rng, Sampling};
    use lt2_runtime::session::{Session, SessionOptions};
    let model = Model::load(backend, file)?;
    let opts = SessionOptions { max_context: a.max_context, share_kv_across_loops: a.share_kv_across_loops, exit_threshold: a.exit_threshold };
    let nb = a.batch as usize;
    let mut cold_ms = None;
    for _ in 0..a.warmup_prefills {
        let t = std::time::Instant::now();
        Session::new(&model, opts.clone())?.prefill_last(&vec![a.prompt_ids.clone(); nb])?;
        cold_ms.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut session = Session::new(&model, opts)?;
    let report = session.cache_report();
    if !a.json {
        eprintln!(
            "caches: {} bytes per sequence + {} bytes per token ({:.1} MiB at {} tokens){}",
            report.fixed_per_seq,
            report.per_token_per_seq,
            report.total(1) as f64 / (1 << 20) as f64,
            report.max_context,
            if a.share_kv_across_loops { ", KV shared across loops (approximate)" } else { "" }
        );
    }
    let s = Sampling { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p };
    let mut rng = Rng::new(a.seed);
    let t0 = std::time::Instant::now();
    let mut last = session.prefill_last(&vec![a.prompt_ids.clone(); nb])?.swap_remove(0);
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let vocab = last.len();
    let mut tokens = Vec::new();
    let mut chosen_logits: Vec<f32> = Vec::new();
    let t1 = std::time::Instant::now();
    // Each decode step's wall time, and how many steps are warm-up: the first (one-time set-up:
    // GEMM plans for one-row shapes, fixed-capacity caches) and, where steps are recorded
    // (CUDA graphs), the second, which records. The steady rate is the mean of the later steps.
    let mut step_ms = Vec::new();
    let warmup = if session.decode_recorded() { 2 } else { 1 };
    for i in 0..a.max_new_tokens {
        let tok = sample(&last, &s, &mut rng) as i64;
        tokens.push(tok);
        chosen_logits.extend_from_slice(&last);
        if i + 1 == a.max_new_tokens {
            break;
        }
        let t = std::time::Instant::now();
        last = session.decode(&vec![tok; nb])?.remove(0);
        step_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let steps = a.max_new_tokens.saturating_sub(1).max(1);
    let decode_ms = t1.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let steady_ms = (step_ms.len() > warmup).then(|| step_ms[warmup..].iter().sum::<f64>() / (step_ms.len() - warmup) as f64);
    let warmup_ms: Vec<String> = step_ms.iter().take(warmup).map(|m| format!("{m:.3}")).collect();
    if let Some(p) = &a.logits_out {
        let t = lt2_runtime::tensor::Tensor::f32(vec![tokens.len(), vocab], chosen_logits);
        npz::write_npz(p, &[("logits".into(), t)])?;
    }
    let loops = session.loop_iterations();
    if a.json {
        let toks: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        let per_step = steady_ms.unwrap_or(decode_ms);
        let batch = if nb > 1 { format!(", \"batch\": {nb}, \"decode_tokens_per_s\": {:.3}", nb as f64 * 1e3 / per_step) } else { String::new() };
        let steady = steady_ms
            .map(|m| format!(", \"decode_ms_steady\": {m:.3}, \"decode_warmup_ms\": [{}]", warmup_ms.join(", ")))
            .unwrap_or_default();
        let cold = cold_ms.map(|m| format!(", \"prefill_cold_ms\": {m:.3}")).unwrap_or_default();
        let exit = if a.exit_threshold < 1.0 { format!(", \"loop_iterations_run\": {}, \"loop_iterations_skipped\": {}", loops.run, loops.skipped) } else { String::new() };
        let memory = model
            .backend()
            .memory_usage()
            .map(|m| format!(", \"device_memory_peak_bytes\": {}, \"device_memory_mapped_bytes\": {}", m.peak_bytes, m.mapped_bytes))
            .unwrap_or_default();
        println!(
            "{{\"tokens\": [{}], \"prefill_ms\": {prefill_ms:.3}{cold}, \"decode_ms_per_token\": {decode_ms:.3}, \"device\": \"{}\", \"decode_recorded\": {}{steady}{batch}{exit}{memory}}}",
            toks.join(", "),
            choice.backend.name(),
            session.decode_recorded()
        );
    } else {
        println!("{}", tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" "));
        eprintln!(
            "{}prompt {} tokens, prefill {prefill_ms:.2} ms{}; {} new tokens, {decode_ms:.2} ms per step; ran on {} ({})",
            if nb > 1 { format!("batch {nb}: ") } else { String::new() },
            a.prompt_ids.len(),
            cold_ms.map(|m| format!(" (warm; the first prefill of the process took {m:.2} ms)")).unwrap_or_default(),
            tokens.len(),
            choice.backend.name(),
            choice.reason
        );
        if a.exit_threshold < 1.0 {
            eprintln!("early exit at {}: {} loop iterations run, {} skipped", a.exit_threshold, loops.run, loops.skipped);
        }
        if tokens.len() > 1 {
            eprintln!("{}", session.decode_mode());
        }
    }
    Ok(())
}

/// The embedded kernel images in one line: `36 images, 1234567 bytes: 12 files; sm_80 cubin,
/// sm_90a cubin, compute_80 ptx (NVRTC 13.0)`.
fn kernel_summary(images: &[lt2_runtime::plan::KernelImage]) -> String {
    if images.is_empty() {
        return "none (a GPU host compiles them with NVRTC at load)".into();
    }
    let mut targets: Vec<String> = Vec::new();
    let mut files: Vec<&str> = Vec::new();
    let mut compilers: Vec<&str> = Vec::new();
    for k in images {
        let kind = lt2_runtime::plan::ImageKind::try_from(k.kind).map(|k| format!("{k:?}").to_lowercase()).unwrap_or_else(|_| "unknown".into());
        let t = format!("{} {kind}", k.arch);
        if !targets.contains(&t) {
            targets.push(t);
        }
        if !files.contains(&k.file.as_str()) {
            files.push(&k.file);
        }
        if !compilers.contains(&k.compiler.as_str()) {
            compilers.push(&k.compiler);
        }
    }
    let bytes: u64 = images.iter().map(|k| k.nbytes).sum();
    format!("{} images, {bytes} bytes: {} files; {} ({})", images.len(), files.len(), targets.join(", "), compilers.join(", "))
}

fn inspect(path: &Path) -> Result<()> {
    let f = ModelFile::open(path)?;
    let m = &f.manifest;
    println!("model:          {}", path.display());
    println!("format version: {}", f.format_version);
    println!("producer:       {}", m.producer);
    let sig = |s: &lt2_runtime::plan::TensorSig| format!("{} {:?} [{}]", s.name, DType::try_from(s.dtype).unwrap_or(DType::F32), s.dims.join(", "));
    for s in &m.inputs {
        println!("input:          {}", sig(s));
    }
    for s in &m.outputs {
        println!("output:         {}", sig(s));
    }
    println!("weights:        {} tensors, {} bytes", m.weights.len(), m.weights.iter().map(|w| w.nbytes).sum::<u64>());
    println!("kernels:        {}", kernel_summary(&m.kernels));
    for (i, g) in m.graphs.iter().enumerate() {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for s in &g.steps {
            *counts.entry(op_name(s)).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        println!("graph {i} `{}`: {} steps, {} values: {}", g.name, g.steps.len(), g.num_values, summary.join(", "));
    }
    match &m.decode {
        None => println!("decode:         no (not a token-ids -> logits model)"),
        Some(d) if !d.not_decodable.is_empty() => println!("decode:         no: {}", d.not_decodable),
        Some(d) => {
            // Cache bytes per sequence, weighted by the trip counts of enclosing loops.
            fn walk(gs: &[lt2_runtime::plan::Graph], g: usize, mult: u64, acc: &mut (u64, u64, u32)) {
                for s in &gs[g].steps {
                    if let Some(lt2_runtime::plan::Op::Loop(l)) = &s.op {
                        walk(gs, l.body as usize, mult * l.trip_count.max(0) as u64, acc);
                    }
                    if s.cache_slot != 0 {
                        acc.0 += s.cache_fixed_bytes * mult;
                        acc.1 += s.cache_token_bytes * mult;
                        acc.2 += mult as u32;
                    }
                }
            }
            let mut acc = (0, 0, 0);
            if !m.graphs.is_empty() {
                walk(&m.graphs, 0, 1, &mut acc);
            }
            println!(
                "decode:         yes ({} -> {}); {} caches, {} bytes per sequence + {} bytes per token",
                d.ids_input, d.logits_output, acc.2, acc.0, acc.1
            );
            let gate = m.graphs.iter().flat_map(|g| &g.steps).any(|s| matches!(&s.op, Some(lt2_runtime::plan::Op::Loop(l)) if l.exit_gate_scan.is_some()));
            if gate {
                println!("early exit:     yes (the loop has an exit gate; `generate --exit-threshold T`)");
            }
        }
    }
    if let Some(d) = &m.decode {
        for n in &d.notes {
            println!("note:           {n}");
        }
    }
    Ok(())
}
