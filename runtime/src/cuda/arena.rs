//! One arena for the CUDA backend's activations and caches: at backend creation, one virtual
//! address range as large as the device's memory (`cuMemAddressReserve`); physical memory is
//! mapped into it from the low end up as it is needed (`cuMemCreate` + `cuMemMap` +
//! `cuMemSetAccess`), at least `GROW_MIN` at a time, and never unmapped before the arena is
//! dropped. Buffers are ranges of it, handed out and taken back by a host-side best-fit
//! sub-allocator (`offsets.rs`), so a decode step's thousands of outputs cost no driver call.
//!
//! Reuse without events is safe because all work runs on one stream: a range is freed once its
//! buffer's last reader has been enqueued, so its next writer is enqueued after that reader.
//! Mapping is not a stream operation, so the arena also grows while a decode step is recorded
//! (the recording runs in relaxed capture mode, `graph.rs`).

mod offsets;

use std::cell::RefCell;
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext, CudaStream};

use crate::error::OpError;

pub(crate) use offsets::Span;
use offsets::Offsets;

/// Least memory mapped at once (rounded up to the device's granularity).
const GROW_MIN: usize = 256 << 20;

/// The activation arena of one CUDA backend.
pub(crate) struct Arena {
    /// The backend's one stream, which all work on the arena's memory goes to.
    stream: Arc<CudaStream>,
    /// Start and length of the reserved address range.
    base: u64,
    reserved: usize,
    /// The device's recommended mapping granularity.
    granularity: usize,
    state: RefCell<State>,
}

struct State {
    offsets: Offsets,
    /// Physical allocations, in address order: (offset, length, handle).
    chunks: Vec<(usize, usize, sys::CUmemGenericAllocationHandle)>,
}

/// Bytes of the arena (`Arena::usage`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    /// The most bytes in use at once.
    pub(crate) peak: usize,
    /// Bytes backed by device memory.
    pub(crate) mapped: usize,
}

/// Device 0's memory, pinned (not migratable), as `cuMemCreate` and the granularity query take it.
fn device_memory() -> sys::CUmemAllocationProp {
    // SAFETY: a plain C struct, all zeros is a valid (empty) value.
    let mut prop: sys::CUmemAllocationProp = unsafe { std::mem::zeroed() };
    prop.type_ = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.requestedHandleTypes = sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE;
    prop.location = sys::CUmemLocation { type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, id: 0 };
    prop
}

fn drv(what: &str, r: sys::CUresult) -> Result<(), String> {
    r.result().map_err(|e| format!("{what}: {e:?}"))
}

/// Bytes for messages: `61.2 GiB`, `12.0 MiB`.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

impl Arena {
    /// Reserves the address range on the stream's device (device 0); maps nothing yet. Fails
    /// where the device has no virtual memory management.
    pub(crate) fn new(stream: Arc<CudaStream>) -> Result<Arena, String> {
        let ctx = stream.context();
        let vmm = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED).map_err(|e| format!("querying CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: {e:?}"))?;
        if vmm == 0 {
            return Err("the device does not support virtual memory management (CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED is 0), which the activation arena needs".into());
        }
        ctx.bind_to_thread().map_err(|e| format!("binding the CUDA context: {e:?}"))?;
        let total = ctx.total_mem().map_err(|e| format!("cuDeviceTotalMem: {e:?}"))?;
        let mut granularity = 0usize;
        // SAFETY: the property describes device 0's memory; the result goes to a local.
        drv("cuMemGetAllocationGranularity", unsafe {
            sys::cuMemGetAllocationGranularity(&mut granularity, &device_memory(), sys::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
        })?;
        let granularity = granularity.max(1).next_multiple_of(offsets::ALIGN);
        let reserved = total.next_multiple_of(granularity);
        let mut base = 0u64;
        // SAFETY: reserves addresses only; the result goes to a local.
        drv(&format!("cuMemAddressReserve of {}", size(reserved)), unsafe { sys::cuMemAddressReserve(&mut base, reserved, 0, 0, 0) })?;
        Ok(Arena { stream, base, reserved, granularity, state: RefCell::new(State { offsets: Offsets::new(), chunks: Vec::new() }) })
    }

    /// The backend's context.
    fn ctx(&self) -> &Arc<CudaContext> {
        self.stream.context()
    }

