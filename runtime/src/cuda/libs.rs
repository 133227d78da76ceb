//! Finding the CUDA libraries before cudarc touches them: cudarc panics when a library it
//! needs cannot be loaded, so every entry point checks here first and turns absence into an
//! error that names the library and the package that provides it.

use std::path::{Path, PathBuf};

/// A shared library the CUDA backend needs.
#[derive(Clone, Copy, Debug)]
pub struct Lib {
    /// The soname cudarc (or lt2c) loads.
    pub soname: &'static str,
    /// What to install when it is missing.
    pub provided_by: &'static str,
}

pub const DRIVER: Lib = Lib { soname: "libcuda.so.1", provided_by: "the NVIDIA driver (e.g. Debian/Ubuntu libcuda1 or libnvidia-compute-580)" };
pub const CUBLASLT: Lib = Lib {
    soname: "libcublasLt.so.13",
    provided_by: "CUDA 13 cuBLAS (apt libcublas-13-0, or pip nvidia-cublas); put its directory (e.g. /usr/local/cuda/lib64) on LD_LIBRARY_PATH",
};
pub const NVRTC: Lib = Lib {
    soname: "libnvrtc.so.13",
    provided_by: "CUDA 13 NVRTC (apt cuda-nvrtc-13-0, or pip nvidia-cuda-nvrtc==13.0.88); or set LT2C_NVRTC to the library's path",
};

/// Loads `lib` by its soname (the dynamic loader's search path), as cudarc will.
pub fn check(lib: Lib) -> Result<(), String> {
    // SAFETY: loading a CUDA library runs its initialisers, as every CUDA program does.
    match unsafe { libloading::Library::new(lib.soname) } {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{} could not be loaded ({e}); it is provided by {}", lib.soname, lib.provided_by)),
    }
}

/// The value of `LT2C_NVRTC` that turns NVRTC off: nothing is compiled, so kernels come only from
/// model.bin (and `lt2c MODEL.onnx` embeds none). For tests of those paths, and for hosts that must
/// not compile.
pub const NVRTC_OFF: &str = "none";

/// Whether `LT2C_NVRTC` turns NVRTC off (`LT2C_NVRTC=none`).
pub fn nvrtc_disabled() -> bool {
    std::env::var_os("LT2C_NVRTC").is_some_and(|v| v == NVRTC_OFF)
}

/// Where to look for libnvrtc.so.13, in order: `LT2C_NVRTC` (a file, or a directory holding
/// it), the loader's search path, CUDA_HOME / CUDA_PATH / /usr/local/cuda, and the repository's
/// Python environment (`.venv`, where scripts/setup.sh installs pip's nvidia-cuda-nvrtc).
pub fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("LT2C_NVRTC") {
        let p = PathBuf::from(p);
        v.push(if p.is_dir() { p.join(NVRTC.soname) } else { p });
    }
    v.push(PathBuf::from(NVRTC.soname));
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(h) = std::env::var_os(var) {
            v.push(Path::new(&h).join("lib64").join(NVRTC.soname));
        }
    }
    v.push(PathBuf::from("/usr/local/cuda/lib64").join(NVRTC.soname));
    // The workspace's .venv (tests, and lt2c run from a checkout).
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Ok(rd) = std::fs::read_dir(ws.join(".venv/lib")) {
        for e in rd.flatten() {
            v.push(e.path().join("site-packages/nvidia/cu13/lib").join(NVRTC.soname));
        }
    }
    v
}
