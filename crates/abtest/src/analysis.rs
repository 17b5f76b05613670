//! From per-arm sums to the report: SRM, one test per (metric, variant), CUPED,
//! multiple-testing correction.

use std::collections::BTreeMap;

use reelkit_logs::polars::prelude::{col, DataType};
use reelkit_logs::{schema, Assignments};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Metric;
use crate::pipeline::{ordered_arm_sums, ArmSums, Inputs};
use crate::stats::{
    adjust, adjusted, bayesian, cuped_theta, srm, two_sided, two_sided_sequential, Bayesian,
    Correction, MetricKind, TestResult,
};

/// SRM p-values below this flag the experiment (GrowthBook's default).
pub const SRM_THRESHOLD: f64 = 0.001;

/// Settings of an analysis.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    pub experiment: String,
    /// Control arm; default `control` if present, else the first arm by name.
    pub control: Option<String>,
    pub alpha: f64,
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
    pub counts: BTreeMap<String, u64>,
    pub expected: BTreeMap<String, f64>,
    pub chi2: f64,
    pub p_value: f64,
    pub ok: bool,
}

/// One (metric, variant) row of the report: the test's result (flattened into
/// the same JSON object), its adjusted p-value and verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub metric: String,
    pub kind: MetricKind,
    pub variant: String,
    /// The arm the variant is compared with: the report's control, or the
    /// baseline of a named comparison.
    #[serde(default)]
    pub control: String,
    pub n_control: u64,
    pub n_variant: u64,
    /// Means, effects, intervals, p-value, df and any "uninformative" message.
    #[serde(flatten)]
    pub test: TestResult,
    pub p_value_adjusted: f64,
    pub significant: bool,
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
}

/// The cumulative relative lift of one (metric, variant) with the data up to
/// the end of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyLift {
    /// `YYYY-MM-DD` (UTC): events up to the end of this day.
    pub date: String,
    pub metric: String,
    pub variant: String,
    /// The arm the variant is compared with.
    #[serde(default)]
    pub control: String,
    pub rel_effect: f64,
    pub rel_ci_low: f64,
    pub rel_ci_high: f64,
    pub p_value: f64,
}

/// `YYYY-MM-DD` of a Unix time in milliseconds (proleptic Gregorian, UTC).
pub fn utc_date(ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub experiment: String,
    pub control: String,
    pub alpha: f64,
    pub correction: Correction,
    /// Tuning N* of the sequential intervals, when used.
    pub sequential: Option<f64>,
    pub srm: Srm,
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
}

/// The report's tests restricted to one segment of users or impressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// `surface=reels`, `surface=feed`, `surface=watch`, `users=new`, `users=returning`.
    pub segment: String,
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
            let r = match cfg.sequential {
                Some(n_star) => two_sided_sequential(&ea, &eb, cfg.alpha, n_star),
                None => two_sided(&ea, &eb, cfg.alpha),
            };
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
            source,
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
            let sums = ordered_arm_sums(&inputs.with(&sub, metrics), None)?;
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
}
