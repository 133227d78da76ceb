//! The CUDA backend: every plan op on an NVIDIA GPU through cudarc (driver API, cuBLASLt) and
//! the kernels of `codegen/kernels/*.cu`, loaded with the model: the cubin or PTX that model.bin
//! carries for the device (`prebuilt.rs`), else compiled with NVRTC at load. Activations are
//! fp32 (bf16 / fp16 only as the operands of `--dtype` products and attention, and as K/V
//! caches of such attention), with the CPU backend (`cpu/`) as the definition of every op: output shapes and error cases are
//! computed on the host from the input shapes, the same way the CPU functions do.
//!
//! Memory: one stream; activations and caches are ranges of one arena per backend (`arena.rs`:
//! a virtual address range as large as the device's memory, mapped on demand, with a host-side
//! best-fit sub-allocator), weights exact-size driver allocations (`cuMemAllocAsync`). Buffers
//! are reference counted through `Rc` and give their memory back when dropped (`pool.rs`, which
//! also keeps a recorded decode step's buffers reserved for its replays). Reshape and Identity
//! share the buffer.
//!
//! Small uploads (loop counters, token ids of a decode step) travel as kernel parameters, so they
//! never synchronise the stream, and int64 scalars are cached. `LT2C_CUDA_PROFILE=1` runs every
//! op alone on the device and prints its device time (CUDA events) per op kind when the backend
//! is dropped.
//!
//! Data errors that the CPU reports eagerly (an index out of range, an int64 division by zero)
//! are detected on the device, recorded in a small error word and reported at the next download.

mod arena;
mod attention;
mod conv;
mod elementwise;
mod gdn;
mod graph;
pub mod kernels;
pub mod libs;
mod linalg;
mod norm;
mod pool;
#[cfg(test)]
mod parity;
pub mod nvrtc;
pub mod prebuilt;
mod reduce;
mod rope;
mod select;
mod shape;
mod sparse;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig};

use crate::backend::Backend;
use crate::error::{OpError, RuntimeError};
use crate::format::ModelFile;
use crate::plan::{DType, Op};
use crate::tensor::{Data, Tensor};

use kernels::Kernel;

/// The backend for a CUDA test, or None (saying why) where this machine has no usable GPU, so
/// the test passes as skipped on CPU-only CI.
#[cfg(test)]
pub(crate) fn test_backend() -> Option<Cuda> {
    match Cuda::new() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("skipped: no usable GPU: {e}");
            None
        }
    }
}

/// Bytes per element of a dtype, as the CUDA backend stores it (bool: one byte, 0 or 1).
pub(crate) fn dtype_size(d: DType) -> usize {
    crate::precision::stored_size(d)
}

use arena::Arena;
use pool::{DevMem, Pool};

/// A tensor in device memory: contiguous, row-major.
#[derive(Clone)]
pub struct CudaBuf {
    mem: Rc<DevMem>,
    shape: Vec<usize>,
    dtype: DType,
}

impl CudaBuf {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub(crate) fn nbytes(&self) -> usize {
        self.numel() * dtype_size(self.dtype)
    }
    /// The device address of the first element.
    pub(crate) fn ptr(&self) -> u64 {
        self.mem.ptr
    }
    /// The same memory seen with another shape (Reshape).
    pub(crate) fn with_shape(&self, shape: Vec<usize>) -> CudaBuf {
        CudaBuf { mem: self.mem.clone(), shape, dtype: self.dtype }
    }
}

