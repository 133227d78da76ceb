//! Who owns a buffer's device memory, and where it goes when the buffer is dropped: weights hold
//! exact-size driver memory; activations and caches hold a range of the backend's arena
//! (`arena.rs`) and give it back at once; buffers allocated while a decode step is recorded
//! belong to the recording's `Pool`, whose free lists keep every range it was given, so what the
//! recorded step reads and writes is never handed to other work while the recording can be
//! replayed. Dropping the recording (and its last buffer) returns all of them to the arena.
//!
//! A recording's free lists are keyed by a size class that rounds up by at most 1/8 (small
//! sizes to 256 bytes), so the buffers freed and allocated within one step find each other.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use cudarc::driver::CudaSlice;

use super::arena::{Arena, Span};

/// Where a buffer's memory comes from and goes back to.
enum Owner {
    /// Exact-size stream-ordered driver memory (`cuMemAllocAsync`): weights. Held only to be
    /// freed (`cuMemFreeAsync`) on drop.
    Driver { _slice: CudaSlice<u8> },
    /// A range of the arena, returned to it on drop.
    Arena(Rc<Arena>, Span),
    /// A range that a recording owns, returned to its free lists on drop.
    Recorded(Rc<RefCell<Pool>>, Span),
}

/// Device memory owned by one buffer.
pub(crate) struct DevMem {
    /// The device address of the first byte.
    pub(crate) ptr: u64,
    owner: Owner,
}

impl DevMem {
    /// Exact-size driver memory at `ptr`.
    pub(crate) fn driver(slice: CudaSlice<u8>, ptr: u64) -> DevMem {
        DevMem { ptr, owner: Owner::Driver { _slice: slice } }
    }

    /// A range of the arena.
    pub(crate) fn arena(arena: Rc<Arena>, span: Span) -> DevMem {
        DevMem { ptr: arena.ptr(span), owner: Owner::Arena(arena, span) }
    }

    /// A range of the arena that belongs to a recording (`pool`).
    pub(crate) fn recorded(pool: Rc<RefCell<Pool>>, span: Span) -> DevMem {
        let ptr = pool.borrow().arena.ptr(span);
        DevMem { ptr, owner: Owner::Recorded(pool, span) }
    }
}

impl Drop for DevMem {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Driver { .. } => {}
            Owner::Arena(arena, span) => arena.free(*span),
            Owner::Recorded(pool, span) => pool.borrow_mut().free.entry(span.len).or_default().push(*span),
        }
    }
}

/// The arena ranges of one recorded decode step: free lists that keep every range it was given
/// until the recording and all its buffers are dropped.
pub(crate) struct Pool {
    arena: Rc<Arena>,
    free: HashMap<usize, Vec<Span>>,
}

impl Pool {
    /// An empty pool whose ranges come from and go back to `arena`.
    pub(crate) fn new(arena: Rc<Arena>) -> Rc<RefCell<Pool>> {
        Rc::new(RefCell::new(Pool { arena, free: HashMap::new() }))
    }

    /// The size class of a request: 256-byte steps up to 4 KiB, then steps of 1/8 of the
    /// largest power of two below it. Every class is a multiple of 256 bytes, so an arena range
    /// of a class is exactly that long.
    pub(crate) fn class(bytes: usize) -> usize {
        let bytes = bytes.max(1);
        if bytes <= 4096 {
            return bytes.next_multiple_of(256);
        }
        let step = (1usize << (usize::BITS - 1 - bytes.leading_zeros())) / 8;
        bytes.next_multiple_of(step)
    }

    /// A free range of this class, if the recording holds one.
    pub(crate) fn take(&mut self, class: usize) -> Option<Span> {
        self.free.get_mut(&class)?.pop()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for s in self.free.drain().flat_map(|(_, v)| v) {
            self.arena.free(s);
        }
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
            assert!(c >= b && (c - b) * 8 <= b && c.is_multiple_of(256), "{b} -> {c}");
        }
        // A KV cache one row longer (8 KiB per row) stays in the class most of the time.
        let same = (1000..2000usize).filter(|r| Pool::class(r * 8192) == Pool::class((r + 1) * 8192)).count();
        assert!(same > 900, "{same}");
    }
}
