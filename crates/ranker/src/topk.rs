//! Exact top-K by dot product over the whole catalogue, with exclusions applied
//! inside the scan.
//!
//! Order: higher score first, ties broken by lower item index, so results are
//! the same for every kernel and thread count.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::linalg::{dot_with, Isa, MulAdd, Plain};

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
    let mut floor = top.floor();
    for i in lo..hi {
        if ex < exclude.len() && exclude[ex] as usize == i {
            ex += 1;
            continue;
        }
        let mut s = dot_with::<M>(q, &items[i * f..(i + 1) * f]);
        if let Some(b) = bias {
            s += b[i];
        }
        if s < floor {
            continue;
        }
        top.push(i as u32, s);
        floor = top.floor();
    }
}

/// The four horizontal sums of `a0..a3` as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn reduce4(
    a0: std::arch::x86_64::__m256,
    a1: std::arch::x86_64::__m256,
    a2: std::arch::x86_64::__m256,
    a3: std::arch::x86_64::__m256,
) -> [f32; 4] {
    use std::arch::x86_64::*;
    let s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    let r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let mut t = [0f32; 4];
    // SAFETY: `t` holds exactly four floats.
    unsafe { _mm_storeu_ps(t.as_mut_ptr(), r) };
    t
}

/// Dot products of `q` with items `lo..hi` (row-major, `f = q.len()` floats
/// each) into `out`: four items at a time with four independent accumulator
/// chains, so the FMA latency is hidden. Every item's sum is formed in the
/// same order whether it falls in a block of four or in the remainder:
/// 8-lane partial sums over the dimension, reduced as
/// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)), then the tail dimensions in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(q: &[f32], items: &[f32], lo: usize, hi: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let f = q.len();
    let chunks = f / 8;
    let n = hi - lo;
    debug_assert!(out.len() >= n && items.len() >= hi * f);
    let qp = q.as_ptr();
    let tail = |row: usize, acc: f32| -> f32 {
        let mut s = acc;
        for d in chunks * 8..f {
            s += q[d] * items[row * f + d];
        }
        s
    };
    // SAFETY (whole body): every pointer offset stays within `items[lo * f..hi * f]`
    // and `q[..chunks * 8]`, checked by the slices' lengths above.
    let mut i = 0;
    while i + 4 <= n {
        let row = lo + i;
        let p = unsafe { items.as_ptr().add(row * f) };
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        for c in 0..chunks {
            unsafe {
                let qv = _mm256_loadu_ps(qp.add(c * 8));
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(c * 8)), qv, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(f + c * 8)), qv, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(2 * f + c * 8)), qv, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(3 * f + c * 8)), qv, a3);
            }
        }
        let t = reduce4(a0, a1, a2, a3);
        for j in 0..4 {
            out[i + j] = tail(row + j, t[j]);
        }
        i += 4;
    }
    while i < n {
        let row = lo + i;
        let p = unsafe { items.as_ptr().add(row * f) };
        let mut a0 = _mm256_setzero_ps();
        for c in 0..chunks {
            unsafe {
                a0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(p.add(c * 8)),
                    _mm256_loadu_ps(qp.add(c * 8)),
                    a0,
                );
            }
        }
        // Same reduction as the blocks: lane 0 of reduce4(a0, a0, a0, a0).
        out[i] = tail(row, reduce4(a0, a0, a0, a0)[0]);
        i += 1;
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
    const BLOCK: usize = 256;
    let mut buf = [0f32; BLOCK];
    let mut ex = exclude.partition_point(|&e| (e as usize) < lo);
    let mut floor = top.floor();
    let mut b = lo;
    while b < hi {
        let e = (b + BLOCK).min(hi);
        // SAFETY: AVX2 and FMA are enabled on this function, hence available.
        unsafe { dots_avx2(q, items, b, e, &mut buf) };
        for i in b..e {
            if ex < exclude.len() && exclude[ex] as usize == i {
                ex += 1;
                continue;
            }
            let mut s = buf[i - b];
            if let Some(bias) = bias {
                s += bias[i];
            }
            // Most scores lose to the current k-th best: skip them before
            // the (tie-breaking) comparison inside `push`.
            if s < floor {
                continue;
            }
            top.push(i as u32, s);
            floor = top.floor();
        }
        b = e;
    }
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

    /// The exact scores (plus bias) of the given items, computed exactly as a
    /// scan computes them (so rescored candidates rank as in an exact scan).
    pub fn scores_of(&self, q: &[f32], items: &[u32]) -> Vec<f32> {
        assert_eq!(q.len(), self.dim, "query dimension");
        let f = self.dim;
        items
            .iter()
            .map(|&i| {
                let i = i as usize;
                let s = match self.isa {
                    Isa::Generic => dot_with::<Plain>(q, &self.factors[i * f..(i + 1) * f]),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => {
                        let mut out = [0f32; 1];
                        // SAFETY: `Isa::Avx2` is only built after runtime detection.
                        unsafe { dots_avx2(q, self.factors, i, i + 1, &mut out) };
                        out[0]
                    }
                };
                s + self.bias.map_or(0.0, |b| b[i])
            })
            .collect()
    }

    /// Items per tile of a batched scan: about 32 KiB of factors, so a tile
    /// stays in L1/L2 while every query of the batch scores it.
    fn tile(&self) -> usize {
        (8_192 / self.dim.max(1)).max(16)
    }

    /// Exact top-`k[j]` for each query `queries[j]` (excluding the sorted
    /// `exclude[j]`), the catalogue read once per batch instead of once per
    /// query: tiles of items are scored against every query while they are in
    /// cache. Split across threads by chunks of the catalogue, then merged;
    /// the results equal [`ItemTable::top_k`]'s query by query.
    pub fn top_k_batch(
        &self,
        queries: &[&[f32]],
        k: &[usize],
        exclude: &[&[u32]],
    ) -> Vec<Vec<Scored>> {
        batched_top_k(
            self.len(),
            self.tile(),
            queries,
            k,
            exclude,
            |q, lo, hi, ex, top| self.scan(q, lo, hi, ex, top),
        )
    }
}

