//! Decode steps recorded as CUDA graphs (`step_graph.rs` says why and what the session does):
//! stream capture of everything one step enqueues, then one `cuGraphLaunch` per step. While
//! recording, buffers are arena ranges that a pool owned by the recording keeps (`pool.rs`,
//! `Cuda::alloc_in`), so what the graph reads and writes is never handed to other work; they go
//! back to the arena when the recording is dropped. Capture runs in relaxed mode, which lets
//! the arena map more memory meanwhile (not a stream operation, so nothing is recorded).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use cudarc::driver::{sys, CudaGraph, LaunchConfig};

use crate::backend::Backend;
use crate::error::{OpError, RuntimeError};
use crate::op_bail;
use crate::plan::{self, DType};
use crate::step_graph::{Replay, StepGraphs};
use crate::tensor::Tensor;

use super::kernels::Kernel;
use super::pool::Pool;
use super::{attention, drv, grid_for, launch, sparse, Bytes256, Cuda, CudaBuf, SMALL_UPLOAD};

/// A recorded step and the pool of the buffers it uses.
struct CudaStep {
    graph: CudaGraph,
    _buffers: Rc<RefCell<Pool>>,
}

impl Replay for CudaStep {
    fn replay(&self) -> Result<(), OpError> {
        self.graph.launch().map_err(|e| OpError::new(drv("cuGraphLaunch", e)))
    }
}

impl StepGraphs<CudaBuf> for Cuda {
    fn with_capacity(&self, t: &CudaBuf, cap: usize, at: usize) -> Result<CudaBuf, OpError> {
        let [nb, n, ..] = t.shape[..] else { op_bail!("a cache must be [B, rows, ...], got {:?}", t.shape) };
        if at + n > cap {
            op_bail!("a cache of {cap} rows cannot hold rows {at}..{}", at + n);
        }
        let mut shape = t.shape.clone();
        shape[1] = cap;
        let out = self.alloc(shape, t.dtype)?;
        let row = t.nbytes() / (nb * n).max(1);
        for b in 0..nb {
            self.copy_dtod(out.ptr() + ((b * cap + at) * row) as u64, t.ptr() + (b * n * row) as u64, n * row)?;
        }
        Ok(out)
    }

    fn write(&self, dst: &CudaBuf, t: &Tensor) -> Result<(), OpError> {
        let bytes = Cuda::host_bytes(t);
        if bytes.len() != dst.nbytes() || t.dtype() != dst.dtype {
            op_bail!("writing {:?} {:?} over a buffer of {:?} {:?}", t.dtype(), t.shape, dst.dtype, dst.shape);
        }
        if bytes.len() <= SMALL_UPLOAD {
            // As a kernel parameter: no wait for pageable memory.
            let mut p = Bytes256([0; SMALL_UPLOAD]);
            p.0[..bytes.len()].copy_from_slice(&bytes);
            let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            return launch!(self, Kernel::WriteBytes, cfg, dst.ptr(), bytes.len() as i32, p);
        }
        // SAFETY: the buffer holds `bytes.len()` bytes; pageable memory is staged before the call returns.
        unsafe { sys::cuMemcpyHtoDAsync_v2(dst.ptr(), bytes.as_ptr() as *const _, bytes.len(), self.stream.cu_stream()) }
            .result()
            .map_err(|e| OpError::new(drv("cuMemcpyHtoDAsync", e)))
    }

    fn copy_into(&self, dst: &CudaBuf, src: &CudaBuf) -> Result<(), OpError> {
        if dst.nbytes() != src.nbytes() || dst.dtype != src.dtype {
            op_bail!("copying {:?} {:?} over {:?} {:?}", src.dtype, src.shape, dst.dtype, dst.shape);
        }
        if dst.ptr() == src.ptr() {
            return Ok(());
        }
        self.copy_dtod(dst.ptr(), src.ptr(), src.nbytes())
    }

    fn range_past(&self, r: &plan::Range, past: &CudaBuf, env: &HashMap<String, i64>) -> Result<CudaBuf, OpError> {
        if past.dtype != DType::I64 || past.numel() != 1 {
            op_bail!("range: the token count must be one int64");
        }
        let n = crate::cpu::shape::eval_dims("range", std::slice::from_ref(&r.size), env)?[0];
        let out = self.alloc(vec![n], DType::I64)?;
        if n > 0 {
            launch!(self, Kernel::RangePast, grid_for(n, 256), out.ptr(), r.start, r.delta, n as i64, past.ptr())?;
        }
        Ok(out)
    }

