//! The ranking stage: a value model of per-task heads fitted on impressions,
//! combined into one score with configurable weights.
//!
//! Each head sees the same features of a (user, video) pair: the retrieval dot
//! product, the video's log training count (popularity prior) and its bias.
//! `watch` is a least-squares fit of the watch fraction (capped at 2); `like`
//! and `share` are logistic regressions, which are calibrated by construction on
//! their training data; the calibration error is measured on a held-out fifth.

use serde::{Deserialize, Serialize};

const N_FEATURES: usize = 4;

fn features(dot: f32, count: u32, bias: f32) -> [f64; N_FEATURES] {
    [1.0, dot as f64, (1.0 + count as f64).ln(), bias as f64]
}

/// One head: coefficients over the features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// One coefficient per feature: intercept, retrieval dot product, ln(1 + item count), item bias.
    pub coef: Vec<f64>,
}

impl Head {
    fn linear(&self, x: &[f64; N_FEATURES]) -> f64 {
        self.coef.iter().zip(x).map(|(c, v)| c * v).sum()
    }
}

/// Weights of the heads in the combined score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueWeights {
    /// Weight of the predicted watch fraction.
    pub watch: f64,
    /// Weight of P(like).
    pub like: f64,
    /// Weight of P(share).
    pub share: f64,
}

impl Default for ValueWeights {
    fn default() -> Self {
        ValueWeights {
            watch: 1.0,
            like: 4.0,
            share: 8.0,
        }
    }
}

/// Calibration on held-out impressions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Impressions fitted on.
    pub n_train: usize,
    /// Impressions held out for the calibration.
    pub n_holdout: usize,
    /// Mean absolute error of the predicted watch fraction.
    pub watch_mae: f64,
    /// Expected calibration error (10 equal-width bins) of P(like).
    pub like_ece: f64,
    /// Expected calibration error of P(share).
    pub share_ece: f64,
    /// Observed and mean predicted rates on the hold-out.
    pub like_rate: f64,
    /// Mean predicted P(like) on the hold-out.
    pub like_pred: f64,
    /// Observed share rate on the hold-out.
    pub share_rate: f64,
    /// Mean predicted P(share) on the hold-out.
    pub share_pred: f64,
}

/// Fitted heads, weights and their calibration report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueModel {
    /// Predicts the watched fraction.
    pub watch: Head,
    /// Predicts P(like) (logistic).
    pub like: Head,
    /// Predicts P(share) (logistic).
    pub share: Head,
    /// How the heads combine into one score.
    pub weights: ValueWeights,
    /// How well the heads fit held-out impressions.
    pub calibration: Calibration,
}

