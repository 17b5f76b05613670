//! Searching an index: which lists a query probes, scanning them in 8-bit
//! codes and rescoring the best candidates exactly.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::int8::{prefetch_slice, quantize_query, Query, Sink};
use crate::simd::PANEL;
use crate::top::{Scored, TopK};
use crate::topk::ItemTable;

use super::*;

/// A list's candidates go into its queries' top-Ks as item indices, skipping
/// excluded and filtered-out items.
struct ListSink<'a, 'b> {
    ids: &'a [u32],
    /// The chunk's query of each scanned query `r`.
    who: &'a [usize],
    tops: &'a mut [TopK],
    queries: &'a [IvfQuery<'b>],
}

impl Sink for ListSink<'_, '_> {
    #[inline]
    fn offer(&mut self, r: usize, first: usize, mut bits: u32, scores: &[f32; PANEL]) -> f32 {
        let j = self.who[r];
        let q = &self.queries[j];
        let top = &mut self.tops[j];
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let id = self.ids[first + l];
            if q.exclude.binary_search(&id).is_err() && q.filter.is_none_or(|f| f.allows(id)) {
                top.push(id, scores[l]);
            }
        }
        top.floor()
    }
}

/// A query's probe in progress: the centroid order, how far it has been
/// taken, the admissible items in the lists taken, and its exclusions' lists.
pub(super) struct Probe {
    ranked: Vec<Scored>,
    at: usize,
    seen: usize,
    pub(super) lists: Vec<u32>,
    /// The list of each excluded (and filter-allowed) item, sorted.
    excluded: Vec<u32>,
}

/// Asks the CPU to start loading the rows of `items` (scattered in a table
/// far larger than the caches) before they are scored, so their misses
/// overlap instead of following each other.
fn prefetch_rows(table: &[f32], dim: usize, items: &[u32]) {
    for &i in items {
        let row = i as usize * dim;
        if let Some(r) = table.get(row..row + dim) {
            prefetch_slice(r);
        }
    }
}

/// The lists of two rankings in turns, first `a`'s best, then `b`'s, then
/// `a`'s second…, each list once.
pub(super) fn merge_probes(a: Vec<Scored>, b: Vec<Scored>, nlist: usize) -> Vec<Scored> {
    let short = a.len() + b.len() <= 64;
    let mut seen = if short {
        Vec::new()
    } else {
        vec![false; nlist]
    };
    let mut out: Vec<Scored> = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            return out;
        }
        for s in [x, y].into_iter().flatten() {
            let new = if short {
                !out.iter().any(|o| o.item == s.item)
            } else {
                seen.get_mut(s.item as usize)
                    .is_some_and(|slot| !std::mem::replace(slot, true))
            };
            if new {
                out.push(s);
            }
        }
    }
}

impl IvfIndex {
    /// Admissible items (allowed by `q`'s filter, not excluded) that `lists`
    /// lists hold on average: a probe that found fewer in its lists (its
    /// filter keeps less near the query than elsewhere, or its exclusions sit
    /// there) goes on until it has them.
    fn admissible_target(&self, lists: usize, q: &IvfQuery<'_>) -> usize {
        (lists as f64 * self.len() as f64 / self.nlist().max(1) as f64 * self.share(q)).ceil()
            as usize
    }

    /// Starts `q`'s probe: the lists it scans, best centroid first, as many as
    /// the depth table gives for depth `k / share` and holding at least
    /// [`IvfIndex::admissible_target`] admissible items. `ranked` is the
    /// centroid order computed so far (extended to every list when it runs
    /// out).
    pub(super) fn plan(&self, q: &IvfQuery<'_>, ranked: Vec<Scored>) -> Probe {
        // Exclusions the filter would have admitted, by list.
        let mut excluded: Vec<u32> = q
            .exclude
            .iter()
            .filter(|&&i| q.filter.is_none_or(|f| f.allows(i)))
            .filter_map(|&i| self.item_list.get(i as usize).copied())
            .collect();
        excluded.sort_unstable();
        let mut probe = Probe {
            ranked,
            at: 0,
            seen: 0,
            lists: Vec::new(),
            excluded,
        };
        let lists = self.planned_lists(q);
        self.extend(&mut probe, q, lists, self.admissible_target(lists, q));
        probe
    }

