//! Linear and MatMul through cuBLASLt in true fp32 (CUBLAS_COMPUTE_32F, no TF32), with the
//! algorithm chosen once per shape and cached (cudarc's safe `matmul` asks the heuristic on
//! every call). Bias goes in the BIAS epilogue (added after the sum, as the CPU does).
//! Semantics: `cpu/linalg.rs`.
//!
//! Row-major C[M,N] = A[M,K] B[K,N] is column-major C^T = B^T A^T, so cuBLASLt is asked for
//! D (N x M, ld N) = op(W) (N x K) * X (K x M, ld K), with W the weight / right operand.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys as lts;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use crate::cpu::linalg::{linear_dims, matmul_dims, LinearDims};
use crate::error::OpError;
use crate::plan::{BinaryKind, DType};

use super::{elementwise, expect_f32, Cuda, CudaBuf};

/// What determines a cuBLASLt plan.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct GemmKey {
    m: u64,
    n: u64,
    k: u64,
    /// The right operand is stored [N, K] (Linear with transpose_w).
    trans_w: bool,
    batch: i32,
    /// Element strides between batches of W, X, D (0 when batch = 1).
    stride_w: i64,
    stride_x: i64,
    bias: bool,
    /// Element type of W and X (plan::DType: F32, Bf16 or F16); D is always f32.
    ab: DType,
    /// The largest power of two (at most 256) dividing every operand address and batch stride
    /// in bytes: the heuristic may only pick algorithms that accept it.
    align: u32,
}

/// The alignment class of byte addresses / offsets (see `GemmKey::align`).
fn alignment(values: &[u64]) -> u32 {
    values.iter().map(|&v| if v == 0 { 256 } else { 1u32 << v.trailing_zeros().min(8) }).min().unwrap_or(256)
}

/// Descriptors and the chosen algorithm for one GemmKey.
struct Plan {
    desc: lts::cublasLtMatmulDesc_t,
    w: lts::cublasLtMatrixLayout_t,
    x: lts::cublasLtMatrixLayout_t,
    d: lts::cublasLtMatrixLayout_t,
    algo: lts::cublasLtMatmulAlgo_t,
}

pub(crate) struct Blas {
    handle: lts::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    ws_ptr: u64,
    ws_size: usize,
    stream: Arc<CudaStream>,
    plans: RefCell<HashMap<GemmKey, Plan>>,
}

fn blas_err(what: &str, e: lt::CublasError) -> OpError {
    OpError::new(format!("cuBLASLt {what}: {e:?}"))
}

impl Blas {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Result<Blas, String> {
        let handle = lt::create_handle().map_err(|e| format!("cublasLtCreate: {e:?}"))?;
        let ws_size = 32 << 20;
        let workspace = stream.alloc_zeros::<u8>(ws_size).map_err(|e| format!("allocating the cuBLASLt workspace: {e:?}"))?;
        let ws_ptr = workspace.device_ptr(stream).0;
        Ok(Blas { handle, workspace, ws_ptr, ws_size, stream: stream.clone(), plans: RefCell::new(HashMap::new()) })
    }

