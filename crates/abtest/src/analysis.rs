//! From per-arm sums to the report: SRM, one test per (metric, variant), CUPED,
//! multiple-testing correction.

use std::collections::BTreeMap;

use reelkit_logs::polars::prelude::{col, DataType};
use reelkit_logs::{schema, Assignments};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{Metric, Role};
use crate::pipeline::{ordered_arm_sums, ArmSums, Inputs};
use crate::stats::{
    adjust, adjusted, bayesian, cuped_theta, effect_variance, skewness, srm, two_sided,
    two_sided_sequential, users_for_normality, Bayesian, Correction, MetricKind, TestResult,
};
use crate::text::{pct, utc_date};

/// The power the "keep running" line plans for.
pub const PLANNING_POWER: f64 = 0.8;

/// SRM p-values below this flag the experiment (GrowthBook's default).
pub const SRM_THRESHOLD: f64 = 0.001;

/// Settings of an analysis.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    /// The report's title and default output folder.
    pub experiment: String,
    /// Control arm; default `control` if present, else the first arm by name.
    pub control: Option<String>,
    /// Significance level of every test and interval.
    pub alpha: f64,
    /// Multiple-testing correction across metrics and comparisons.
    pub correction: Correction,
    /// Configured traffic split per arm (default: equal).
    pub weights: Option<BTreeMap<String, f64>>,
    /// Always-valid sequential intervals with this tuning N* (None: fixed-horizon).
    pub sequential: Option<f64>,
    /// The comparisons to report, each `(variant, baseline)`: empty means
    /// every arm against the control; otherwise exactly these (for example
    /// `("unified", "siloed")` beside `("unified", "popular")`).
    pub comparisons: Vec<(String, String)>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            experiment: "experiment".into(),
            control: None,
            alpha: 0.05,
            correction: Correction::Holm,
            weights: None,
            sequential: None,
            comparisons: Vec::new(),
        }
    }
}

/// Sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Srm {
    /// Users per arm.
    pub counts: BTreeMap<String, u64>,
    /// Configured share of each arm.
    pub expected: BTreeMap<String, f64>,
    /// Pearson χ² of the counts against the shares.
    pub chi2: f64,
    /// Its p-value (gbstats `check_srm`).
    pub p_value: f64,
    /// `p_value >= SRM_THRESHOLD`.
    pub ok: bool,
}

/// One (metric, variant) row of the report: the test's result (flattened into
/// the same JSON object), its adjusted p-value and verdict.
///
/// `control_mean` and `variant_mean` are the arms' plain means (of the
/// per-user value; Σx/Σy for ratios; the quantile for quantile metrics). The
/// effects and intervals are CUPED-adjusted when `cuped` is true, and the
/// adjusted means (post − θ·pre, not re-centred) are then under
/// `control_mean_adjusted` and `variant_mean_adjusted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// The metric's name.
    pub metric: String,
    /// How it aggregates per user.
    pub kind: MetricKind,
    /// The arm being compared.
    pub variant: String,
    /// The arm the variant is compared with: the report's control, or the
    /// baseline of a named comparison.
    #[serde(default)]
    pub control: String,
    /// Users in the baseline arm.
    pub n_control: u64,
    /// Users in the variant arm.
    pub n_variant: u64,
    /// Means, effects, intervals, p-value, df and any "uninformative" message.
    #[serde(flatten)]
    pub test: TestResult,
    /// The p-value after the report's multiple-testing correction.
    pub p_value_adjusted: f64,
    /// `p_value_adjusted < alpha` and the test is informative.
    pub significant: bool,
    /// Whether CUPED adjusted the effect.
    pub cuped: bool,
    /// CUPED θ applied (0 = none).
    pub theta: f64,
    /// The Bayesian reading of the relative lift (gbstats' flat prior):
    /// chance to win, credible interval, expected loss of either choice. For
    /// a metric where lower is better, the chance to win is the chance that it
    /// falls, and the two risks trade places (gbstats' `inverse`).
    pub bayesian: Bayesian,
    /// Whether a rise of this metric is good.
    #[serde(default = "higher")]
    pub higher_is_better: bool,
    /// What the metric decides (goal, guardrail, secondary).
    #[serde(default)]
    pub role: Role,
    /// A guardrail's acceptable relative worsening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The control's CUPED-adjusted mean, when CUPED applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_mean_adjusted: Option<f64>,
    /// The variant's CUPED-adjusted mean, when CUPED applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_mean_adjusted: Option<f64>,
    /// The per-user metric's skewness in the arm where it is larger in size
    /// (see `stats::skewness`); absent when it cannot be assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skewness: Option<f64>,
    /// Users per arm Kohavi's rule asks for at that skewness (355·skewness²).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_for_normality: Option<f64>,
    /// An arm has fewer users than `users_for_normality`: the p-value and
    /// interval rest on a poor normal approximation.
    #[serde(default)]
    pub skewed: bool,
    /// Users (both arms together, split as now) for 80% power at α on the
    /// row's question, from the variance measured here: to detect the
    /// observed relative effect, or, for a guardrail with a tolerance, to
    /// show that the observed worsening is within it. Absent when no sample
    /// would (a zero effect; a worsening already beyond the tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_needed: Option<f64>,
}

