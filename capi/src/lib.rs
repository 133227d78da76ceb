//! The C ABI of the runtime (`include/lt2.h`): what a deployment pipeline in Python or C needs
//! to run a compiled model.bin without the CLI — load it on the CPU or a GPU, open a decode
//! session, prefill prompts and decode tokens. Python wraps it with ctypes (`lt2.runtime`).
//! No call unwinds into the caller: errors, panics included, come back as a message.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use lt2_runtime::cpu::Cpu;
use lt2_runtime::cuda::Cuda;
use lt2_runtime::device::{self, DeviceRequest};
use lt2_runtime::exec::Model;
use lt2_runtime::format::ModelFile;
use lt2_runtime::plan::DType;
use lt2_runtime::session::{Session, SessionOptions};
use lt2_runtime::tensor::{Data, Tensor};

/// A model loaded on its backend.
pub struct Lt2Model {
    model: AnyModel,
    device: CString,
    /// 0 when the model is not a language model (no sessions).
    vocab: usize,
    /// The inputs and outputs as JSON (`lt2_model_signature`).
    signature: CString,
}

enum AnyModel {
    Cpu(Model<Cpu>),
    Cuda(Model<Cuda>),
}

/// A decode session over a model that outlives it (the header's contract).
pub struct Lt2Session {
    session: AnySession,
    vocab: usize,
}

enum AnySession {
    Cpu(Session<'static, Cpu>),
    Cuda(Session<'static, Cuda>),
}

/// Writes `msg` NUL-terminated into the caller's buffer (truncated to fit).
fn report(err: *mut c_char, err_len: usize, msg: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let bytes = msg.as_bytes();
    let n = bytes.len().min(err_len - 1);
    // SAFETY: the caller passes a buffer of err_len bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), err as *mut u8, n);
        *err.add(n) = 0;
    }
}

/// Runs `f`, turning an error or a panic into a message for the caller.
fn guarded<T>(err: *mut c_char, err_len: usize, f: impl FnOnce() -> Result<T, String>) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            report(err, err_len, &e);
            None
        }
        Err(p) => {
            let what = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown".into());
            report(err, err_len, &format!("internal error (panic): {what}"));
            None
        }
    }
}

fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("{what} is NULL"));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| format!("{what} is not UTF-8"))
}

