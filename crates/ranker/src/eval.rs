//! Offline evaluation over the full catalogue (never sampled negatives), with
//! each user's training items excluded.

use rayon::prelude::*;
use serde::Serialize;

use crate::csr::Csr;
use crate::topk::ItemTable;

/// Ranking metrics at a cut-off `k`, averaged over evaluated users.
///
/// Binary relevance (an item is relevant if it is in the user's test set):
/// - `recall` = hits / |test|; `precision` = hits / k;
/// - `ndcg` = DCG / IDCG with gains 1/log2(rank + 2), IDCG over min(k, |test|);
/// - `hit_rate` = share of users with at least one hit;
/// - `map` = Σ_{hit ranks r} precision@r / min(k, |test|);
/// - `coverage` = distinct recommended items / catalogue size;
/// - `mean_popularity` = mean training count of the recommended items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// The cut-off.
    pub k: usize,
    /// Users evaluated (those with at least one test positive).
    pub users: usize,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean NDCG@k.
    pub ndcg: f64,
    /// Share of users with at least one hit.
    pub hit_rate: f64,
    /// Mean average precision@k.
    pub map: f64,
    /// Distinct recommended items over the catalogue size.
    pub coverage: f64,
    /// Mean training count of the recommended items.
    pub mean_popularity: f64,
}