fn higher() -> bool {
    true
}

impl MetricRow {
    /// Significant, in the metric's good direction.
    pub fn improved(&self) -> bool {
        self.significant && (self.test.rel_effect > 0.0) == self.higher_is_better
    }

    /// Significant, in the metric's bad direction.
    pub fn regressed(&self) -> bool {
        self.significant && (self.test.rel_effect < 0.0) == self.higher_is_better
    }

    /// The relative interval's ends as worsening: `(least, most)` worsening
    /// the interval allows (negative = an improvement).
    fn worsening(&self) -> (f64, f64) {
        if self.higher_is_better {
            (-self.test.rel_ci_high, -self.test.rel_ci_low)
        } else {
            (self.test.rel_ci_low, self.test.rel_ci_high)
        }
    }

    /// A guardrail's state; `None` for other roles.
    pub fn guardrail(&self) -> Option<Guardrail> {
        if self.role != Role::Guardrail {
            return None;
        }
        if self.test.message.is_some() {
            return Some(Guardrail::Unclear);
        }
        Some(match self.tolerance {
            None if self.regressed() => Guardrail::Fails,
            None => Guardrail::Holds,
            Some(t) => {
                let (least, most) = self.worsening();
                if least > t {
                    Guardrail::Fails
                } else if most <= t {
                    Guardrail::Holds
                } else {
                    Guardrail::Unclear
                }
            }
        })
    }
}

/// Where a guardrail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guardrail {
    /// Without a tolerance: not significantly worse. With one: the whole
    /// interval is within it.
    Holds,
    /// Without a tolerance: significantly worse. With one: the whole interval
    /// is beyond it.
    Fails,
    /// The interval still reaches beyond the tolerance (or the test was
    /// uninformative).
    Unclear,
}

/// What to do about one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A goal metric won, none lost, every guardrail holds, the split is right.
    Ship,
    /// A goal metric lost, a guardrail failed, or the split is broken.
    DontShip,
    /// No goal metric is significant yet, or a guardrail is still unclear.
    KeepRunning,
    /// No metric has the goal role.
    NoGoal,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ship => "ship",
            Verdict::DontShip => "don't ship",
            Verdict::KeepRunning => "keep running",
            Verdict::NoGoal => "no decision (no goal metric)",
        })
    }
}

/// The decision block of one comparison (variant against its baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The arm the decision is about.
    pub variant: String,
    /// The arm it is compared with.
    pub control: String,
    /// Ship, don't ship, keep running, or no goal metric.
    pub verdict: Verdict,
    /// Why, one sentence per reason, most important first.
    pub reasons: Vec<String>,
    /// For "keep running": users (both arms) still needed beyond those already
    /// in, at the observed effects, for 80% power on the goal metric closest
    /// to significance and on every guardrail not yet within its tolerance;
    /// absent when no sample size would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_users_needed: Option<f64>,
}

/// The decision of each comparison of `rows` (overall rows, in order).
fn decide(rows: &[MetricRow], srm: &Srm) -> Vec<Decision> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !pairs.contains(&(r.variant.as_str(), r.control.as_str())) {
            pairs.push((&r.variant, &r.control));
        }
    }
    pairs
        .into_iter()
        .map(|(variant, control)| {
            let rows: Vec<&MetricRow> = rows
                .iter()
                .filter(|r| r.variant == variant && r.control == control)
                .collect();
            decide_one(variant, control, &rows, srm)
        })
        .collect()
}

