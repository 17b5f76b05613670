//! The statistics engine. Everything it needs per arm is a handful of sums, so
//! the same numbers come from the local polars pipeline or a warehouse query.
//!
//! Conventions follow GrowthBook's gbstats 0.8 frequentist engine number for
//! number (`gbstats/frequentist/tests.py`, `gbstats/models/statistics.py`):
//! - means: sample variance with n − 1; proportions: p (1 − p);
//! - ratios (Σm / Σd over users): delta-method variance
//!   `Vm/μd² − 2 Cmd μm/μd³ + μm² Vd/μd⁴` per user;
//! - absolute effect `μb − μa`, variance `Va/na + Vb/nb`;
//! - relative effect `(μb − μa)/μa'` (μa' the control's unadjusted mean),
//!   variance `Vb/(μa'² nb) + Va μb'²/(μa'⁴ na)`;
//! - Welch–Satterthwaite degrees of freedom for both, two-sided Student t p-value
//!   and interval;
//! - CUPED: θ = Cov(post, pre)/Var(pre) pooled over both arms, adjusted mean
//!   `μpost − θ μpre`, variance `Vpost + θ² Vpre − 2θ Cov`; θ = 0 (no adjustment)
//!   when the pooled pre or post variance is zero;
//! - CUPED for ratios (GrowthBook's `RegressionAdjustedRatioStatistic`, which
//!   gbstats' main branch has and the 0.8 release lacks): the adjusted value is
//!   `Rpost − θ Rpre`; with ∇post, ∇pre the delta-method gradients of the two
//!   ratios in the per-user means (m, d, m_pre, d_pre) and Λ their 4 × 4 sample
//!   covariance, `Vpost = ∇postᵀΛ∇post`, `Vpre = ∇preᵀΛ∇pre`,
//!   `C = ∇postᵀΛ∇pre`, θ = (Ca + Cb)/(Vpre,a + Vpre,b) (0 when the
//!   denominator is 0, and no adjustment when |θ| < 1e−8), variance
//!   `Vpost + θ² Vpre − 2θ C`;
//! - a zero control mean or a non-positive variance gives the defined
//!   "uninformative" result: effect 0, interval [0, 0], p-value 1, with a message.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// Sufficient statistics of one arm for one metric (sums over users).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    /// Users.
    pub n: f64,
    /// Σ x (numerator, or the value for mean/proportion metrics).
    pub x: f64,
    /// Σ x².
    pub x2: f64,
    /// Σ y (ratio denominator).
    pub y: f64,
    /// Σ y².
    pub y2: f64,
    /// Σ x y.
    pub xy: f64,
    /// Σ pre-period covariate (CUPED).
    pub p: f64,
    /// Σ covariate².
    pub p2: f64,
    /// Σ x · covariate.
    pub xp: f64,
    /// Σ pre-period denominator (CUPED of ratio metrics; `p` is then the
    /// pre-period numerator).
    #[serde(default)]
    pub q: f64,
    /// Σ pre-period denominator².
    #[serde(default)]
    pub q2: f64,
    /// Σ pre numerator · pre denominator.
    #[serde(default)]
    pub pq: f64,
    /// Σ x · pre denominator.
    #[serde(default)]
    pub xq: f64,
    /// Σ y · pre numerator.
    #[serde(default)]
    pub yp: f64,
    /// Σ y · pre denominator.
    #[serde(default)]
    pub yq: f64,
    /// Σ x³ (the skewness check; NaN when a warehouse export lacks it).
    #[serde(default)]
    pub x3: f64,
    /// Σ y³.
    #[serde(default)]
    pub y3: f64,
    /// Σ x² y.
    #[serde(default)]
    pub x2y: f64,
    /// Σ x y².
    #[serde(default)]
    pub xy2: f64,
}

