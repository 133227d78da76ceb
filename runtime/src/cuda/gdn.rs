//! Launch wrappers for linear attention with a matrix state (the gated delta rule and its special
//! cases). Semantics: `cpu/gdn.rs`. Two implementations of the same recurrence:
//! - the chunked form (`gdn.cu` `lt2_gdn_chunk_*`, chunks of 64 tokens in the WY / UT
//!   representation of flash-linear-attention's chunk_gated_delta_rule), for prefill of at least
//!   `CHUNKED_MIN_T` tokens with per-head decay and K <= 128, every update rule (without the delta
//!   rule beta = 1 and the triangular solve drops out; without gating the decay is 0): 64 times
//!   fewer sequential steps, the work inside a chunk done as small matrix products, fp32;
//! - the token recurrence (`lt2_gdn_f32`, the state in registers) for everything else: decode
//!   and short inputs, per-key-dim decay (`g_per_dim`: its decay factors differ per key dim, so
//!   the chunk's K K^T and Q K^T products cannot factor them out), K > 128, and devices that do
//!   not grant the chunked kernels' shared memory.

use cudarc::driver::{sys, LaunchConfig};

use crate::cpu::gdn::{gdn_dims, GdnDims};
use crate::error::OpError;
use crate::op_bail;
use crate::plan::{DType, UpdateRule};

use super::kernels::Kernel;
use super::{device_repr, expect_f32, launch, Cuda, CudaBuf};

/// State rows each thread keeps in registers (gdn.cu GDN_ROWS).
const ROWS: usize = 32;

/// gdn.cu GDN_QPF: query values per thread the kernel prefetches.
const QPF: usize = 8;

/// gdn.cu GDN_C: tokens per chunk of the chunked form.
const CHUNK: usize = 64;

/// Sequences of at least this many tokens take the chunked form. The recurrence costs one
/// dependent step per token (about 1.5 us on an H100 at H16 K96 V192); the chunked form costs
/// three launches and a fixed latency of a few tens of us, then far less per token, and a chunk
/// of 64 is the unit it works in. Measured there (`gdn_chunked_timing`): 0.082 vs 0.098 ms at
/// 64 tokens, 0.111 vs 0.356 ms at 256. Shorter inputs (decode steps above all) keep the
/// recurrence.
const CHUNKED_MIN_T: usize = CHUNK;

/// The chunked state kernel keeps rows ty + 16 r (r < gdn.cu GDN_SROWS = 8) of the state per
/// thread: key dims up to 128.
const CHUNKED_MAX_K: usize = 128;

/// gdn.cu GDN_SCOLS / GDN_OT: state columns per block of the state kernel, output columns per
/// block of the out kernel.
const STATE_COLS: usize = 32;
const OUT_COLS: usize = 64;

/// gdn.cu GDN_CS: the row stride of chunk-wide (64-column) shared-memory tiles.
const CHUNK_STRIDE: usize = 68;

/// gdn.cu `GdnParams`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GdnParams {
    b: i32,
    t: i32,
    hq: i32,
    hkv: i32,
    dk: i32,
    dv: i32,
    gated: i32,
    delta: i32,
    g_per_dim: i32,
    beta_per_head: i32,
    scale: f32,
    pad: i32,
}
device_repr!(GdnParams);

/// The checked shapes and flags of one call, shared by both implementations.
struct Call<'a> {
    q: &'a CudaBuf,
    k: &'a CudaBuf,
    v: &'a CudaBuf,
    state: Option<&'a CudaBuf>,
    decay: Option<&'a CudaBuf>,
    beta: Option<&'a CudaBuf>,
    dims: GdnDims,
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
}

impl Call<'_> {
    fn params(&self) -> GdnParams {
        let d = &self.dims;
        GdnParams {
            b: d.nb as i32,
            t: d.t as i32,
            hq: self.q_heads as i32,
            hkv: self.kv_heads as i32,
            dk: d.dk as i32,
            dv: d.dv as i32,
            gated: d.gated as i32,
            delta: d.delta as i32,
            g_per_dim: d.g_per_dim as i32,
            beta_per_head: d.beta_per_head as i32,
            scale: self.scale,
            pad: 0,
        }
    }
}

fn ptr(b: Option<&CudaBuf>) -> u64 {
    b.map_or(0, |b| b.ptr())
}