    /// Lists `q`'s first round scans: the tuned `nprobe` for a plain query,
    /// otherwise as many as the depth of its `k`-th admissible item needs.
    fn planned_lists(&self, q: &IvfQuery<'_>) -> usize {
        if self.is_plain(q) {
            self.tuning.nprobe
        } else {
            self.lists_for(&self.tuning.depths, q.k as f64 / self.share(q), q.k)
        }
    }

    /// Whether `q` takes the tuned order (see [`IvfIndex::order`]).
    fn is_plain(&self, q: &IvfQuery<'_>) -> bool {
        q.filter.is_none() && q.exclude.is_empty() && q.k <= self.tuning.plain_k
    }

    /// The order `q` takes lists in.
    fn order_for(&self, q: &IvfQuery<'_>) -> Order {
        if self.is_plain(q) {
            self.tuning.order
        } else {
            Order::Pole
        }
    }

    /// Adds lists to `probe` until it has `lists` of them and `target`
    /// admissible items (or every list).
    fn extend(&self, probe: &mut Probe, q: &IvfQuery<'_>, lists: usize, target: usize) {
        let nlist = self.nlist();
        let excluded = &probe.excluded;
        let excluded_in =
            |l: u32| excluded.partition_point(|&x| x <= l) - excluded.partition_point(|&x| x < l);
        let admissible = |l: u32| {
            let all = match q.filter {
                Some(f) => f.per_list.get(l as usize).copied().unwrap_or(0) as usize,
                None => self.lists[l as usize].ids.len(),
            };
            all.saturating_sub(excluded_in(l))
        };
        while probe.lists.len() < nlist {
            if probe.lists.len() >= lists && probe.seen >= target {
                break;
            }
            if probe.at == probe.ranked.len() {
                // Every list, best first (rare: a very selective filter).
                probe.ranked = self.coarse(q, nlist);
                if probe.at >= probe.ranked.len() {
                    break;
                }
            }
            let l = probe.ranked[probe.at].item;
            probe.at += 1;
            probe.lists.push(l);
            probe.seen += admissible(l);
        }
    }

