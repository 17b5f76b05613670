//! Exact top-K by dot product over the whole catalogue, with exclusions applied
//! inside the scan.
//!
//! Order: higher score first, ties broken by lower item index, so results are
//! the same for every kernel and thread count.

use rayon::prelude::*;

use crate::simd::{self, Isa};

pub(crate) use crate::top::{Scored, TopK};

/// Row-major item table and biases to score against, with the bound on its
/// rows that lets a single-query scan skip exact scoring for most items.
#[derive(Debug, Clone, Copy)]
pub struct ItemTable<'a> {
    dim: usize,
    /// `n × dim`.
    factors: &'a [f32],
    /// Optional per-item bias (`n`).
    bias: Option<&'a [f32]>,
    isa: Isa,
    bound: TableBound,
}

/// The largest Euclidean norm of an item of a table and the largest absolute
/// bias, each rounded up (NaN if the table holds a NaN): what the single-query
/// filter's rounding slack is derived from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TableBound {
    max_norm: f32,
    max_bias: f32,
}

/// The larger of two, NaN if either is NaN.
fn max_or_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

impl TableBound {
    /// One parallel pass over the table (squares summed in f64).
    pub fn of(dim: usize, factors: &[f32], bias: Option<&[f32]>) -> TableBound {
        let d = dim.max(1);
        let norm2 = factors
            .par_chunks(d * 4096)
            .map(|c| {
                c.chunks(d)
                    .map(|r| r.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
                    .fold(0.0, max_or_nan)
            })
            .reduce(|| 0.0, max_or_nan);
        let bias = bias.map_or(0.0, |b| {
            b.par_iter()
                .map(|&x| f64::from(x).abs())
                .reduce(|| 0.0, max_or_nan)
        });
        // Rounded up: the f64 sums are within 1e−12 relative, the conversion
        // to f32 within 2⁻²⁴.
        let up = 1.0 + 1e-6;
        TableBound {
            max_norm: (norm2.sqrt() * up) as f32,
            max_bias: (bias * up) as f32,
        }
    }
}

impl<'a> ItemTable<'a> {
    /// A table of `factors.len() / dim` items (row-major) with optional
    /// biases, scored by the best kernel of this CPU; one pass computes the
    /// bound on its norms and biases that lets a scan stop early.
    pub fn new(dim: usize, factors: &'a [f32], bias: Option<&'a [f32]>) -> ItemTable<'a> {
        let bound = TableBound::of(dim, factors, bias);
        ItemTable::with_bound(dim, factors, bias, bound)
    }