impl Sums {
    /// Adds another arm's or chunk's sums.
    pub fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.x += o.x;
        self.x2 += o.x2;
        self.y += o.y;
        self.y2 += o.y2;
        self.xy += o.xy;
        self.p += o.p;
        self.p2 += o.p2;
        self.xp += o.xp;
        self.q += o.q;
        self.q2 += o.q2;
        self.pq += o.pq;
        self.xq += o.xq;
        self.yp += o.yp;
        self.yq += o.yq;
        self.x3 += o.x3;
        self.y3 += o.y3;
        self.x2y += o.x2y;
        self.xy2 += o.xy2;
    }

    /// Adds one user's value `x`, denominator `y`, pre-period value (or
    /// numerator) `p` and pre-period denominator `q`.
    pub fn push(&mut self, x: f64, y: f64, p: f64, q: f64) {
        self.n += 1.0;
        self.x += x;
        self.x2 += x * x;
        self.y += y;
        self.y2 += y * y;
        self.xy += x * y;
        self.p += p;
        self.p2 += p * p;
        self.xp += x * p;
        self.q += q;
        self.q2 += q * q;
        self.pq += p * q;
        self.xq += x * q;
        self.yp += y * p;
        self.yq += y * q;
        self.x3 += x * x * x;
        self.y3 += y * y * y;
        self.x2y += x * x * y;
        self.xy2 += x * y * y;
    }

    /// Whether any pre-period data went into these sums.
    pub fn has_pre(&self) -> bool {
        self.p != 0.0 || self.p2 != 0.0 || self.q != 0.0 || self.q2 != 0.0
    }
}

/// The skewness of one arm's per-user metric, the quantity Kohavi's rule of
/// thumb (Kohavi, Deng, Longbotham & Xu, KDD 2014) compares with the sample
/// size: the mean's normal approximation is poor unless each arm has at least
/// `355 · skewness²` users. Mean metrics: the skewness of the per-user value;
/// proportions: of a Bernoulli with the arm's rate; ratios: of the
/// delta-method linearisation `x − R y` (`R = Σx / Σy`). `None` when it cannot
/// be assessed (fewer than 3 users, no variance, third moments missing from a
/// warehouse export) and for quantile metrics.
pub fn skewness(kind: MetricKind, s: &Sums) -> Option<f64> {
    if s.n < 3.0 {
        return None;
    }
    let n = s.n;
    let skew = match kind {
        MetricKind::Quantile => return None,
        MetricKind::Proportion => {
            let p = s.x / n;
            if p <= 0.0 || p >= 1.0 {
                return None;
            }
            (1.0 - 2.0 * p) / (p * (1.0 - p)).sqrt()
        }
        MetricKind::Mean => {
            let m = s.x / n;
            let m2 = s.x2 / n - m * m;
            let m3 = s.x3 / n - 3.0 * m * s.x2 / n + 2.0 * m * m * m;
            if m2 <= 0.0 {
                return None;
            }
            m3 / m2.powf(1.5)
        }
        MetricKind::Ratio => {
            if s.y == 0.0 {
                return None;
            }
            // z = x − R y has mean 0 by construction of R.
            let r = s.x / s.y;
            let m2 = (s.x2 - 2.0 * r * s.xy + r * r * s.y2) / n;
            let m3 = (s.x3 - 3.0 * r * s.x2y + 3.0 * r * r * s.xy2 - r * r * r * s.y3) / n;
            if m2 <= 0.0 {
                return None;
            }
            m3 / m2.powf(1.5)
        }
    };
    skew.is_finite().then_some(skew)
}

/// Users per arm that Kohavi's rule of thumb asks for a metric of this
/// skewness: `355 · skewness²`.
pub fn users_for_normality(skewness: f64) -> f64 {
    355.0 * skewness * skewness
}

/// How a metric aggregates per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Mean of a per-user value.
    Mean,
    /// Share of users with the value 1 (per-user 0/1).
    Proportion,
    /// Σ numerator / Σ denominator over users (delta method).
    Ratio,
    /// A quantile (e.g. p50, p90) of the per-user value; needs per-user values.
    Quantile,
}

impl MetricKind {
    /// Whether CUPED applies (mean, proportion and ratio metrics).
    pub fn takes_cuped(self) -> bool {
        matches!(
            self,
            MetricKind::Mean | MetricKind::Proportion | MetricKind::Ratio
        )
    }
}

/// Sample variance `(Σx² − (Σx)²/n)/(n − 1)` (0 for n ≤ 1).
fn sample_var(n: f64, s: f64, s2: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else {
        (s2 - s * s / n) / (n - 1.0)
    }
}

fn sample_cov(n: f64, sa: f64, sb: f64, sab: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else {
        (sab - sa * sb / n) / (n - 1.0)
    }
}

