//! The ranking stage of a trained arm: a linear value head per surface,
//! fitted on impressions the factor model did not train on.

use reelkit_logs::Events;
use reelkit_ranker::algorithms::EngagementWeights;
use reelkit_sim::population::SURFACES;
use serde::Serialize;

use super::Fit;
use crate::recipe::Ranking;

/// A linear value head: the predicted engagement weight of showing video
/// `v` to a user is `intercept + user·(u·v) + surface·(p_s·v) +
/// popularity·ln(1 + n_v) + bias·b_v` (features a recipe does not use have
/// a coefficient of 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Head {
    pub intercept: f64,
    pub user: f64,
    pub surface: f64,
    pub popularity: f64,
    pub bias: f64,
    /// Impressions it was fitted on.
    pub n: usize,
}

/// The features of a recipe's heads (none: rank by the dot product).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Features {
    /// `p_s·v`, the user's taste on the surface (unified only).
    pub(super) surface: bool,
    /// `ln(1 + n_v)` and `b_v`.
    popularity: bool,
}

impl Features {
    /// A recipe's features. A hierarchical model's user vector on a surface
    /// already weighs the shared taste against the surface's own (its
    /// specific share), so its `surface` head is `[1, w_s·v]`: a second
    /// feature `p·v` would be nearly collinear with the first where the
    /// share is small, and a ridge fit on collinear features returns large
    /// opposite weights whose difference amplifies noise.
    pub(super) fn of(ranking: Ranking, unified: bool, hier: bool) -> Option<Features> {
        match (ranking, unified) {
            (Ranking::Dot, _) | (Ranking::Surface, false) => None,
            (Ranking::Surface, true) => Some(Features {
                surface: !hier,
                popularity: false,
            }),
            (Ranking::Value, unified) => Some(Features {
                surface: unified && !hier,
                popularity: true,
            }),
        }
    }

    /// Number of features, the intercept included.
    fn len(self) -> usize {
        2 + self.surface as usize + 2 * self.popularity as usize
    }

    /// The head of fitted coefficients in feature order.
    fn head(self, c: &[f64], n: usize) -> Head {
        let mut it = c.iter().copied();
        let mut next = |on: bool| if on { it.next().unwrap_or(0.0) } else { 0.0 };
        let intercept = next(true);
        let user = next(true);
        let surface = next(self.surface);
        let popularity = next(self.popularity);
        let bias = next(self.popularity);
        Head {
            intercept,
            user,
            surface,
            popularity,
            bias,
            n,
        }
    }
}

/// Value heads per surface fitted on `events` (a day the model `before` did
/// not train on), for the surfaces `surface` says (all when `None`).
pub(super) fn fit_heads(
    features: Features,
    before: &Fit,
    events: &Events,
    surface: Option<usize>,
) -> [Option<Head>; SURFACES] {
    let w = EngagementWeights::default();
    let imp = crate::train::impressions(events);
    let k = features.len();
    let mut xtx = [[0f64; 25]; SURFACES];
    let mut xty = [[0f64; 5]; SURFACES];
    let mut n = [0usize; SURFACES];
    for i in 0..events.len() {
        let s = events.surface[i].index();
        if surface.is_some_and(|x| x != s) {
            continue;
        }
        let (Some(u), Some(v)) = (
            before.users.get(events.user_id[i]),
            before.items.get(events.video_id[i]),
        ) else {
            continue;
        };
        let (u, v) = (u as usize, v as usize);
        if before.item_counts[v] == 0 {
            continue;
        }
        let item = before.item_vector(v, s);
        let mut x = [0f64; 5];
        x[0] = 1.0;
        x[1] = reelkit_ranker::retrieval::dot(before.user_vector(u, s), item) as f64;
        let mut j = 2;
        if features.surface {
            x[j] = reelkit_ranker::retrieval::dot(before.surface_user(u, s), item) as f64;
            j += 1;
        }
        if features.popularity {
            x[j] = (1.0 + before.popularity(v, s) as f64).ln();
            x[j + 1] = before.factors.item_bias[v] as f64;
        }
        let y = w.weight(&imp, i) as f64;
        for a in 0..k {
            xty[s][a] += x[a] * y;
            for b in 0..k {
                xtx[s][a * 5 + b] += x[a] * x[b];
            }
        }
        n[s] += 1;
    }
    let mut heads: [Option<Head>; SURFACES] = Default::default();
    for s in 0..SURFACES {
        // A handful of impressions cannot fit a head: rank by the dot product.
        if n[s] < 50 * k {
            continue;
        }
        heads[s] = ridge(&xtx[s], &xty[s], k, n[s]).map(|c| features.head(&c, n[s]));
    }
    heads
}

/// Ridge least squares on accumulated normal equations (no penalty on the
/// intercept; λ = 1e-6 · n keeps a near-constant feature from blowing up).
fn ridge(xtx: &[f64; 25], xty: &[f64; 5], k: usize, n: usize) -> Option<Vec<f64>> {
    let mut a = vec![vec![0f64; k + 1]; k];
    for r in 0..k {
        for c in 0..k {
            a[r][c] = xtx[r * 5 + c];
        }
        if r > 0 {
            a[r][r] += 1e-6 * n as f64;
        }
        a[r][k] = xty[r];
    }
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        a.swap(c, p);
        if a[c][c].abs() < 1e-12 {
            return None;
        }
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
    }
    let coef: Vec<f64> = (0..k).map(|r| a[r][k] / a[r][r]).collect();
    coef.iter().all(|c| c.is_finite()).then_some(coef)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_model() {
        // y = 2 + 3 x1 - x2 on a grid.
        let (mut xtx, mut xty, mut n) = ([0f64; 25], [0f64; 5], 0);
        for i in 0..20 {
            for j in 0..20 {
                let x = [1.0, i as f64 / 10.0, (j as f64 / 7.0).sin()];
                let y = 2.0 + 3.0 * x[1] - x[2];
                for a in 0..3 {
                    xty[a] += x[a] * y;
                    for b in 0..3 {
                        xtx[a * 5 + b] += x[a] * x[b];
                    }
                }
                n += 1;
            }
        }
        let c = ridge(&xtx, &xty, 3, n).expect("solvable");
        for (got, want) in c.iter().zip([2.0, 3.0, -1.0]) {
            assert!((got - want).abs() < 1e-3, "{c:?}");
        }
        // A feature that never varies from zero makes the system singular
        // once its ridge is absent: the intercept alone is unpenalised.
        assert!(ridge(&[0.0; 25], &[0.0; 5], 2, 0).is_none());
    }
}
