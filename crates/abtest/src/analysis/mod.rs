//! From per-arm sums to the report: SRM, one test per (metric, variant), CUPED,
//! multiple-testing correction.

use std::collections::BTreeMap;

use reelkit_logs::polars::prelude::{col, DataType};
use reelkit_logs::{schema, Assignments};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{Goal, Metric, Role};
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
    /// How the metric is judged (direction, role, tolerance), as its
    /// definition states it.
    #[serde(flatten)]
    pub goal: Goal,
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

impl MetricRow {
    /// Significant, in the metric's good direction.
    pub fn improved(&self) -> bool {
        self.significant && (self.test.rel_effect > 0.0) == self.goal.higher_is_better
    }

    /// Significant, in the metric's bad direction.
    pub fn regressed(&self) -> bool {
        self.significant && (self.test.rel_effect < 0.0) == self.goal.higher_is_better
    }

    /// The relative interval's ends as worsening: `(least, most)` worsening
    /// the interval allows (negative = an improvement).
    fn worsening(&self) -> (f64, f64) {
        if self.goal.higher_is_better {
            (-self.test.rel_ci_high, -self.test.rel_ci_low)
        } else {
            (self.test.rel_ci_low, self.test.rel_ci_high)
        }
    }

    /// A guardrail's state; `None` for other roles.
    pub fn guardrail(&self) -> Option<Guardrail> {
        if self.goal.role != Role::Guardrail {
            return None;
        }
        if self.test.message.is_some() {
            return Some(Guardrail::Unclear);
        }
        Some(match self.goal.tolerance {
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
    let goals: Vec<&&MetricRow> = rows.iter().filter(|r| r.goal.role == Role::Goal).collect();
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
        let bound = match r.goal.tolerance {
            Some(t) => format!(
                "may not {} more than {:.1}%",
                if r.goal.higher_is_better {
                    "fall"
                } else {
                    "rise"
                },
                100.0 * t
            ),
            None => format!(
                "may not {} significantly",
                if r.goal.higher_is_better {
                    "fall"
                } else {
                    "rise"
                }
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
        .filter(|r| r.skewed && r.goal.role != Role::Secondary)
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
            if !m.goal.higher_is_better {
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
            let distance = match (m.goal.role, m.goal.tolerance) {
                (Role::Guardrail, Some(t)) => {
                    let worsening = if m.goal.higher_is_better {
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
                goal: m.goal,
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
    for surface in reelkit_logs::Surface::ALL.map(reelkit_logs::Surface::as_str) {
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
            source: reelkit_logs::guard::without_python_hints(source),
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

/// What a report holds besides the decision rows (both off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// The cumulative lift by day ([`cumulative_lift`]).
    pub daily: bool,
    /// The rows by surface and by new vs returning users ([`segments`]).
    pub segments: bool,
}

/// [`analyze`], then the parts of the report `extras` asks for: the
/// report `reelkit ab analyze` and `reelkit.ab.analyze` write.
pub fn analyze_report(inputs: &Inputs<'_>, cfg: &AnalysisConfig, extras: Extras) -> Result<Report> {
    let mut report = analyze(inputs, cfg)?;
    if extras.daily {
        report.daily = cumulative_lift(inputs, cfg)?;
    }
    if extras.segments {
        report.segments = segments(inputs, cfg)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