/// Dynamic shared memory of the chunked prep, state and out kernels in bytes (gdn.cu's layouts:
/// rows of n values padded to `r4(n)`, stored with stride `stride(n)`).
fn chunked_smem(dk: usize) -> [usize; 3] {
    let r4 = |n: usize| n.div_ceil(4) * 4;
    let stride = |n: usize| if (r4(n) / 4) % 2 == 1 { r4(n) } else { r4(n) + 4 };
    let (kq, ks, kr) = (r4(dk), stride(dk), dk.div_ceil(16) * 16);
    let prep = CHUNK * ks + CHUNK * ks.max(CHUNK_STRIDE) + CHUNK * CHUNK_STRIDE + 2 * CHUNK;
    let state = 2 * (CHUNK * ks + kr * CHUNK_STRIDE + CHUNK * STATE_COLS + CHUNK) + kq * STATE_COLS + CHUNK;
    let out = (CHUNK * ks + kq * CHUNK_STRIDE).max(2 * CHUNK * CHUNK_STRIDE) + CHUNK;
    [prep * 4, state * 4, out * 4]
}

/// (o [B,T,Hq*V], final state [B,Hkv,K,V]) from q, k, v and optional state, decay, beta.
pub(crate) fn linear_attention(
    cu: &Cuda,
    [q, k, v]: [&CudaBuf; 3],
    [state, decay, beta]: [Option<&CudaBuf>; 3],
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    rule: UpdateRule,
) -> Result<(CudaBuf, CudaBuf), OpError> {
    let op = "linear_attention";
    for (what, t) in [("q", Some(q)), ("k", Some(k)), ("v", Some(v)), ("state", state), ("decay", decay), ("beta", beta)] {
        if let Some(t) = t {
            expect_f32(op, what, t)?;
        }
    }
    fn shape(b: Option<&CudaBuf>) -> Option<&[usize]> {
        b.map(|b| &b.shape[..])
    }
    let dims = gdn_dims([&q.shape, &k.shape, &v.shape], [shape(state), shape(decay), shape(beta)], q_heads, kv_heads, rule)?;
    let scale = if scale == 0.0 { (1.0 / (dims.dk as f64).sqrt()) as f32 } else { scale };
    let (nb, dk, dv) = (dims.nb, dims.dk, dims.dv);
    if nb == 0 || dv == 0 {
        return Ok((cu.alloc(vec![nb, dims.t, q_heads * dv], DType::F32)?, cu.alloc(vec![nb, kv_heads, dk, dv], DType::F32)?));
    }
    if dk == 0 {
        // No state rows: o = 0 and the state is empty.
        return Ok((cu.zeros(vec![nb, dims.t, q_heads * dv], DType::F32)?, cu.alloc(vec![nb, kv_heads, dk, dv], DType::F32)?));
    }
    let c = Call { q, k, v, state, decay, beta, dims, q_heads, kv_heads, scale };
    if use_chunked(cu, &c.dims) {
        chunked(cu, &c)
    } else {
        recurrence(cu, &c)
    }
}

/// Whether the chunked form runs this call: long enough (`CHUNKED_MIN_T`), per-head decay (the
/// per-key-dim decay of `g_per_dim` would need a decay factor per pair of tokens and key dim), a
/// key dim the state kernel holds, and shared memory the device grants.
fn use_chunked(cu: &Cuda, d: &GdnDims) -> bool {
    if d.t < CHUNKED_MIN_T || d.g_per_dim || d.dk > CHUNKED_MAX_K {
        return false;
    }
    let optin = cu.ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).unwrap_or(48 * 1024) as usize;
    chunked_smem(d.dk).into_iter().all(|bytes| bytes <= optin)
}

/// The token recurrence, one block per (batch, kv head, tile of 32 state columns).
fn recurrence(cu: &Cuda, c: &Call) -> Result<(CudaBuf, CudaBuf), OpError> {
    let op = "linear_attention";
    let GdnDims { nb, t, dk, dv, .. } = c.dims;
    let (q_heads, kv_heads) = (c.q_heads, c.kv_heads);
    // Row groups of ROWS rows (threadIdx.y) times a tile of columns (threadIdx.x).
    let groups = dk.div_ceil(ROWS);
    if groups > 32 {
        op_bail!("{op}: key dim {dk} is more than the CUDA kernel's {} rows", 32 * ROWS);
    }
    // One warp of columns per block: more blocks run the (sequential) token loop side by side.
    // The kernel holds each thread's share of the next token's k / g (one value: threads >= DK)
    // and q (GDN_QPF values) in registers.
    let cols = 32;
    let group = q_heads / kv_heads;
    if group * dk > QPF * cols * groups {
        op_bail!("{op}: {group} query heads per key head of {dk} dims are more than the CUDA kernel holds ({QPF} per thread)");
    }
    let o = cu.alloc(vec![nb, t, q_heads * dv], DType::F32)?;
    let s_out = cu.alloc(vec![nb, kv_heads, dk, dv], DType::F32)?;
    let smem = (2 * dk + group * dk + groups * cols) * 4;
    let cfg = LaunchConfig { grid_dim: ((nb * kv_heads) as u32, dv.div_ceil(cols) as u32, 1), block_dim: (cols as u32, groups as u32, 1), shared_mem_bytes: smem as u32 };
    launch!(cu, Kernel::Gdn, cfg, c.q.ptr(), c.k.ptr(), c.v.ptr(), ptr(c.state), ptr(c.decay), ptr(c.beta), o.ptr(), s_out.ptr(), c.params())?;
    Ok((o, s_out))
}

