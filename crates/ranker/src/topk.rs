//! Exact top-K by dot product over the whole catalogue, with exclusions applied
//! inside the scan.
//!
//! Order: higher score first, ties broken by lower item index, so results are
//! the same for every kernel and thread count.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::linalg::{dot_with, Fused, Isa, MulAdd, Plain};

/// A scored item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub item: u32,
    pub score: f32,
}

#[inline]
fn better(a: &Scored, b: &Scored) -> Ordering {
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

    /// Merges another top-K into this one.
    pub fn merge(&mut self, other: TopK) {
        for s in other.buf {
            self.push(s.item, s.score);
        }
    }

    /// The best `k`, best first.
    pub fn into_sorted(mut self) -> Vec<Scored> {
        self.compact();
        self.buf.sort_unstable_by(better);
        self.buf.truncate(self.k);
        self.buf
    }
}

/// Scores `items[lo..hi]` against `q` (plus `bias`) into `top`, skipping the
/// indices in `exclude` (sorted ascending).
#[inline(always)]
fn scan_generic<M: MulAdd>(
    q: &[f32],
    items: &[f32],
    bias: Option<&[f32]>,
    lo: usize,
    hi: usize,
    exclude: &[u32],
    top: &mut TopK,
) {
    let f = q.len();
    let mut ex = exclude.partition_point(|&e| (e as usize) < lo);
    for i in lo..hi {
        if ex < exclude.len() && exclude[ex] as usize == i {
            ex += 1;
            continue;
        }
        let mut s = dot_with::<M>(q, &items[i * f..(i + 1) * f]);
        if let Some(b) = bias {
            s += b[i];
        }
        top.push(i as u32, s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_avx2(
    q: &[f32],
    items: &[f32],
    bias: Option<&[f32]>,
    lo: usize,
    hi: usize,
    exclude: &[u32],
    top: &mut TopK,
) {
    scan_generic::<Fused>(q, items, bias, lo, hi, exclude, top)
}

/// Row-major item table and biases to score against.
#[derive(Debug, Clone, Copy)]
pub struct ItemTable<'a> {
    pub dim: usize,
    /// `n × dim`.
    pub factors: &'a [f32],
    /// Optional per-item bias (`n`).
    pub bias: Option<&'a [f32]>,
    pub isa: Isa,
}

impl ItemTable<'_> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.factors.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scan(&self, q: &[f32], lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
        assert_eq!(q.len(), self.dim, "query dimension");
        match self.isa {
            Isa::Generic => scan_generic::<Plain>(q, self.factors, self.bias, lo, hi, exclude, top),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` is only built after runtime detection of AVX2 and FMA.
            Isa::Avx2 => unsafe { scan_avx2(q, self.factors, self.bias, lo, hi, exclude, top) },
        }
    }

    /// Exact top-`k` for one query on the calling thread; `exclude` sorted
    /// ascending. Fewer than `k` results when the catalogue runs out.
    pub fn top_k(&self, q: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        let mut top = TopK::new(k);
        self.scan(q, 0, self.len(), exclude, &mut top);
        top.into_sorted()
    }

    /// Exact top-`k` for one query, the catalogue split across threads and the
    /// per-thread results merged.
    pub fn top_k_parallel(&self, q: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        const CHUNK: usize = 16_384;
        let n = self.len();
        let parts: Vec<TopK> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut top = TopK::new(k);
                self.scan(q, c * CHUNK, ((c + 1) * CHUNK).min(n), exclude, &mut top);
                top
            })
            .collect();
        let mut top = TopK::new(k);
        for p in parts {
            top.merge(p);
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dot;
    use proptest::prelude::*;

    fn naive(q: &[f32], items: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        let f = q.len();
        let mut all: Vec<Scored> = (0..items.len() / f)
            .filter(|i| !exclude.contains(&(*i as u32)))
            .map(|i| Scored {
                item: i as u32,
                score: dot(q, &items[i * f..(i + 1) * f]),
            })
            .collect();
        all.sort_by(better);
        all.truncate(k);
        all
    }

    proptest! {
        #[test]
        fn top_k_equals_sort_and_truncate(
            n in 0usize..300,
            f in 1usize..20,
            k in 0usize..40,
            seed in any::<u64>(),
            n_ex in 0usize..50,
        ) {
            let mut s = seed;
            let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); ((s >> 40) % 7) as f32 - 3.0 };
            // Few distinct values: many ties.
            let items: Vec<f32> = (0..n * f).map(|_| next()).collect();
            let q: Vec<f32> = (0..f).map(|_| next()).collect();
            let mut exclude: Vec<u32> = (0..n_ex).map(|_| (next() + 3.0) as u32 * 37 % (n.max(1) as u32)).collect();
            exclude.sort_unstable();
            exclude.dedup();
            for isa in [Isa::Generic, Isa::detect()] {
                let t = ItemTable { dim: f, factors: &items, bias: None, isa };
                let want = naive(&q, &items, k, &exclude);
                prop_assert_eq!(&t.top_k(&q, k, &exclude), &want);
                prop_assert_eq!(&t.top_k_parallel(&q, k, &exclude), &want);
            }
        }
    }

    #[test]
    fn k_larger_than_catalogue_returns_everything_left() {
        let items = vec![1.0, 2.0, 3.0];
        let t = ItemTable {
            dim: 1,
            factors: &items,
            bias: None,
            isa: Isa::detect(),
        };
        let r = t.top_k(&[1.0], 10, &[1]);
        assert_eq!(r.iter().map(|s| s.item).collect::<Vec<_>>(), vec![2, 0]);
    }
}