/// The CUDA backend on device 0.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// The device's compute capability.
    cc: (i32, i32),
    /// Loaded with the first model (`load_kernels`), or on the first launch without one.
    kernels: OnceCell<LoadedKernels>,
    blas: linalg::Blas,
    err: CudaSlice<i64>,
    err_ptr: u64,
    description: String,
    /// Device copies of int64 scalars already uploaded (loop counters): buffers are never
    /// written after they are produced, so they can be shared.
    scalars: RefCell<HashMap<i64, CudaBuf>>,
    /// Per op kind: (calls, milliseconds), when LT2C_CUDA_PROFILE is set.
    profile: Option<RefCell<HashMap<String, (u64, f64)>>>,
    /// The memory of activations and caches (`arena.rs`).
    arena: Rc<Arena>,
    /// The last activation rounded for a bf16/fp16 product: (source, its cast). The projections
    /// of one normalised input (GDN's q, k, v, gates; the FFN's gate and up) run back to back,
    /// so they share one cast kernel instead of one each. Holding the source keeps its memory
    /// from being reused, and buffers are never written after they are produced.
    last_cast: RefCell<Option<(CudaBuf, CudaBuf)>>,
    /// While a decode step is recorded (`graph.rs`): the pool that owns every buffer the
    /// recording allocates, reserved for its replays.
    recording: RefCell<Option<Rc<RefCell<Pool>>>>,
    /// Decode steps are recorded and replayed (off with LT2C_CUDA_GRAPHS=0, and while profiling).
    graphs: bool,
}

/// Clock cycles (about 0.2 ms) the profiler holds the stream while it enqueues one op.
const PROFILE_SPIN_CYCLES: i64 = 400_000;

/// The kernels' functions and where their modules came from (`prebuilt::describe`).
struct LoadedKernels {
    funcs: HashMap<Kernel, CudaFunction>,
    origin: String,
}

/// Uploads up to this many bytes go as a kernel parameter (layout.cu `Bytes256`).
const SMALL_UPLOAD: usize = 256;

/// layout.cu `Bytes256`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Bytes256([u8; SMALL_UPLOAD]);
device_repr!(Bytes256);

/// Error codes of the device error word (common.cuh).
const ERR_INDEX: i64 = 1;
const ERR_DIV_ZERO: i64 = 2;
const ERR_POSITION: i64 = 3;
const ERR_SPARSE: i64 = 4;
const ERR_CAPACITY: i64 = 5;

fn drv(what: &str, e: DriverError) -> String {
    format!("{what}: {e:?}")
}