    /// A range of at least `bytes` (256-byte aligned), mapping more memory when none is free.
    /// Fails with how much is mapped and in use when the device has no more.
    pub(crate) fn alloc(&self, bytes: usize) -> Result<Span, OpError> {
        let mut st = self.state.borrow_mut();
        let need = match st.offsets.alloc(bytes) {
            Ok(s) => return Ok(s),
            Err(need) => need,
        };
        self.grow(&mut st, need).map_err(|reason| {
            OpError::new(format!(
                "out of GPU memory: the activation arena has {} mapped, {} in use, asked for {} more ({reason})",
                size(st.offsets.capacity()),
                size(st.offsets.in_use()),
                size(Offsets::round(bytes))
            ))
        })?;
        st.offsets.alloc(bytes).map_err(|_| OpError::new(format!("the activation arena grew but still has no room for {} (an lt2c bug)", size(Offsets::round(bytes)))))
    }

    /// Returns a range from `alloc`. Its memory may be handed out again at once: see the module
    /// comment.
    pub(crate) fn free(&self, s: Span) {
        self.state.borrow_mut().offsets.free(s);
    }

    /// The device address of a range.
    pub(crate) fn ptr(&self, s: Span) -> u64 {
        self.base + s.offset as u64
    }

    /// Peak bytes in use and bytes mapped.
    pub(crate) fn usage(&self) -> Usage {
        let st = self.state.borrow();
        Usage { peak: st.offsets.peak(), mapped: st.offsets.capacity() }
    }

    /// Maps at least `need` more bytes at the end: `GROW_MIN` or `need`, whichever is larger,
    /// else (the device short of that) just `need`.
    fn grow(&self, st: &mut State, need: usize) -> Result<(), String> {
        let at = st.offsets.capacity();
        let room = self.reserved - at;
        let least = need.next_multiple_of(self.granularity);
        if least > room {
            return Err(format!("beyond the {} of address space reserved for it", size(self.reserved)));
        }
        let wanted = need.max(GROW_MIN).next_multiple_of(self.granularity).min(room);
        let (len, handle) = match self.map(at, wanted) {
            Ok(h) => (wanted, h),
            Err(_) if wanted > least => (least, self.map(at, least)?),
            Err(e) => return Err(e),
        };
        st.chunks.push((at, len, handle));
        st.offsets.grow(len);
        Ok(())
    }

