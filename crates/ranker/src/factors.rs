//! Learned embeddings.

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

    /// The root mean square of the scores `u · v` over a fixed grid of at
    /// most 256 users × 1,024 items (deterministic; 1 when it is 0).
    pub(crate) fn score_scale(&self) -> f64 {
        let (nu, ni) = (self.n_users(), self.n_items());
        let (su, si) = ((nu / 256).max(1), (ni / 1024).max(1));
        rms_or_one(
            (0..nu)
                .step_by(su)
                .flat_map(|u| (0..ni).step_by(si).map(move |i| (u, i)))
                .map(|(u, i)| crate::linalg::dot(self.user(u), self.item(i)) as f64),
        )
    }

    /// Adds the popularity compensation `beta · s · ln(1 + n_j)` to every
    /// item's bias (see [`crate::TrainParams::pop_bias`]).
    pub(crate) fn add_popularity_bias(&mut self, counts: &[u32], beta: f32) {
        if beta == 0.0 {
            return;
        }
        let k = beta as f64 * self.score_scale();
        for (b, &n) in self.item_bias.iter_mut().zip(counts) {
            *b += (k * (n as f64).ln_1p()) as f32;
        }
    }
}

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
    fn popularity_bias_is_beta_times_rms_score_times_log_count() {
        let mut f = Factors {
            dim: 2,
            users: vec![1.0, 0.0, 0.0, 2.0],
            items: vec![1.0, 1.0, 3.0, 0.0, 0.0, -1.0],
            item_bias: vec![0.5, 0.0, 0.0],
        };
        // Scores: user 0 → 1, 3, 0; user 1 → 2, 0, −2. RMS = √(18/6) = √3.
        let rms = 3f64.sqrt();
        assert!((f.score_scale() - rms).abs() < 1e-12);
        let before = f.clone();
        f.add_popularity_bias(&[0, 1, 3], 0.0);
        assert_eq!(f, before, "β = 0 changes nothing");
        f.add_popularity_bias(&[0, 1, 3], -0.5);
        let want = [0.5, -0.5 * rms * 2f64.ln(), -0.5 * rms * 4f64.ln()];
        for (b, w) in f.item_bias.iter().zip(want) {
            assert!((*b as f64 - w).abs() < 1e-6, "{b} vs {w}");
        }
    }
}