impl Cuda {
    /// Checks that the driver and cuBLASLt load and that a device answers; returns a
    /// description of device 0 (`NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB`). Compiles nothing.
    /// NVRTC is not required here: only a model without a kernel image for the device needs it,
    /// which `load_kernels` reports.
    pub fn probe() -> Result<String, String> {
        libs::check(libs::DRIVER)?;
        cudarc::driver::result::init().map_err(|e| format!("the CUDA driver failed to initialise ({e:?}): no usable GPU"))?;
        let n = cudarc::driver::result::device::get_count().map_err(|e| drv("cuDeviceGetCount", e))?;
        if n < 1 {
            return Err("the CUDA driver reports no GPU".into());
        }
        libs::check(libs::CUBLASLT)?;
        let dev = cudarc::driver::result::device::get(0).map_err(|e| drv("cuDeviceGet", e))?;
        // SAFETY: `dev` is a valid device handle from cuDeviceGet.
        let (name, mem, cc) = unsafe {
            let name = cudarc::driver::result::device::get_name(dev).unwrap_or_else(|_| "GPU".into());
            let mem = cudarc::driver::result::device::total_mem(dev).unwrap_or(0);
            let major = cudarc::driver::result::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR).unwrap_or(0);
            let minor = cudarc::driver::result::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR).unwrap_or(0);
            (name, mem, (major, minor))
        };
        Ok(format!("{name}, sm_{}{}, {:.1} GiB", cc.0, cc.1, mem as f64 / (1u64 << 30) as f64))
    }

    /// Opens device 0 and sets up cuBLASLt; the kernels are loaded with the model
    /// (`load_kernels`). Fails with the reason when a library or the device is missing.
    pub fn new() -> Result<Cuda, RuntimeError> {
        let dev_err = |reason: String| RuntimeError::Device { device: "cuda".into(), reason };
        let description = Cuda::probe().map_err(dev_err)?;
        let ctx = CudaContext::new(0).map_err(|e| dev_err(drv("creating a CUDA context on device 0", e)))?;
        // One stream, so cudarc's cross-stream event tracking is not needed.
        // SAFETY: no CudaSlice exists yet; all work goes to the one stream created below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| dev_err(drv("cuStreamCreate", e)))?;
        let cc = ctx.compute_capability().map_err(|e| dev_err(drv("compute capability", e)))?;
        let arena = Rc::new(Arena::new(stream.clone()).map_err(|e| dev_err(format!("the activation arena: {e}")))?);
        let blas = linalg::Blas::new(&stream).map_err(dev_err)?;
        let err = stream.alloc_zeros::<i64>(4).map_err(|e| dev_err(drv("allocating the error word", e)))?;
        let err_ptr = err.device_ptr(&stream).0;
        let profile = std::env::var_os("LT2C_CUDA_PROFILE").filter(|v| v != "0").map(|_| RefCell::new(HashMap::new()));
        let graphs = profile.is_none() && std::env::var_os("LT2C_CUDA_GRAPHS").is_none_or(|v| v != "0");
        Ok(Cuda {
            ctx,
            stream,
            cc,
            kernels: OnceCell::new(),
            blas,
            err,
            err_ptr,
            description,
            scalars: RefCell::new(HashMap::new()),
            profile,
            arena,
            last_cast: RefCell::new(None),
            recording: RefCell::new(None),
            graphs,
        })
    }

    /// Loads the kernels for this device: per kernel file, the cubin or PTX that `file` carries
    /// for it, else a compile with NVRTC (cached); then pays one-time costs (`warm_up`). Done once:
    /// by `Model::load` for the first model, or on the first launch without one. Returns where the
    /// kernels came from (`kernels: sm_90a cubins from model.bin`).
    pub fn load_kernels(&self, file: Option<&ModelFile>) -> Result<&str, RuntimeError> {
        if let Some(k) = self.kernels.get() {
            return Ok(&k.origin);
        }
        let dev_err = |reason: String| RuntimeError::Device { device: "cuda".into(), reason };
        let (modules, origin) = prebuilt::load_modules(&self.ctx, self.cc, file).map_err(dev_err)?;
        let smem_optin = self.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).unwrap_or(48 * 1024);
        let mut funcs = HashMap::new();
        for k in Kernel::all() {
            let f = modules[&k.file()].load_function(&k.symbol()).map_err(|e| dev_err(drv(&format!("kernel {} in {} ({origin})", k.symbol(), k.file().file_name()), e)))?;
            if matches!(k, Kernel::Gdn | Kernel::GdnChunkPrep | Kernel::GdnChunkState | Kernel::GdnChunkOut | Kernel::Attention | Kernel::AttentionTiled | Kernel::AttentionMma(_)) {
                f.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_optin)
                    .map_err(|e| dev_err(drv("raising the shared memory limit", e)))?;
            }
            funcs.insert(k, f);
        }
        let loaded = self.kernels.get_or_init(|| LoadedKernels { funcs, origin });
        self.warm_up().map_err(|e| dev_err(format!("warm-up: {e}")))?;
        Ok(&loaded.origin)
    }

    /// Where the kernels came from, once loaded (`load_kernels`).
    pub fn kernel_origin(&self) -> Option<&str> {
        self.kernels.get().map(|k| k.origin.as_str())
    }

    /// Pays one-time costs (cuBLASLt's first call loads its kernels) at load, not in the first run.
    fn warm_up(&self) -> Result<(), OpError> {
        let x = self.zeros(vec![1, 4], DType::F32)?;
        let w = self.zeros(vec![4, 4], DType::F32)?;
        linalg::linear(self, &x, &w, None, false)?;
        self.synchronize()
    }

    /// The device, e.g. `NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<(), OpError> {
        self.stream.synchronize().map_err(|e| OpError::new(drv("cuStreamSynchronize", e)))
    }

    pub(crate) fn func(&self, k: Kernel) -> Result<&CudaFunction, OpError> {
        let loaded = match self.kernels.get() {
            Some(l) => l,
            None => {
                self.load_kernels(None).map_err(|e| OpError::new(e.to_string()))?;
                self.kernels.get().ok_or_else(|| OpError::new("the kernels did not load"))?
            }
        };
        loaded.funcs.get(&k).ok_or_else(|| OpError::new(format!("kernel {} is not loaded", k.symbol())))
    }

    pub(crate) fn launch_err(&self, k: Kernel, e: DriverError) -> OpError {
        OpError::new(format!("launching {} ({}): {e:?}", k.symbol(), k.file().file_name()))
    }

    /// A new uninitialised buffer.
    pub(crate) fn alloc(&self, shape: Vec<usize>, dtype: DType) -> Result<CudaBuf, OpError> {
        self.alloc_in(shape, dtype, true)
    }

    /// A new buffer; `in_arena`: an arena range (activations and caches; while a step is
    /// recorded, one the recording owns), else exactly sized driver memory (weights).
    fn alloc_in(&self, shape: Vec<usize>, dtype: DType, in_arena: bool) -> Result<CudaBuf, OpError> {
        let bytes = shape.iter().product::<usize>() * dtype_size(dtype);
        let recording = self.recording.borrow().clone();
        let mem = if !in_arena {
            // SAFETY: the weight is uploaded before it is read.
            let slice = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(|e| OpError::new(drv(&format!("allocating {bytes} bytes"), e)))?;
            let ptr = slice.device_ptr(&self.stream).0;
            DevMem::driver(slice, ptr)
        } else if let Some(rec) = recording {
            // Recording: a range the recording freed, else a new one that belongs to it from now on.
            let class = Pool::class(bytes);
            let span = rec.borrow_mut().take(class);
            let span = match span {
                Some(s) => s,
                None => self.arena_alloc(class)?,
            };
            DevMem::recorded(rec, span)
        } else {
            DevMem::arena(self.arena.clone(), self.arena_alloc(bytes)?)
        };
        Ok(CudaBuf { mem: Rc::new(mem), shape, dtype })
    }

    /// An arena range; when the device has no more memory, drops the cached cast (the only
    /// buffer kept for reuse alone) and tries once more.
    fn arena_alloc(&self, bytes: usize) -> Result<arena::Span, OpError> {
        self.arena.alloc(bytes).or_else(|e| {
            let cached = self.last_cast.borrow_mut().take();
            if cached.is_none() {
                return Err(e);
            }
            drop(cached);
            self.arena.alloc(bytes)
        })
    }

    /// A new zero-filled buffer.
    pub(crate) fn zeros(&self, shape: Vec<usize>, dtype: DType) -> Result<CudaBuf, OpError> {
        let b = self.alloc(shape, dtype)?;
        // SAFETY: the range lies inside the allocation.
        unsafe { sys::cuMemsetD8Async(b.ptr(), 0, b.nbytes(), self.stream.cu_stream()) }.result().map_err(|e| OpError::new(drv("cuMemsetD8Async", e)))?;
        Ok(b)
    }

    /// Copies `bytes` bytes between device addresses.
    pub(crate) fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<(), OpError> {
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: the wrappers pass ranges inside live allocations.
        unsafe { sys::cuMemcpyDtoDAsync_v2(dst, src, bytes, self.stream.cu_stream()) }.result().map_err(|e| OpError::new(drv("cuMemcpyDtoDAsync", e)))
    }

    pub(crate) fn err_ptr(&self) -> u64 {
        self.err_ptr
    }

    /// Reads (and clears) the device error word; an error names what the kernel found.
    fn check_device_errors(&self) -> Result<(), OpError> {
        let mut w = [0i64; 4];
        self.stream.memcpy_dtoh(&self.err, &mut w[..]).map_err(|e| OpError::new(drv("reading the error word", e)))?;
        self.synchronize()?;
        if w[0] == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside the error word's allocation.
        unsafe { sys::cuMemsetD8Async(self.err_ptr, 0, 32, self.stream.cu_stream()) }.result().map_err(|e| OpError::new(drv("cuMemsetD8Async", e)))?;
        let (a, b) = (w[1], w[2]);
        Err(OpError::new(match w[0] {
            ERR_INDEX => format!("gather/embed: index {a} is out of range for an axis of size {b}"),
            ERR_DIV_ZERO => "binary Div: int64 division by zero".to_string(),
            ERR_POSITION => format!("rope: position id {a} is outside the cos/sin cache of {b} positions"),
            ERR_SPARSE => format!("sparse_attention: index {a} outside 0..{b}"),
            ERR_CAPACITY => format!("decode: a fixed-capacity cache of {b} rows cannot hold {a}"),
            c => format!("a kernel reported error code {c} ({a}, {b})"),
        }))
    }

    /// Raw bytes of a host tensor, as the device stores them.
    fn host_bytes(t: &Tensor) -> Vec<u8> {
        match &t.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        }
    }

    fn upload_bytes(&self, bytes: &[u8], shape: Vec<usize>, dtype: DType, in_arena: bool) -> Result<CudaBuf, OpError> {
        let b = self.alloc_in(shape, dtype, in_arena)?;
        if !bytes.is_empty() {
            // SAFETY: the allocation holds at least `bytes.len()` bytes; pageable host memory is
            // staged by the driver before the call returns.
            unsafe { sys::cuMemcpyHtoDAsync_v2(b.ptr(), bytes.as_ptr() as *const _, bytes.len(), self.stream.cu_stream()) }
                .result()
                .map_err(|e| OpError::new(drv("cuMemcpyHtoDAsync", e)))?;
        }
        Ok(b)
    }
}