/// Mean and variance of the per-user value of an arm, before CUPED.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Users.
    pub n: f64,
    /// Mean (ratios: Σx/Σy).
    pub mean: f64,
    /// Variance of the per-user value (ratios: delta method).
    pub var: f64,
}

/// The arm's mean (or ratio) and per-user variance for `kind`.
pub fn moments(kind: MetricKind, s: &Sums) -> Moments {
    let n = s.n;
    match kind {
        // A quantile metric's sums are those of its per-user values.
        MetricKind::Mean | MetricKind::Quantile => Moments {
            n,
            mean: if n == 0.0 { 0.0 } else { s.x / n },
            var: sample_var(n, s.x, s.x2),
        },
        MetricKind::Proportion => {
            let p = if n == 0.0 { 0.0 } else { s.x / n };
            Moments {
                n,
                mean: p,
                var: p * (1.0 - p),
            }
        }
        MetricKind::Ratio => {
            let mean = if s.y == 0.0 { 0.0 } else { s.x / s.y };
            let (mm, md) = if n == 0.0 {
                (0.0, 0.0)
            } else {
                (s.x / n, s.y / n)
            };
            let var = if md == 0.0 || n <= 1.0 {
                0.0
            } else {
                let vm = sample_var(n, s.x, s.x2);
                let vd = sample_var(n, s.y, s.y2);
                let c = sample_cov(n, s.x, s.y, s.xy);
                vm / md.powi(2) - 2.0 * c * mm / md.powi(3) + mm.powi(2) * vd / md.powi(4)
            };
            Moments { n, mean, var }
        }
    }
}

/// Per-arm estimate used by the tests: possibly CUPED-adjusted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmEstimate {
    /// Users.
    pub n: f64,
    /// Adjusted mean (equal to `unadjusted_mean` without CUPED).
    pub mean: f64,
    /// The mean before CUPED (relative effects divide by it).
    pub unadjusted_mean: f64,
    /// Variance of the per-user (adjusted) value.
    pub var: f64,
}

/// The delta-method pieces of ratio CUPED for one arm: (Vpost, Vpre, C), the
/// variances of the post- and pre-period ratios and their covariance, per user.
/// All zero when a mean denominator is zero or n ≤ 1.
fn ratio_cuped_parts(s: &Sums) -> (f64, f64, f64) {
    let n = s.n;
    if n <= 1.0 {
        return (0.0, 0.0, 0.0);
    }
    let (mx, my, mp, mq) = (s.x / n, s.y / n, s.p / n, s.q / n);
    if my == 0.0 || mq == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    // Gradients of x̄/ȳ and p̄/q̄ in (x̄, ȳ) and (p̄, q̄).
    let (gx, gy) = (1.0 / my, -mx / (my * my));
    let (gp, gq) = (1.0 / mq, -mp / (mq * mq));
    let cov = |sa: f64, sb: f64, sab: f64| sample_cov(n, sa, sb, sab);
    let (vxx, vyy, vxy) = (
        cov(s.x, s.x, s.x2),
        cov(s.y, s.y, s.y2),
        cov(s.x, s.y, s.xy),
    );
    let (vpp, vqq, vpq) = (
        cov(s.p, s.p, s.p2),
        cov(s.q, s.q, s.q2),
        cov(s.p, s.q, s.pq),
    );
    let (vxp, vxq) = (cov(s.x, s.p, s.xp), cov(s.x, s.q, s.xq));
    let (vyp, vyq) = (cov(s.y, s.p, s.yp), cov(s.y, s.q, s.yq));
    let v_post = gx * gx * vxx + 2.0 * gx * gy * vxy + gy * gy * vyy;
    let v_pre = gp * gp * vpp + 2.0 * gp * gq * vpq + gq * gq * vqq;
    let c = gx * (gp * vxp + gq * vxq) + gy * (gp * vyp + gq * vyq);
    (v_post, v_pre, c)
}