    /// Creates `len` bytes of device memory and maps them read/write at offset `at`.
    fn map(&self, at: usize, len: usize) -> Result<sys::CUmemGenericAllocationHandle, String> {
        self.ctx().bind_to_thread().map_err(|e| format!("binding the CUDA context: {e:?}"))?;
        let ptr = self.base + at as u64;
        let mut handle: sys::CUmemGenericAllocationHandle = 0;
        // SAFETY: `len` is a multiple of the granularity; [ptr, ptr + len) lies in the reserved
        // range and is not mapped yet; a failed step undoes the ones before it.
        unsafe {
            drv(&format!("cuMemCreate of {}", size(len)), sys::cuMemCreate(&mut handle, len, &device_memory(), 0))?;
            if let Err(e) = drv("cuMemMap", sys::cuMemMap(ptr, len, 0, handle, 0)) {
                sys::cuMemRelease(handle);
                return Err(e);
            }
            let access = sys::CUmemAccessDesc { location: device_memory().location, flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
            if let Err(e) = drv("cuMemSetAccess", sys::cuMemSetAccess(ptr, len, &access, 1)) {
                sys::cuMemUnmap(ptr, len);
                sys::cuMemRelease(handle);
                return Err(e);
            }
        }
        Ok(handle)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        // Work still queued may use the memory. (The stream, not the context: another backend's
        // stream may be recording, which a context-wide synchronisation would break.)
        let _ = self.stream.synchronize();
        // SAFETY: no buffer holds a range any more (each holds the arena) and the stream is idle.
        unsafe {
            for &(at, len, handle) in &st.chunks {
                sys::cuMemUnmap(self.base + at as u64, len);
                sys::cuMemRelease(handle);
            }
            sys::cuMemAddressFree(self.base, self.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::Backend;
    use crate::plan::DType;
    use crate::step_graph::StepGraphs;
    use crate::tensor::Tensor;

    use super::super::{Cuda, CudaBuf};

    fn cuda() -> Option<Cuda> {
        crate::cuda::test_backend()
    }

    /// `n` bytes at `src + at` copied into a fresh [n / 4] f32 buffer and downloaded.
    fn read(cu: &Cuda, src: u64, n: usize) -> Vec<f32> {
        let b: CudaBuf = cu.alloc(vec![n / 4], DType::F32).unwrap();
        cu.copy_dtod(b.ptr(), src, n).unwrap();
        cu.download(&b).unwrap().as_f32().unwrap().to_vec()
    }

    /// A buffer larger than the first mapping: the arena maps more, the buffer spans both
    /// physical allocations (data written across the seam reads back), earlier buffers keep
    /// their contents, and a freed buffer's range is reused without mapping more.
    #[test]
    fn arena_grows_on_the_device() {
        let Some(cu) = cuda() else { return };
        let v: Vec<f32> = (0..4096).map(|i| i as f32 * 0.5).collect();
        let a = cu.upload(&Tensor::f32(vec![4, 1024], v.clone())).unwrap();
        let first = cu.memory_usage().unwrap();
        assert!(first.mapped_bytes >= super::GROW_MIN as u64, "{first:?}");
        let big = cu.zeros(vec![(400usize << 20) / 4], DType::F32).unwrap();
        let grown = cu.memory_usage().unwrap();
        assert!(grown.mapped_bytes > first.mapped_bytes && grown.peak_bytes >= 400 << 20, "{first:?} -> {grown:?}");
        let seam = cu.arena.base + first.mapped_bytes;
        assert!(big.ptr() < seam - 8192 && seam + 8192 <= big.ptr() + (400 << 20), "the buffer spans the seam");
        cu.copy_dtod(seam - 8192, a.ptr(), 16384).unwrap();
        assert_eq!(read(&cu, seam - 8192, 16384), v, "across the seam");
        assert_eq!(read(&cu, big.ptr(), 4096), vec![0.0; 1024], "zeroed");
        assert_eq!(cu.download(&a).unwrap().as_f32().unwrap(), &v[..], "an earlier buffer");
        drop(big);
        let again = cu.zeros(vec![(400usize << 20) / 4], DType::F32).unwrap();
        assert_eq!(cu.memory_usage().unwrap().mapped_bytes, grown.mapped_bytes, "reused, not mapped again");
        drop(again);
    }

    /// A recorded step that needs more memory than is mapped: the arena grows during capture;
    /// the replay's copy and memset land in the new memory; the recording keeps its ranges
    /// after its buffers are dropped and gives them back when it is dropped.
    #[test]
    fn arena_grows_while_a_step_is_recorded() {
        let Some(cu) = cuda() else { return };
        let err = |e: crate::error::OpError| crate::RuntimeError::Session(e.0);
        let v: Vec<f32> = (0..4096).map(|i| 1.0 + i as f32).collect();
        let src = cu.upload(&Tensor::f32(vec![1, 4, 1024], v.clone())).unwrap();
        let mapped = cu.memory_usage().unwrap().mapped_bytes as usize;
        let rows = mapped / 4096 + 1024;
        let mut outs = None;
        let step = cu
            .capture(&mut || {
                let cache = cu.with_capacity(&src, rows, rows - 4).map_err(err)?;
                let z = cu.zeros(vec![1024], DType::F32).map_err(err)?;
                outs = Some((cache, z));
                Ok(())
            })
            .unwrap();
        let (cache, z) = outs.unwrap();
        assert!(cu.memory_usage().unwrap().mapped_bytes as usize > mapped, "grew while recording");
        cu.write(&z, &Tensor::f32(vec![1024], vec![7.0; 1024])).unwrap();
        step.replay().unwrap();
        assert_eq!(read(&cu, cache.ptr() + ((rows - 4) * 4096) as u64, 16384), v, "the copy at the end of the cache");
        assert_eq!(cu.download(&z).unwrap().as_f32().unwrap(), &[0.0; 1024][..], "the recorded memset");
        let in_use = || cu.arena.state.borrow().offsets.in_use();
        let held = in_use();
        drop((cache, z));
        assert_eq!(in_use(), held, "the recording keeps its buffers' ranges");
        drop(step);
        assert!(in_use() + rows * 4096 <= held, "the recording gave its ranges back: {} -> {}", held, in_use());
    }

    /// A request beyond the reserved address range fails with the arena's state, not a panic.
    #[test]
    fn arena_reports_running_out() {
        let Some(cu) = cuda() else { return };
        let too_much = cu.arena.reserved + (1 << 30);
        let e = cu.zeros(vec![too_much / 4], DType::F32).err().expect("more than the device has").0;
        assert!(e.starts_with("out of GPU memory: the activation arena has ") && e.contains("in use, asked for"), "{e}");
    }
}