    fn plan(&self, key: GemmKey) -> Result<(), OpError> {
        if self.plans.borrow().contains_key(&key) {
            return Ok(());
        }
        let f32t = lts::cudaDataType::CUDA_R_32F;
        let abt = match key.ab {
            DType::Bf16 => lts::cudaDataType::CUDA_R_16BF,
            DType::F16 => lts::cudaDataType::CUDA_R_16F,
            _ => f32t,
        };
        // SAFETY: plain descriptor calls; every pointer passed points at a live local.
        let plan = unsafe {
            let desc = lt::create_matmul_desc(lts::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32t).map_err(|e| blas_err("matmul desc", e))?;
            // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 (a 32-bit enum).
            let op: i32 = if key.trans_w { 1 } else { 0 };
            let set = |attr, ptr: *const std::ffi::c_void, size| lt::set_matmul_desc_attribute(desc, attr, ptr, size).map_err(|e| blas_err("desc attribute", e));
            set(lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, &op as *const _ as *const _, std::mem::size_of_val(&op))?;
            if key.bias {
                let epi = lts::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
                set(lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi as *const _ as *const _, std::mem::size_of_val(&epi))?;
            }
            let (m, n, k) = (key.m, key.n, key.k);
            let w = if key.trans_w { lt::create_matrix_layout(abt, k, n, k as i64) } else { lt::create_matrix_layout(abt, n, k, n as i64) }.map_err(|e| blas_err("layout", e))?;
            let x = lt::create_matrix_layout(abt, k, m, k as i64).map_err(|e| blas_err("layout", e))?;
            let d = lt::create_matrix_layout(f32t, n, m, n as i64).map_err(|e| blas_err("layout", e))?;
            if key.batch > 1 {
                for (l, stride) in [(w, key.stride_w), (x, key.stride_x), (d, (m * n) as i64)] {
                    let b = key.batch;
                    lt::set_matrix_layout_attribute(l, lts::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b as *const _ as *const _, 4)
                        .map_err(|e| blas_err("batch count", e))?;
                    lt::set_matrix_layout_attribute(l, lts::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride as *const _ as *const _, 8)
                        .map_err(|e| blas_err("batch stride", e))?;
                }
            }
            let pref = lt::create_matmul_pref().map_err(|e| blas_err("preference", e))?;
            let ws = self.ws_size;
            lt::set_matmul_pref_attribute(pref, lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws as *const _ as *const _, 8)
                .map_err(|e| blas_err("workspace preference", e))?;
            use lts::cublasLtMatmulPreferenceAttributes_t as P;
            for attr in [P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES] {
                lt::set_matmul_pref_attribute(pref, attr, &key.align as *const u32 as *const _, 4).map_err(|e| blas_err("alignment preference", e))?;
            }
            let heur = lt::get_matmul_algo_heuristic(self.handle, desc, w, x, d, d, pref);
            let _ = lt::destroy_matmul_pref(pref);
            let heur = heur.map_err(|e| blas_err(&format!("no algorithm for M={m} N={n} K={k} batch={}", key.batch), e))?;
            Plan { desc, w, x, d, algo: heur.algo }
        };
        self.plans.borrow_mut().insert(key, plan);
        Ok(())
    }

    /// D = op(W) X (+ bias), addresses of the first batch.
    fn run(&self, key: GemmKey, w: u64, x: u64, d: u64, bias: Option<u64>) -> Result<(), OpError> {
        self.plan(key)?;
        let plans = self.plans.borrow();
        let p = &plans[&key];
        let (alpha, beta) = (1f32, 0f32);
        // SAFETY: the caller checked the operands' sizes against `key`; the plan's descriptors
        // live as long as `self`.
        unsafe {
            if let Some(b) = bias {
                lt::set_matmul_desc_attribute(p.desc, lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b as *const _ as *const _, 8)
                    .map_err(|e| blas_err("bias pointer", e))?;
            }
            lt::matmul(
                self.handle,
                p.desc,
                &alpha as *const f32 as *const _,
                &beta as *const f32 as *const _,
                w as *const _,
                p.w,
                x as *const _,
                p.x,
                d as *const _,
                p.d,
                d as *mut _,
                p.d,
                &p.algo,
                self.ws_ptr as *mut _,
                self.ws_size,
                self.stream.cu_stream() as *mut _,
            )
            .map_err(|e| blas_err("matmul", e))
        }
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        // SAFETY: nothing uses the descriptors or the handle after this.
        unsafe {
            for (_, p) in self.plans.borrow_mut().drain() {
                let _ = lt::destroy_matrix_layout(p.w);
                let _ = lt::destroy_matrix_layout(p.x);
                let _ = lt::destroy_matrix_layout(p.d);
                let _ = lt::destroy_matmul_desc(p.desc);
            }
            let _ = lt::destroy_handle(self.handle);
        }
        let _ = &self.workspace;
    }
}

/// Linear: x [..., K] times w [K, N] (or [N, K] when `transpose_w`), plus bias [N]. A bf16 or
/// fp16 weight (`--dtype`) multiplies x rounded to its type, accumulating in fp32 on tensor cores.
pub(crate) fn linear(cu: &Cuda, x: &CudaBuf, w: &CudaBuf, bias: Option<&CudaBuf>, transpose_w: bool) -> Result<CudaBuf, OpError> {
    expect_f32("linear", "x", x)?;
    let LinearDims { m, k, n, shape } = linear_dims(&x.shape, &w.shape, bias.map(|b| &b.shape[..]), transpose_w)?;
    if let Some(b) = bias {
        expect_f32("linear", "bias", b)?;
    }
    match w.dtype {
        DType::F32 => gemm(cu, m, n, k, transpose_w, 1, (0, 0), w.ptr(), x.ptr(), bias, shape, DType::F32),
        d @ (DType::Bf16 | DType::F16) => {
            let xr = cast_activation(cu, x, d)?;
            gemm(cu, m, n, k, transpose_w, 1, (0, 0), w.ptr(), xr.ptr(), bias, shape, d)
        }
        d => Err(OpError::new(format!("linear: w must be f32, bf16 or fp16, got {d:?}"))),
    }
}