/// CUPED's θ pooled over both arms (gbstats `compute_theta`): 0 when the pooled
/// pre or post variance is zero. For ratio metrics, GrowthBook's
/// `compute_theta_regression_adjusted_ratio`: the arms' delta-method
/// covariances over the sum of their pre-period ratio variances, 0 when that
/// sum is zero or |θ| < 1e−8.
pub fn cuped_theta(kind: MetricKind, a: &Sums, b: &Sums) -> f64 {
    if kind == MetricKind::Ratio {
        let (_, va, ca) = ratio_cuped_parts(a);
        let (_, vb, cb) = ratio_cuped_parts(b);
        let theta = (ca + cb) / (va + vb);
        return if va + vb == 0.0 || !theta.is_finite() || theta.abs() < 1e-8 {
            0.0
        } else {
            theta
        };
    }
    let mut j = *a;
    j.add(b);
    let (v_post, v_pre) = match kind {
        MetricKind::Proportion => {
            let pp = j.x / j.n;
            let pr = j.p / j.n;
            (pp * (1.0 - pp), pr * (1.0 - pr))
        }
        _ => (sample_var(j.n, j.x, j.x2), sample_var(j.n, j.p, j.p2)),
    };
    if v_pre == 0.0 || v_post == 0.0 || !v_pre.is_finite() {
        return 0.0;
    }
    sample_cov(j.n, j.x, j.p, j.xp) / v_pre
}

/// The arm's estimate with CUPED coefficient `theta` (0 = none).
pub fn adjusted(kind: MetricKind, s: &Sums, theta: f64) -> ArmEstimate {
    let m = moments(kind, s);
    if theta == 0.0 {
        return ArmEstimate {
            n: m.n,
            mean: m.mean,
            unadjusted_mean: m.mean,
            var: m.var,
        };
    }
    if kind == MetricKind::Ratio {
        let (v_post, v_pre, c) = ratio_cuped_parts(s);
        let pre_ratio = if s.q == 0.0 { 0.0 } else { s.p / s.q };
        return ArmEstimate {
            n: m.n,
            mean: if s.y == 0.0 || s.q == 0.0 {
                0.0
            } else {
                m.mean - theta * pre_ratio
            },
            unadjusted_mean: m.mean,
            var: v_post + theta * theta * v_pre - 2.0 * theta * c,
        };
    }
    let pre_mean = if s.n == 0.0 { 0.0 } else { s.p / s.n };
    let pre_var = match kind {
        MetricKind::Proportion => pre_mean * (1.0 - pre_mean),
        _ => sample_var(s.n, s.p, s.p2),
    };
    let cov = sample_cov(s.n, s.x, s.p, s.xp);
    let var = if s.n <= 1.0 {
        0.0
    } else {
        m.var + theta * theta * pre_var - 2.0 * theta * cov
    };
    ArmEstimate {
        n: m.n,
        mean: m.mean - theta * pre_mean,
        unadjusted_mean: m.mean,
        var,
    }
}

/// A two-sided test of one variant against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Baseline arm's mean (in a report row: the plain mean).
    pub control_mean: f64,
    /// Variant arm's mean (in a report row: the plain mean).
    pub variant_mean: f64,
    /// Variant − control.
    pub abs_effect: f64,
    /// Lower end of its interval.
    pub abs_ci_low: f64,
    /// Upper end of its interval.
    pub abs_ci_high: f64,
    /// Relative effect: (variant − control) / the control's unadjusted mean.
    pub rel_effect: f64,
    /// Lower end of its interval.
    pub rel_ci_low: f64,
    /// Upper end of its interval.
    pub rel_ci_high: f64,
    /// p-value of the absolute difference.
    pub p_value: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Why the result is uninformative, when it is.
    pub message: Option<String>,
}

/// gbstats `frequentist_variance`.
pub fn effect_variance(a: &ArmEstimate, b: &ArmEstimate, relative: bool) -> f64 {
    if relative {
        let ma = a.unadjusted_mean;
        b.var / (ma * ma * b.n) + a.var * b.unadjusted_mean.powi(2) / (ma.powi(4) * a.n)
    } else {
        b.var / b.n + a.var / a.n
    }
}

/// Welch–Satterthwaite degrees of freedom (gbstats `TTest.dof`).
pub fn welch_df(a: &ArmEstimate, b: &ArmEstimate) -> f64 {
    let va = a.var / a.n;
    let vb = b.var / b.n;
    (va + vb).powi(2)
        / (b.var.powi(2) / (b.n * b.n * (b.n - 1.0)) + a.var.powi(2) / (a.n * a.n * (a.n - 1.0)))
}