/// Launch configuration for a grid-stride loop over `n` elements.
pub(crate) fn grid_for(n: usize, threads: u32) -> LaunchConfig {
    let blocks = n.div_ceil(threads as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// Launches kernel `$k` with a LaunchConfig and by-value arguments (device addresses as u64,
/// sizes as i64, `#[repr(C)]` parameter structs); evaluates to `Result<(), OpError>`.
macro_rules! launch {
    ($cu:expr, $k:expr, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        let cu: &$crate::cuda::Cuda = $cu;
        let k: $crate::cuda::kernels::Kernel = $k;
        let f = cu.func(k)?;
        let mut b = cu.stream.launch_builder(f);
        $( let a = $arg; cudarc::driver::PushKernelArg::arg(&mut b, &a); )*
        // SAFETY: the wrapper checked shapes and dtypes against the kernel's signature in
        // codegen/kernels/, and every address points into a live allocation of the right size.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| cu.launch_err(k, e))
    }};
}
pub(crate) use launch;

/// Implements `DeviceRepr` for `#[repr(C)]` kernel parameter structs.
macro_rules! device_repr {
    ($($t:ty),*) => { $(
        // SAFETY: a plain-old-data #[repr(C)] struct mirroring its CUDA counterpart.
        unsafe impl cudarc::driver::DeviceRepr for $t {}
    )* };
}
pub(crate) use device_repr;

impl Backend for Cuda {
    type Buf = CudaBuf;
    fn name(&self) -> &'static str {
        "cuda"
    }
    fn load_weights(&self, file: &ModelFile) -> Result<Vec<CudaBuf>, RuntimeError> {
        self.load_kernels(Some(file))?;
        let mut weights = Vec::with_capacity(file.manifest.weights.len());
        for (i, w) in file.manifest.weights.iter().enumerate() {
            let bytes = file.weight_bytes(i);
            let shape: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
            let dtype = DType::try_from(w.dtype).ok();
            let fits = dtype.map(|d| bytes.len() == shape.iter().product::<usize>() * dtype_size(d)).unwrap_or(false);
            let Some(dtype) = dtype.filter(|_| fits) else {
                return Err(RuntimeError::Corrupt(format!("weight `{}`: dtype {} with {} bytes does not fit shape {:?}", w.name, w.dtype, bytes.len(), shape)));
            };
            let b = self.upload_bytes(bytes, shape, dtype, false).map_err(|e| RuntimeError::Device { device: "cuda".into(), reason: format!("weight `{}`: {e}", w.name) })?;
            weights.push(b);
        }
        self.synchronize().map_err(|e| RuntimeError::Device { device: "cuda".into(), reason: e.0 })?;
        Ok(weights)
    }
    fn upload(&self, t: &Tensor) -> Result<CudaBuf, OpError> {
        let scalar = match (&t.data, t.shape.is_empty()) {
            (Data::I64(v), true) => v.first().copied(),
            _ => None,
        };
        if let Some(b) = scalar.and_then(|v| self.scalars.borrow().get(&v).cloned()) {
            return Ok(b);
        }
        let bytes = Cuda::host_bytes(t);
        let b = if bytes.len() <= SMALL_UPLOAD {
            let b = self.alloc(t.shape.clone(), t.dtype())?;
            if !bytes.is_empty() {
                let mut p = Bytes256([0; SMALL_UPLOAD]);
                p.0[..bytes.len()].copy_from_slice(&bytes);
                let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
                launch!(self, Kernel::WriteBytes, cfg, b.ptr(), bytes.len() as i32, p)?;
            }
            b
        } else {
            self.upload_bytes(&bytes, t.shape.clone(), t.dtype(), true)?
        };
        if let Some(v) = scalar.filter(|_| self.recording.borrow().is_none()) {
            // (A scalar uploaded while recording is written only when the recording replays.)
            let mut cache = self.scalars.borrow_mut();
            if cache.len() < 4096 {
                cache.insert(v, b.clone());
            }
        }
        Ok(b)
    }
    fn download(&self, b: &CudaBuf) -> Result<Tensor, OpError> {
        let mut bytes = vec![0u8; b.nbytes()];
        if !bytes.is_empty() {
            // SAFETY: the buffer holds `bytes.len()` bytes.
            unsafe { sys::cuMemcpyDtoHAsync_v2(bytes.as_mut_ptr() as *mut _, b.ptr(), bytes.len(), self.stream.cu_stream()) }
                .result()
                .map_err(|e| OpError::new(drv("cuMemcpyDtoHAsync", e)))?;
        }
        self.synchronize()?;
        self.check_device_errors()?;
        let data = match b.dtype {
            DType::F32 => Data::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::I64 => Data::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()),
            DType::Bool => Data::Bool(bytes.iter().map(|&x| x != 0).collect()),
            d @ (DType::Bf16 | DType::F16) => Data::F32(crate::precision::decode(d, &bytes)),
        };
        Ok(Tensor { shape: b.shape.clone(), data })
    }
    fn shape(&self, b: &CudaBuf) -> Vec<usize> {
        b.shape.clone()
    }
    fn run_op(&self, op: &Op, inputs: &[Option<&CudaBuf>], env: &HashMap<String, i64>) -> Result<Vec<CudaBuf>, OpError> {
        let Some(profile) = &self.profile else { return self.run_op_inner(op, inputs, env) };
        // Device time of the op alone: the stream is held by a spin kernel while the op is
        // enqueued, so the events around it see no host time (one-token decode enqueues slower
        // than the device runs it).
        self.synchronize()?;
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let ev = |what: &str| self.ctx.new_event(timing).map_err(|e| OpError::new(drv(what, e)));
        let (start, end) = (ev("cuEventCreate")?, ev("cuEventCreate")?);
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        launch!(self, Kernel::Spin, cfg, PROFILE_SPIN_CYCLES)?;
        start.record(&self.stream).map_err(|e| OpError::new(drv("cuEventRecord", e)))?;
        let r = self.run_op_inner(op, inputs, env);
        end.record(&self.stream).map_err(|e| OpError::new(drv("cuEventRecord", e)))?;
        let ms = start.elapsed_ms(&end).map_err(|e| OpError::new(drv("cuEventElapsedTime", e)))? as f64;
        let kind = format!("{op:?}").split(['(', ' ']).next().unwrap_or("op").to_string();
        let mut p = profile.borrow_mut();
        let e = p.entry(kind).or_default();
        *e = (e.0 + 1, e.1 + ms);
        r
    }
    fn stack(&self, xs: &[CudaBuf]) -> Result<CudaBuf, OpError> {
        self.stack_inner(xs)
    }
    fn nbytes(&self, b: &CudaBuf) -> usize {
        b.nbytes()
    }
    fn step_graphs(&self) -> Option<&dyn crate::step_graph::StepGraphs<CudaBuf>> {
        self.graphs.then_some(self as _)
    }
    fn memory_usage(&self) -> Option<crate::backend::MemoryUsage> {
        let u = self.arena.usage();
        Some(crate::backend::MemoryUsage { peak_bytes: u.peak as u64, mapped_bytes: u.mapped as u64 })
    }
    fn to_kv_cache(&self, t: &CudaBuf, a: &crate::plan::Attention) -> Result<CudaBuf, OpError> {
        // Rows of whole 16-byte chunks only (every real head size): the cache kernels copy words.
        if t.dtype != DType::F32 || t.shape.last().is_none_or(|w| w % 8 != 0) {
            return Ok(t.clone());
        }
        select::cast(self, t, attention::kv_cache_dtype(a))
    }
}

