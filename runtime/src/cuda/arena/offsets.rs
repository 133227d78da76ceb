//! The sub-allocator of the activation arena (`arena.rs`): which byte ranges of `[0, capacity)`
//! are in use, as plain offsets, without a device call, so that it is tested on the host.
//! Ranges are 256-byte aligned (lengths round up to 256 bytes); a request takes the start of the
//! smallest free range that holds it (best fit, lowest offset among equals), and a freed range
//! merges with free neighbours, so the one-row-longer KV caches of successive decode steps
//! reuse the space of their predecessors instead of growing the arena. When nothing fits, the
//! request says by how much the capacity must grow (less the free range at the end, which a
//! growth extends); the owner maps that much more and calls `grow`.

use std::collections::{BTreeMap, BTreeSet};

/// Alignment of every offset and length (what kernels and cuBLASLt expect of a buffer).
pub(crate) const ALIGN: usize = 256;

/// A range handed out: offset and length, both multiples of `ALIGN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// Free and used ranges of `[0, capacity)`.
pub(crate) struct Offsets {
    capacity: usize,
    /// Free ranges: offset → length; never two adjacent ones.
    free: BTreeMap<usize, usize>,
    /// The same ranges as (length, offset), for best fit.
    by_len: BTreeSet<(usize, usize)>,
    in_use: usize,
    peak: usize,
}

impl Offsets {
    /// No capacity yet: the first request asks to grow.
    pub(crate) fn new() -> Offsets {
        Offsets { capacity: 0, free: BTreeMap::new(), by_len: BTreeSet::new(), in_use: 0, peak: 0 }
    }

    /// The length a request of `bytes` takes (at least one `ALIGN`, so every buffer has its own
    /// address).
    pub(crate) fn round(bytes: usize) -> usize {
        bytes.max(1).next_multiple_of(ALIGN)
    }

    /// Bytes the ranges cover (the owner's mapped memory).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes handed out and not yet freed.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    /// The most bytes in use at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// A range of at least `bytes`, or `Err(grow_by)`: the capacity must grow by at least that
    /// many bytes for the request to fit at the end.
    pub(crate) fn alloc(&mut self, bytes: usize) -> Result<Span, usize> {
        let len = Offsets::round(bytes);
        let Some(&(flen, offset)) = self.by_len.range((len, 0)..).next() else {
            return Err(len - self.free_tail());
        };
        self.remove_free(offset, flen);
        if flen > len {
            self.insert_free(offset + len, flen - len);
        }
        self.in_use += len;
        self.peak = self.peak.max(self.in_use);
        Ok(Span { offset, len })
    }

    /// Returns a range from `alloc`; it merges with the free ranges next to it.
    /// Panics on a range that is not in use (freed twice, or never handed out).
    pub(crate) fn free(&mut self, s: Span) {
        let (mut offset, mut len) = (s.offset, s.len);
        assert!(offset.is_multiple_of(ALIGN) && len.is_multiple_of(ALIGN) && len > 0 && offset + len <= self.capacity, "arena: freeing {s:?}, which was not handed out");
        if let Some((&p, &plen)) = self.free.range(..=offset).next_back() {
            assert!(p + plen <= offset, "arena: freeing {s:?}, which overlaps the free range {p}+{plen}");
            if p + plen == offset {
                self.remove_free(p, plen);
                offset = p;
                len += plen;
            }
        }
        if let Some((&n, &nlen)) = self.free.range(s.offset..).next() {
            assert!(n >= s.offset + s.len, "arena: freeing {s:?}, which overlaps the free range {n}+{nlen}");
            if n == s.offset + s.len {
                self.remove_free(n, nlen);
                len += nlen;
            }
        }
        self.insert_free(offset, len);
        self.in_use -= s.len;
    }

    /// Adds `bytes` (a multiple of `ALIGN`) at the end, merged with a free range there.
    pub(crate) fn grow(&mut self, bytes: usize) {
        assert!(bytes.is_multiple_of(ALIGN), "arena: growing by {bytes} bytes, not a multiple of {ALIGN}");
        if bytes == 0 {
            return;
        }
        let tail = self.free_tail();
        let start = self.capacity - tail;
        if tail > 0 {
            self.remove_free(start, tail);
        }
        self.capacity += bytes;
        self.insert_free(start, tail + bytes);
    }

    /// Length of the free range that ends at the capacity (0 if the last bytes are in use).
    fn free_tail(&self) -> usize {
        match self.free.iter().next_back() {
            Some((&o, &l)) if o + l == self.capacity => l,
            _ => 0,
        }
    }

    fn insert_free(&mut self, offset: usize, len: usize) {
        self.free.insert(offset, len);
        self.by_len.insert((len, offset));
    }

    fn remove_free(&mut self, offset: usize, len: usize) {
        self.free.remove(&offset);
        self.by_len.remove(&(len, offset));
    }

    /// The free ranges in address order (tests).
    #[cfg(test)]
    fn free_ranges(&self) -> Vec<(usize, usize)> {
        self.free.iter().map(|(&o, &l)| (o, l)).collect()
    }