/// Metrics of one user's ranked list against their test items (sorted).
pub fn user_metrics(ranked: &[u32], test: &[u32], k: usize) -> (f64, f64, f64, f64, f64) {
    if test.is_empty() || k == 0 {
        return (0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let mut hits = 0usize;
    let mut dcg = 0f64;
    let mut ap = 0f64;
    for (r, item) in ranked.iter().take(k).enumerate() {
        if test.binary_search(item).is_ok() {
            hits += 1;
            dcg += 1.0 / ((r + 2) as f64).log2();
            ap += hits as f64 / (r + 1) as f64;
        }
    }
    let ideal = test.len().min(k);
    let idcg: f64 = (0..ideal).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    (
        hits as f64 / test.len() as f64,
        hits as f64 / k as f64,
        dcg / idcg,
        if hits > 0 { 1.0 } else { 0.0 },
        ap / ideal as f64,
    )
}

/// One test user's (recall, precision, NDCG, hit, AP) and top-k items.
type UserRow = ((f64, f64, f64, f64, f64), Vec<u32>);

/// Evaluates a recommender: `recommend(user, k, train_items)` returns item
/// indices best first (training items already excluded). Users without test
/// items are skipped; `item_counts` are the training popularity.
pub fn evaluate<F>(train: &Csr, test: &Csr, k: usize, item_counts: &[u32], recommend: F) -> Metrics
where
    F: Fn(usize, usize, &[u32]) -> Vec<u32> + Sync,
{
    let n_items = train.n_cols().max(test.n_cols());
    let users: Vec<usize> = (0..test.n_rows())
        .filter(|&u| test.row_len(u) > 0)
        .collect();
    let per_user: Vec<UserRow> = users
        .par_iter()
        .map(|&u| {
            let train_items = if u < train.n_rows() {
                train.row(u).0
            } else {
                &[]
            };
            let ranked = recommend(u, k, train_items);
            (user_metrics(&ranked, test.row(u).0, k), ranked)
        })
        .collect();
    let mut m = Metrics {
        k,
        users: users.len(),
        ..Metrics::default()
    };
    if users.is_empty() {
        return m;
    }
    let mut covered = vec![false; n_items];
    let mut pop_sum = 0f64;
    let mut n_recs = 0usize;
    for ((recall, precision, ndcg, hit, ap), ranked) in &per_user {
        m.recall += recall;
        m.precision += precision;
        m.ndcg += ndcg;
        m.hit_rate += hit;
        m.map += ap;
        for &i in ranked {
            if let Some(c) = covered.get_mut(i as usize) {
                *c = true;
            }
            pop_sum += item_counts.get(i as usize).copied().unwrap_or(0) as f64;
            n_recs += 1;
        }
    }
    let n = users.len() as f64;
    m.recall /= n;
    m.precision /= n;
    m.ndcg /= n;
    m.hit_rate /= n;
    m.map /= n;
    m.coverage = covered.iter().filter(|&&c| c).count() as f64 / n_items.max(1) as f64;
    m.mean_popularity = if n_recs > 0 {
        pop_sum / n_recs as f64
    } else {
        0.0
    };
    m
}

/// [`evaluate`] of embeddings: each test user's top `k` of the item table
/// (`u·v + b`, training items excluded) from `users`, row-major, one row of
/// `items.dim()` floats per user index of `test`.
pub fn evaluate_embeddings(
    items: &ItemTable<'_>,
    users: &[f32],
    train: &Csr,
    test: &Csr,
    k: usize,
    item_counts: &[u32],
) -> Metrics {
    let ranked = ranked_lists(items, users, train, test, k);
    // `evaluate` asks for exactly the users ranked (those with test items).
    evaluate(train, test, k, item_counts, |u, _, _| {
        ranked[u].clone().unwrap_or_default()
    })
}

/// Every test user's top `k` (training items excluded) from the batch
/// kernel (tiles of the item table against blocks of users): the same
/// lists as one query at a time, several times faster at high dimensions.
/// `None` for users without test items or an embedding.
pub(crate) fn ranked_lists(
    items: &ItemTable<'_>,
    users: &[f32],
    train: &Csr,
    test: &Csr,
    k: usize,
) -> Vec<Option<Vec<u32>>> {
    let d = items.dim();
    let wanted: Vec<usize> = (0..test.n_rows())
        .filter(|&u| test.row_len(u) > 0 && (u + 1) * d <= users.len())
        .collect();
    let mut ranked: Vec<Option<Vec<u32>>> = vec![None; test.n_rows()];
    for block in wanted.chunks(1024) {
        let qs: Vec<&[f32]> = block.iter().map(|&u| &users[u * d..(u + 1) * d]).collect();
        let ks = vec![k; block.len()];
        let exs: Vec<&[u32]> = block
            .iter()
            .map(|&u| {
                if u < train.n_rows() {
                    train.row(u).0
                } else {
                    &[]
                }
            })
            .collect();
        for (&u, top) in block.iter().zip(items.top_k_batch(&qs, &ks, &exs)) {
            ranked[u] = Some(top.into_iter().map(|s| s.item).collect());
        }
    }
    ranked
}

/// [`evaluate`] of the popularity baseline (training counts `item_counts`).
pub fn evaluate_popularity(train: &Csr, test: &Csr, k: usize, item_counts: &[u32]) -> Metrics {
    let order = popularity_order(item_counts);
    evaluate(train, test, k, item_counts, |_, k, ex| {
        recommend_popular(&order, k, ex)
    })
}

/// Items ordered by training popularity (count, then index): the baseline.
pub fn popularity_order(item_counts: &[u32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..item_counts.len() as u32).collect();
    order.sort_by(|&a, &b| {
        item_counts[b as usize]
            .cmp(&item_counts[a as usize])
            .then(a.cmp(&b))
    });
    order
}

/// The popularity baseline's recommendation for a user: the most popular items
/// not in `exclude` (sorted).
pub fn recommend_popular(order: &[u32], k: usize, exclude: &[u32]) -> Vec<u32> {
    order
        .iter()
        .copied()
        .filter(|i| exclude.binary_search(i).is_err())
        .take(k)
        .collect()
}

/// Number of training interactions per item.
pub fn item_counts(train: &Csr) -> Vec<u32> {
    let mut c = vec![0u32; train.n_cols()];
    for u in 0..train.n_rows() {
        for &i in train.row(u).0 {
            c[i as usize] += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_cases() {
        // Ranked [5, 1, 7, 3], relevant {1, 3, 9}, k = 4.
        let (recall, precision, ndcg, hit, ap) = user_metrics(&[5, 1, 7, 3], &[1, 3, 9], 4);
        assert!((recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((precision - 0.5).abs() < 1e-12);
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!((ndcg - dcg / idcg).abs() < 1e-12);
        assert_eq!(hit, 1.0);
        // AP = (1/2 + 2/4) / min(4, 3).
        assert!((ap - (0.5 + 0.5) / 3.0).abs() < 1e-12);

        // Perfect ranking: every metric at its maximum.
        let (r, _, n, h, a) = user_metrics(&[2, 4], &[2, 4], 2);
        assert_eq!((r, n, h, a), (1.0, 1.0, 1.0, 1.0));
        // No hit.
        assert_eq!(user_metrics(&[1], &[2], 1), (0.0, 0.0, 0.0, 0.0, 0.0));
        // k cuts the list: the hit at rank 3 does not count at k = 2.
        assert_eq!(user_metrics(&[1, 2, 3], &[3], 2).0, 0.0);
    }

    #[test]
    fn evaluation_excludes_training_items_and_reports_coverage() {
        let train = Csr::from_triplets(2, 4, &[0, 1], &[0, 0], &[1.0, 1.0]);
        let test = Csr::from_triplets(2, 4, &[0, 1], &[1, 2], &[1.0, 1.0]);
        let counts = item_counts(&train);
        assert_eq!(counts, vec![2, 0, 0, 0]);
        let order = popularity_order(&counts);
        let m = evaluate(&train, &test, 1, &counts, |_, k, ex| {
            recommend_popular(&order, k, ex)
        });
        // Both users get item 1 (item 0 is excluded as a training item).
        assert_eq!(m.users, 2);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        assert!((m.coverage - 0.25).abs() < 1e-12);
        assert_eq!(m.mean_popularity, 0.0);
    }
}
