//! The estimators, their bootstrap over users and the weight diagnostics.

use std::collections::HashMap;

use rayon::prelude::*;
use reelkit_assign::splitmix64;
use serde::Serialize;

use crate::error::{Error, Result};

/// A log of impressions under an exploring logging policy, one row each.
///
/// `propensity` is the logging policy's probability of the row's video at
/// the row's slot, `target` the candidate's probability of the same; their
/// ratio is the row's importance weight. With each slot's own (marginal)
/// probabilities the estimators below are the position-based ones for
/// ranked lists (a slot's reward depends on its own video: Li et al.'s
/// independent IPS, Open Bandit Pipeline's `IIPS`); with one action per
/// row they are the textbook bandit estimators.
#[derive(Debug, Clone, Copy)]
pub struct Log<'a> {
    /// The user of each row: the unit of the per-user value and of the
    /// bootstrap.
    pub user: &'a [u64],
    /// The reward (watch time, a like).
    pub reward: &'a [f64],
    /// The logging policy's probability of the logged video at its slot, in (0, 1].
    pub propensity: &'a [f64],
    /// The candidate's probability of the logged video at its slot, in [0, 1]
    /// (1 or 0 for a deterministic ranker).
    pub target: &'a [f64],
    /// A reward model's predictions, for the direct method and doubly robust.
    pub reward_model: Option<RewardModel<'a>>,
    /// Per-decision weights, for [`Estimator::Pdis`]: the product over the
    /// row's session, up to and including the row, of `target / propensity`
    /// ([`crate::session_weights`]).
    pub session_weight: Option<&'a [f64]>,
}

/// A reward model's predictions per row, fitted on other rows than the ones
/// it predicts (cross-fitted) so its errors are not the rewards' own.
#[derive(Debug, Clone, Copy)]
pub struct RewardModel<'a> {
    /// `q̂(x, a)`: the predicted reward of the logged video at its slot.
    pub logged: &'a [f64],
    /// `Σ_a π(a | x) q̂(x, a)`: the predicted reward of what the candidate
    /// would put at the row's slot.
    pub target: &'a [f64],
}

/// An off-policy estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// Inverse propensity scoring: `Σ w r` per user; unbiased with full
    /// support, its variance grows with the weights.
    Ips,
    /// Self-normalised IPS: `Σ w r / Σ w` per impression, times impressions
    /// per user; a little biased, far steadier when weights are large.
    Snips,
    /// Doubly robust: `Σ [q̂_π + w (r − q̂)]` per user; unbiased when either
    /// the propensities or the reward model are right.
    Dr,
    /// Direct method: `Σ q̂_π` per user, the reward model alone.
    Dm,
    /// Per-decision importance sampling over sessions: each reward weighed
    /// by the product of its session's weights up to it, `Σ r_t Π_{s≤t} w_s`
    /// per user. Unbiased for what the candidate would earn in a session
    /// *including* how long the session would last (its end depends only on
    /// what it showed), which the per-impression estimators hold at the
    /// log's; its variance grows with the sessions' length.
    Pdis,
}

impl Estimator {
    /// The estimators of one impression at a time (every one but
    /// [`Estimator::Pdis`]), in report order.
    pub const PER_IMPRESSION: [Estimator; 4] = [
        Estimator::Ips,
        Estimator::Snips,
        Estimator::Dr,
        Estimator::Dm,
    ];

    /// Every estimator, in report order.
    pub const ALL: [Estimator; 5] = [
        Estimator::Ips,
        Estimator::Snips,
        Estimator::Dr,
        Estimator::Dm,
        Estimator::Pdis,
    ];

    /// Its name: ips, snips, dr, dm.
    pub fn as_str(self) -> &'static str {
        match self {
            Estimator::Ips => "ips",
            Estimator::Snips => "snips",
            Estimator::Dr => "dr",
            Estimator::Dm => "dm",
            Estimator::Pdis => "pdis",
        }
    }

    fn needs_model(self) -> bool {
        matches!(self, Estimator::Dr | Estimator::Dm)
    }

    fn needs_sessions(self) -> bool {
        self == Estimator::Pdis
    }
}

