//! Tuning `nprobe` and the depth tables on sample queries against the exact
//! top-K, and measuring recall.

use crate::error::{Error, Result};
use crate::top::Scored;
use crate::topk::ItemTable;

use super::*;

impl IvfIndex {
    /// The smallest `nprobe` whose recall@`k` against the exact top-`k` of
    /// `sample` queries reaches `target` (all lists if none does) — the
    /// one-sided 95% lower confidence bound of the mean over the sample, not
    /// the sample's mean, so that queries outside the sample reach it too;
    /// sets it and returns it with that bound. Then the same for the
    /// whole top `2k`, `4k`, … (up to `16k`, at most an eighth of the
    /// catalogue), and for their `k` deepest items: a query whose filter
    /// spreads its admissible items over such a depth scans as many lists as
    /// the first table says, one whose exclusions pushed its items down to it
    /// as the second says.
    pub fn tune_nprobe(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        k: usize,
        target: f64,
    ) -> Result<(usize, f64)> {
        self.check_table(exact)?;
        if sample.is_empty() || k == 0 {
            return Err(Error::InvalidInput(
                "tuning nprobe needs sample queries and k ≥ 1".into(),
            ));
        }
        // The order that reaches the target with the fewest lists, and of
        // those the higher recall; both points only if strictly fewer lists
        // (they cost two probes).
        let mut best = (Order::Both, usize::MAX, 0.0);
        let mut pole_first = 1;
        // The sample's plain queries (no filter, k) take the order tried.
        self.tuning.plain_k = k;
        let truth = sample_truth(exact, sample, k);
        for order in [Order::Typical, Order::Pole, Order::Both] {
            self.tuning.order = order;
            let (n, r) = self.smallest_nprobe(exact, sample, &truth, k, target, 1)?;
            if order == Order::Pole {
                pole_first = n;
            }
            let better = n < best.1 || (n == best.1 && r > best.2 && order != Order::Both);
            if better {
                best = (order, n, r);
            }
        }
        // Deeper searches (filters, exclusions, a larger k) take the pole's
        // order, the exact reduction, whose lists cover every depth: its
        // tables, from its own first entry.
        let (depths, bands) = self.depth_tables(exact, sample, k, target, pole_first)?;
        let (order, first, recall_k) = best;
        (
            self.tuning.order,
            self.tuning.nprobe,
            self.tuning.depths,
            self.tuning.bands,
        ) = (order, first, depths, bands);
        Ok((first, recall_k))
    }

    /// The two depth tables (see [`IvfIndex::tune_nprobe`]) in the current
    /// order, `first` lists reaching the target at depth `k`.
    #[allow(clippy::type_complexity)]
    fn depth_tables(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        k: usize,
        target: f64,
        first: usize,
    ) -> Result<(Vec<(usize, usize)>, Vec<(usize, usize)>)> {
        let (mut depths, mut bands) = (vec![(k, first)], vec![(k, first)]);
        let mut d = 2 * k;
        // Deeper tables on half the sample: they cost more per query.
        let half = &sample[..sample.len().div_ceil(2)];
        while d <= 16 * k && d <= self.len() / 8 {
            let from = depths.last().map_or(1, |x| x.1);
            let truth = sample_truth(exact, half, d);
            let (all, _) = self.smallest_nprobe(exact, half, &truth, d, target, from)?;
            depths.push((d, all));
            let from = bands.last().map_or(1, |x| x.1).max(all);
            let (band, _) = self.smallest_nprobe(exact, half, &truth, k, target, from)?;
            bands.push((d, band));
            if band >= self.nlist() {
                break;
            }
            d *= 2;
        }
        Ok((depths, bands))
    }

    /// The smallest nprobe ≥ `from` at which a top-`depth` search finds
    /// `target` (the one-sided 95% lower confidence bound of the mean over
    /// the sample, so that other queries reach it too) of the `band` deepest
    /// items of `truth`, the exact top-`depth` of `sample` ([`sample_truth`];
    /// doubling, then bisection), and that share. The deepest band is what a
    /// query needs when its exclusions removed the items above it, and the
    /// hardest part of the top-`depth` to find.
    fn smallest_nprobe(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        truth: &[Vec<Scored>],
        band: usize,
        target: f64,
        from: usize,
    ) -> Result<(usize, f64)> {
        let depth = truth.iter().map(Vec::len).max().unwrap_or(0);
        let truth: Vec<Vec<Scored>> = truth
            .iter()
            .map(|t| t[t.len().saturating_sub(band)..].to_vec())
            .collect();
        // Below the top band, ask for a quarter more than the depth: a real
        // query's deep items are its top k, with its candidate margin, not the
        // last ranks of a longer list, where the 8-bit scores' error would
        // push some out of the candidates whatever the lists scanned.
        let k = if band < depth {
            depth + depth / 4
        } else {
            depth
        };
        let qs: Vec<IvfQuery<'_>> = sample
            .iter()
            .map(|v| IvfQuery {
                vector: v,
                k,
                exclude: &[],
                filter: None,
            })
            .collect();
        let nlist = self.nlist();
        let mut recall_at = |nprobe: usize| -> Result<f64> {
            self.set_nprobe(nprobe);
            Ok(recall_lower_bound(&self.search(exact, &qs)?, &truth))
        };
        let (mut lo, mut hi) = (from.saturating_sub(1), from.clamp(1, nlist));
        let mut at_hi;
        loop {
            at_hi = recall_at(hi)?;
            if at_hi >= target || hi >= nlist {
                break;
            }
            lo = hi;
            hi = (hi * 2).min(nlist);
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let r = recall_at(mid)?;
            if r >= target {
                hi = mid;
                at_hi = r;
            } else {
                lo = mid;
            }
        }
        Ok((hi, at_hi))
    }
}

/// The exact top-`depth` of every sample query.
fn sample_truth(exact: &ItemTable<'_>, sample: &[&[f32]], depth: usize) -> Vec<Vec<Scored>> {
    let ex: Vec<&[u32]> = vec![&[]; sample.len()];
    exact.top_k_batch(sample, &vec![depth; sample.len()], &ex)
}

/// The mean per-query recall minus 1.645 standard errors.
fn recall_lower_bound(got: &[Vec<Scored>], truth: &[Vec<Scored>]) -> f64 {
    let per: Vec<f64> = got
        .iter()
        .zip(truth)
        .filter(|(_, t)| !t.is_empty())
        .map(|(g, t)| recall(std::slice::from_ref(g), std::slice::from_ref(t)))
        .collect();
    let n = per.len() as f64;
    if n < 2.0 {
        return per.first().copied().unwrap_or(1.0);
    }
    let mean = per.iter().sum::<f64>() / n;
    let var = per.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    mean - 1.645 * (var / n).sqrt()
}

/// Share of the true lists' items found, all lists pooled (ids only).
pub fn recall(got: &[Vec<Scored>], truth: &[Vec<Scored>]) -> f64 {
    let (mut hit, mut all) = (0usize, 0usize);
    for (g, t) in got.iter().zip(truth) {
        let mut want: Vec<u32> = t.iter().map(|s| s.item).collect();
        want.sort_unstable();
        hit += g
            .iter()
            .filter(|s| want.binary_search(&s.item).is_ok())
            .count();
        all += t.len();
    }
    if all == 0 {
        1.0
    } else {
        hit as f64 / all as f64
    }
}