/// Two-sided p-value and interval half-width for an estimate, variance and df.
fn t_test(estimate: f64, variance: f64, df: f64, alpha: f64) -> (f64, f64) {
    let se = variance.sqrt();
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => {
            let stat = (estimate / se).abs();
            let p = 2.0 * (1.0 - t.cdf(stat));
            let width = t.inverse_cdf(1.0 - alpha / 2.0) * se;
            (p, width)
        }
        Err(_) => (1.0, 0.0),
    }
}

/// The uninformative result gbstats returns for degenerate inputs.
fn uninformative(a: &ArmEstimate, b: &ArmEstimate, why: &str) -> TestResult {
    TestResult {
        control_mean: a.mean,
        variant_mean: b.mean,
        abs_effect: 0.0,
        abs_ci_low: 0.0,
        abs_ci_high: 0.0,
        rel_effect: 0.0,
        rel_ci_low: 0.0,
        rel_ci_high: 0.0,
        p_value: 1.0,
        df: 0.0,
        message: Some(why.to_string()),
    }
}

/// Two-sided Welch tests of `b` against `a`: absolute and relative.
pub fn two_sided(a: &ArmEstimate, b: &ArmEstimate, alpha: f64) -> TestResult {
    if a.mean == 0.0 || a.unadjusted_mean == 0.0 {
        return uninformative(a, b, "zero value in baseline variation");
    }
    if a.var <= 0.0 || b.var <= 0.0 || !a.var.is_finite() || !b.var.is_finite() {
        return uninformative(a, b, "zero or negative variance");
    }
    let df = welch_df(a, b);
    let abs = b.mean - a.mean;
    let (p_value, w_abs) = t_test(abs, effect_variance(a, b, false), df, alpha);
    let rel = (b.mean - a.mean) / a.unadjusted_mean;
    let (_, w_rel) = t_test(rel, effect_variance(a, b, true), df, alpha);
    TestResult {
        control_mean: a.mean,
        variant_mean: b.mean,
        abs_effect: abs,
        abs_ci_low: abs - w_abs,
        abs_ci_high: abs + w_abs,
        rel_effect: rel,
        rel_ci_low: rel - w_rel,
        rel_ci_high: rel + w_rel,
        p_value,
        df,
        message: None,
    }
}

/// Always-valid two-sided test: GrowthBook's asymptotic confidence sequence
/// (Waudby-Smith et al. 2023, eq. 9 and 155; gbstats `SequentialTwoSidedTTest`)
/// with tuning parameter `n_star` (the sample size at which the sequence is
/// tightest). Intervals and p-values stay valid however often one peeks.
pub fn two_sided_sequential(
    a: &ArmEstimate,
    b: &ArmEstimate,
    alpha: f64,
    n_star: f64,
) -> TestResult {
    let mut r = two_sided(a, b, alpha);
    if r.message.is_some() {
        return r;
    }
    let n = a.n + b.n;
    let rho = ((-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / n_star).sqrt();
    let nr2 = n * rho * rho + 1.0;
    let half_width = |variance: f64| {
        let s2 = variance * n;
        s2.sqrt() * ((2.0 * nr2) * (nr2.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt()
    };
    let (va, vr) = (effect_variance(a, b, false), effect_variance(a, b, true));
    let (wa, wr) = (half_width(va), half_width(vr));
    r.abs_ci_low = r.abs_effect - wa;
    r.abs_ci_high = r.abs_effect + wa;
    r.rel_ci_low = r.rel_effect - wr;
    r.rel_ci_high = r.rel_effect + wr;
    let st2 = r.abs_effect.powi(2) * n / va;
    let evalue = (rho * rho * st2 / (2.0 * nr2)).exp() / nr2.sqrt();
    r.p_value = (1.0 / evalue).min(1.0);
    r
}

/// Sample-ratio mismatch: Pearson χ² of observed users against the configured
/// weights (gbstats `check_srm` = `scipy.stats.chisquare`). Returns (χ², p).
pub fn srm(counts: &[f64], weights: &[f64]) -> (f64, f64) {
    let total: f64 = counts.iter().sum();
    if total == 0.0 || counts.len() < 2 {
        return (0.0, 1.0);
    }
    let wsum: f64 = weights.iter().sum();
    let mut x = 0.0;
    for (o, w) in counts.iter().zip(weights) {
        if *w <= 0.0 {
            continue;
        }
        let e = w / wsum * total;
        x += (o - e) * (o - e) / e;
    }
    let p = ChiSquared::new((counts.len() - 1) as f64)
        .map(|c| 1.0 - c.cdf(x))
        .unwrap_or(1.0);
    (x, p)
}

/// Multiple-testing correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Holm–Bonferroni step-down (family-wise error).
    Holm,
    /// Benjamini–Hochberg step-up (false discovery rate).
    Bh,
    /// No correction.
    None,
}

impl std::str::FromStr for Correction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "holm" => Ok(Correction::Holm),
            "bh" => Ok(Correction::Bh),
            "none" => Ok(Correction::None),
            o => Err(format!(
                "unknown correction `{o}` (expected holm, bh or none)"
            )),
        }
    }
}