/// Opens model.bin on "cpu", "cuda" or "auto".
#[no_mangle]
pub extern "C" fn lt2_model_open(path: *const c_char, device: *const c_char, err: *mut c_char, err_len: usize) -> *mut Lt2Model {
    guarded(err, err_len, || {
        let path = c_str(path, "path")?;
        let req = match c_str(device, "device")? {
            "cpu" => DeviceRequest::Cpu,
            "cuda" => DeviceRequest::Cuda,
            "auto" => DeviceRequest::Auto,
            d => return Err(format!("device `{d}`: expected cpu, cuda or auto")),
        };
        let file = ModelFile::open(Path::new(path)).map_err(|e| e.to_string())?;
        // A language model (token ids in, logits out) opens sessions; any model runs whole.
        let vocab = file.manifest.decode.as_ref().and_then(|info| file.manifest.outputs.iter().find(|o| o.name == info.logits_output)).and_then(|o| o.dims.last()).and_then(|d| d.parse::<usize>().ok()).unwrap_or(0);
        let signature = CString::new(signature_json(&file.manifest)).map_err(|e| e.to_string())?;
        let choice = device::choose(req).map_err(|e| e.to_string())?;
        let (model, reason) = match choice.backend {
            device::Backend::Cpu => (AnyModel::Cpu(Model::load(Cpu, file).map_err(|e| e.to_string())?), choice.reason),
            device::Backend::Cuda => {
                let cuda = Cuda::new().and_then(|cu| cu.load_kernels(Some(&file)).map(str::to_string).map(|k| (cu, k)));
                match cuda {
                    Ok((cu, kernels)) => (AnyModel::Cuda(Model::load(cu, file).map_err(|e| e.to_string())?), format!("{}; {kernels}", choice.reason)),
                    // As the CLI does: auto falls back to the CPU, saying why.
                    Err(e) if req == DeviceRequest::Auto => (AnyModel::Cpu(Model::load(Cpu, file).map_err(|e| e.to_string())?), format!("auto: the GPU could not be used: {e}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let backend = match model {
            AnyModel::Cpu(_) => "cpu",
            AnyModel::Cuda(_) => "cuda",
        };
        let device = CString::new(format!("{backend} ({reason})")).map_err(|e| e.to_string())?;
        Ok(Box::into_raw(Box::new(Lt2Model { model, device, vocab, signature })))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Frees a model (after its sessions).
#[no_mangle]
pub extern "C" fn lt2_model_free(m: *mut Lt2Model) {
    if !m.is_null() {
        // SAFETY: `m` came from lt2_model_open and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(m) })));
    }
}

/// The backend that runs the model and why.
#[no_mangle]
pub extern "C" fn lt2_model_device(m: *const Lt2Model) -> *const c_char {
    // SAFETY: `m` is a live model from lt2_model_open (or NULL).
    unsafe { m.as_ref() }.map_or(std::ptr::null(), |m| m.device.as_ptr())
}

/// The vocabulary size (0: not a language model).
#[no_mangle]
pub extern "C" fn lt2_model_vocab(m: *const Lt2Model) -> usize {
    // SAFETY: as above.
    unsafe { m.as_ref() }.map_or(0, |m| m.vocab)
}

/// Opens a decode session holding up to `max_context` tokens per sequence.
#[no_mangle]
pub extern "C" fn lt2_session_new(m: *mut Lt2Model, max_context: usize, err: *mut c_char, err_len: usize) -> *mut Lt2Session {
    lt2_session_new_with_exit(m, max_context, 1.0, err, err_len)
}

/// A session under Ouro's early exit: a token stops looping once its cumulative exit
/// probability reaches `exit_threshold` (1.0: every loop runs, exact).
#[no_mangle]
pub extern "C" fn lt2_session_new_with_exit(m: *mut Lt2Model, max_context: usize, exit_threshold: f32, err: *mut c_char, err_len: usize) -> *mut Lt2Session {
    guarded(err, err_len, || {
        // SAFETY: a live model that outlives the session (the header's contract).
        let m: &'static Lt2Model = unsafe { m.as_ref() }.ok_or("model is NULL")?;
        if m.vocab == 0 {
            return Err("this model has no token-ids input and logits output of a static vocabulary: it runs whole (lt2_model_run), not in sessions".into());
        }
        let opts = SessionOptions { max_context, exit_threshold, ..Default::default() };
        let session = match &m.model {
            AnyModel::Cpu(model) => AnySession::Cpu(Session::new(model, opts).map_err(|e| e.to_string())?),
            AnyModel::Cuda(model) => AnySession::Cuda(Session::new(model, opts).map_err(|e| e.to_string())?),
        };
        Ok(Box::into_raw(Box::new(Lt2Session { session, vocab: m.vocab })))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Frees a session.
#[no_mangle]
pub extern "C" fn lt2_session_free(s: *mut Lt2Session) {
    if !s.is_null() {
        // SAFETY: `s` came from lt2_session_new and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(s) })));
    }
}

/// Copies one logits row per sequence into `out` [rows * vocab].
fn write_rows(rows: &[Vec<f32>], vocab: usize, out: *mut f32) -> Result<(), String> {
    if out.is_null() {
        return Err("logits buffer is NULL".into());
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != vocab {
            return Err(format!("logits row of {} values, expected {vocab}", r.len()));
        }
        // SAFETY: the caller's buffer holds rows.len() * vocab floats.
        unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), out.add(i * vocab), vocab) };
    }
    Ok(())
}

/// Prefills `n_seqs` prompts of `len` tokens; writes each one's last logits.
#[no_mangle]
pub extern "C" fn lt2_session_prefill(s: *mut Lt2Session, ids: *const i64, n_seqs: usize, len: usize, logits: *mut f32, err: *mut c_char, err_len: usize) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: a live session.
        let s = unsafe { s.as_mut() }.ok_or("session is NULL")?;
        if ids.is_null() || n_seqs == 0 || len == 0 {
            return Err("prefill needs at least one prompt of at least one token".into());
        }
        // SAFETY: the caller's ids hold n_seqs * len tokens.
        let flat = unsafe { std::slice::from_raw_parts(ids, n_seqs * len) };
        prefill_rows(s, flat.chunks(len).map(<[i64]>::to_vec).collect(), logits)
    })
    .map_or(1, |_| 0)
}

/// Prefills `n_seqs` prompts of different lengths: prompt i is the next `lens[i]` tokens of
/// `ids`. Prompts of one length run as one batch, the lengths one after another.
#[no_mangle]
pub extern "C" fn lt2_session_prefill_ragged(s: *mut Lt2Session, ids: *const i64, lens: *const usize, n_seqs: usize, logits: *mut f32, err: *mut c_char, err_len: usize) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: a live session.
        let s = unsafe { s.as_mut() }.ok_or("session is NULL")?;
        if ids.is_null() || lens.is_null() || n_seqs == 0 {
            return Err("prefill needs at least one prompt".into());
        }
        // SAFETY: the caller's lens hold n_seqs lengths, its ids their sum of tokens.
        let lens = unsafe { std::slice::from_raw_parts(lens, n_seqs) };
        if let Some(i) = lens.iter().position(|&l| l == 0) {
            return Err(format!("prompt {i} is empty"));
        }
        let total = lens.iter().try_fold(0usize, |a, &l| a.checked_add(l)).ok_or("prompt lengths overflow")?;
        let flat = unsafe { std::slice::from_raw_parts(ids, total) };
        let mut prompts = Vec::with_capacity(n_seqs);
        let mut at = 0;
        for &l in lens {
            prompts.push(flat[at..at + l].to_vec());
            at += l;
        }
        prefill_rows(s, prompts, logits)
    })
    .map_or(1, |_| 0)
}

fn prefill_rows(s: &mut Lt2Session, prompts: Vec<Vec<i64>>, logits: *mut f32) -> Result<(), String> {
    let rows = match &mut s.session {
        AnySession::Cpu(x) => x.prefill_last(&prompts),
        AnySession::Cuda(x) => x.prefill_last(&prompts),
    }
    .map_err(|e| e.to_string())?;
    write_rows(&rows, s.vocab, logits)
}

/// Decodes one token per sequence.
#[no_mangle]
pub extern "C" fn lt2_session_decode(s: *mut Lt2Session, next: *const i64, n_seqs: usize, logits: *mut f32, err: *mut c_char, err_len: usize) -> c_int {
    guarded(err, err_len, || {
        // SAFETY: a live session.
        let s = unsafe { s.as_mut() }.ok_or("session is NULL")?;
        if next.is_null() {
            return Err("next tokens are NULL".into());
        }
        // SAFETY: the caller's array holds n_seqs tokens.
        let next = unsafe { std::slice::from_raw_parts(next, n_seqs) };
        let rows = match &mut s.session {
            AnySession::Cpu(x) => x.decode(next),
            AnySession::Cuda(x) => x.decode(next),
        }
        .map_err(|e| e.to_string())?;
        write_rows(&rows, s.vocab, logits)
    })
    .map_or(1, |_| 0)
}

/// Whether decode steps replay a recorded CUDA graph.
#[no_mangle]
pub extern "C" fn lt2_session_decode_recorded(s: *const Lt2Session) -> c_int {
    // SAFETY: a live session (or NULL).
    match unsafe { s.as_ref() }.map(|s| &s.session) {
        Some(AnySession::Cpu(x)) => x.decode_recorded() as c_int,
        Some(AnySession::Cuda(x)) => x.decode_recorded() as c_int,
        None => 0,
    }
}

/// The manifest's inputs and outputs as JSON: `{"inputs": [{"name": .., "dtype": "float32",
/// "dims": [2, "batch"]}], "outputs": [..]}` (dims: numbers, or names of symbolic dims).
fn signature_json(m: &lt2_runtime::plan::Manifest) -> String {
    let quote = |s: &str| {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let list = |sigs: &[lt2_runtime::plan::TensorSig]| {
        let items: Vec<String> = sigs
            .iter()
            .map(|t| {
                let dims: Vec<String> = t.dims.iter().map(|d| if d.parse::<u64>().is_ok() { d.clone() } else { quote(d) }).collect();
                format!("{{\"name\": {}, \"dtype\": {}, \"dims\": [{}]}}", quote(&t.name), quote(dtype_name(t.dtype)), dims.join(", "))
            })
            .collect();
        format!("[{}]", items.join(", "))
    };
    format!("{{\"inputs\": {}, \"outputs\": {}}}", list(&m.inputs), list(&m.outputs))
}

/// numpy's name of a manifest dtype.
fn dtype_name(d: i32) -> &'static str {
    match DType::try_from(d) {
        Ok(DType::F32) => "float32",
        Ok(DType::I64) => "int64",
        Ok(DType::Bool) => "bool",
        Ok(DType::Bf16) => "bfloat16",
        Ok(DType::F16) => "float16",
        Err(_) => "unknown",
    }
}

/// The inputs and outputs as JSON (see `signature_json`). Owned by the model.
#[no_mangle]
pub extern "C" fn lt2_model_signature(m: *const Lt2Model) -> *const c_char {
    // SAFETY: a live model from lt2_model_open (or NULL).
    unsafe { m.as_ref() }.map_or(std::ptr::null(), |m| m.signature.as_ptr())
}

/// A whole-graph run's outputs, host-side, in the manifest's output order.
pub struct Lt2Outputs {
    outputs: Vec<(CString, Tensor, Vec<i64>)>,
}

/// Element type codes of `lt2_model_run` and `lt2_outputs_dtype` (lt2.h).
const CODE_F32: c_int = 0;
const CODE_I64: c_int = 1;
const CODE_BOOL: c_int = 2;

/// Runs the whole graph once on named inputs (no session, no caches), as `lt2c run` does.
#[no_mangle]
pub extern "C" fn lt2_model_run(
    m: *const Lt2Model,
    n: usize,
    names: *const *const c_char,
    dtypes: *const c_int,
    ranks: *const usize,
    dims: *const *const i64,
    data: *const *const std::ffi::c_void,
    err: *mut c_char,
    err_len: usize,
) -> *mut Lt2Outputs {
    guarded(err, err_len, || {
        // SAFETY: a live model.
        let m = unsafe { m.as_ref() }.ok_or("model is NULL")?;
        if n > 0 && [names as *const u8, dtypes as *const u8, ranks as *const u8, dims as *const u8, data as *const u8].iter().any(|p| p.is_null()) {
            return Err("an input array is NULL".into());
        }
        let mut inputs = HashMap::new();
        for i in 0..n {
            // SAFETY: the caller's arrays hold n entries each.
            let (name, code, rank, dp, xp) = unsafe { (*names.add(i), *dtypes.add(i), *ranks.add(i), *dims.add(i), *data.add(i)) };
            let name = c_str(name, "input name")?.to_string();
            if rank > 0 && dp.is_null() {
                return Err(format!("input `{name}`: dims are NULL"));
            }
            // SAFETY: `rank` dims.
            let shape_i: &[i64] = if rank == 0 { &[] } else { unsafe { std::slice::from_raw_parts(dp, rank) } };
            if let Some(d) = shape_i.iter().find(|&&d| d < 0) {
                return Err(format!("input `{name}`: negative dim {d}"));
            }
            let shape: Vec<usize> = shape_i.iter().map(|&d| d as usize).collect();
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| format!("input `{name}`: too many elements"))?;
            if count > 0 && xp.is_null() {
                return Err(format!("input `{name}`: data is NULL"));
            }
            // SAFETY: the caller's buffer holds `count` elements of the given type.
            let tensor = unsafe {
                match code {
                    CODE_F32 => Tensor { shape, data: Data::F32(if count == 0 { Vec::new() } else { std::slice::from_raw_parts(xp as *const f32, count).to_vec() }) },
                    CODE_I64 => Tensor { shape, data: Data::I64(if count == 0 { Vec::new() } else { std::slice::from_raw_parts(xp as *const i64, count).to_vec() }) },
                    CODE_BOOL => Tensor { shape, data: Data::Bool(if count == 0 { Vec::new() } else { std::slice::from_raw_parts(xp as *const u8, count).iter().map(|&b| b != 0).collect() }) },
                    c => return Err(format!("input `{name}`: unknown element type code {c} (0 float32, 1 int64, 2 bool)")),
                }
            };
            inputs.insert(name, tensor);
        }
        let outs = match &m.model {
            AnyModel::Cpu(x) => x.run(&inputs),
            AnyModel::Cuda(x) => x.run(&inputs),
        }
        .map_err(|e| e.to_string())?;
        let outputs = outs
            .into_iter()
            .map(|(name, t)| {
                let dims = t.shape.iter().map(|&d| d as i64).collect();
                Ok((CString::new(name).map_err(|e| e.to_string())?, t, dims))
            })
            .collect::<Result<_, String>>()?;
        Ok(Box::into_raw(Box::new(Lt2Outputs { outputs })))
    })
    .unwrap_or(std::ptr::null_mut())
}

