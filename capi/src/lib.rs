//! The C ABI of the runtime (`include/lt2.h`): what a deployment pipeline in Python or C needs
//! to run a compiled model.bin without the CLI — load it on the CPU or a GPU, open a decode
//! session, prefill prompts and decode tokens. Python wraps it with ctypes (`lt2.runtime`).
//! No call unwinds into the caller: errors, panics included, come back as a message.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use lt2_runtime::cpu::Cpu;
use lt2_runtime::cuda::Cuda;
use lt2_runtime::device::{self, DeviceRequest};
use lt2_runtime::exec::Model;
use lt2_runtime::format::ModelFile;
use lt2_runtime::session::{Session, SessionOptions};

/// A model loaded on its backend.
pub struct Lt2Model {
    model: AnyModel,
    device: CString,
    vocab: usize,
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
        let info = file.manifest.decode.clone().ok_or("this model has no token-ids input and logits output")?;
        let vocab = file.manifest.outputs.iter().find(|o| o.name == info.logits_output).and_then(|o| o.dims.last()).and_then(|d| d.parse::<usize>().ok()).ok_or("the logits output has no static vocabulary size")?;
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
        Ok(Box::into_raw(Box::new(Lt2Model { model, device, vocab })))
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

/// The vocabulary size.
#[no_mangle]
pub extern "C" fn lt2_model_vocab(m: *const Lt2Model) -> usize {
    // SAFETY: as above.
    unsafe { m.as_ref() }.map_or(0, |m| m.vocab)
}

/// Opens a decode session holding up to `max_context` tokens per sequence.
#[no_mangle]
pub extern "C" fn lt2_session_new(m: *mut Lt2Model, max_context: usize, err: *mut c_char, err_len: usize) -> *mut Lt2Session {
    guarded(err, err_len, || {
        // SAFETY: a live model that outlives the session (the header's contract).
        let m: &'static Lt2Model = unsafe { m.as_ref() }.ok_or("model is NULL")?;
        let opts = SessionOptions { max_context, ..Default::default() };
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
        let prompts: Vec<Vec<i64>> = flat.chunks(len).map(<[i64]>::to_vec).collect();
        let rows = match &mut s.session {
            AnySession::Cpu(x) => x.prefill_last(&prompts),
            AnySession::Cuda(x) => x.prefill_last(&prompts),
        }
        .map_err(|e| e.to_string())?;
        write_rows(&rows, s.vocab, logits)
    })
    .map_or(1, |_| 0)
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