impl std::fmt::Display for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Correction::Holm => "holm",
            Correction::Bh => "bh",
            Correction::None => "none",
        })
    }
}

/// Adjusted p-values, as statsmodels `multipletests(method="holm" | "fdr_bh")`.
pub fn adjust(p: &[f64], method: Correction) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut out = vec![0.0; m];
    match method {
        Correction::None => return p.to_vec(),
        Correction::Holm => {
            let mut running: f64 = 0.0;
            for (rank, &i) in order.iter().enumerate() {
                let v = ((m - rank) as f64 * p[i]).min(1.0);
                running = running.max(v);
                out[i] = running;
            }
        }
        Correction::Bh => {
            let mut running: f64 = 1.0;
            for (rank, &i) in order.iter().enumerate().rev() {
                let v = (p[i] * m as f64 / (rank + 1) as f64).min(1.0);
                running = running.min(v);
                out[i] = running;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_and_bh_on_a_textbook_case() {
        // statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.005], method=...)
        let p = [0.01, 0.04, 0.03, 0.005];
        let holm = adjust(&p, Correction::Holm);
        let want_holm = [0.03, 0.06, 0.06, 0.02];
        let bh = adjust(&p, Correction::Bh);
        let want_bh = [0.02, 0.04, 0.04, 0.02];
        for i in 0..4 {
            assert!((holm[i] - want_holm[i]).abs() < 1e-12, "{holm:?}");
            assert!((bh[i] - want_bh[i]).abs() < 1e-12, "{bh:?}");
        }
    }

    #[test]
    fn zero_variance_is_defined_not_nan() {
        let s = Sums {
            n: 10.0,
            x: 10.0,
            x2: 10.0,
            ..Sums::default()
        };
        let a = adjusted(MetricKind::Mean, &s, 0.0);
        let r = two_sided(&a, &a, 0.05);
        assert_eq!(r.p_value, 1.0);
        assert_eq!((r.abs_ci_low, r.abs_ci_high), (0.0, 0.0));
        assert!(r.message.is_some());
        let z = Sums {
            n: 10.0,
            ..Sums::default()
        };
        let r = two_sided(&adjusted(MetricKind::Mean, &z, 0.0), &a, 0.05);
        assert_eq!(r.p_value, 1.0);
        assert!(!r.rel_effect.is_nan());
    }
}

/// A Gaussian prior on the effect (on the scale of the test: absolute or
/// relative).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    /// Prior mean of the effect.
    pub mean: f64,
    /// Prior variance of the effect.
    pub variance: f64,
}

/// The Bayesian reading of a comparison (gbstats `EffectBayesianABTest`):
/// the posterior of the effect is normal; `chance_to_win` = P(effect > 0);
/// `risk_control` / `risk_treatment` are the expected losses of choosing the
/// control / the variant (E[max(effect, 0)] and E[max(−effect, 0)]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bayesian {
    /// Posterior probability that the variant is better (direction-aware in reports).
    pub chance_to_win: f64,
    /// Posterior mean of the relative effect.
    pub expected: f64,
    /// Lower end of the credible interval.
    pub ci_low: f64,
    /// Upper end of the credible interval.
    pub ci_high: f64,
    /// Expected loss of choosing the control.
    pub risk_control: f64,
    /// Expected loss of choosing the variant.
    pub risk_treatment: f64,
}

impl Bayesian {
    /// gbstats' uninformative output.
    fn uninformative() -> Bayesian {
        Bayesian {
            chance_to_win: 0.5,
            expected: 0.0,
            ci_low: 0.0,
            ci_high: 0.0,
            risk_control: 0.0,
            risk_treatment: 0.0,
        }
    }
}