fn decide_one(variant: &str, control: &str, rows: &[&MetricRow], srm: &Srm) -> Decision {
    let mut stop = Vec::new();
    let mut wait = Vec::new();
    let mut good = Vec::new();
    if !srm.ok {
        stop.push(format!(
            "sample-ratio mismatch (p = {:.2e}): the split is not the one configured, so no metric can be trusted; find the cause before reading any result",
            srm.p_value
        ));
    }
    let goals: Vec<&&MetricRow> = rows.iter().filter(|r| r.role == Role::Goal).collect();
    for g in &goals {
        let what = format!(
            "goal {} {} [{}, {}], p adj. {:.4}, chance to win {:.1}%",
            g.metric,
            pct(g.test.rel_effect),
            pct(g.test.rel_ci_low),
            pct(g.test.rel_ci_high),
            g.p_value_adjusted,
            100.0 * g.bayesian.chance_to_win
        );
        if g.improved() {
            good.push(format!("{what}: win"));
        } else if g.regressed() {
            stop.push(format!("{what}: loss"));
        } else {
            wait.push(format!("{what}: inconclusive"));
        }
    }
    for r in rows {
        let Some(state) = r.guardrail() else { continue };
        let bound = match r.tolerance {
            Some(t) => format!(
                "may not {} more than {:.1}%",
                if r.higher_is_better { "fall" } else { "rise" },
                100.0 * t
            ),
            None => format!(
                "may not {} significantly",
                if r.higher_is_better { "fall" } else { "rise" }
            ),
        };
        let what = format!(
            "guardrail {} {} [{}, {}] ({bound})",
            r.metric,
            pct(r.test.rel_effect),
            pct(r.test.rel_ci_low),
            pct(r.test.rel_ci_high)
        );
        match state {
            Guardrail::Fails => stop.push(format!("{what}: regressed")),
            Guardrail::Unclear => wait.push(format!("{what}: not yet shown within tolerance")),
            Guardrail::Holds => {}
        }
    }
    let goal_won = goals.iter().any(|g| g.improved());
    let (verdict, mut reasons) = if goals.is_empty() {
        (
            Verdict::NoGoal,
            vec![
                "no metric has role = \"goal\"; mark the metric this experiment should move"
                    .to_string(),
            ],
        )
    } else if !stop.is_empty() {
        (Verdict::DontShip, stop)
    } else if goal_won && wait.is_empty() {
        (Verdict::Ship, good)
    } else {
        let mut r = wait;
        r.extend(good);
        (Verdict::KeepRunning, r)
    };
    if goals.is_empty() {
        reasons.extend(
            rows.iter()
                .filter(|r| r.guardrail() == Some(Guardrail::Fails))
                .map(|r| {
                    format!(
                        "guardrail {} regressed {}",
                        r.metric,
                        pct(r.test.rel_effect)
                    )
                }),
        );
    }
    // Users still needed: the inconclusive goal nearest to significance (one
    // win is enough) and every unclear guardrail (all must hold).
    let mut more_users_needed = None;
    if verdict == Verdict::KeepRunning {
        let more = |r: &MetricRow| {
            r.users_needed
                .map(|n| (n - (r.n_control + r.n_variant) as f64).max(0.0))
        };
        let goal_need = if goal_won {
            Some(0.0)
        } else {
            goals.iter().filter_map(|g| more(g)).min_by(f64::total_cmp)
        };
        let unclear: Vec<&&MetricRow> = rows
            .iter()
            .filter(|r| r.guardrail() == Some(Guardrail::Unclear))
            .collect();
        let guard_need = unclear
            .iter()
            .map(|r| more(r))
            .try_fold(0.0f64, |acc, n| n.map(|n| acc.max(n)));
        more_users_needed = match (goal_need, guard_need) {
            (Some(g), Some(u)) => Some(g.max(u)),
            _ => None,
        };
        match more_users_needed {
            Some(n) => reasons.push(format!(
                "at the observed effects, about {:.0} more users (both arms) give {:.0}% power{}",
                n.ceil(),
                100.0 * PLANNING_POWER,
                if unclear.is_empty() {
                    " to detect the goal's effect"
                } else {
                    " for the goal and to show every guardrail within its tolerance"
                }
            )),
            None if goal_need.is_none() => reasons.push(
                "the observed goal effect is zero: no sample size would detect it".to_string(),
            ),
            None => reasons.push(
                "a guardrail's observed worsening is already beyond its tolerance: more users would \
                 more likely show it failing than holding"
                    .to_string(),
            ),
        }
    }
    let skewed: Vec<&str> = rows
        .iter()
        .filter(|r| r.skewed && r.role != Role::Secondary)
        .map(|r| r.metric.as_str())
        .collect();
    if !skewed.is_empty() && verdict != Verdict::NoGoal {
        reasons.push(if skewed.len() == 1 {
            format!(
                "caution: {} is too skewed for this sample size (see below); its p-value and \
                 interval may be optimistic",
                skewed[0]
            )
        } else {
            format!(
                "caution: {} are too skewed for this sample size (see below); their p-values \
                 and intervals may be optimistic",
                skewed.join(", ")
            )
        });
    }
    Decision {
        variant: variant.to_string(),
        control: control.to_string(),
        verdict,
        reasons,
        more_users_needed,
    }
}