/// The chunked form: prep (per chunk: cumulative gates, W, U, intra-chunk scores P), state (per
/// (batch, kv head, column tile), chunk after chunk: U' = U - W S and the state at the start of
/// every chunk), out (per chunk: O from those). Scratch comes from the pool; all work is on the
/// one stream, so it can go back to the pool when this returns.
fn chunked(cu: &Cuda, c: &Call) -> Result<(CudaBuf, CudaBuf), OpError> {
    chunked_timed(cu, c, None)
}

/// `chunked`, and where `ms` is given, each kernel's time in milliseconds (the stream is
/// synchronised after each launch: for the timing test only).
fn chunked_timed(cu: &Cuda, c: &Call, mut ms: Option<&mut [f64; 3]>) -> Result<(CudaBuf, CudaBuf), OpError> {
    if ms.is_some() {
        cu.synchronize()?;
    }
    let GdnDims { nb, t, dk, dv, delta, .. } = c.dims;
    let (q_heads, kv_heads) = (c.q_heads, c.kv_heads);
    let nc = t.div_ceil(CHUNK);
    let o = cu.alloc(vec![nb, t, q_heads * dv], DType::F32)?;
    let s_out = cu.alloc(vec![nb, kv_heads, dk, dv], DType::F32)?;
    let gc = cu.alloc(vec![nb, kv_heads, t], DType::F32)?;
    let w = if delta { Some(cu.alloc(vec![nb, kv_heads, t, dk], DType::F32)?) } else { None };
    let u = cu.alloc(vec![nb, kv_heads, t, dv], DType::F32)?;
    let pm = cu.alloc(vec![nb, q_heads, t, CHUNK], DType::F32)?;
    let hs = cu.alloc(vec![nb, kv_heads, nc, dk, dv], DType::F32)?;
    let [prep_smem, state_smem, out_smem] = chunked_smem(dk);
    let p = c.params();
    let bh = (nb * kv_heads) as u32;
    let mut last = std::time::Instant::now();
    let mut mark = |i: usize| -> Result<(), OpError> {
        if let Some(ms) = ms.as_deref_mut() {
            cu.synchronize()?;
            ms[i] = last.elapsed().as_secs_f64() * 1e3;
            last = std::time::Instant::now();
        }
        Ok(())
    };

    let cfg = LaunchConfig { grid_dim: (bh, nc as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: prep_smem as u32 };
    launch!(cu, Kernel::GdnChunkPrep, cfg, c.q.ptr(), c.k.ptr(), c.v.ptr(), ptr(c.decay), ptr(c.beta), gc.ptr(), ptr(w.as_ref()), u.ptr(), pm.ptr(), p)?;
    mark(0)?;

    let cfg = LaunchConfig { grid_dim: (bh, dv.div_ceil(STATE_COLS) as u32, 1), block_dim: (16, 16, 1), shared_mem_bytes: state_smem as u32 };
    launch!(cu, Kernel::GdnChunkState, cfg, c.k.ptr(), ptr(c.state), gc.ptr(), ptr(w.as_ref()), u.ptr(), hs.ptr(), s_out.ptr(), p)?;
    mark(1)?;

    // Column tiles innermost: the tiles of one (head, chunk) share its q and P through L2.
    let cfg = LaunchConfig { grid_dim: (dv.div_ceil(OUT_COLS) as u32, (nb * q_heads) as u32, nc as u32), block_dim: (256, 1, 1), shared_mem_bytes: out_smem as u32 };
    launch!(cu, Kernel::GdnChunkOut, cfg, c.q.ptr(), gc.ptr(), u.ptr(), hs.ptr(), pm.ptr(), o.ptr(), p)?;
    mark(2)?;
    Ok((o, s_out))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::backend::Backend;
    use crate::cpu::shape::test_util::{rel_err, Lcg};
    use crate::tensor::Tensor;

    /// The LT2 1.3B GDN shape (B1, 16 heads, K96, V192, gated delta rule) at 64 to 8K tokens:
    /// the recurrence and the chunked form timed on the GPU (mean of 5 calls after a warm-up)
    /// and compared with each other, and at 2K tokens with the CPU backend. Needs a GPU:
    /// `cargo test --release -p lt2-runtime gdn_chunked_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn gdn_chunked_timing() {
        let Some(cu) = crate::cuda::test_backend() else { return };
        eprintln!("{}", cu.description());
        let (h, dk, dv) = (16, 96, 192);
        for t in [64, 256, 1024, 2048, 8192] {
            let mut g = Lcg::new(t as u64);
            let q = g.tensor(&[1, t, h * dk]);
            let mut keys = g.vec(t * h * dk);
            for row in keys.chunks_mut(dk) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                row.iter_mut().for_each(|x| *x /= norm);
            }
            let k = Tensor::f32(vec![1, t, h * dk], keys);
            let v = g.tensor(&[1, t, h * dv]);
            let s0 = g.tensor(&[1, h, dk, dv]);
            let decay = Tensor::f32(vec![1, t, h], (0..t * h).map(|_| -0.05 - 0.45 * g.unit()).collect());
            let beta = Tensor::f32(vec![1, t, h], (0..t * h).map(|_| 0.05 + 0.9 * g.unit()).collect());
            let up = |x: &Tensor| cu.upload(x).unwrap();
            let (qb, kb, vb, sb, db, bb) = (up(&q), up(&k), up(&v), up(&s0), up(&decay), up(&beta));
            let rule = UpdateRule::GatedDelta;
            let dims = gdn_dims([&qb.shape, &kb.shape, &vb.shape], [Some(&sb.shape), Some(&db.shape), Some(&bb.shape)], h, h, rule).unwrap();
            assert!(use_chunked(&cu, &dims));
            let c = Call { q: &qb, k: &kb, v: &vb, state: Some(&sb), decay: Some(&db), beta: Some(&bb), dims, q_heads: h, kv_heads: h, scale: (dk as f32).powf(-0.5) };
            let time = |f: &dyn Fn() -> (CudaBuf, CudaBuf)| {
                let out = f();
                cu.synchronize().unwrap();
                let start = Instant::now();
                for _ in 0..5 {
                    f();
                }
                cu.synchronize().unwrap();
                (out, start.elapsed().as_secs_f64() * 1e3 / 5.0)
            };
            let ((o_r, s_r), ms_r) = time(&|| recurrence(&cu, &c).unwrap());
            let ((o_c, s_c), ms_c) = time(&|| chunked(&cu, &c).unwrap());
            let mut parts = [0.0; 3];
            for _ in 0..3 {
                let mut ms = [0.0; 3];
                chunked_timed(&cu, &c, Some(&mut ms)).unwrap();
                parts = ms;
            }
            let dl = |b: &CudaBuf| cu.download(b).unwrap().as_f32().unwrap().to_vec();
            let (o_r, s_r, o_c, s_c) = (dl(&o_r), dl(&s_r), dl(&o_c), dl(&s_c));
            eprintln!(
                "T={t} H{h} K{dk} V{dv}: recurrence {ms_r:.3} ms, chunked {ms_c:.3} ms ({:.1}x; prep {:.3}, state {:.3}, out {:.3} ms alone); chunked vs recurrence: o {:.2e}, state {:.2e}",
                ms_r / ms_c,
                parts[0],
                parts[1],
                parts[2],
                rel_err(&o_c, &o_r),
                rel_err(&s_c, &s_r)
            );
            if t == 2048 {
                let (o, s) = crate::cpu::gdn::linear_attention(&q, &k, &v, Some(&s0), Some(&decay), Some(&beta), h, h, 0.0, rule).unwrap();
                let (o, s) = (o.as_f32().unwrap(), s.as_f32().unwrap());
                let errs = [rel_err(&o_r, o), rel_err(&s_r, s), rel_err(&o_c, o), rel_err(&s_c, s)];
                eprintln!("T={t} vs the CPU backend: recurrence o {:.2e} state {:.2e}, chunked o {:.2e} state {:.2e}", errs[0], errs[1], errs[2], errs[3]);
                assert!(errs.iter().all(|&e| e < 1e-5), "{errs:?}");
            }
            assert!(rel_err(&o_c, &o_r) < 1e-5 && rel_err(&s_c, &s_r) < 1e-5);
        }
    }
}