/// Bayesian comparison of `b` against `a` on the absolute or relative scale,
/// with gbstats' default improper (flat) prior or a proper Gaussian one.
pub fn bayesian(
    a: &ArmEstimate,
    b: &ArmEstimate,
    alpha: f64,
    relative: bool,
    prior: Option<Prior>,
) -> Bayesian {
    if relative && (a.mean == 0.0 || a.unadjusted_mean == 0.0) {
        return Bayesian::uninformative();
    }
    if a.n == 0.0
        || b.n == 0.0
        || !(a.var > 0.0 && b.var > 0.0)
        || !a.var.is_finite()
        || !b.var.is_finite()
    {
        return Bayesian::uninformative();
    }
    let data_var = effect_variance(a, b, relative);
    let data_mean = if relative {
        (b.mean - a.mean) / a.unadjusted_mean
    } else {
        b.mean - a.mean
    };
    let (mu, var) = match prior {
        Some(p) if p.variance > 0.0 => {
            let prec = 1.0 / data_var + 1.0 / p.variance;
            (
                (data_mean / data_var + p.mean / p.variance) / prec,
                1.0 / prec,
            )
        }
        _ => (data_mean, data_var),
    };
    let sd = var.sqrt();
    let Ok(post) = Normal::new(mu, sd) else {
        return Bayesian::uninformative();
    };
    let std = Normal::standard();
    // P(effect <= 0) and the normal density at 0 in standard units.
    let z = -mu / sd;
    let (p_le, phi) = (std.cdf(z), std.pdf(z));
    Bayesian {
        chance_to_win: 1.0 - post.cdf(0.0),
        expected: mu,
        ci_low: post.inverse_cdf(alpha / 2.0),
        ci_high: post.inverse_cdf(1.0 - alpha / 2.0),
        // (1 − P(≤0)) · E[effect | > 0] and −P(≤0) · E[effect | ≤ 0].
        risk_control: (1.0 - p_le) * mu + sd * phi,
        risk_treatment: -p_le * mu + sd * phi,
    }
}

/// z of a two-sided 95% interval: the bounds of a quantile estimate.
pub const QUANTILE_Z: f64 = 1.959_963_984_540_054;

/// One arm of a quantile metric (gbstats `QuantileStatistic` with
/// `n_star = n`): the estimate at level `nu` and the order-statistic bounds at
/// levels `nu ∓ z·sqrt(nu(1−nu)/n)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileSums {
    /// Users.
    pub n: f64,
    /// The quantile level (0.5 = median).
    pub nu: f64,
    /// The arm's quantile estimate.
    pub hat: f64,
    /// The order statistic at the lower level.
    pub lower: f64,
    /// The order statistic at the upper level.
    pub upper: f64,
}

impl QuantileSums {
    /// From one arm's per-user values (sorted here).
    pub fn from_values(values: &[f64], nu: f64) -> QuantileSums {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let half = if n > 0.0 {
            QUANTILE_Z * (nu * (1.0 - nu) / n).sqrt()
        } else {
            0.0
        };
        QuantileSums {
            n,
            nu,
            hat: sorted_quantile(&v, nu),
            lower: sorted_quantile(&v, (nu - half).max(0.0)),
            upper: sorted_quantile(&v, (nu + half).min(1.0)),
        }
    }

    /// The arm estimate for the tests: the quantile as mean, and gbstats'
    /// per-unit variance `(n−1)·((upper − lower)/(2z))²` (floored at 1e-5
    /// from 100 units); zero when gbstats deems the quantile unestimable.
    pub fn estimate(&self) -> ArmEstimate {
        let (n, nu) = (self.n, self.nu);
        let z2 = QUANTILE_Z * QUANTILE_Z;
        let init = if n <= 1.0 {
            0.0
        } else {
            (n - 1.0) * ((self.upper - self.lower) / (2.0 * QUANTILE_Z)).powi(2)
        };
        let degenerate =
            n <= z2 * nu / (1.0 - nu) || n <= z2 * (1.0 - nu) / nu || (init <= 0.0 && n < 1000.0);
        let var = if degenerate {
            0.0
        } else if n < 100.0 {
            init
        } else {
            init.max(1e-5)
        };
        ArmEstimate {
            n,
            mean: self.hat,
            unadjusted_mean: self.hat,
            var,
        }
    }
}

/// Linear-interpolated quantile of sorted values (numpy's default).
fn sorted_quantile(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}