impl std::str::FromStr for Estimator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Estimator> {
        Estimator::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Error::UnknownEstimator(s.chars().take(40).collect()))
    }
}

/// How to estimate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap resamples of the users (0: no intervals).
    pub bootstrap: usize,
    /// Two-sided interval level.
    pub level: f64,
    /// Seed of the resampling: the same seed, the same intervals, whatever
    /// the thread count.
    pub seed: u64,
    /// Importance weights above this are clipped to it (a bias traded for
    /// variance); `None`: no clipping.
    pub max_weight: Option<f64>,
}

impl Options {
    /// Refuses an interval level outside (0, 1) or a clipping weight that is
    /// not a positive number, naming the setting.
    pub fn check(&self) -> Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::Setting {
                field: "level",
                got: self.level,
                allowed: "in (0, 1)",
            });
        }
        if let Some(m) = self.max_weight {
            if !(m > 0.0 && m.is_finite()) {
                return Err(Error::Setting {
                    field: "max_weight",
                    got: m,
                    allowed: "a positive number",
                });
            }
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap: 500,
            level: 0.95,
            seed: 42,
            max_weight: None,
        }
    }
}

/// One estimator's estimate of the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimator.
    pub estimator: Estimator,
    /// The candidate's reward per user.
    pub value: f64,
    /// Its interval (bootstrap percentiles; NaN without resamples).
    pub value_ci: [f64; 2],
    /// The candidate's reward per impression (Open Bandit Pipeline's
    /// `estimate_policy_value` on the same rows).
    pub per_impression: f64,
    /// `value` minus the logging policy's own reward per user.
    pub lift: f64,
    /// Its interval (paired over users).
    pub lift_ci: [f64; 2],
    /// `lift` relative to the logging policy's reward.
    pub rel_lift: f64,
    /// Its interval.
    pub rel_lift_ci: [f64; 2],
    /// The bootstrap standard deviation of `value`.
    pub se: f64,
}

/// How far the log supports the candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostics {
    /// Impressions.
    pub impressions: usize,
    /// Users.
    pub users: usize,
    /// The logging policy's reward per user (the on-policy mean).
    pub logged_value: f64,
    /// Kish's effective sample size of the weights, `(Σ w)² / Σ w²`.
    pub effective_sample_size: f64,
    /// The mean importance weight: 1 in expectation when the logging
    /// policy shows every video the candidate would; below 1 by the share
    /// of the candidate's choices the log never shows.
    pub mean_weight: f64,
    /// Its standard error over users.
    pub mean_weight_se: f64,
    /// The largest weight (after clipping).
    pub max_weight: f64,
    /// The 99th percentile of the weights.
    pub p99_weight: f64,
    /// Share of impressions the candidate would not show (weight 0).
    pub zero_weight_share: f64,
    /// Share of weights clipped.
    pub clipped_share: f64,
    /// What a reader must know before trusting the estimates.
    pub warnings: Vec<String>,
}

/// Every estimate asked for and the diagnostics they share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// One per estimator, in the order asked.
    pub estimates: Vec<Estimate>,
    /// The weights' diagnostics.
    pub diagnostics: Diagnostics,
}

/// Per-user sums, the only thing the estimators and the bootstrap read.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    users: f64,
    n: f64,
    reward: f64,
    w: f64,
    wr: f64,
    dr: f64,
    dm: f64,
    pdis: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.users += o.users;
        self.n += o.n;
        self.reward += o.reward;
        self.w += o.w;
        self.wr += o.wr;
        self.dr += o.dr;
        self.dm += o.dm;
        self.pdis += o.pdis;
    }

    /// (per user, per impression) of an estimator.
    fn value(&self, e: Estimator) -> (f64, f64) {
        let (u, n) = (self.users, self.n);
        match e {
            Estimator::Ips => (self.wr / u, self.wr / n),
            Estimator::Snips => {
                let per = self.wr / self.w;
                (per * n / u, per)
            }
            Estimator::Dr => (self.dr / u, self.dr / n),
            Estimator::Dm => (self.dm / u, self.dm / n),
            Estimator::Pdis => (self.pdis / u, self.pdis / n),
        }
    }

    fn logged(&self) -> f64 {
        self.reward / self.users
    }
}

