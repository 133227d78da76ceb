//! A caching allocator for activations: buffers freed by the executor go back to a free list
//! keyed by a size class and are handed out again, so a decode step's thousands of outputs cost
//! no driver call (cuMemAllocAsync / cuMemFreeAsync are a few microseconds each, and decode is
//! bound by per-op host time). Reuse is safe without events because all work runs on one stream:
//! a buffer's last reader was enqueued before its next writer. Size classes round up by at most
//! 1/8 (small sizes to 256 bytes) so the one-row-longer KV caches of successive decode steps land
//! in the same class; at most `limit` bytes are held, the rest goes back to the driver.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use cudarc::driver::{sys, CudaSlice};

/// Device memory of one buffer: stream-ordered (`cuMemAllocAsync`, freed in stream order), or
/// allocated while a decode step is recorded (`cuMemAlloc`, which a recording does not capture;
/// freed with `cuMemFree`, which waits for the device).
pub(crate) enum Block {
    Stream(CudaSlice<u8>),
    Raw(RawMem),
}

/// Memory from `cuMemAlloc`.
pub(crate) struct RawMem(pub(crate) u64);

impl Drop for RawMem {
    fn drop(&mut self) {
        // SAFETY: the address came from cuMemAlloc and nothing holds it any more.
        unsafe {
            sys::cuMemFree_v2(self.0);
        }
    }
}

/// The free lists of one CUDA backend.
pub(crate) struct Pool {
    free: HashMap<usize, Vec<Block>>,
    held: usize,
    limit: usize,
    /// Keep every returned buffer whatever the limit: set while a decode step is recorded
    /// (freeing to the driver then would be recorded too).
    pub(crate) hold_all: bool,
}

/// Device memory owned by one buffer; pooled memory returns to its pool when dropped.
pub(crate) struct DevMem {
    slice: Option<Block>,
    pub(crate) ptr: u64,
    /// Size class, and the pool to return to (None: weights and other exact-size memory).
    class: usize,
    pool: Option<Rc<RefCell<Pool>>>,
}

impl DevMem {
    pub(crate) fn new(slice: Block, ptr: u64, class: usize, pool: Option<Rc<RefCell<Pool>>>) -> DevMem {
        DevMem { slice: Some(slice), ptr, class, pool }
    }
}

impl Drop for DevMem {
    fn drop(&mut self) {
        if let (Some(pool), Some(s)) = (&self.pool, self.slice.take()) {
            let mut p = pool.borrow_mut();
            if p.hold_all || p.held + self.class <= p.limit {
                p.held += self.class;
                p.free.entry(self.class).or_default().push(s);
            }
        }
    }
}

impl Pool {
    pub(crate) fn new(limit: usize) -> Rc<RefCell<Pool>> {
        Rc::new(RefCell::new(Pool { free: HashMap::new(), held: 0, limit, hold_all: false }))
    }

    /// The size class of a request: 256-byte steps up to 4 KiB, then steps of 1/8 of the
    /// largest power of two below it.
    pub(crate) fn class(bytes: usize) -> usize {
        let bytes = bytes.max(1);
        if bytes <= 4096 {
            return bytes.next_multiple_of(256);
        }
        let step = (1usize << (usize::BITS - 1 - bytes.leading_zeros())) / 8;
        bytes.next_multiple_of(step)
    }

    /// Returns every held buffer to the driver.
    pub(crate) fn release(&mut self) {
        self.free.clear();
        self.held = 0;
    }

    /// A free buffer of this class, if one is held.
    pub(crate) fn take(&mut self, class: usize) -> Option<Block> {
        let s = self.free.get_mut(&class)?.pop()?;
        self.held -= class;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn classes_round_up_by_at_most_an_eighth() {
        assert_eq!(Pool::class(0), 256);
        assert_eq!(Pool::class(1), 256);
        assert_eq!(Pool::class(4096), 4096);
        assert_eq!(Pool::class(4097), 4608);
        for b in [5000usize, 65_537, 8 << 20, (8 << 20) + 8192, 123_456_789] {
            let c = Pool::class(b);
            assert!(c >= b && (c - b) * 8 <= b, "{b} -> {c}");
        }
        // A KV cache one row longer (8 KiB per row) stays in the class most of the time.
        let same = (1000..2000usize).filter(|r| Pool::class(r * 8192) == Pool::class((r + 1) * 8192)).count();
        assert!(same > 900, "{same}");
    }
}