    /// A table whose bound was computed before, by [`TableBound::of`] on the
    /// same factors and biases (a wrong bound can drop items from results).
    pub(crate) fn with_bound(
        dim: usize,
        factors: &'a [f32],
        bias: Option<&'a [f32]>,
        bound: TableBound,
    ) -> ItemTable<'a> {
        if let (Some(b), true) = (bias, dim > 0) {
            assert_eq!(b.len(), factors.len() / dim, "one bias per item");
        }
        ItemTable {
            dim,
            factors,
            bias,
            isa: Isa::detect(),
            bound,
        }
    }

    /// The same table scored by the kernels of `isa` (`Isa::GENERIC`: the
    /// portable ones, whose exact scores are the scalar reference's). Every
    /// `Isa` came from detection on this CPU, so any is safe here.
    pub fn with_isa(self, isa: Isa) -> ItemTable<'a> {
        ItemTable { isa, ..self }
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The factors, `len() × dim()` row-major.
    pub fn factors(&self) -> &'a [f32] {
        self.factors
    }

    /// The per-item biases, if any.
    pub fn bias(&self) -> Option<&'a [f32]> {
        self.bias
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.factors.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A bound on `|fast − exact|` for query `q` and any item of the table,
    /// each score with its bias added, where `exact` is the FMA chain in
    /// dimension order and `fast` any other order of the same products
    /// (infinite when no finite bound holds).
    ///
    /// With `P = Σ_d |q_d·x_d| ≤ ‖q‖·max‖x‖ = B` (Cauchy–Schwarz), each
    /// evaluation is within `γ_n·P` of the real dot product (`γ_n = n·u/(1 −
    /// n·u)`, `u = 2⁻²⁴`, `n` the depth of its operations, at most `dim + 4`
    /// for the eight-lane sum and its reduction), so the two differ by at
    /// most `2γ_n·B`; adding a bias rounds each once more, by at most
    /// `u·(B(1 + γ_n) + max|b|)`; gradual underflow adds at most `2⁻¹²⁶` per
    /// operation. The sum of these, enlarged by 1%, is returned. If `B +
    /// max|b|` could approach overflow (or is NaN), no finite bound holds.
    fn filter_slack(&self, q: &[f32]) -> f32 {
        let qn = q
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        let b = qn * f64::from(self.bound.max_norm) * (1.0 + 1e-9);
        let m = f64::from(self.bound.max_bias);
        let u = f64::from(f32::EPSILON) / 2.0;
        let n = self.dim as f64 + 4.0;
        let gamma = n * u / (1.0 - n * u);
        let slack = 1.01
            * (2.0 * gamma * b
                + 2.0 * u * (b * (1.0 + gamma) + m)
                + 2.0 * n * f64::from(f32::MIN_POSITIVE));
        if b + m < 1e37 && gamma > 0.0 && gamma < 1e-3 {
            slack as f32
        } else {
            f32::INFINITY
        }
    }

    /// Scans items `lo..hi` against `q`; `slack` is `filter_slack(q)`,
    /// computed once per query by the caller.
    fn scan(&self, q: &[f32], slack: f32, lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
        let rows = simd::RowScan {
            q,
            items: self.factors,
            bias: self.bias,
            slack,
        };
        simd::scan_rows(self.isa, &rows, lo, hi, exclude, top);
    }

    /// Exact top-`k` for one query on the calling thread; `exclude` sorted
    /// ascending. Fewer than `k` results when the catalogue runs out.
    pub fn top_k(&self, q: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        assert_eq!(q.len(), self.dim, "query dimension");
        let mut top = TopK::new(k);
        self.scan(q, self.filter_slack(q), 0, self.len(), exclude, &mut top);
        top.into_sorted()
    }

    /// Exact top-`k` for one query, the catalogue split across threads and the
    /// per-thread results merged.
    pub fn top_k_parallel(&self, q: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        const CHUNK: usize = 16_384;
        assert_eq!(q.len(), self.dim, "query dimension");
        let n = self.len();
        let slack = self.filter_slack(q);
        // One top-K per worker thread across all its chunks: its threshold
        // keeps rising from chunk to chunk, so few items reach exact scoring.
        per_thread(
            n.div_ceil(CHUNK),
            || TopK::new(k),
            |top, c| {
                self.scan(q, slack, c * CHUNK, ((c + 1) * CHUNK).min(n), exclude, top);
            },
        )
        .into_iter()
        .reduce(|mut a, b| {
            a.merge(b);
            a
        })
        .unwrap_or_else(|| TopK::new(k))
        .into_sorted()
    }

    /// The exact scores (plus bias) of the given items, computed exactly as a
    /// scan computes them (so rescored candidates rank as in an exact scan).
    pub fn scores_of(&self, q: &[f32], items: &[u32]) -> Vec<f32> {
        assert_eq!(q.len(), self.dim, "query dimension");
        let f = self.dim;
        let row = |i: u32| &self.factors[i as usize * f..(i as usize + 1) * f];
        let mut out = Vec::with_capacity(items.len());
        simd::exact_scores(self.isa, q, items, row, &mut out);
        if let Some(b) = self.bias {
            for (s, &i) in out.iter_mut().zip(items) {
                *s += b[i as usize];
            }
        }
        out
    }

    /// The exact top-`k` among `candidates` (e.g. found on a reduced-precision
    /// copy), rescored with [`ItemTable::scores_of`].
    pub fn rescore(&self, q: &[f32], k: usize, candidates: &[Scored]) -> Vec<Scored> {
        let ids: Vec<u32> = candidates.iter().map(|c| c.item).collect();
        let exact = self.scores_of(q, &ids);
        let mut top = TopK::new(k);
        for (i, s) in ids.into_iter().zip(exact) {
            top.push(i, s);
        }
        top.into_sorted()
    }

    /// Items per tile of a batched scan: about 64 KiB of factors, so a tile
    /// stays in L2 while every query of the batch scores it; a whole number
    /// of packed panels.
    fn tile(&self) -> usize {
        ((16384 / self.dim.max(1)) / simd::PANEL * simd::PANEL).max(simd::PANEL)
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
        check_batch(self.dim, queries, k, exclude);
        batched_top_k(
            self.len(),
            self.tile(),
            k,
            |lo, hi, tops, (packed, pbias): &mut (Vec<f32>, Vec<f32>)| {
                simd::pack(self.factors, self.bias, self.dim, lo, hi, packed, pbias);
                let pbias = self.bias.map(|_| &pbias[..]);
                let t = simd::Tile {
                    queries,
                    exclude,
                    packed,
                    pbias,
                    base: lo,
                    count: hi - lo,
                    f: self.dim,
                };
                simd::batch_tile(self.isa, &t, tops);
            },
        )
    }
}