    /// Checks the invariants: both indexes agree, ranges lie in the capacity, are aligned, do
    /// not touch (fully merged), and free plus in-use bytes make the capacity (tests).
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.free.len(), self.by_len.len());
        let mut end = None;
        let mut free = 0;
        for (&o, &l) in &self.free {
            assert!(self.by_len.contains(&(l, o)), "{o}+{l} missing from the length index");
            assert!(l > 0 && o.is_multiple_of(ALIGN) && l.is_multiple_of(ALIGN), "{o}+{l}");
            assert!(o + l <= self.capacity, "{o}+{l} beyond {}", self.capacity);
            if let Some(e) = end {
                assert!(o > e, "free ranges touch or overlap at {o}");
            }
            end = Some(o + l);
            free += l;
        }
        assert_eq!(free + self.in_use, self.capacity);
        assert!(self.peak >= self.in_use);
    }
}

#[cfg(test)]
mod tests {
    use super::{Offsets, Span, ALIGN};

    const K: usize = ALIGN;

    /// An arena of `cap` bytes.
    fn with(cap: usize) -> Offsets {
        let mut o = Offsets::new();
        o.grow(cap);
        o
    }

    /// Allocates, growing like the arena when nothing fits: by `chunk` or the shortfall.
    fn take(o: &mut Offsets, bytes: usize, chunk: usize) -> Span {
        match o.alloc(bytes) {
            Ok(s) => s,
            Err(need) => {
                assert!(need > 0 && need.is_multiple_of(K), "grow request {need}");
                o.grow(need.max(chunk).next_multiple_of(chunk));
                o.alloc(bytes).expect("fits after growing by the request")
            }
        }
    }

    fn disjoint(live: &[Span]) {
        let mut v = live.to_vec();
        v.sort_by_key(|s| s.offset);
        for w in v.windows(2) {
            assert!(w[0].offset + w[0].len <= w[1].offset, "{:?} overlaps {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn arena_offsets_and_lengths_are_aligned() {
        let mut o = with(64 * K);
        let mut live = Vec::new();
        for (bytes, len) in [(0usize, K), (1, K), (255, K), (256, K), (257, 2 * K), (1000, 4 * K), (4096, 16 * K)] {
            let s = o.alloc(bytes).unwrap();
            assert_eq!(s.len, len, "{bytes} bytes");
            assert_eq!(s.offset % K, 0, "{bytes} bytes at {}", s.offset);
            live.push(s);
        }
        disjoint(&live);
        assert_eq!(o.in_use(), live.iter().map(|s| s.len).sum::<usize>());
        o.check();
    }

    #[test]
    fn arena_takes_the_smallest_free_range_that_fits() {
        // Holes of 3, 1 and 2 units between live spans, then the free end.
        let mut o = with(32 * K);
        let mut spans = Vec::new();
        for units in [3, 1, 1, 1, 2, 1] {
            spans.push(o.alloc(units * K).unwrap());
        }
        let (h3, h1, h2) = (spans[0], spans[2], spans[4]);
        for s in [h3, h1, h2] {
            o.free(s);
        }
        o.check();
        assert_eq!(o.alloc(2 * K).unwrap(), h2, "2 units go to the 2-unit hole");
        assert_eq!(o.alloc(K).unwrap(), h1, "1 unit goes to the 1-unit hole");
        assert_eq!(o.alloc(K).unwrap().offset, h3.offset, "then to the start of the 3-unit hole");
        assert_eq!(o.alloc(2 * K).unwrap().offset, h3.offset + K, "the rest of it");
        // Nothing left below the free end: the next unit comes from there.
        assert_eq!(o.alloc(K).unwrap().offset, 9 * K);
        o.check();
    }

    #[test]
    fn arena_merges_freed_neighbours() {
        let mut o = with(12 * K);
        let a = o.alloc(4 * K).unwrap();
        let b = o.alloc(4 * K).unwrap();
        let c = o.alloc(4 * K).unwrap();
        assert!(o.alloc(K).is_err(), "full");
        // Free the outer two, then the middle: one range, in either merge direction.
        o.free(a);
        o.free(c);
        assert_eq!(o.free_ranges(), vec![(0, 4 * K), (8 * K, 4 * K)]);
        o.free(b);
        assert_eq!(o.free_ranges(), vec![(0, 12 * K)]);
        o.check();
        assert_eq!(o.alloc(12 * K).unwrap(), Span { offset: 0, len: 12 * K }, "the whole capacity in one piece");
        o.free(Span { offset: 0, len: 12 * K });
        // Merging with the left neighbour only, then the right only.
        let a = o.alloc(3 * K).unwrap();
        let b = o.alloc(3 * K).unwrap();
        o.free(a);
        o.free(b);
        assert_eq!(o.free_ranges(), vec![(0, 12 * K)]);
        assert_eq!((o.in_use(), o.peak()), (0, 12 * K));
        o.check();
    }

    #[test]
    fn arena_asks_to_grow_by_the_shortfall() {
        let mut o = Offsets::new();
        assert_eq!(o.alloc(1000), Err(4 * K), "empty: the whole rounded request");
        o.grow(16 * K);
        let a = o.alloc(12 * K).unwrap();
        // 4 units free at the end: 8 units ask for 4 more.
        assert_eq!(o.alloc(8 * K), Err(4 * K));
        o.grow(4 * K);
        let b = o.alloc(8 * K).unwrap();
        assert_eq!(b.offset, 12 * K, "the free end and the growth are one range");
        // Full, last bytes in use: the whole request.
        assert_eq!(o.alloc(K), Err(K));
        // A hole too small does not count against the growth.
        o.free(a);
        assert_eq!(o.alloc(13 * K), Err(13 * K));
        assert_eq!(o.capacity(), 20 * K);
        o.check();
    }

    #[test]
    #[should_panic(expected = "freeing")]
    fn arena_refuses_a_double_free() {
        let mut o = with(8 * K);
        let a = o.alloc(2 * K).unwrap();
        let _b = o.alloc(2 * K).unwrap();
        o.free(a);
        o.free(a);
    }

    /// Op-by-op decode: each step's KV cache is a new buffer one row longer, made while the old
    /// one is alive (concat), then the old one is freed; small temporaries come and go between.
    /// Merging freed neighbours lets the cache move back into the space of its predecessors, so
    /// the capacity stays within a small multiple of the largest cache instead of growing with
    /// the sum of all of them.
    #[test]
    fn arena_kv_cache_one_row_longer_each_step_stays_bounded() {
        let row = 8 * 1024 + 256;
        let chunk = 64 * K;
        let steps = 3000;
        let mut o = Offsets::new();
        let mut caches = [take(&mut o, 100 * row, chunk), take(&mut o, 100 * row, chunk)];
        let mut summed = 0usize;
        for step in 0..steps {
            let n = 101 + step;
            let temps: Vec<Span> = [4096, 3 * 4096, 512].iter().map(|&b| take(&mut o, b, chunk)).collect();
            for c in caches.iter_mut() {
                let next = take(&mut o, n * row, chunk);
                o.free(*c);
                *c = next;
                summed += next.len;
            }
            let logits = take(&mut o, 32_000 * 4, chunk);
            for t in temps {
                o.free(t);
            }
            o.free(logits);
            o.check();
        }
        let largest = Offsets::round((100 + steps) * row);
        assert!(summed > 1000 * largest, "the test must allocate far more than any bound");
        assert!(o.capacity() <= 4 * largest + 2 * chunk, "capacity {} for two caches of {largest} bytes", o.capacity());
        // Three caches at once (both old ones and one new) and the temporaries.
        assert!(o.peak() <= 3 * largest + 1024 * K, "peak {}", o.peak());
        for c in caches {
            o.free(c);
        }
        assert_eq!(o.free_ranges(), vec![(0, o.capacity())], "everything merges back into one range");
    }

    /// splitmix64: uniform in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as f64 / 2f64.powi(64)
        }
        fn below(&mut self, n: usize) -> usize {
            ((self.unit() * n as f64) as usize).min(n - 1)
        }
    }