fn output<'a>(o: *const Lt2Outputs, i: usize) -> Option<&'a (CString, Tensor, Vec<i64>)> {
    // SAFETY: a live result set from lt2_model_run (or NULL), alive while the caller reads it.
    unsafe { o.as_ref() }.and_then(|o| o.outputs.get(i))
}

/// How many outputs a run returned.
#[no_mangle]
pub extern "C" fn lt2_outputs_count(o: *const Lt2Outputs) -> usize {
    // SAFETY: as in `output`.
    unsafe { o.as_ref() }.map_or(0, |o| o.outputs.len())
}

/// Output i's name (NULL past the end).
#[no_mangle]
pub extern "C" fn lt2_outputs_name(o: *const Lt2Outputs, i: usize) -> *const c_char {
    output(o, i).map_or(std::ptr::null(), |x| x.0.as_ptr())
}

/// Output i's element type code (-1 past the end).
#[no_mangle]
pub extern "C" fn lt2_outputs_dtype(o: *const Lt2Outputs, i: usize) -> c_int {
    output(o, i).map_or(-1, |x| match x.1.data {
        Data::F32(_) => CODE_F32,
        Data::I64(_) => CODE_I64,
        Data::Bool(_) => CODE_BOOL,
    })
}

/// Output i's rank.
#[no_mangle]
pub extern "C" fn lt2_outputs_rank(o: *const Lt2Outputs, i: usize) -> usize {
    output(o, i).map_or(0, |x| x.2.len())
}