/// The cumulative relative lift of one (metric, variant) with the data up to
/// the end of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyLift {
    /// `YYYY-MM-DD` (UTC): events up to the end of this day.
    pub date: String,
    /// The metric.
    pub metric: String,
    /// The arm compared.
    pub variant: String,
    /// The arm the variant is compared with.
    #[serde(default)]
    pub control: String,
    /// Cumulative relative lift up to the end of this day.
    pub rel_effect: f64,
    /// Its interval's lower end.
    pub rel_ci_low: f64,
    /// Its interval's upper end.
    pub rel_ci_high: f64,
    /// Its p-value (unadjusted).
    pub p_value: f64,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The experiment's name.
    pub experiment: String,
    /// The control arm.
    pub control: String,
    /// Significance level.
    pub alpha: f64,
    /// Multiple-testing correction used.
    pub correction: Correction,
    /// Tuning N* of the sequential intervals, when used.
    pub sequential: Option<f64>,
    /// The sample-ratio-mismatch check.
    pub srm: Srm,
    /// One row per (metric, comparison).
    pub metrics: Vec<MetricRow>,
    /// Cumulative lift by day (when asked for), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daily: Vec<DailyLift>,
    /// The same tests within segments (when asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// What the reader must know about the population analysed (e.g. who
    /// entered through an exposure log, and the dilution of a triggered analysis).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// One decision per comparison, from the metrics' roles.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// The report's tests restricted to one segment of users or impressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// `surface=reels`, `surface=feed`, `surface=watch`, `users=new`, `users=returning`.
    pub segment: String,
    /// The rows of this segment.
    pub metrics: Vec<MetricRow>,
}