    /// Random allocations and frees against a reference: live spans never overlap, every
    /// request lands in the smallest free range that holds it, a grow request comes only when
    /// no free range holds it, and the invariants hold after every step.
    #[test]
    fn arena_random_pattern_matches_best_fit() {
        let mut g = Rng(5);
        let mut o = with(512 * K);
        let mut live: Vec<Span> = Vec::new();
        let mut choices = 0;
        for _ in 0..20_000 {
            if live.is_empty() || g.unit() < 0.52 {
                let bytes = if g.unit() < 0.8 { g.below(4 * K) } else { g.below(64 * K) };
                let len = Offsets::round(bytes);
                let fits: Vec<(usize, usize)> = o.free_ranges().into_iter().filter(|r| r.1 >= len).collect();
                let best = fits.iter().map(|r| r.1).min();
                match o.alloc(bytes) {
                    Ok(s) => {
                        assert_eq!(s.len, len);
                        let home = fits.iter().find(|r| r.0 == s.offset).expect("starts a free range");
                        assert_eq!(Some(home.1), best, "{bytes} bytes went to a range of {}, the best was {best:?}", home.1);
                        choices += (fits.len() > 1) as usize;
                        live.push(s);
                    }
                    Err(need) => {
                        assert!(best.is_none(), "a free range of {best:?} holds {len} bytes");
                        assert!(need > 0 && need <= len);
                        o.grow(need.next_multiple_of(16 * K));
                    }
                }
            } else {
                let i = g.below(live.len());
                o.free(live.swap_remove(i));
            }
            assert_eq!(o.in_use(), live.iter().map(|s| s.len).sum::<usize>());
            disjoint(&live);
            o.check();
        }
        assert!(choices > 5000, "only {choices} requests had a choice of free ranges");
        for s in live.drain(..) {
            o.free(s);
        }
        assert_eq!(o.free_ranges(), vec![(0, o.capacity())]);
    }
}