fn check_len(column: &'static str, expected: usize, got: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Length {
            column,
            expected,
            got,
        })
    }
}

fn check_values(
    column: &'static str,
    v: &[f64],
    ok: impl Fn(f64) -> bool,
    allowed: &'static str,
) -> Result<()> {
    match v.iter().position(|&x| !ok(x)) {
        None => Ok(()),
        Some(row) => Err(Error::OutOfRange {
            column,
            row,
            value: v[row],
            allowed,
        }),
    }
}

fn validate(log: &Log<'_>, estimators: &[Estimator], opts: &Options) -> Result<()> {
    let n = log.user.len();
    if n == 0 {
        return Err(Error::Empty);
    }
    check_len("reward", n, log.reward.len())?;
    check_len("propensity", n, log.propensity.len())?;
    check_len("target", n, log.target.len())?;
    check_values("reward", log.reward, f64::is_finite, "a finite number")?;
    check_values(
        "propensity",
        log.propensity,
        |p| p > 0.0 && p <= 1.0,
        "in (0, 1]",
    )?;
    check_values(
        "target",
        log.target,
        |p| (0.0..=1.0).contains(&p),
        "in [0, 1]",
    )?;
    if let Some(m) = &log.reward_model {
        check_len("reward_model.logged", n, m.logged.len())?;
        check_len("reward_model.target", n, m.target.len())?;
        check_values(
            "reward_model.logged",
            m.logged,
            f64::is_finite,
            "a finite number",
        )?;
        check_values(
            "reward_model.target",
            m.target,
            f64::is_finite,
            "a finite number",
        )?;
    } else if let Some(e) = estimators.iter().find(|e| e.needs_model()) {
        return Err(Error::NeedsRewardModel(e.as_str()));
    }
    if let Some(w) = log.session_weight {
        check_len("session_weight", n, w.len())?;
        check_values(
            "session_weight",
            w,
            |x| x >= 0.0 && x.is_finite(),
            "a finite weight ≥ 0",
        )?;
    } else if let Some(e) = estimators.iter().find(|e| e.needs_sessions()) {
        return Err(Error::NeedsSessions(e.as_str()));
    }
    opts.check()
}

/// Estimates the candidate's reward per user with each of `estimators`, its
/// lift over the logging policy, bootstrap intervals over users, and the
/// weights' diagnostics.
pub fn estimate(log: &Log<'_>, estimators: &[Estimator], opts: &Options) -> Result<Report> {
    validate(log, estimators, opts)?;
    let n = log.user.len();
    let clip = opts.max_weight.unwrap_or(f64::INFINITY);
    let mut weights = Vec::with_capacity(n);
    let mut clipped = 0usize;
    // Users in order of first appearance.
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut users: Vec<Sums> = Vec::new();
    let mut w2 = 0.0;
    for i in 0..n {
        let raw = log.target[i] / log.propensity[i];
        if raw > clip {
            clipped += 1;
        }
        let w = raw.min(clip);
        weights.push(w);
        w2 += w * w;
        let next = users.len();
        let u = *index.entry(log.user[i]).or_insert(next);
        if u == next {
            users.push(Sums {
                users: 1.0,
                ..Sums::default()
            });
        }
        let r = log.reward[i];
        let s = &mut users[u];
        s.n += 1.0;
        s.reward += r;
        s.w += w;
        s.wr += w * r;
        if let Some(m) = &log.reward_model {
            s.dr += m.target[i] + w * (r - m.logged[i]);
            s.dm += m.target[i];
        }
        if let Some(pw) = log.session_weight {
            s.pdis += pw[i].min(clip) * r;
        }
    }
    let mut total = Sums::default();
    for u in &users {
        total.add(u);
    }
    let reps = bootstrap(&users, opts.bootstrap, opts.seed);
    let tail = (1.0 - opts.level) / 2.0;
    let estimates = estimators
        .iter()
        .map(|&e| {
            let (value, per_impression) = total.value(e);
            let logged = total.logged();
            let lift = value - logged;
            let rel = lift / logged;
            let mut vs: Vec<f64> = Vec::with_capacity(reps.len());
            let mut ls = Vec::with_capacity(reps.len());
            let mut rs = Vec::with_capacity(reps.len());
            for r in &reps {
                let v = r.value(e).0;
                vs.push(v);
                ls.push(v - r.logged());
                rs.push((v - r.logged()) / r.logged());
            }
            Estimate {
                estimator: e,
                value,
                value_ci: interval(&mut vs, tail),
                per_impression,
                lift,
                lift_ci: interval(&mut ls, tail),
                rel_lift: rel,
                rel_lift_ci: interval(&mut rs, tail),
                se: sd(&vs),
            }
        })
        .collect();
    let diagnostics = diagnose(&users, &total, &mut weights, w2, clipped);
    Ok(Report {
        estimates,
        diagnostics,
    })
}

