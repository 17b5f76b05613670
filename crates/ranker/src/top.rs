//! The streaming top-K every scan fills, and the one order of results: higher
//! score first, ties broken by lower item index (the same for every kernel
//! and thread count). Its own module so that the kernels (`simd/`) and the
//! tables that drive them (`topk.rs`, `half.rs`, `int8/`) share it without
//! importing each other.

use std::cmp::Ordering;

/// A scored item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The item's row in the table.
    pub item: u32,
    /// Its score.
    pub score: f32,
}

#[inline]
pub(crate) fn better(a: &Scored, b: &Scored) -> Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// Streaming top-K: a buffer of up to `2k` candidates compacted with
/// `select_nth_unstable` when full; a rising threshold rejects most scores
/// before they touch the buffer.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    buf: Vec<Scored>,
    threshold: Option<Scored>,
}

impl TopK {
    /// Keeps the best `k` (buffer capped so a huge `k` does not allocate up front).
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            buf: Vec::with_capacity((2 * k).min(1 << 16)),
            threshold: None,
        }
    }

    /// A score below which a candidate cannot enter (−∞ until the buffer is
    /// first compacted; NaN never compares below it).
    #[inline]
    pub fn floor(&self) -> f32 {
        match &self.threshold {
            Some(t) if self.k > 0 => t.score,
            _ if self.k == 0 => f32::INFINITY,
            _ => f32::NEG_INFINITY,
        }
    }

    /// Offers one candidate.
    #[inline]
    pub fn push(&mut self, item: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let s = Scored { item, score };
        if let Some(t) = &self.threshold {
            if better(&s, t) != Ordering::Less {
                return;
            }
        }
        self.buf.push(s);
        if self.buf.len() >= 2 * self.k {
            self.compact();
        }
    }

    fn compact(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, better);
            self.buf.truncate(self.k);
            self.threshold = self.buf.iter().copied().max_by(better);
        }
    }

    /// The `n`-th best score offered so far (1-based), if `n` were offered
    /// and kept (`n ≤ k`).
    pub fn kth(&self, n: usize) -> Option<f32> {
        if n == 0 || n > self.k || self.buf.len() < n {
            return None;
        }
        let mut b = self.buf.clone();
        b.select_nth_unstable_by(n - 1, better);
        Some(b[n - 1].score)
    }

    /// Merges another top-K into this one.
    pub fn merge(&mut self, other: TopK) {
        for s in other.buf {
            self.push(s.item, s.score);
        }
    }

    /// The best `k`, in no particular order (a candidate pool about to be
    /// rescored needs no sort).
    pub fn into_unsorted(mut self) -> Vec<Scored> {
        self.compact();
        self.buf
    }

    /// The best `k`, best first.
    pub fn into_sorted(mut self) -> Vec<Scored> {
        self.compact();
        self.buf.sort_unstable_by(better);
        self.buf.truncate(self.k);
        self.buf
    }
}