/// Per-impression inputs of the fit.
#[derive(Debug, Clone, Default)]
pub struct ValueSamples {
    /// Retrieval dot product of the impression's user and video.
    pub dot: Vec<f32>,
    /// Training count of the video.
    pub count: Vec<u32>,
    /// Bias of the video.
    pub bias: Vec<f32>,
    /// Watched fraction of the video (the watch head's target).
    pub watch_fraction: Vec<f32>,
    /// Whether it was liked (the like head's target).
    pub liked: Vec<bool>,
    /// Whether it was shared (the share head's target).
    pub shared: Vec<bool>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Solves a small dense system by Gaussian elimination with partial pivoting.
fn solve(mut a: [[f64; N_FEATURES]; N_FEATURES], mut b: [f64; N_FEATURES]) -> [f64; N_FEATURES] {
    let n = N_FEATURES;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        if a[c][c].abs() < 1e-12 {
            continue;
        }
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            let (upper, lower) = a.split_at_mut(r);
            for (x, y) in lower[0][c..n].iter_mut().zip(&upper[c][c..n]) {
                *x -= f * y;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0f64; N_FEATURES];
    for c in (0..n).rev() {
        if a[c][c].abs() < 1e-12 {
            continue;
        }
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x
}

const RIDGE: f64 = 1e-3;

fn fit_linear(xs: &[[f64; N_FEATURES]], y: &[f64]) -> Head {
    let mut a = [[0f64; N_FEATURES]; N_FEATURES];
    let mut b = [0f64; N_FEATURES];
    for (x, &t) in xs.iter().zip(y) {
        for i in 0..N_FEATURES {
            b[i] += x[i] * t;
            for j in 0..N_FEATURES {
                a[i][j] += x[i] * x[j];
            }
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += RIDGE * xs.len() as f64;
    }
    Head {
        coef: solve(a, b).to_vec(),
    }
}

/// Logistic regression by Newton's method (IRLS) with a small ridge.
fn fit_logistic(xs: &[[f64; N_FEATURES]], y: &[bool]) -> Head {
    let n = xs.len().max(1) as f64;
    let rate = (y.iter().filter(|&&v| v).count() as f64 + 0.5) / (n + 1.0);
    let mut w = [0f64; N_FEATURES];
    w[0] = (rate / (1.0 - rate)).ln();
    for _ in 0..25 {
        let mut h = [[0f64; N_FEATURES]; N_FEATURES];
        let mut g = [0f64; N_FEATURES];
        for (x, &t) in xs.iter().zip(y) {
            let p = sigmoid(w.iter().zip(x).map(|(a, b)| a * b).sum());
            let r = p - t as u8 as f64;
            let s = p * (1.0 - p);
            for i in 0..N_FEATURES {
                g[i] += r * x[i];
                for j in 0..N_FEATURES {
                    h[i][j] += s * x[i] * x[j];
                }
            }
        }
        for i in 0..N_FEATURES {
            g[i] += RIDGE * n * w[i];
            h[i][i] += RIDGE * n;
        }
        let step = solve(h, g);
        let mut max_step = 0f64;
        for i in 0..N_FEATURES {
            w[i] -= step[i];
            max_step = max_step.max(step[i].abs());
        }
        if max_step < 1e-8 {
            break;
        }
    }
    Head { coef: w.to_vec() }
}

/// Expected calibration error over 10 equal-width bins.
pub fn expected_calibration_error(pred: &[f64], obs: &[bool]) -> f64 {
    let mut n = [0usize; 10];
    let mut sp = [0f64; 10];
    let mut so = [0f64; 10];
    for (&p, &o) in pred.iter().zip(obs) {
        let b = ((p * 10.0) as usize).min(9);
        n[b] += 1;
        sp[b] += p;
        so[b] += o as u8 as f64;
    }
    let total = pred.len().max(1) as f64;
    (0..10)
        .filter(|&b| n[b] > 0)
        .map(|b| n[b] as f64 / total * ((sp[b] - so[b]) / n[b] as f64).abs())
        .sum()
}

impl ValueModel {
    /// Fits the heads on four fifths of the samples (by a fixed hash of the
    /// sample index) and measures calibration on the rest.
    pub fn fit(s: &ValueSamples, weights: ValueWeights) -> ValueModel {
        let n = s.dot.len();
        let holdout = |i: usize| crate::rng::SplitMix::new(0xCA11B, i as u64, 0).below(5) == 0;
        let mut xs = Vec::with_capacity(n);
        let mut watch = Vec::with_capacity(n);
        let mut like = Vec::with_capacity(n);
        let mut share = Vec::with_capacity(n);
        let mut hold = Vec::new();
        for i in 0..n {
            let x = features(s.dot[i], s.count[i], s.bias[i]);
            if holdout(i) {
                hold.push(i);
                continue;
            }
            xs.push(x);
            watch.push((s.watch_fraction[i] as f64).min(2.0));
            like.push(s.liked[i]);
            share.push(s.shared[i]);
        }
        let mut m = ValueModel {
            watch: fit_linear(&xs, &watch),
            like: fit_logistic(&xs, &like),
            share: fit_logistic(&xs, &share),
            weights,
            calibration: Calibration::default(),
        };
        let mut pl = Vec::with_capacity(hold.len());
        let mut ps = Vec::with_capacity(hold.len());
        let mut ol = Vec::with_capacity(hold.len());
        let mut os = Vec::with_capacity(hold.len());
        let mut mae = 0f64;
        for &i in &hold {
            let (w, l, sh) = m.heads(s.dot[i], s.count[i], s.bias[i]);
            mae += (w - (s.watch_fraction[i] as f64).min(2.0)).abs();
            pl.push(l);
            ps.push(sh);
            ol.push(s.liked[i]);
            os.push(s.shared[i]);
        }
        let h = hold.len().max(1) as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let rate = |v: &[bool]| v.iter().filter(|&&x| x).count() as f64 / v.len().max(1) as f64;
        m.calibration = Calibration {
            n_train: xs.len(),
            n_holdout: hold.len(),
            watch_mae: mae / h,
            like_ece: expected_calibration_error(&pl, &ol),
            share_ece: expected_calibration_error(&ps, &os),
            like_rate: rate(&ol),
            like_pred: mean(&pl),
            share_rate: rate(&os),
            share_pred: mean(&ps),
        };
        m
    }

    /// Predicted (watch fraction, P(like), P(share)).
    pub fn heads(&self, dot: f32, count: u32, bias: f32) -> (f64, f64, f64) {
        let x = features(dot, count, bias);
        (
            self.watch.linear(&x).clamp(0.0, 2.0),
            sigmoid(self.like.linear(&x)),
            sigmoid(self.share.linear(&x)),
        )
    }

    /// The combined value of showing the video.
    pub fn score(&self, dot: f32, count: u32, bias: f32) -> f64 {
        let (w, l, s) = self.heads(dot, count, bias);
        self.weights.watch * w + self.weights.like * l + self.weights.share * s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

    #[test]
    fn heads_recover_a_known_model_and_are_calibrated() {
        let mut rng = SplitMix::new(1, 2, 3);
        let mut s = ValueSamples::default();
        for _ in 0..40_000 {
            let dot = rng.centred() * 4.0;
            let count = rng.below(1000) as u32;
            let logit = -2.0 + 1.5 * dot as f64;
            let p = sigmoid(logit);
            s.dot.push(dot);
            s.count.push(count);
            s.bias.push(0.0);
            s.watch_fraction
                .push((0.5 + 0.2 * dot + 0.1 * rng.centred()).max(0.0));
            s.liked
                .push(((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p);
            s.shared
                .push(((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p / 4.0);
        }
        let m = ValueModel::fit(&s, ValueWeights::default());
        assert!((m.like.coef[1] - 1.5).abs() < 0.15, "{:?}", m.like.coef);
        // The intercept trades off with the (nearly constant) log count: check the
        // prediction instead.
        let (_, p_like, _) = m.heads(0.0, 500, 0.0);
        assert!((p_like - sigmoid(-2.0)).abs() < 0.01, "{p_like}");
        assert!((m.watch.coef[1] - 0.2).abs() < 0.01, "{:?}", m.watch.coef);
        let c = &m.calibration;
        assert!(c.like_ece < 0.02 && c.share_ece < 0.02, "{c:?}");
        assert!((c.like_pred - c.like_rate).abs() < 0.02, "{c:?}");
        // More affinity, more value.
        assert!(m.score(1.0, 10, 0.0) > m.score(-1.0, 10, 0.0));
    }

    #[test]
    fn ece_of_a_miscalibrated_predictor_is_large() {
        let pred = vec![0.9; 100];
        let obs = vec![false; 100];
        assert!((expected_calibration_error(&pred, &obs) - 0.9).abs() < 1e-9);
    }
}