/// `b` resamples of the users with replacement, each as its summed
/// [`Sums`]; draw `j` of resample `r` comes from a counter-based hash of
/// (seed, r, j), so no thread order enters.
fn bootstrap(users: &[Sums], b: usize, seed: u64) -> Vec<Sums> {
    let m = users.len() as u128;
    (0..b)
        .into_par_iter()
        .map(|r| {
            let base = splitmix64(seed ^ splitmix64(r as u64 + 1));
            let mut s = Sums::default();
            for j in 0..users.len() {
                let x = splitmix64(base.wrapping_add(j as u64));
                let pick = ((x as u128 * m) >> 64) as usize;
                s.add(&users[pick]);
            }
            s
        })
        .collect()
}

/// The `tail` and `1 − tail` quantiles (linear interpolation) of the finite
/// values; NaN when there are none.
fn interval(v: &mut Vec<f64>, tail: f64) -> [f64; 2] {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    v.sort_by(f64::total_cmp);
    [quantile(v, tail), quantile(v, 1.0 - tail)]
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn sd(v: &[f64]) -> f64 {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
}

fn diagnose(
    users: &[Sums],
    total: &Sums,
    weights: &mut [f64],
    w2: f64,
    clipped: usize,
) -> Diagnostics {
    let n = weights.len();
    let mean = total.w / total.n;
    // The ratio Σw / Σn over users: its delta-method standard error.
    let u = users.len() as f64;
    let resid: f64 = users.iter().map(|s| (s.w - mean * s.n).powi(2)).sum();
    let mean_se = if u > 1.0 {
        (resid * u / (u - 1.0)).sqrt() / total.n
    } else {
        f64::NAN
    };
    let zero = weights.iter().filter(|&&w| w == 0.0).count();
    let max = weights.iter().copied().fold(0.0, f64::max);
    let at = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
    let p99 = *weights.select_nth_unstable_by(at, f64::total_cmp).1;
    let ess = if w2 > 0.0 {
        total.w * total.w / w2
    } else {
        0.0
    };
    let mut warnings = Vec::new();
    if mean + 3.0 * mean_se < 1.0 {
        warnings.push(format!(
            "the mean importance weight is {mean:.3} (± {mean_se:.3}), not 1: the candidate \
             puts about {:.0}% of its choices where the log never shows them (no support); \
             IPS, SNIPS and DR cannot see what those would earn",
            100.0 * (1.0 - mean)
        ));
    } else if mean - 3.0 * mean_se > 1.0 && clipped == 0 {
        warnings.push(format!(
            "the mean importance weight is {mean:.3} (± {mean_se:.3}), above 1: the logged \
             propensities look too small for what was shown (or the candidate's probabilities \
             too large)"
        ));
    }
    if ess < 0.01 * n as f64 {
        warnings.push(format!(
            "the effective sample size is {ess:.0} of {n} impressions: the estimates rest on a \
             few heavily weighted impressions"
        ));
    }
    Diagnostics {
        impressions: n,
        users: users.len(),
        logged_value: total.logged(),
        effective_sample_size: ess,
        mean_weight: mean,
        mean_weight_se: mean_se,
        max_weight: max,
        p99_weight: p99,
        zero_weight_share: zero as f64 / n as f64,
        clipped_share: clipped as f64 / n as f64,
        warnings,
    }
}