/// Output i's dims (rank values).
#[no_mangle]
pub extern "C" fn lt2_outputs_dims(o: *const Lt2Outputs, i: usize) -> *const i64 {
    output(o, i).map_or(std::ptr::null(), |x| x.2.as_ptr())
}

/// Output i's elements, row-major: float32, int64, or bool as one byte each.
#[no_mangle]
pub extern "C" fn lt2_outputs_data(o: *const Lt2Outputs, i: usize) -> *const std::ffi::c_void {
    output(o, i).map_or(std::ptr::null(), |x| match &x.1.data {
        Data::F32(v) => v.as_ptr() as *const _,
        Data::I64(v) => v.as_ptr() as *const _,
        // bool is one byte, 0 or 1, in Rust as in C and numpy.
        Data::Bool(v) => v.as_ptr() as *const _,
    })
}

/// Frees a run's outputs.
#[no_mangle]
pub extern "C" fn lt2_outputs_free(o: *mut Lt2Outputs) {
    if !o.is_null() {
        // SAFETY: `o` came from lt2_model_run and is freed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(o) })));
    }
}

/// Loop iterations run and skipped (by early exit) so far, summed over the session's steps.
#[no_mangle]
pub extern "C" fn lt2_session_loop_iterations(s: *const Lt2Session, run: *mut u64, skipped: *mut u64) {
    // SAFETY: a live session (or NULL); the out pointers are the caller's (or NULL).
    let counts = match unsafe { s.as_ref() }.map(|s| &s.session) {
        Some(AnySession::Cpu(x)) => x.loop_iterations(),
        Some(AnySession::Cuda(x)) => x.loop_iterations(),
        None => return,
    };
    unsafe {
        if let Some(r) = run.as_mut() {
            *r = counts.run;
        }
        if let Some(k) = skipped.as_mut() {
            *k = counts.skipped;
        }
    }
}