impl Cuda {
    fn run_op_inner(&self, op: &Op, inputs: &[Option<&CudaBuf>], env: &HashMap<String, i64>) -> Result<Vec<CudaBuf>, OpError> {
        let one = |b: CudaBuf| vec![b];
        Ok(match op {
            Op::Embed(_) => one(shape::embed(self, req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Gather(a) => one(shape::gather(self, req(inputs, 0)?, req(inputs, 1)?, a.axis)?),
            Op::RmsNorm(a) => one(norm::rms_norm(self, req(inputs, 0)?, req(inputs, 1)?, a.epsilon, a.axis)?),
            Op::Linear(a) => one(linalg::linear(self, req(inputs, 0)?, req(inputs, 1)?, opt(inputs, 2), a.transpose_w)?),
            Op::MatMul(_) => one(linalg::matmul(self, req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Binary(a) => one(elementwise::binary(self, req(inputs, 0)?, req(inputs, 1)?, a.kind())?),
            Op::Unary(a) => one(elementwise::unary(self, req(inputs, 0)?, a.kind())?),
            Op::Reduce(a) => one(reduce::reduce(self, req(inputs, 0)?, a.kind(), &a.axes, a.keepdims)?),
            Op::DimValues(a) => {
                let t = crate::cpu::shape::dim_values(&a.dims, &a.shape, env)?;
                let out = self.alloc(t.shape.clone(), DType::I64)?;
                crate::step_graph::StepGraphs::write(self, &out, &t)?;
                one(out)
            }
            Op::CumSum(a) => one(reduce::cumsum(self, req(inputs, 0)?, a.axis, a.exclusive, a.reverse)?),
            Op::Reshape(a) => one(shape::reshape(req(inputs, 0)?, &a.shape, env)?),
            Op::Transpose(a) => one(shape::transpose(self, req(inputs, 0)?, &a.perm)?),
            Op::Expand(a) => one(shape::expand(self, req(inputs, 0)?, &a.shape, env)?),
            Op::Range(a) => one(shape::range(self, a.start, a.delta, &a.size, env)?),
            Op::Concat(a) => {
                let xs: Vec<&CudaBuf> = inputs.iter().map(|t| t.ok_or_else(|| OpError::new("concat input missing"))).collect::<Result<_, _>>()?;
                one(shape::concat(self, &xs, a.axis)?)
            }
            Op::Slice(a) => one(shape::slice(self, req(inputs, 0)?, &a.axes, &a.starts, &a.ends, &a.steps)?),
            Op::CausalConv(a) => {
                let (y, st) = conv::causal_conv(self, req(inputs, 0)?, req(inputs, 1)?, opt(inputs, 2), opt(inputs, 3), &a.activation)?;
                vec![y, st]
            }
            Op::Gdn(a) => {
                let (o, st) = gdn::linear_attention(
                    self,
                    [req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?],
                    [opt(inputs, 3), opt(inputs, 4), opt(inputs, 5)],
                    a.q_heads as usize,
                    a.kv_heads as usize,
                    a.scale,
                    a.update_rule(),
                )?;
                vec![o, st]
            }
            Op::Attention(a) => one(attention::attention(self, [req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?], opt(inputs, 3), a)?),
            Op::Rope(a) => one(rope::rope(
                self,
                [req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?],
                opt(inputs, 3),
                a.num_heads as usize,
                a.interleaved,
                a.rotary_dim as usize,
            )?),
            Op::Softmax(a) => one(select::softmax(self, req(inputs, 0)?, a.axis)?),
            Op::Where(_) => one(select::where_(self, req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?)?),
            Op::Compare(a) => one(select::compare(self, req(inputs, 0)?, opt(inputs, 1), a.kind())?),
            Op::Cast(a) => one(select::cast(self, req(inputs, 0)?, a.to())?),
            Op::Trilu(a) => one(select::trilu(self, req(inputs, 0)?, a.upper, a.k)?),
            Op::TopK(a) => {
                let (v, i) = select::top_k(self, req(inputs, 0)?, a.axis, a.largest, &a.k, env)?;
                vec![v, i]
            }
            Op::LightningIndexer(a) => {
                one(sparse::lightning_indexer(self, req(inputs, 0)?, req(inputs, 1)?, opt(inputs, 2), a.num_heads as usize, a.top_k as usize, &a.score, None)?)
            }
            Op::SparseAttention(a) => one(sparse::sparse_attention(
                self,
                [req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?],
                req(inputs, 3)?,
                a.q_heads as usize,
                a.kv_heads as usize,
                a.scale,
            )?),
            Op::Weight(_) | Op::Loop(_) | Op::Constant(_) => return Err(OpError::new("control op reached run_op; the executor handles it")),
        })
    }

    fn stack_inner(&self, xs: &[CudaBuf]) -> Result<CudaBuf, OpError> {
        let first = xs.first().ok_or_else(|| OpError::new("no iterations to stack"))?;
        if xs.iter().any(|x| x.shape != first.shape || x.dtype != first.dtype) {
            return Err(OpError::new("a scan output changed shape or dtype across iterations"));
        }
        let mut shape = vec![xs.len()];
        shape.extend(&first.shape);
        let out = self.alloc(shape, first.dtype)?;
        let step = first.nbytes();
        for (i, x) in xs.iter().enumerate() {
            self.copy_dtod(out.ptr() + (i * step) as u64, x.ptr(), step)?;
        }
        Ok(out)
    }
}

fn req<'a>(inputs: &[Option<&'a CudaBuf>], i: usize) -> Result<&'a CudaBuf, OpError> {
    inputs.get(i).copied().flatten().ok_or_else(|| OpError::new(format!("required input {i} is missing")))
}

fn opt<'a>(inputs: &[Option<&'a CudaBuf>], i: usize) -> Option<&'a CudaBuf> {
    inputs.get(i).copied().flatten()
}

/// The f32 check the CPU's `expect_f32` makes, for a device buffer.
pub(crate) fn expect_f32(op: &str, what: &str, t: &CudaBuf) -> Result<(), OpError> {
    if t.dtype != DType::F32 {
        crate::op_bail!("{op}: {what} must be f32, got {:?}", t.dtype);
    }
    Ok(())
}

impl Drop for Cuda {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        let _ = &self.ctx;
        if let Some(p) = &self.profile {
            let mut rows: Vec<(String, (u64, f64))> = p.borrow().iter().map(|(k, v)| (k.clone(), *v)).collect();
            rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
            let total: f64 = rows.iter().map(|r| r.1 .1).sum();
            eprintln!("cuda profile (device time per op, each op alone on the device): {total:.3} ms in ops");
            for (k, (n, ms)) in rows {
                eprintln!("  {k:<18} {n:>7} calls {ms:>10.3} ms {:>8.2} us/call", 1e3 * ms / n as f64);
            }
        }
    }
}