    /// The centroids as a table whose scores are the lists' expected scores.
    pub(super) fn probe_table(&self) -> ItemTable<'_> {
        ItemTable::with_bound(self.dim + 3, &self.probe, None, self.probe_bound)
    }

    /// The probe points `order` ranks lists from, as probe-table queries
    /// (see [`IvfIndex::probe`]) with their kind (the index of their 8-bit
    /// table): the typical point `[ρ q̃/|q̃|, √(R² − ρ²), 1/2]` (0) and/or the
    /// pole `[q, 1, 0, |q̃|/2R]` (1), in that order.
    pub(super) fn probe_points(&self, q: &[f32], order: Order) -> Vec<(usize, Vec<f32>)> {
        let n2: f64 = q.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + 1.0;
        let typical = || {
            let s = (self.tuning.typical2 / n2).sqrt();
            let mut p: Vec<f32> = q.iter().map(|&v| (v as f64 * s) as f32).collect();
            p.extend([
                s as f32,
                (self.tuning.radius2 - self.tuning.typical2).max(0.0).sqrt() as f32,
                0.5,
            ]);
            p
        };
        let pole = || {
            let r = self.tuning.radius2.sqrt().max(f64::MIN_POSITIVE);
            let mut p = Vec::with_capacity(q.len() + 3);
            p.extend_from_slice(q);
            p.extend([1.0, 0.0, (n2.sqrt() / (2.0 * r)) as f32]);
            p
        };
        match order {
            Order::Typical => vec![(0, typical())],
            Order::Pole => vec![(1, pole())],
            Order::Both => vec![(0, typical()), (1, pole())],
        }
    }

    /// The `m` best lists for each probe point `(kind, point)` (see
    /// [`IvfIndex::probe_points`]), in the exact order of the f32 probe table: the
    /// best `m + m/2 + PROBE_MARGIN` by the 8-bit table of the point's kind
    /// (four times the multiply-adds per instruction: the probe was a third
    /// of a search at 10M items), rescored exactly — or, when that pool would
    /// be more than an eighth of the lists, the f32 product alone.
    pub(super) fn rank_points(&self, points: &[(usize, Vec<f32>)], m: usize) -> Vec<Vec<Scored>> {
        let nlist = self.nlist();
        let (m, w, n) = (m.min(nlist), self.code_width(), self.dim + 2);
        let pool = (m + m / 2 + PROBE_MARGIN).min(nlist);
        let exact = self.probe_table();
        if pool.saturating_mul(8) > nlist {
            // A large share of the lists wanted (data without structure, a
            // selective filter): rescoring the pool would cost more than the
            // 8-bit pass saves (measured: BENCHMARKS.md, "Constants and choices").
            let refs: Vec<&[f32]> = points.iter().map(|p| &p.1[..]).collect();
            return match refs[..] {
                [one] => vec![exact.top_k(one, m, &[])],
                _ => exact.top_k_batch(&refs, &vec![m; refs.len()], &vec![&[][..]; refs.len()]),
            };
        }
        let mut out = vec![Vec::new(); points.len()];
        for (kind, codes) in self.probe8.iter().enumerate() {
            let at: Vec<usize> = (0..points.len()).filter(|&i| points[i].0 == kind).collect();
            if at.is_empty() {
                continue;
            }
            let scaled: Vec<Vec<f32>> = at
                .iter()
                .map(|&i| {
                    let p = &points[i].1;
                    let inv = if p[n] > 0.0 { 1.0 / p[n] } else { 1.0 };
                    p[..w].iter().map(|v| v * inv).collect()
                })
                .collect();
            let refs: Vec<&[f32]> = scaled.iter().map(Vec::as_slice).collect();
            let found =
                codes.top_k_batch(&refs, &vec![pool; refs.len()], &vec![&[][..]; refs.len()]);
            for (&i, c) in at.iter().zip(found) {
                out[i] = exact.rescore(&points[i].1, m, &c);
            }
        }
        out
    }

    /// A query's list ranking in `order` from the rankings of its probe
    /// points (taken from `found`, as [`IvfIndex::probe_points`] gave them).
    fn ranking(&self, order: Order, found: &mut impl Iterator<Item = Vec<Scored>>) -> Vec<Scored> {
        let first = found.next().unwrap_or_default();
        match order {
            Order::Both => merge_probes(first, found.next().unwrap_or_default(), self.nlist()),
            Order::Typical | Order::Pole => first,
        }
    }

    /// The `m` best lists for `q` in its [`Order`].
    pub(super) fn coarse(&self, q: &IvfQuery<'_>, m: usize) -> Vec<Scored> {
        let order = self.order_for(q);
        let points = self.probe_points(q.vector, order);
        self.ranking(order, &mut self.rank_points(&points, m).into_iter())
    }

    /// How many lists to rank up front for `q`: `nprobe`, widened by the
    /// filter's selectivity, with room for exclusions.
    fn first_rank(&self, q: &IvfQuery<'_>) -> usize {
        let lists = self.planned_lists(q).max(self.tuning.nprobe);
        let want = (lists as f64 / self.share(q).sqrt() * 1.25).ceil() as usize + 4;
        want.min(self.nlist())
    }

    /// Exact top-`k` of every query (see the module documentation), the
    /// queries split across threads; the same result whatever the thread
    /// count or batch. `exact` is the table the index was built from.
    pub fn search(
        &self,
        exact: &ItemTable<'_>,
        queries: &[IvfQuery<'_>],
    ) -> Result<Vec<Vec<Scored>>> {
        self.check_table(exact)?;
        for (j, q) in queries.iter().enumerate() {
            if q.vector.len() != self.dim {
                return Err(Error::InvalidInput(format!(
                    "query {j} has {} dimensions, the index {}",
                    q.vector.len(),
                    self.dim
                )));
            }
        }
        const CHUNK: usize = 64;
        Ok(queries
            .par_chunks(CHUNK)
            .flat_map_iter(|chunk| self.search_chunk(exact, chunk))
            .collect())
    }

    /// One query on the calling thread.
    pub fn search_one(&self, exact: &ItemTable<'_>, q: &IvfQuery<'_>) -> Result<Vec<Scored>> {
        self.check_table(exact)?;
        if q.vector.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: q.vector.len(),
            });
        }
        Ok(self.search_chunk(exact, std::slice::from_ref(q)).remove(0))
    }

    /// A chunk of queries: plans, then each list scanned once for every
    /// query of the chunk that probes it; then, for a query with exclusions,
    /// a second round deeper by the share of its best candidates it excludes;
    /// then exact rescoring.
    fn search_chunk(&self, exact: &ItemTable<'_>, chunk: &[IvfQuery<'_>]) -> Vec<Vec<Scored>> {
        let groups = self
            .lists
            .first()
            .map_or(self.dim.div_ceil(4), |l| l.codes.groups());
        let qq: Vec<Query> = chunk
            .iter()
            .map(|q| quantize_query(q.vector, groups))
            .collect();
        let widest = chunk.iter().map(|q| self.first_rank(q)).max().unwrap_or(1);
        // The probe points of every query its order uses (for both: the
        // typical point, then the pole).
        let orders: Vec<Order> = chunk.iter().map(|q| self.order_for(q)).collect();
        let points: Vec<(usize, Vec<f32>)> = chunk
            .iter()
            .zip(&orders)
            .flat_map(|(q, &order)| self.probe_points(q.vector, order))
            .collect();
        let mut found = self.rank_points(&points, widest).into_iter();
        let ranked: Vec<Vec<Scored>> = orders
            .iter()
            .map(|&order| self.ranking(order, &mut found))
            .collect();
        let mut probes: Vec<Probe> = chunk
            .iter()
            .zip(ranked)
            .map(|(q, r)| self.plan(q, r))
            .collect();
        let mut tops: Vec<TopK> = chunk
            .iter()
            .map(|q| {
                TopK::new(
                    q.k.saturating_mul(self.tuning.oversample)
                        .saturating_add(POOL_MARGIN)
                        .min(self.len()),
                )
            })
            .collect();
        let pairs = |probes: &[Probe], from: &[usize]| -> Vec<(u32, u32)> {
            let mut p: Vec<(u32, u32)> = probes
                .iter()
                .zip(from)
                .enumerate()
                .flat_map(|(j, (pr, &f))| pr.lists[f..].iter().map(move |&l| (l, j as u32)))
                .collect();
            p.sort_unstable();
            p
        };
        self.scan_pairs(
            &pairs(&probes, &vec![0; chunk.len()]),
            chunk,
            &qq,
            &mut tops,
        );
        // Exclusions remove a query's best items: its k-th admissible item lies
        // deeper, by as many excluded items as score above it. Count those
        // (exactly, against the k-th candidate so far) and scan deeper in
        // proportion.
        let scanned: Vec<usize> = probes.iter().map(|p| p.lists.len()).collect();
        let mut deeper = false;
        for (j, q) in chunk.iter().enumerate() {
            if q.exclude.is_empty() || q.k == 0 {
                continue;
            }
            let Some(kth) = tops[j].kth(q.k) else {
                continue;
            };
            let allowed: Vec<u32> = q
                .exclude
                .iter()
                .copied()
                .filter(|&i| (i as usize) < self.len() && q.filter.is_none_or(|f| f.allows(i)))
                .collect();
            let above = self
                .exact_scored(exact, q, &allowed)
                .iter()
                .filter(|s| s.score >= kth)
                .count();
            if above > 0 {
                let lists = self.lists_for(
                    &self.tuning.bands,
                    (q.k + above) as f64 / self.share(q),
                    q.k,
                );
                self.extend(&mut probes[j], q, lists, self.admissible_target(lists, q));
                deeper |= probes[j].lists.len() > scanned[j];
            }
        }
        if deeper {
            self.scan_pairs(&pairs(&probes, &scanned), chunk, &qq, &mut tops);
        }
        tops.into_iter()
            .zip(chunk)
            .map(|(top, q)| self.rescore(exact, q, top.into_unsorted()))
            .collect()
    }

    /// Scans each list of `pairs` (list, query of the chunk; sorted) once for
    /// all its queries.
    fn scan_pairs(
        &self,
        pairs: &[(u32, u32)],
        chunk: &[IvfQuery<'_>],
        qq: &[Query],
        tops: &mut [TopK],
    ) {
        let mut at = 0;
        let mut who: Vec<usize> = Vec::new();
        let mut qs: Vec<&Query> = Vec::new();
        let mut floors: Vec<f32> = Vec::new();
        while at < pairs.len() {
            let l = pairs[at].0;
            who.clear();
            while at < pairs.len() && pairs[at].0 == l {
                who.push(pairs[at].1 as usize);
                at += 1;
            }
            qs.clear();
            qs.extend(who.iter().map(|&j| &qq[j]));
            floors.clear();
            floors.extend(who.iter().map(|&j| tops[j].floor()));
            // The next list's loads start while this one is scanned (lists
            // are scattered in memory: the hardware prefetcher cannot guess
            // the next one).
            if let Some(&(next, _)) = pairs.get(at) {
                self.lists[next as usize].codes.prefetch();
            }
            let list = &self.lists[l as usize];
            let mut sink = ListSink {
                ids: &list.ids,
                who: &who,
                tops,
                queries: chunk,
            };
            list.codes
                .scan(&qs, 0, list.ids.len(), &mut floors, &mut sink);
        }
    }

    /// Items (built or added) with their exact scores for `q`, in no
    /// particular order: built items are scored on `exact` (rows prefetched),
    /// added ones on their kept rows.
    fn exact_scored(&self, exact: &ItemTable<'_>, q: &IvfQuery<'_>, items: &[u32]) -> Vec<Scored> {
        let (old, new): (Vec<u32>, Vec<u32>) =
            items.iter().partition(|&&i| (i as usize) < self.base);
        prefetch_rows(exact.factors(), self.dim, &old);
        let mut scored: Vec<Scored> = old
            .iter()
            .zip(exact.scores_of(q.vector, &old))
            .map(|(&item, score)| Scored { item, score })
            .collect();
        if !new.is_empty() {
            let fresh = ItemTable::new(
                self.dim,
                &self.fresh,
                self.tuning.with_bias.then_some(&self.fresh_bias[..]),
            );
            let local: Vec<u32> = new.iter().map(|&i| i - self.base as u32).collect();
            scored.extend(
                new.iter()
                    .zip(fresh.scores_of(q.vector, &local))
                    .map(|(&item, score)| Scored { item, score }),
            );
        }
        scored
    }

    /// The exact top-`k` of the candidates.
    fn rescore(
        &self,
        exact: &ItemTable<'_>,
        q: &IvfQuery<'_>,
        candidates: Vec<Scored>,
    ) -> Vec<Scored> {
        let ids: Vec<u32> = candidates.iter().map(|c| c.item).collect();
        let mut top = TopK::new(q.k);
        for s in self.exact_scored(exact, q, &ids) {
            top.push(s.item, s.score);
        }
        top.into_sorted()
    }
}