/// Exact top-`k[j]` for each query `queries[j]` over `n` items (excluding the
/// sorted `exclude[j]`): the catalogue split across threads in chunks, each
/// chunk read tile by tile (`tile` items) with every query scored against a
/// tile while it is in cache, `scan(q, lo, hi, exclude, top)` doing the
/// scoring; per-chunk results merged.
pub(crate) fn batched_top_k(
    n: usize,
    tile: usize,
    queries: &[&[f32]],
    k: &[usize],
    exclude: &[&[u32]],
    scan: impl Fn(&[f32], usize, usize, &[u32], &mut TopK) + Sync,
) -> Vec<Vec<Scored>> {
    assert_eq!(queries.len(), k.len(), "one k per query");
    assert_eq!(queries.len(), exclude.len(), "one exclusion list per query");
    const CHUNK: usize = 16_384;
    let parts: Vec<Vec<TopK>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut tops: Vec<TopK> = k.iter().map(|&k| TopK::new(k)).collect();
            let mut t = lo;
            while t < hi {
                let end = (t + tile).min(hi);
                for (j, q) in queries.iter().enumerate() {
                    scan(q, t, end, exclude[j], &mut tops[j]);
                }
                t = end;
            }
            tops
        })
        .collect();
    let mut out: Vec<TopK> = k.iter().map(|&k| TopK::new(k)).collect();
    for part in parts {
        for (o, p) in out.iter_mut().zip(part) {
            o.merge(p);
        }
    }
    out.into_iter().map(TopK::into_sorted).collect()
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
                let q2: Vec<f32> = q.iter().map(|x| -x).collect();
                let batch = t.top_k_batch(&[&q, &q2], &[k, k / 2 + 1], &[&exclude, &[]]);
                prop_assert_eq!(&batch[0], &want);
                prop_assert_eq!(&batch[1], &naive(&q2, &items, k / 2 + 1, &[]));
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_scalar_reference_for_dims_1_to_67() {
        for f in 1usize..=67 {
            let n = 13;
            let mut s = f as u64 * 7919;
            let mut next = || {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
            };
            let items: Vec<f32> = (0..n * f).map(|_| next()).collect();
            let q: Vec<f32> = (0..f).map(|_| next()).collect();
            let all: Vec<u32> = (0..n as u32).collect();
            let reference = ItemTable {
                dim: f,
                factors: &items,
                bias: None,
                isa: Isa::Generic,
            }
            .scores_of(&q, &all);
            let fast = ItemTable {
                dim: f,
                factors: &items,
                bias: None,
                isa: Isa::detect(),
            }
            .scores_of(&q, &all);
            for i in 0..n {
                let naive: f64 = (0..f).map(|d| q[d] as f64 * items[i * f + d] as f64).sum();
                assert!(
                    (reference[i] as f64 - naive).abs() < 1e-5,
                    "scalar, dim {f}"
                );
                assert!(
                    (fast[i] - reference[i]).abs() <= 1e-5 * (1.0 + reference[i].abs()),
                    "dim {f} item {i}"
                );
            }
            // The scan uses the same arithmetic as scores_of, whatever the block.
            let t = ItemTable {
                dim: f,
                factors: &items,
                bias: None,
                isa: Isa::detect(),
            };
            for s in t.top_k(&q, n, &[]) {
                assert_eq!(s.score, fast[s.item as usize], "dim {f}");
            }
        }
    }

    #[test]
    fn batch_crosses_tiles_and_chunks() {
        // dim 100: tiles of 81 items; 40,000 items: three chunks.
        let (n, f) = (40_000usize, 100usize);
        let mut s = 11u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
        };
        let items: Vec<f32> = (0..n * f).map(|_| next()).collect();
        let queries: Vec<Vec<f32>> = (0..5).map(|_| (0..f).map(|_| next()).collect()).collect();
        let exclude: Vec<u32> = (0..n as u32).step_by(7).collect();
        let t = ItemTable {
            dim: f,
            factors: &items,
            bias: None,
            isa: Isa::detect(),
        };
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let ks = [1, 10, 100, 7, 0];
        let ex: Vec<&[u32]> = (0..5)
            .map(|j| if j % 2 == 0 { &exclude[..] } else { &[][..] })
            .collect();
        let got = t.top_k_batch(&qs, &ks, &ex);
        for j in 0..5 {
            assert_eq!(got[j], t.top_k(qs[j], ks[j], ex[j]), "query {j}");
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
