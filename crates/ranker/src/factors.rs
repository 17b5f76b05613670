//! Learned embeddings.

use crate::csr::Csr;
use crate::eval::item_counts;
use crate::topk::ItemTable;

/// User and item embeddings (row-major), item biases, and training counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Embedding dimension.
    pub dim: usize,
    /// `n_users × dim`.
    pub users: Vec<f32>,
    /// `n_items × dim`.
    pub items: Vec<f32>,
    /// Per-item bias added to every score (0 for iALS).
    pub item_bias: Vec<f32>,
}

impl Factors {
    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.users.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.items.len().checked_div(self.dim).unwrap_or(0)
    }

    /// User `u`'s embedding.
    pub fn user(&self, u: usize) -> &[f32] {
        &self.users[u * self.dim..(u + 1) * self.dim]
    }

    /// Item `i`'s embedding.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }

    /// The root-mean-square score of users' top-[`SCALE_LIST`] lists (their
    /// items in `train` excluded, biases included) over at most
    /// [`SCALE_USERS`] users with training items, spread evenly; 1 when it
    /// is 0. The scale of what a model ranks, not of all its scores: one
    /// model's top scores stand further above its typical score than
    /// another's, and a popularity model's scores are its biases alone.
    /// The tuner divides by the same statistic of its validation lists, so
    /// a blend or a compensation fitted here is the one it judged.
    pub(crate) fn score_scale(&self, train: &Csr) -> f64 {
        let users: Vec<usize> = (0..self.n_users().min(train.n_rows()))
            .filter(|&u| train.row_len(u) > 0)
            .collect();
        let step = users.len().div_ceil(SCALE_USERS).max(1);
        let picked: Vec<usize> = users.into_iter().step_by(step).collect();
        let table = ItemTable::new(self.dim, &self.items, Some(&self.item_bias));
        let queries: Vec<&[f32]> = picked.iter().map(|&u| self.user(u)).collect();
        let exclude: Vec<&[u32]> = picked.iter().map(|&u| train.row(u).0).collect();
        let k = vec![SCALE_LIST.min(self.n_items()); picked.len()];
        let tops = table.top_k_batch(&queries, &k, &exclude);
        rms_or_one(tops.iter().flatten().map(|s| s.score as f64))
    }

    /// Adds the popularity compensation `beta · s · ln(1 + n_j)` to every
    /// item's bias, `n_j` its interactions in `train` and `s` the
    /// [`Factors::score_scale`] before it (see [`crate::TrainParams::pop_bias`]).
    pub(crate) fn add_popularity_bias(&mut self, train: &Csr, beta: f32) {
        if beta == 0.0 {
            return;
        }
        let k = beta as f64 * self.score_scale(train);
        for (b, &n) in self.item_bias.iter_mut().zip(&item_counts(train)) {
            *b += (k * (n as f64).ln_1p()) as f32;
        }
    }
}

/// The list length whose scores are a model's scale.
pub(crate) const SCALE_LIST: usize = 100;

/// Most users whose lists give a model's scale.
const SCALE_USERS: usize = 1024;

/// The root mean square of `scores` in order; 1 when it is 0, not finite
/// or there is none (a scale to divide by).
pub(crate) fn rms_or_one(scores: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0f64, 0usize);
    for s in scores {
        sum += s * s;
        n += 1;
    }
    let rms = (sum / n.max(1) as f64).sqrt();
    if rms > 0.0 && rms.is_finite() {
        rms
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_bias_is_beta_times_the_top_lists_rms_score_times_log_count() {
        let mut f = Factors {
            dim: 2,
            users: vec![1.0, 0.0, 0.0, 2.0],
            items: vec![1.0, 1.0, 3.0, 0.0, 0.0, -1.0],
            item_bias: vec![0.5, 0.0, 0.0],
        };
        // User 0 had item 2, user 1 item 0; their lists of the others, biases
        // included: user 0 → 1.5, 3; user 1 → 0, −2. RMS = √(15.25 / 4).
        let train = Csr::from_triplets(2, 3, &[0, 1], &[2, 0], &[1.0, 1.0]);
        let rms = (15.25f64 / 4.0).sqrt();
        assert!((f.score_scale(&train) - rms).abs() < 1e-6);
        // A user without training items is no part of it.
        let one = Csr::from_triplets(2, 3, &[0], &[2], &[1.0]);
        let rms_one = (11.25f64 / 2.0).sqrt();
        assert!((f.score_scale(&one) - rms_one).abs() < 1e-6);
        let before = f.clone();
        f.add_popularity_bias(&train, 0.0);
        assert_eq!(f, before, "β = 0 changes nothing");
        f.add_popularity_bias(&train, -0.5);
        let want = [0.5 - 0.5 * rms * 2f64.ln(), 0.0, -0.5 * rms * 2f64.ln()];
        for (b, w) in f.item_bias.iter().zip(want) {
            assert!((*b as f64 - w).abs() < 1e-6, "{b} vs {w}");
        }
    }
}