/// Panics unless a batch has one `k` and one exclusion list per query and
/// every query has `dim` values.
pub(crate) fn check_batch(dim: usize, queries: &[&[f32]], k: &[usize], exclude: &[&[u32]]) {
    assert_eq!(queries.len(), k.len(), "one k per query");
    assert_eq!(queries.len(), exclude.len(), "one exclusion list per query");
    for q in queries {
        assert_eq!(q.len(), dim, "query dimension");
    }
}

/// Exact top-`k[j]` for each query `j` of a batch over `n` items: the
/// catalogue split across threads in chunks, each chunk read tile by tile
/// (`tile` items), `scan_tile(lo, hi, tops, scratch)` scoring every query
/// against items `lo..hi` while they are in cache. Each thread keeps one
/// top-K per query across its chunks (and its own scratch); the threads'
/// results are merged. Ties are broken by item id, so the result does not
/// depend on how the chunks fell to threads.
pub(crate) fn batched_top_k<S: Default + Send>(
    n: usize,
    tile: usize,
    k: &[usize],
    scan_tile: impl Fn(usize, usize, &mut [TopK], &mut S) + Sync,
) -> Vec<Vec<Scored>> {
    const CHUNK: usize = 16_384;
    let fresh = || k.iter().map(|&k| TopK::new(k)).collect::<Vec<TopK>>();
    per_thread(
        n.div_ceil(CHUNK),
        || (fresh(), S::default()),
        |(tops, scratch), c| {
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut t = lo;
            while t < hi {
                let end = (t + tile).min(hi);
                scan_tile(t, end, tops, scratch);
                t = end;
            }
        },
    )
    .into_iter()
    .map(|(tops, _)| tops)
    .reduce(|mut a, b| {
        for (x, y) in a.iter_mut().zip(b) {
            x.merge(y);
        }
        a
    })
    .unwrap_or_else(fresh)
    .into_iter()
    .map(TopK::into_sorted)
    .collect()
}