/// Analyses per-arm sums (from the local pipeline or a warehouse).
pub fn analyze_sums(arms: &[ArmSums], metrics: &[Metric], cfg: &AnalysisConfig) -> Result<Report> {
    if arms.len() < 2 {
        return Err(Error::TooFewArms(arms.len()));
    }
    if !(cfg.alpha > 0.0 && cfg.alpha < 1.0) {
        return Err(Error::Invalid {
            what: "alpha".into(),
            reason: format!("must be in (0, 1), got {}", cfg.alpha),
        });
    }
    let names: Vec<&str> = arms.iter().map(|a| a.variant.as_str()).collect();
    let control_name = match &cfg.control {
        Some(c) => c.clone(),
        None if names.contains(&"control") => "control".to_string(),
        None => names[0].to_string(),
    };
    let control = arms
        .iter()
        .find(|a| a.variant == control_name)
        .ok_or_else(|| Error::UnknownControl {
            control: control_name.clone(),
            arms: names.join(", "),
        })?;
    for a in arms {
        if a.sums.first().is_none_or(|s| s.n == 0.0) {
            return Err(Error::EmptyArm(a.variant.clone()));
        }
    }
    if let Some(w) = &cfg.weights {
        if let Some(missing) = w.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(Error::EmptyArm(missing.clone()));
        }
    }
    let weights: Vec<f64> = arms
        .iter()
        .map(|a| {
            cfg.weights
                .as_ref()
                .and_then(|w| w.get(&a.variant).copied())
                .unwrap_or(1.0)
        })
        .collect();
    let counts: Vec<f64> = arms.iter().map(|a| a.sums[0].n).collect();
    let (chi2, p) = srm(&counts, &weights);
    let wsum: f64 = weights.iter().sum();
    let srm = Srm {
        counts: arms
            .iter()
            .map(|a| (a.variant.clone(), a.sums[0].n as u64))
            .collect(),
        expected: arms
            .iter()
            .zip(&weights)
            .map(|(a, w)| (a.variant.clone(), w / wsum))
            .collect(),
        chi2,
        p_value: p,
        ok: p >= SRM_THRESHOLD,
    };

    let by_name = |name: &str| -> Result<&ArmSums> {
        arms.iter()
            .find(|a| a.variant == name)
            .ok_or_else(|| Error::UnknownControl {
                control: name.to_string(),
                arms: names.join(", "),
            })
    };
    let pairs: Vec<(&ArmSums, &ArmSums)> = if cfg.comparisons.is_empty() {
        arms.iter()
            .filter(|a| a.variant != control_name)
            .map(|a| (a, control))
            .collect()
    } else {
        let mut pairs = Vec::new();
        for (v, c) in &cfg.comparisons {
            if v == c {
                return Err(Error::Invalid {
                    what: format!("comparison `{v}` vs `{c}`"),
                    reason: "an arm cannot be compared with itself".into(),
                });
            }
            pairs.push((by_name(v)?, by_name(c)?));
        }
        pairs
    };
    let mut rows = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        for &(arm, base) in &pairs {
            let ca = &base.sums[i];
            let vb = &arm.sums[i];
            let has_pre = ca.has_pre() || vb.has_pre();
            let theta = if m.cuped && has_pre && m.kind.takes_cuped() {
                cuped_theta(m.kind, ca, vb)
            } else {
                0.0
            };
            let (ea, eb) = if m.kind == MetricKind::Quantile {
                let q = |a: &ArmSums| a.quantiles.get(i).copied().flatten();
                match (q(base), q(arm)) {
                    (Some(qa), Some(qb)) => (qa.estimate(), qb.estimate()),
                    _ => {
                        return Err(Error::Metric {
                            metric: m.name.clone(),
                            reason: "a quantile metric needs per-user values (the local \
                                     pipeline), not per-arm sums"
                                .into(),
                        })
                    }
                }
            } else {
                (adjusted(m.kind, ca, theta), adjusted(m.kind, vb, theta))
            };
            let mut bayes = bayesian(&ea, &eb, cfg.alpha, true, None);
            if !m.higher_is_better {
                bayes.chance_to_win = 1.0 - bayes.chance_to_win;
                std::mem::swap(&mut bayes.risk_control, &mut bayes.risk_treatment);
            }
            let mut r = match cfg.sequential {
                Some(n_star) => two_sided_sequential(&ea, &eb, cfg.alpha, n_star),
                None => two_sided(&ea, &eb, cfg.alpha),
            };
            let adjusted_means = (theta != 0.0).then_some((r.control_mean, r.variant_mean));
            // The arms' plain means; the effects stay as tested.
            r.control_mean = ea.unadjusted_mean;
            r.variant_mean = eb.unadjusted_mean;
            let skews = [skewness(m.kind, ca), skewness(m.kind, vb)];
            let skew = skews
                .iter()
                .flatten()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()));
            let need = skew.map(users_for_normality);
            let skewed = skews
                .iter()
                .zip([ca.n, vb.n])
                .any(|(s, n)| s.is_some_and(|s| n < users_for_normality(s)));
            // The distance to plan for: from 0 to the observed effect, or
            // for a guardrail with a tolerance, from the observed worsening
            // to the tolerance (a non-inferiority margin).
            let distance = match (m.role, m.tolerance) {
                (Role::Guardrail, Some(t)) => {
                    let worsening = if m.higher_is_better {
                        -r.rel_effect
                    } else {
                        r.rel_effect
                    };
                    (t - worsening).max(0.0)
                }
                _ => r.rel_effect,
            };
            let users_needed = (r.message.is_none() && m.kind != MetricKind::Quantile)
                .then(|| {
                    crate::power::users_to_detect(
                        ca.n + vb.n,
                        effect_variance(&ea, &eb, true).sqrt(),
                        distance,
                        cfg.alpha,
                        PLANNING_POWER,
                    )
                })
                .filter(|n| n.is_finite());
            rows.push(MetricRow {
                metric: m.name.clone(),
                kind: m.kind,
                variant: arm.variant.clone(),
                control: base.variant.clone(),
                n_control: ca.n as u64,
                n_variant: vb.n as u64,
                p_value_adjusted: r.p_value,
                test: r,
                significant: false,
                cuped: theta != 0.0,
                theta,
                bayesian: bayes,
                higher_is_better: m.higher_is_better,
                role: m.role,
                tolerance: m.tolerance,
                control_mean_adjusted: adjusted_means.map(|a| a.0),
                variant_mean_adjusted: adjusted_means.map(|a| a.1),
                skewness: skew,
                users_for_normality: need,
                skewed,
                users_needed,
            });
        }
    }
    let adjusted_p = adjust(
        &rows.iter().map(|r| r.test.p_value).collect::<Vec<_>>(),
        cfg.correction,
    );
    for (r, p) in rows.iter_mut().zip(adjusted_p) {
        r.p_value_adjusted = p;
        r.significant = r.test.message.is_none() && p < cfg.alpha;
    }
    let decisions = decide(&rows, &srm);
    Ok(Report {
        experiment: cfg.experiment.clone(),
        control: control_name,
        alpha: cfg.alpha,
        correction: cfg.correction,
        sequential: cfg.sequential,
        srm,
        metrics: rows,
        daily: Vec::new(),
        segments: Vec::new(),
        notes: Vec::new(),
        decisions,
    })
}

