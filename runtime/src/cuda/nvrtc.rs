//! A small binding to NVRTC (libnvrtc.so.13), loaded with libloading from an explicit list of
//! places (see `libs::nvrtc_candidates`), so that a CPU-only machine with pip's NVRTC can
//! compile kernels too. Compiles one CUDA C++ file to a cubin for a real architecture (`sm_90a`)
//! or to PTX for a virtual one (`compute_80`).

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::libs;

type Program = *mut std::ffi::c_void;
type Status = c_int;

struct Api {
    _builtins: Option<libloading::Library>,
    _lib: libloading::Library,
    path: PathBuf,
    version: (c_int, c_int),
    get_error_string: unsafe extern "C" fn(Status) -> *const c_char,
    create: unsafe extern "C" fn(*mut Program, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> Status,
    destroy: unsafe extern "C" fn(*mut Program) -> Status,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    log: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    cubin_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    cubin: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    ptx_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    ptx: unsafe extern "C" fn(Program, *mut c_char) -> Status,
}

// SAFETY: the NVRTC API is thread safe (programs are not shared between threads here).
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// An NVRTC error: the file that failed and NVRTC's log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("NVRTC failed to compile {file} for {arch}: {log}")]
pub struct NvrtcError {
    pub file: String,
    pub arch: String,
    pub log: String,
}

fn load() -> Result<Api, String> {
    if libs::nvrtc_disabled() {
        return Err(format!("NVRTC is disabled (LT2C_NVRTC={})", libs::NVRTC_OFF));
    }
    let mut tried = Vec::new();
    for path in libs::nvrtc_candidates() {
        // NVRTC dlopens libnvrtc-builtins.so.13.0 by name; when it sits beside the library
        // outside the loader's path, loading it first by full path lets that lookup succeed.
        let builtins = path.parent().filter(|d| !d.as_os_str().is_empty()).and_then(|d| {
            // SAFETY: loading NVRTC's builtins library runs no user-visible initialisers.
            unsafe { libloading::Library::new(d.join("libnvrtc-builtins.so.13.0")) }.ok()
        });
        // SAFETY: as above, for NVRTC itself.
        let lib = match unsafe { libloading::Library::new(&path) } {
            Ok(l) => l,
            Err(e) => {
                tried.push(format!("{} ({e})", path.display()));
                continue;
            }
        };
        // SAFETY: the symbols have these signatures in every NVRTC since CUDA 11.
        unsafe {
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes()).map_err(|e| format!("{}: no symbol {}: {e}", path.display(), $name))?
                };
            }
            let version_fn: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status = sym!("nvrtcVersion");
            let mut version = (0, 0);
            version_fn(&mut version.0, &mut version.1);
            let api = Api {
                get_error_string: sym!("nvrtcGetErrorString"),
                create: sym!("nvrtcCreateProgram"),
                destroy: sym!("nvrtcDestroyProgram"),
                compile: sym!("nvrtcCompileProgram"),
                log_size: sym!("nvrtcGetProgramLogSize"),
                log: sym!("nvrtcGetProgramLog"),
                cubin_size: sym!("nvrtcGetCUBINSize"),
                cubin: sym!("nvrtcGetCUBIN"),
                ptx_size: sym!("nvrtcGetPTXSize"),
                ptx: sym!("nvrtcGetPTX"),
                version,
                path: path.clone(),
                _lib: lib,
                _builtins: builtins,
            };
            return Ok(api);
        }
    }
    Err(format!(
        "{} could not be loaded (tried {}); it is provided by {}",
        libs::NVRTC.soname,
        tried.join(", "),
        libs::NVRTC.provided_by
    ))
}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| e.clone())
}

/// Whether NVRTC can be loaded; Ok holds where it was found and its version.
pub fn available() -> Result<(PathBuf, (i32, i32)), String> {
    api().map(|a| (a.path.clone(), a.version))
}