    fn attention_cached(&self, a: &plan::Attention, q: &CudaBuf, new: [&CudaBuf; 2], cache: [&CudaBuf; 2], past: &CudaBuf) -> Result<CudaBuf, OpError> {
        attention::attention_cached(self, a, q, new, cache, past)
    }

    fn indexer_cached(&self, ix: &plan::LightningIndexer, q: &CudaBuf, k_new: &CudaBuf, w: Option<&CudaBuf>, cache: &CudaBuf, past: &CudaBuf) -> Result<CudaBuf, OpError> {
        sparse::lightning_indexer_cached(self, q, k_new, w, cache, past, ix.num_heads as usize, ix.top_k as usize, &ix.score)
    }

    fn sparse_attention_cached(&self, sa: &plan::SparseAttention, q: &CudaBuf, new: [&CudaBuf; 2], cache: [&CudaBuf; 2], idx: &CudaBuf, past: &CudaBuf) -> Result<CudaBuf, OpError> {
        sparse::sparse_attention_cached(self, q, new, cache, idx, past, (sa.q_heads as usize, sa.kv_heads as usize, sa.scale))
    }

    fn capture(&self, record: &mut dyn FnMut() -> Result<(), RuntimeError>) -> Result<Box<dyn Replay>, RuntimeError> {
        let dev = |reason: String| RuntimeError::Device { device: self.name().into(), reason };
        // A cast shared with earlier work would tie the recording to a buffer it does not own.
        *self.last_cast.borrow_mut() = None;
        let buffers = Pool::new(self.arena.clone());
        self.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED).map_err(|e| dev(drv("cuStreamBeginCapture", e)))?;
        *self.recording.borrow_mut() = Some(buffers.clone());
        let recorded = record();
        *self.last_cast.borrow_mut() = None;
        *self.recording.borrow_mut() = None;
        let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
        recorded?;
        let graph = graph.map_err(|e| dev(drv("recording the decode step (cuStreamEndCapture / cuGraphInstantiate)", e)))?;
        let graph = graph.ok_or_else(|| dev("the recorded decode step is empty".into()))?;
        graph.upload().map_err(|e| dev(drv("cuGraphUpload", e)))?;
        Ok(Box::new(CudaStep { graph, _buffers: buffers }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::backend::Backend;
    use crate::cpu::shape::test_util::{rel_err, Lcg};
    use crate::plan::{self, Op};
    use crate::step_graph::StepGraphs;
    use crate::tensor::Tensor;


    /// Rows 0..n of a [B, L, W] tensor.
    fn rows(t: &Tensor, n: usize) -> Tensor {
        let (b, l, w) = (t.shape[0], t.shape[1], t.shape[2]);
        let x = t.as_f32().unwrap();
        let v: Vec<f32> = (0..b).flat_map(|i| x[i * l * w..(i * l + n) * w].to_vec()).collect();
        Tensor::f32(vec![b, n, w], v)
    }

    /// Decode steps over fixed-capacity caches, recorded once and replayed at growing token
    /// counts with new inputs each time, against the CPU's attention over the same keys (and the
    /// positions of a Range offset by the count); the caches grow past their capacity midway
    /// (copied, recorded again) as a session's do.
    #[test]
    fn recorded_decode_steps_match_the_cpu() {
        let Some(cu) = crate::cuda::test_backend() else { return };
        let mut g = Lcg::new(11);
        let (b, hq, hkv, d, dv, past0, steps) = (2usize, 4usize, 2usize, 32usize, 48usize, 150usize, 16usize);
        let caps = [160usize, 320];
        let err = |e: crate::error::OpError| crate::RuntimeError::Session(e.0);
        // fp32 caches, and bf16 ones (a `--dtype bf16` attention keeps its K/V cache in bf16).
        for (window_left, operand) in [(-1i64, plan::DType::F32), (40, plan::DType::F32), (-1, plan::DType::Bf16), (40, plan::DType::Bf16)] {
            let a = plan::Attention { q_heads: hq as u32, kv_heads: hkv as u32, scale: 0.0, causal: true, window_left, window_right: -1, top_left: false, operand_dtype: operand as i32 };
            // Every key the steps will see: the prefill's past0 rows, then one per step.
            let k_all = g.tensor(&[b, past0 + steps, hkv * d]);
            let v_all = g.tensor(&[b, past0 + steps, hkv * dv]);
            let cached = |t: &Tensor| cu.to_kv_cache(&cu.upload(t).unwrap(), &a).unwrap();
            let mut kc = cu.with_capacity(&cached(&rows(&k_all, past0)), caps[0], 0).unwrap();
            let mut vc = cu.with_capacity(&cached(&rows(&v_all, past0)), caps[0], 0).unwrap();
            assert_eq!(kc.dtype, operand, "the cache's form");
            let past = cu.upload(&Tensor::i64(vec![1], vec![past0 as i64])).unwrap();
            let (q_in, k_in, v_in) = (cu.zeros(vec![b, 1, hq * d], plan::DType::F32).unwrap(), cu.zeros(vec![b, 1, hkv * d], plan::DType::F32).unwrap(), cu.zeros(vec![b, 1, hkv * dv], plan::DType::F32).unwrap());
            let range = plan::Range { start: 3, delta: 1, size: "1".into(), positional: true };
            let mut recorded = None;
            for s in 0..steps {
                let n = past0 + s;
                if n + 1 > kc.shape()[1] {
                    // Full: grow (rows move to the new caches) and record again.
                    kc = cu.with_capacity(&kc, caps[1], 0).unwrap();
                    vc = cu.with_capacity(&vc, caps[1], 0).unwrap();
                    recorded = None;
                }
                let q = g.tensor(&[b, 1, hq * d]);
                let (kn, vn) = (rows(&k_all, n + 1), rows(&v_all, n + 1));
                let last = |t: &Tensor| {
                    let (l, w) = (t.shape[1], t.shape[2]);
                    let x = t.as_f32().unwrap();
                    Tensor::f32(vec![b, 1, w], (0..b).flat_map(|i| x[(i * l + l - 1) * w..(i * l + l) * w].to_vec()).collect())
                };
                cu.write(&q_in, &q).unwrap();
                cu.write(&k_in, &last(&kn)).unwrap();
                cu.write(&v_in, &last(&vn)).unwrap();
                cu.write(&past, &Tensor::i64(vec![1], vec![n as i64])).unwrap();
                if recorded.is_none() {
                    let mut outs = None;
                    let step = cu
                        .capture(&mut || {
                            let o = cu.attention_cached(&a, &q_in, [&k_in, &v_in], [&kc, &vc], &past).map_err(err)?;
                            let p = cu.range_past(&range, &past, &HashMap::new()).map_err(err)?;
                            outs = Some((o, p));
                            Ok(())
                        })
                        .unwrap();
                    recorded = Some((step, outs.unwrap()));
                }
                let (step, (o, p)) = recorded.as_ref().unwrap();
                step.replay().unwrap();
                let got = cu.download(o).unwrap();
                let want = crate::cpu::run_op(&Op::Attention(a.clone()), &[Some(&q), Some(&kn), Some(&vn)], &HashMap::new()).unwrap().remove(0);
                let e = rel_err(got.as_f32().unwrap(), want.as_f32().unwrap());
                assert!(e < 1e-5, "{operand:?} window {window_left}, step {s} ({n} cached, capacity {}): relative error {e:.2e}", kc.shape()[1]);
                assert_eq!(cu.download(p).unwrap().as_i64().unwrap(), &[3 + n as i64], "positions at step {s}");
            }
            // A full cache is an error at the next download, not a write out of bounds.
            let (step, (o, _)) = recorded.as_ref().unwrap();
            cu.write(&past, &Tensor::i64(vec![1], vec![caps[1] as i64])).unwrap();
            step.replay().unwrap();
            let e = cu.download(o).err().expect("a full cache must be reported").0;
            assert!(e.contains("fixed-capacity cache of 320 rows"), "{e}");
        }
    }

    /// The lightning indexer and sparse attention of decode steps over fixed-capacity caches,
    /// recorded once and replayed at growing token counts with new inputs each time, against the
    /// CPU's over the same rows: the same positions selected (top-k of fewer keys than k, then of
    /// more), attention outputs within 1e-5.
    #[test]
    fn recorded_sparse_decode_steps_match_the_cpu() {
        let Some(cu) = crate::cuda::test_backend() else { return };
        let mut g = Lcg::new(12);
        let (b, h, d, hq, hkv, dk, dv, top_k, past0, steps, cap) = (2usize, 4usize, 32usize, 4usize, 2usize, 40usize, 24usize, 24usize, 12usize, 24usize, 48usize);
        let err = |e: crate::error::OpError| crate::RuntimeError::Session(e.0);
        let f32z = |shape: Vec<usize>| cu.zeros(shape, plan::DType::F32).unwrap();
        for score in ["mean_dot", "relu_weighted"] {
            let ix = plan::LightningIndexer { num_heads: h as u32, top_k: top_k as u32, score: score.into() };
            let sa = plan::SparseAttention { q_heads: hq as u32, kv_heads: hkv as u32, scale: 0.0 };
            let ik_all = g.tensor(&[b, past0 + steps, d]);
            let k_all = g.tensor(&[b, past0 + steps, hkv * dk]);
            let v_all = g.tensor(&[b, past0 + steps, hkv * dv]);
            let ikc = cu.with_capacity(&cu.upload(&rows(&ik_all, past0)).unwrap(), cap, 0).unwrap();
            let kc = cu.with_capacity(&cu.upload(&rows(&k_all, past0)).unwrap(), cap, 0).unwrap();
            let vc = cu.with_capacity(&cu.upload(&rows(&v_all, past0)).unwrap(), cap, 0).unwrap();
            let past = cu.upload(&Tensor::i64(vec![1], vec![past0 as i64])).unwrap();
            let (qi_in, w_in, ik_in) = (f32z(vec![b, 1, h * d]), f32z(vec![b, 1, h]), f32z(vec![b, 1, d]));
            let (q_in, k_in, v_in) = (f32z(vec![b, 1, hq * dk]), f32z(vec![b, 1, hkv * dk]), f32z(vec![b, 1, hkv * dv]));
            let weighted = score == "relu_weighted";
            let mut recorded = None;
            for s in 0..steps {
                let n = past0 + s;
                let last = |t: &Tensor| {
                    let (l, w) = (t.shape[1], t.shape[2]);
                    let x = t.as_f32().unwrap();
                    Tensor::f32(vec![b, 1, w], (0..b).flat_map(|i| x[(i * l + n) * w..(i * l + n + 1) * w].to_vec()).collect())
                };
                let (qi, w, q) = (g.tensor(&[b, 1, h * d]), g.tensor(&[b, 1, h]), g.tensor(&[b, 1, hq * dk]));
                for (dst, t) in [(&qi_in, &qi), (&w_in, &w), (&q_in, &q), (&ik_in, &last(&ik_all)), (&k_in, &last(&k_all)), (&v_in, &last(&v_all))] {
                    cu.write(dst, t).unwrap();
                }
                cu.write(&past, &Tensor::i64(vec![1], vec![n as i64])).unwrap();
                if recorded.is_none() {
                    let mut outs = None;
                    let step = cu
                        .capture(&mut || {
                            let idx = cu.indexer_cached(&ix, &qi_in, &ik_in, weighted.then_some(&w_in), &ikc, &past).map_err(err)?;
                            let o = cu.sparse_attention_cached(&sa, &q_in, [&k_in, &v_in], [&kc, &vc], &idx, &past).map_err(err)?;
                            outs = Some((idx, o));
                            Ok(())
                        })
                        .unwrap();
                    recorded = Some((step, outs.unwrap()));
                }
                let (step, (idx, o)) = recorded.as_ref().unwrap();
                step.replay().unwrap();
                let ik = rows(&ik_all, n + 1);
                let want_idx = crate::cpu::run_op(&Op::LightningIndexer(ix.clone()), &[Some(&qi), Some(&ik), weighted.then_some(&w)], &HashMap::new()).unwrap().remove(0);
                let got_idx = cu.download(idx).unwrap();
                assert_eq!(got_idx.as_i64().unwrap(), want_idx.as_i64().unwrap(), "{score}, step {s} ({n} cached): selected positions");
                let (kn, vn) = (rows(&k_all, n + 1), rows(&v_all, n + 1));
                let want = crate::cpu::run_op(&Op::SparseAttention(sa.clone()), &[Some(&q), Some(&kn), Some(&vn), Some(&want_idx)], &HashMap::new()).unwrap().remove(0);
                let e = rel_err(cu.download(o).unwrap().as_f32().unwrap(), want.as_f32().unwrap());
                assert!(e < 1e-5, "{score}, step {s} ({n} cached): relative error {e:.2e}");
            }
        }
    }
}