/// Runs `work(state, c)` for every chunk `c < chunks` on the current rayon
/// pool, with one state per worker thread that lives across all the chunks
/// the thread takes (made by `init` on its first chunk); returns the states
/// of the threads that took any.
///
/// A top-K that lives across chunks keeps its rising threshold, so later
/// chunks offer few candidates; `fold` would start a fresh one at every split
/// of the range, each paying for its first `2k` candidates again.
pub(crate) fn per_thread<T: Send>(
    chunks: usize,
    init: impl Fn() -> T + Sync,
    work: impl Fn(&mut T, usize) + Sync,
) -> Vec<T> {
    use std::sync::Mutex;
    let threads = rayon::current_num_threads().max(1);
    let slots: Vec<Mutex<Option<T>>> = (0..threads).map(|_| Mutex::new(None)).collect();
    (0..chunks).into_par_iter().for_each(|c| {
        // Only the worker with this index takes this slot, so the lock is
        // never contended; `work` does not call back into rayon.
        let slot = rayon::current_thread_index().unwrap_or(0) % threads;
        let mut guard = slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        work(guard.get_or_insert_with(&init), c);
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dot;
    use crate::rng::test_floats as floats;
    use crate::top::better;
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
            for isa in Isa::available() {
                let t = ItemTable::new(f, &items, None).with_isa(isa);
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

    /// Every item's exact score by the scalar reference, sorted, truncated.
    fn reference_top(t: &ItemTable<'_>, q: &[f32], k: usize, exclude: &[u32]) -> Vec<Scored> {
        let all: Vec<u32> = (0..t.len() as u32)
            .filter(|i| exclude.binary_search(i).is_err())
            .collect();
        let reference = t.with_isa(Isa::GENERIC);
        let scores = reference.scores_of(q, &all);
        let mut v: Vec<Scored> = all
            .into_iter()
            .zip(scores)
            .map(|(item, score)| Scored { item, score })
            .collect();
        v.sort_by(better);
        v.truncate(k);
        v
    }

    #[test]
    fn every_kernel_is_bit_identical_to_the_scalar_reference_for_dims_0_to_67() {
        // 61 items: three full panels of 16, a partial one, and a remainder
        // after the single-query kernel's blocks of four.
        let n = 61;
        for f in (0usize..=67).chain([96, 100, 128, 131]) {
            let items = floats(f as u64 * 7919 + 1, n * f);
            let bias = floats(f as u64 + 5, n);
            let queries: Vec<Vec<f32>> = (0..14).map(|j| floats(f as u64 * 31 + j, f)).collect();
            let all: Vec<u32> = (0..n as u32).collect();
            for bias in [None, Some(&bias[..])] {
                let fast = ItemTable::new(f, &items, bias);
                let reference = fast.with_isa(Isa::GENERIC);
                for q in &queries {
                    let want = reference.scores_of(q, &all);
                    for i in 0..n {
                        let row = &items[i * f..(i + 1) * f];
                        let b = bias.map_or(0.0, |b| b[i] as f64);
                        let naive: f64 = q
                            .iter()
                            .zip(row)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            + b;
                        // The textbook bound for a recursive dot product.
                        let mass: f64 = q
                            .iter()
                            .zip(row)
                            .map(|(a, b)| (*a as f64 * *b as f64).abs())
                            .sum::<f64>()
                            + b.abs();
                        let bound = (f as f64 + 1.0) * f32::EPSILON as f64 / 2.0 * mass * 1.01;
                        assert!(
                            (want[i] as f64 - naive).abs() <= bound,
                            "reference, dim {f}"
                        );
                    }
                    for isa in Isa::available() {
                        let fast = fast.with_isa(isa);
                        assert_eq!(fast.scores_of(q, &all), want, "scores_of, dim {f}, {isa:?}");
                        // Any order, repeats, groups of eight and a remainder.
                        let picked: Vec<u32> =
                            (0..n as u32).rev().step_by(3).chain([5, 5, 60]).collect();
                        let want_picked: Vec<f32> =
                            picked.iter().map(|&i| want[i as usize]).collect();
                        assert_eq!(fast.scores_of(q, &picked), want_picked, "dim {f}, {isa:?}");
                        // Every path returns the reference's scores, bit for bit.
                        for s in fast.top_k(q, n, &[]) {
                            assert_eq!(
                                s.score.to_bits(),
                                want[s.item as usize].to_bits(),
                                "scan, dim {f}, {isa:?}"
                            );
                        }
                        assert_eq!(
                            fast.top_k(q, 10, &[3, 17]),
                            reference_top(&fast, q, 10, &[3, 17]),
                            "dim {f}, {isa:?}"
                        );
                        assert_eq!(
                            fast.top_k_parallel(q, 10, &[]),
                            reference_top(&fast, q, 10, &[]),
                            "dim {f}, {isa:?}"
                        );
                    }
                }
                // Fourteen queries: a full micro-tile and a remainder for
                // every kernel's tile height (4, 6 and 12).
                let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
                let ks = [n, 1, 5, 10, 0, 60, 61, 3, 7, 2, 61, 20, 9, 1];
                let ex: Vec<&[u32]> = (0..qs.len())
                    .map(|j| if j % 2 == 0 { &all[..j] } else { &[][..] })
                    .collect();
                for isa in Isa::available() {
                    let got = fast.with_isa(isa).top_k_batch(&qs, &ks, &ex);
                    for j in 0..qs.len() {
                        assert_eq!(
                            got[j],
                            reference_top(&fast, qs[j], ks[j], ex[j]),
                            "batch, dim {f}, query {j}, {isa:?}"
                        );
                    }
                }
            }
        }
    }

    /// The top 1, 10 and 100 of `q` by every path of every kernel this CPU
    /// runs equal the scalar reference's.
    fn every_kernel_returns_the_reference_top(t: &ItemTable<'_>, q: &[f32]) {
        for isa in Isa::available() {
            let t = t.with_isa(isa);
            for k in [1, 10, 100] {
                let want = reference_top(&t, q, k, &[]);
                assert_eq!(t.top_k(q, k, &[]), want, "k {k}, {isa:?}");
                assert_eq!(t.top_k_parallel(q, k, &[]), want, "k {k}, {isa:?}");
                assert_eq!(t.top_k_batch(&[q], &[k], &[&[]])[0], want, "k {k}, {isa:?}");
            }
        }
    }

    #[test]
    fn cancellation_ranks_by_the_exact_score_in_every_path() {
        // Dimensions 0..8 hold large values that dimensions 8..16 cancel, the
        // rest small ones. The exact chain rounds the large partial sums and
        // keeps that error; the single-query kernel's eight-lane sum cancels
        // each pair exactly. The two disagree by more than the items differ,
        // so only a filter whose slack covers the disagreement, followed by
        // exact scoring, returns the exact order.
        let (n, f) = (4_000usize, 64usize);
        let r = floats(7, n * f);
        let mut items = vec![0f32; n * f];
        for i in 0..n {
            for d in 0..8 {
                let big = (1u32 << 22) as f32 * (1.5 + 0.5 * r[i * f + d]);
                items[i * f + d] = big;
                items[i * f + d + 8] = -big;
            }
            for d in 16..f {
                items[i * f + d] = r[i * f + d];
            }
        }
        let t = ItemTable::new(f, &items, None);
        let q = vec![1f32; f];
        let reference = t.with_isa(Isa::GENERIC);
        let all: Vec<u32> = (0..n as u32).collect();
        let exact = reference.scores_of(&q, &all);
        let real: Vec<f64> = (0..n)
            .map(|i| items[i * f..(i + 1) * f].iter().map(|&x| x as f64).sum())
            .collect();
        // The construction does what it says: the exact chain is off by units.
        let off = (0..n)
            .filter(|&i| (exact[i] as f64 - real[i]).abs() >= 1.0)
            .count();
        assert!(off > n / 4, "only {off} scores carry a rounding error");
        every_kernel_returns_the_reference_top(&t, &q);
    }

    #[test]
    fn near_ties_within_rounding_rank_by_the_exact_score() {
        // Every item is one base vector with its components nudged by up to
        // 40 ulps, so the scores spread over a few dozen ulps and the fast
        // eight-lane sum orders them differently from the exact chain. Only a
        // filter whose slack covers that disagreement, followed by exact
        // scoring, returns the reference order (a slack of zero fails here).
        let (n, f) = (20_000usize, 64usize);
        let base = floats(21, f);
        let nudge = floats(22, n * f);
        let mut items = vec![0f32; n * f];
        for i in 0..n {
            for d in 0..f {
                let b = base[d];
                let r = nudge[i * f + d];
                let bits = b.to_bits() as i64 + (r * 40.0).round() as i64;
                items[i * f + d] = f32::from_bits(bits as u32);
            }
        }
        let bias: Vec<f32> = (0..n).map(|i| (i % 3) as f32 * 1e-7).collect();
        let q = floats(23, f);
        for bias in [None, Some(&bias[..])] {
            let t = ItemTable::new(f, &items, bias);
            let all: Vec<u32> = (0..n as u32).collect();
            let exact = t.with_isa(Isa::GENERIC).scores_of(&q, &all);
            let distinct: std::collections::BTreeSet<u32> =
                exact.iter().map(|s| s.to_bits()).collect();
            assert!(distinct.len() > 10, "scores are not spread over ulps");
            every_kernel_returns_the_reference_top(&t, &q);
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
        let t = ItemTable::new(f, &items, None);
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
    fn results_do_not_depend_on_the_thread_count() {
        // Five chunks of the catalogue, few distinct values (so ties decide),
        // and pools of 1, 2, 3 and 5 threads: the per-thread top-Ks split
        // the chunks differently each time, the results must not change.
        let (n, f) = (70_000usize, 8usize);
        let r = floats(31, n * f);
        let items: Vec<f32> = r.iter().map(|x| (x * 4.0).round()).collect();
        let t = ItemTable::new(f, &items, None);
        let queries: Vec<Vec<f32>> = (0..5).map(|j| floats(40 + j, f)).collect();
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let ks = [1, 50, 500, 0, n + 1];
        let exclude: Vec<u32> = (0..n as u32).step_by(3).collect();
        let ex: Vec<&[u32]> = (0..5)
            .map(|j| if j % 2 == 0 { &exclude[..] } else { &[][..] })
            .collect();
        let q8 = crate::int8::Int8Table::new(f, &items, None);
        let run = |threads: usize| {
            crate::test_util::on_threads(threads, || {
                let per_isa: Vec<_> = Isa::available()
                    .into_iter()
                    .map(|isa| {
                        let t = t.with_isa(isa);
                        let single: Vec<_> = qs
                            .iter()
                            .zip(&ex)
                            .map(|(q, e)| t.top_k_parallel(q, 100, e))
                            .collect();
                        (t.top_k_batch(&qs, &ks, &ex), single)
                    })
                    .collect();
                (per_isa, q8.search(&t, &qs, &ks, &ex, 2))
            })
        };
        let one = run(1);
        for (batch, single) in &one.0 {
            for j in 0..5 {
                assert_eq!(
                    batch[j],
                    reference_top(&t, qs[j], ks[j], ex[j]),
                    "query {j}"
                );
                assert_eq!(single[j], reference_top(&t, qs[j], 100, ex[j]), "query {j}");
            }
        }
        for threads in [2, 3, 5] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    #[test]
    fn k_larger_than_catalogue_returns_everything_left() {
        let items = vec![1.0, 2.0, 3.0];
        let t = ItemTable::new(1, &items, None);
        let r = t.top_k(&[1.0], 10, &[1]);
        assert_eq!(r.iter().map(|s| s.item).collect::<Vec<_>>(), vec![2, 0]);
    }
}