/// The result of one compile: the cubin or the PTX, and NVRTC's log (ptxas's report with
/// `-Xptxas=-v`).
pub struct Compiled {
    /// The cubin, for a real architecture (`sm_XX`); empty for a virtual one.
    pub cubin: Vec<u8>,
    /// The PTX text (no terminating NUL), for a virtual architecture (`compute_XX`); empty for a
    /// real one.
    pub ptx: Vec<u8>,
    /// NVRTC's log (warnings; ptxas's report with `-Xptxas=-v`).
    pub log: String,
}

impl Compiled {
    /// The image the compile was for: the cubin, or the PTX of a virtual architecture.
    pub fn image(&self) -> &[u8] {
        if self.cubin.is_empty() {
            &self.ptx
        } else {
            &self.cubin
        }
    }
}

/// Whether `arch` names a virtual architecture (`compute_80`), whose compile yields PTX.
pub fn is_virtual(arch: &str) -> bool {
    arch.starts_with("compute_")
}

/// Compiles `source` (named `file` in messages) with the given headers (name, text) for `arch`
/// (`sm_90a`: a cubin; `compute_80`: PTX) with extra `options`.
pub fn compile(file: &str, source: &str, headers: &[(&str, &str)], arch: &str, options: &[&str]) -> Result<Compiled, NvrtcError> {
    let fail = |log: String| NvrtcError { file: file.to_string(), arch: arch.to_string(), log };
    let api = api().map_err(fail)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| fail(format!("{s:?} holds a NUL byte")));
    let src = cstr(source)?;
    let name = cstr(file)?;
    let hdr_src: Vec<CString> = headers.iter().map(|h| cstr(h.1)).collect::<Result<_, _>>()?;
    let hdr_name: Vec<CString> = headers.iter().map(|h| cstr(h.0)).collect::<Result<_, _>>()?;
    let hdr_src_p: Vec<*const c_char> = hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hdr_name_p: Vec<*const c_char> = hdr_name.iter().map(|s| s.as_ptr()).collect();
    let mut opts: Vec<CString> = vec![cstr(&format!("--gpu-architecture={arch}"))?];
    for o in options {
        opts.push(cstr(o)?);
    }
    let opt_p: Vec<*const c_char> = opts.iter().map(|s| s.as_ptr()).collect();
    // SAFETY: every pointer passed lives until the end of this function; the program is
    // destroyed on every path.
    unsafe {
        let err_str = |s: Status| CStr::from_ptr((api.get_error_string)(s)).to_string_lossy().into_owned();
        let mut prog: Program = std::ptr::null_mut();
        let s = (api.create)(&mut prog, src.as_ptr(), name.as_ptr(), headers.len() as c_int, hdr_src_p.as_ptr(), hdr_name_p.as_ptr());
        if s != 0 {
            return Err(fail(format!("nvrtcCreateProgram: {}", err_str(s))));
        }
        let status = (api.compile)(prog, opt_p.len() as c_int, opt_p.as_ptr());
        let mut n = 0usize;
        (api.log_size)(prog, &mut n);
        let mut buf = vec![0u8; n.max(1)];
        (api.log)(prog, buf.as_mut_ptr() as *mut c_char);
        let log = String::from_utf8_lossy(&buf).trim_end_matches('\0').trim().to_string();
        let result = if status != 0 {
            Err(fail(format!("{}\n{log}", err_str(status))))
        } else {
            let (size, get, what) = if is_virtual(arch) { (api.ptx_size, api.ptx, "nvrtcGetPTX") } else { (api.cubin_size, api.cubin, "nvrtcGetCUBIN") };
            let mut n = 0usize;
            let s = size(prog, &mut n);
            let mut image = vec![0u8; n];
            let s = if s != 0 { s } else { get(prog, image.as_mut_ptr() as *mut c_char) };
            if s != 0 {
                Err(fail(format!("{what}: {}", err_str(s))))
            } else if is_virtual(arch) {
                // NVRTC counts the PTX's terminating NUL; the text is stored without it.
                while image.last() == Some(&0) {
                    image.pop();
                }
                Ok(Compiled { cubin: Vec::new(), ptx: image, log })
            } else {
                Ok(Compiled { cubin: image, ptx: Vec::new(), log })
            }
        };
        (api.destroy)(&mut prog);
        result
    }
}