/// Breakdowns of the analysis: by surface (every assigned user, impressions
/// of that surface only) and, with pre-period events, by new users (no
/// pre-period impression) against returning ones. Segments whose arms are
/// empty are left out. Sums are added in user-id order (thread-independent).
pub fn segments(inputs: &Inputs<'_>, cfg: &AnalysisConfig) -> Result<Vec<Segment>> {
    let (assignments, metrics) = (inputs.assignments, inputs.metrics);
    let mut out = Vec::new();
    for surface in ["reels", "feed", "watch"] {
        let ms: Vec<Metric> = metrics
            .iter()
            .filter_map(|m| m.on_surface(surface))
            .collect();
        if ms.is_empty() {
            continue;
        }
        let sums = ordered_arm_sums(&inputs.with(assignments, &ms), None)?;
        match analyze_sums(&sums, &ms, cfg) {
            Ok(r) => out.push(Segment {
                segment: format!("surface={surface}"),
                metrics: r.metrics,
            }),
            Err(Error::EmptyArm(_)) | Err(Error::TooFewArms(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(pre) = &inputs.pre_events {
        let err = |source| Error::Polars {
            input: pre.name(),
            source: reelkit_logs::without_python_hints(source),
        };
        let lf = pre
            .scan()?
            .select([col(schema::USER_ID).cast(DataType::UInt64)])
            .unique(None, Default::default());
        let df = lf.collect().map_err(err)?;
        let returning: std::collections::HashSet<u64> = df
            .column(schema::USER_ID)
            .map_err(err)?
            .as_materialized_series()
            .u64()
            .map_err(err)?
            .into_no_null_iter()
            .collect();
        for (name, want) in [("new", false), ("returning", true)] {
            let keep: Vec<usize> = (0..assignments.len())
                .filter(|&i| returning.contains(&assignments.user_id[i]) == want)
                .collect();
            let sub = Assignments {
                user_id: keep.iter().map(|&i| assignments.user_id[i]).collect(),
                variant: keep
                    .iter()
                    .map(|&i| assignments.variant[i].clone())
                    .collect(),
            };
            if sub.is_empty() {
                continue;
            }
            let sums = crate::pipeline::segment_arm_sums(&inputs.with(&sub, metrics))?;
            match analyze_sums(&sums, metrics, cfg) {
                Ok(r) => out.push(Segment {
                    segment: format!("users={name}"),
                    metrics: r.metrics,
                }),
                Err(Error::EmptyArm(_)) | Err(Error::TooFewArms(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The cumulative lift of every (metric, variant) at the end of each day of
/// the experiment: one pass over the events per day. Per-user values are
/// summed in user-id order, so the result does not depend on the number of
/// threads.
pub fn cumulative_lift(inputs: &Inputs<'_>, cfg: &AnalysisConfig) -> Result<Vec<DailyLift>> {
    let Some((first, last)) = crate::pipeline::event_days(&inputs.events)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        let end = day + 86_400_000;
        let sums = ordered_arm_sums(inputs, Some(end))?;
        let r = analyze_sums(&sums, inputs.metrics, cfg)?;
        for row in r.metrics {
            out.push(DailyLift {
                date: utc_date(day),
                metric: row.metric,
                variant: row.variant,
                control: row.control,
                rel_effect: row.test.rel_effect,
                rel_ci_low: row.test.rel_ci_low,
                rel_ci_high: row.test.rel_ci_high,
                p_value: row.test.p_value,
            });
        }
        day = end;
    }
    Ok(out)
}

/// Runs the pipeline and the analysis on event files or frames.
pub fn analyze(inputs: &Inputs<'_>, cfg: &AnalysisConfig) -> Result<Report> {
    let (assignments, metrics) = (inputs.assignments, inputs.metrics);
    crate::metrics::check_metrics(metrics)?;
    if assignments.is_empty() {
        return Err(Error::TooFewArms(0));
    }
    let mut arms: Vec<String> = assignments.variant.clone();
    arms.sort();
    arms.dedup();
    if let Some(c) = &cfg.control {
        if !arms.contains(c) {
            return Err(Error::UnknownControl {
                control: c.clone(),
                arms: arms.join(", "),
            });
        }
    }
    // Per-user values summed in user-id order: capping and quantiles need
    // every user's value, and a fixed order of additions makes the report
    // identical from run to run (polars' parallel sums are not).
    let sums = ordered_arm_sums(inputs, None)?;
    analyze_sums(&sums, metrics, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Sums;

    /// One arm of a mean metric: n users, mean `mu`, variance exactly 1.
    fn arm(name: &str, mu: f64) -> ArmSums {
        let n = 2_000.0;
        ArmSums {
            variant: name.into(),
            sums: vec![Sums {
                n,
                x: mu * n,
                x2: n * mu * mu + (n - 1.0),
                ..Sums::default()
            }],
            quantiles: vec![None],
        }
    }

    #[test]
    fn a_significant_rise_is_a_regression_where_lower_is_better() -> Result<()> {
        let mut m = crate::builtin_metrics().remove(0);
        m.cuped = false;
        let arms = [arm("control", 10.0), arm("treatment", 10.3)];
        let cfg = AnalysisConfig::default();
        let up = analyze_sums(&arms, std::slice::from_ref(&m), &cfg)?;
        let row = &up.metrics[0];
        assert!(row.significant && row.improved() && !row.regressed());
        assert!(row.bayesian.chance_to_win > 0.99);
        m.higher_is_better = false;
        let down = analyze_sums(&arms, std::slice::from_ref(&m), &cfg)?;
        let inv = &down.metrics[0];
        assert!(inv.significant && inv.regressed() && !inv.improved());
        // gbstats' inverse: the chance to win is the chance of a fall, and the
        // risks trade places.
        assert!((inv.bayesian.chance_to_win - (1.0 - row.bayesian.chance_to_win)).abs() < 1e-12);
        assert_eq!(inv.bayesian.risk_control, row.bayesian.risk_treatment);
        assert_eq!(inv.bayesian.risk_treatment, row.bayesian.risk_control);
        assert!(crate::markdown(&down).contains("significant regression (lower is better)"));
        assert!(crate::markdown(&up).contains("significant improvement"));
        // The built-in skip_rate knows it.
        assert!(crate::builtin_metrics()
            .iter()
            .any(|m| m.name == "skip_rate" && !m.higher_is_better));
        Ok(())
    }

    /// Arm sums of a mean metric with n users, mean `mu`, variance exactly `var`.
    fn arm_n(name: &str, n: f64, mu: f64, var: f64) -> Sums {
        let _ = name;
        Sums {
            n,
            x: mu * n,
            x2: n * mu * mu + (n - 1.0) * var,
            ..Sums::default()
        }
    }

    fn metrics_with_roles() -> Vec<Metric> {
        let base = crate::builtin_metrics();
        let pick = |name: &str| {
            let mut m = base
                .iter()
                .find(|m| m.name == name)
                .cloned()
                .expect("metric");
            m.cuped = false;
            m
        };
        // watch time: goal; skip rate: guardrail (may not rise more than 2%).
        vec![pick("watch_time_per_user"), {
            let mut m = pick("sessions_per_user");
            m.name = "skip_like".into();
            m.higher_is_better = false;
            m.tolerance = Some(0.02);
            m
        }]
    }

    fn two_arms(goal: (f64, f64), guard: (f64, f64), n: f64) -> Vec<ArmSums> {
        ["control", "treatment"]
            .iter()
            .enumerate()
            .map(|(k, v)| ArmSums {
                variant: v.to_string(),
                sums: vec![
                    arm_n(v, n, if k == 0 { goal.0 } else { goal.1 }, 400.0),
                    arm_n(v, n, if k == 0 { guard.0 } else { guard.1 }, 1.0),
                ],
                quantiles: vec![None, None],
            })
            .collect()
    }

    #[test]
    fn a_guardrail_beyond_its_tolerance_stops_a_winning_goal() -> Result<()> {
        let metrics = metrics_with_roles();
        let cfg = AnalysisConfig::default();
        // Goal +3% (clearly significant); the guardrail rises 10% ± ~1%.
        let r = analyze_sums(
            &two_arms((100.0, 103.0), (5.0, 5.5), 20_000.0),
            &metrics,
            &cfg,
        )?;
        let d = &r.decisions[0];
        assert_eq!(d.verdict, Verdict::DontShip, "{d:?}");
        assert!(d
            .reasons
            .iter()
            .any(|s| s.contains("guardrail skip_like") && s.contains("regressed")));
        assert!(crate::markdown(&r).contains("**treatment vs control: don't ship**"));
        // The same rise within the tolerance (+1%, interval inside 2%): ship.
        let r = analyze_sums(
            &two_arms((100.0, 103.0), (5.0, 5.05), 20_000.0),
            &metrics,
            &cfg,
        )?;
        let d = &r.decisions[0];
        assert_eq!(d.verdict, Verdict::Ship, "{d:?}");
        assert!(
            r.metrics[1].regressed(),
            "significant, yet within the tolerance"
        );
        assert_eq!(r.metrics[1].guardrail(), Some(Guardrail::Holds));
        // A rise whose interval straddles the tolerance: keep running.
        let r = analyze_sums(
            &two_arms((100.0, 103.0), (5.0, 5.1), 20_000.0),
            &metrics,
            &cfg,
        )?;
        assert_eq!(r.metrics[1].guardrail(), Some(Guardrail::Unclear));
        assert_eq!(r.decisions[0].verdict, Verdict::KeepRunning);
        // A goal that loses: don't ship.
        let r = analyze_sums(
            &two_arms((100.0, 97.0), (5.0, 5.0), 20_000.0),
            &metrics,
            &cfg,
        )?;
        assert_eq!(r.decisions[0].verdict, Verdict::DontShip);
        assert!(r.decisions[0].reasons[0].contains("loss"));
        Ok(())
    }

    #[test]
    fn nothing_significant_keeps_running_with_the_users_it_needs() -> Result<()> {
        let metrics = metrics_with_roles();
        let cfg = AnalysisConfig::default();
        // Goal +0.5% with σ = 20 on a mean of 100, 2,000 users per arm: z ≈ 1.8.
        let n = 2_000.0;
        let r = analyze_sums(&two_arms((100.0, 100.5), (5.0, 5.0), n), &metrics, &cfg)?;
        let d = &r.decisions[0];
        assert_eq!(d.verdict, Verdict::KeepRunning, "{d:?}");
        let more = d.more_users_needed.expect("users needed");
        assert!(d.reasons.iter().any(|s| s.contains("more users")));
        // With that many more users (same means and variances), the effect
        // sits at z_{1-α/2} + z_{0.8} = 2.80 standard errors: 80% power.
        let total = 2.0 * n + more;
        let r2 = analyze_sums(
            &two_arms((100.0, 100.5), (5.0, 5.0), total / 2.0),
            &metrics,
            &cfg,
        )?;
        let t = &r2.metrics[0].test;
        let se = (t.rel_ci_high - t.rel_ci_low) / (2.0 * 1.959_96);
        assert!(
            (t.rel_effect / se - 2.8016).abs() < 0.01,
            "{}",
            t.rel_effect / se
        );
        assert_eq!(r2.decisions[0].verdict, Verdict::Ship);
        // Without a goal metric there is no decision, and it says why.
        let secondary: Vec<Metric> = metrics
            .iter()
            .map(|m| Metric {
                role: crate::metrics::Role::Secondary,
                tolerance: None,
                ..m.clone()
            })
            .collect();
        let r3 = analyze_sums(&two_arms((100.0, 100.5), (5.0, 5.0), n), &secondary, &cfg)?;
        assert_eq!(r3.decisions[0].verdict, Verdict::NoGoal);
        Ok(())
    }

    #[test]
    fn skewness_and_the_sample_it_needs() {
        // Exponential-like values: 1, 1, 1, 1, 10 → skewness 1.5.
        let mut s = Sums::default();
        for _ in 0..200 {
            for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
                s.push(x, 0.0, 0.0, 0.0);
            }
        }
        let sk = crate::stats::skewness(MetricKind::Mean, &s).expect("skew");
        assert!((sk - 1.5).abs() < 1e-9, "{sk}");
        assert!((crate::stats::users_for_normality(sk) - 798.75).abs() < 1e-9);
        // A ratio's linearisation: y = 1 everywhere makes it the mean's.
        let mut r = Sums::default();
        for _ in 0..200 {
            for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
                r.push(x, 1.0, 0.0, 0.0);
            }
        }
        let rk = crate::stats::skewness(MetricKind::Ratio, &r).expect("skew");
        assert!((rk - 1.5).abs() < 1e-9, "{rk}");
        // A 10% proportion: (1 − 0.2) / sqrt(0.09) = 2.667.
        let p = Sums {
            n: 1000.0,
            x: 100.0,
            x2: 100.0,
            ..Sums::default()
        };
        let pk = crate::stats::skewness(MetricKind::Proportion, &p).expect("skew");
        assert!((pk - 0.8 / 0.3).abs() < 1e-12);
        // Flagged in a report when an arm has fewer users than 355·skew².
        let m = {
            let mut m = crate::builtin_metrics().remove(0);
            m.cuped = false;
            m
        };
        // 500 users per arm, the second shifted by 0.5.
        let (mut c, mut t) = (Sums::default(), Sums::default());
        for _ in 0..100 {
            for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
                c.push(x, 0.0, 0.0, 0.0);
                t.push(x + 0.5, 0.0, 0.0, 0.0);
            }
        }
        let arms = |a: Sums, b: Sums| {
            [("control", a), ("treatment", b)].map(|(v, s)| ArmSums {
                variant: v.into(),
                sums: vec![s],
                quantiles: vec![None],
            })
        };
        let r = analyze_sums(
            &arms(c, t),
            std::slice::from_ref(&m),
            &AnalysisConfig::default(),
        )
        .expect("report");
        assert!(r.metrics[0].skewed, "500 users per arm < 799");
        assert!((r.metrics[0].users_for_normality.expect("need") - 798.75).abs() < 1e-6);
        assert!(crate::markdown(&r).contains("is skewed"));
        // 1,000 users per arm are enough.
        let r = analyze_sums(
            &arms(s, s),
            std::slice::from_ref(&m),
            &AnalysisConfig::default(),
        )
        .expect("report");
        assert!(!r.metrics[0].skewed);
    }
}