/// A token chooser: greedy at temperature 0, else sampling with top-k / top-p from a seeded
/// generator (the CLI's `generate --temperature --top-k --top-p --seed`, token for token).
pub struct Lt2Sampler {
    sampling: lt2_runtime::sampling::Sampling,
    rng: lt2_runtime::sampling::Rng,
}

/// A sampler; `top_k` 0 and `top_p` 1 mean no cut.
#[no_mangle]
pub extern "C" fn lt2_sampler_new(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> *mut Lt2Sampler {
    let sampling = lt2_runtime::sampling::Sampling { temperature, top_k, top_p };
    Box::into_raw(Box::new(Lt2Sampler { sampling, rng: lt2_runtime::sampling::Rng::new(seed) }))
}

/// Picks a token from `vocab` logits (-1 when the sampler or logits are NULL or vocab is 0).
#[no_mangle]
pub extern "C" fn lt2_sampler_pick(s: *mut Lt2Sampler, logits: *const f32, vocab: usize) -> i64 {
    // SAFETY: a live sampler (or NULL); the caller's logits hold `vocab` floats.
    let Some(s) = (unsafe { s.as_mut() }) else { return -1 };
    if logits.is_null() || vocab == 0 {
        return -1;
    }
    let row = unsafe { std::slice::from_raw_parts(logits, vocab) };
    catch_unwind(AssertUnwindSafe(|| lt2_runtime::sampling::sample(row, &s.sampling, &mut s.rng) as i64)).unwrap_or(-1)
}

/// Frees a sampler.
#[no_mangle]
pub extern "C" fn lt2_sampler_free(s: *mut Lt2Sampler) {
    if !s.is_null() {
        // SAFETY: `s` came from lt2_sampler_new and is freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}