/// x rounded to `d`, reusing the previous Linear's cast when it read the same buffer.
fn cast_activation(cu: &Cuda, x: &CudaBuf, d: DType) -> Result<CudaBuf, OpError> {
    if let Some((src, cast)) = cu.last_cast.borrow().as_ref() {
        if Rc::ptr_eq(&src.mem, &x.mem) && src.numel() == x.numel() && cast.dtype == d {
            return Ok(CudaBuf { mem: cast.mem.clone(), shape: x.shape.clone(), dtype: d });
        }
    }
    let xr = super::select::cast(cu, x, d)?;
    *cu.last_cast.borrow_mut() = Some((x.clone(), xr.clone()));
    Ok(xr)
}

/// One (possibly batched) GEMM into a new [.., M, N] buffer of `shape`; handles the empty and
/// K = 0 cases (zeros, plus bias) that cuBLASLt does not.
#[allow(clippy::too_many_arguments)]
fn gemm(cu: &Cuda, m: usize, n: usize, k: usize, trans_w: bool, batch: usize, strides: (i64, i64), w: u64, x: u64, bias: Option<&CudaBuf>, shape: Vec<usize>, ab: DType) -> Result<CudaBuf, OpError> {
    if m == 0 || n == 0 || batch == 0 {
        return cu.alloc(shape, DType::F32);
    }
    if k == 0 {
        let z = cu.zeros(shape, DType::F32)?;
        return match bias {
            Some(b) => elementwise::binary(cu, &z, b, BinaryKind::Add),
            None => Ok(z),
        };
    }
    let out = cu.alloc(shape, DType::F32)?;
    let mut addrs = vec![w, x, out.ptr(), bias.map_or(0, |b| b.ptr())];
    if batch > 1 {
        addrs.extend([4 * strides.0 as u64, 4 * strides.1 as u64, 4 * (m * n) as u64]);
    }
    let key = GemmKey {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        trans_w,
        batch: batch as i32,
        stride_w: strides.0,
        stride_x: strides.1,
        bias: bias.is_some(),
        ab,
        align: alignment(&addrs),
    };
    cu.blas.run(key, w, x, out.ptr(), bias.map(|b| b.ptr()))?;
    Ok(out)
}

/// ONNX MatMul with numpy batch broadcasting; 1-D operands as in `cpu/linalg.rs`.
pub(crate) fn matmul(cu: &Cuda, a: &CudaBuf, b: &CudaBuf) -> Result<CudaBuf, OpError> {
    expect_f32("matmul", "a", a)?;
    expect_f32("matmul", "b", b)?;
    let dims = matmul_dims(&a.shape, &b.shape)?;
    let (m, k, n, shape) = (dims.m, dims.k, dims.n, dims.shape.clone());
    let (offs_a, offs_b) = dims.batch_offsets();
    let nb = offs_a.len();
    // One batched call when both operands advance by a fixed stride, else one call per batch.
    let affine = |o: &[usize]| o.windows(2).all(|w| w[1] as i64 - w[0] as i64 == o[1] as i64 - o[0] as i64);
    if nb <= 1 || (affine(&offs_a) && affine(&offs_b) && offs_a[1] != offs_a[0] && offs_b[1] != offs_b[0]) {
        let stride = |o: &[usize]| if o.len() > 1 { o[1] as i64 - o[0] as i64 } else { 0 };
        return gemm(cu, m, n, k, false, nb, (stride(&offs_b), stride(&offs_a)), b.ptr(), a.ptr(), None, shape, DType::F32);
    }
    let out = cu.alloc(shape, DType::F32)?;
    for (bi, (&oa, &ob)) in offs_a.iter().zip(&offs_b).enumerate() {
        let part = gemm(cu, m, n, k, false, 1, (0, 0), b.ptr() + 4 * ob as u64, a.ptr() + 4 * oa as u64, None, vec![m, n], DType::F32)?;
        cu.copy_dtod(out.ptr() + (4 * bi * m * n) as u64, part.ptr(), 4 * m * n)?;
    }
    Ok(out)
}
