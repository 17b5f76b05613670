//! Metric definitions: the built-in Reels set and user-defined metrics in TOML.
//!
//! ```toml
//! [[metric]]
//! name = "reels_watch_time"
//! kind = "mean"                      # mean | ratio | proportion
//! numerator = { agg = "sum", column = "watch_ms", scale = 0.001, surface = "reels" }
//!
//! [[metric]]
//! name = "reels_like_rate"
//! kind = "ratio"
//! numerator = { agg = "sum", column = "liked", surface = "reels" }
//! denominator = { agg = "count", surface = "reels" }
//! ```
//!
//! Aggregations per user: `sum` of a column (booleans count as 0/1), `count` of
//! impressions, `n_unique` of a column (`session_id`, `day`). Columns available:
//! every event column plus the derived `completed`, `skipped` (0/1) and `day`
//! (the UTC day, as its first Unix millisecond). `surface` restricts the aggregation to one surface. A
//! `proportion` metric is 1 for users whose numerator is positive.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stats::MetricKind;

/// A per-user aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// `sum`, `count` or `n_unique`.
    pub agg: String,
    /// The column (not used by `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Multiplier applied to the per-user value (e.g. 0.001 for ms → s).
    #[serde(default = "one")]
    pub scale: f64,
    /// Only impressions on this surface.
    #[serde(default)]
    pub surface: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// A metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "MetricToml")]
pub struct Metric {
    /// Unique name (report rows, SQL output).
    pub name: String,
    /// How the per-user values combine.
    pub kind: MetricKind,
    /// The per-user value (ratio metrics: the numerator).
    pub numerator: Aggregation,
    /// Required for ratio metrics.
    #[serde(default)]
    pub denominator: Option<Aggregation>,
    /// Use the same metric over the pre-period as CUPED covariate when pre-period
    /// events are given (mean and proportion metrics).
    #[serde(default = "yes")]
    pub cuped: bool,
    /// How the metric is judged: its good direction, what it decides, a
    /// guardrail's tolerance (flat keys in the TOML and in report rows).
    #[serde(flatten)]
    pub goal: Goal,
    /// Percentile capping (winsorisation): per-user values (numerator and, for
    /// ratio metrics, denominator; and the CUPED covariate) above this quantile
    /// of all assigned users' values are set to it, e.g. 0.99. Quantiles are
    /// interpolated linearly (numpy's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_percentile: Option<f64>,
    /// The level of a `quantile` metric (0.5 = median, 0.9 = p90) of the
    /// per-user numerator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
}

/// How a metric is judged; [`Metric`] holds it and every report row
/// ([`crate::MetricRow`]) carries it as is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// Whether a rise is good (watch time) or bad (`skip_rate`): report verdicts,
    /// colours, the chance to win and interleaving preferences follow it
    /// (gbstats' `inverse` is its negation).
    #[serde(default = "yes")]
    pub higher_is_better: bool,
    /// What the metric decides: `goal` (the experiment should move it),
    /// `guardrail` (it must not get worse) or `secondary` (reported only).
    #[serde(default)]
    pub role: Role,
    /// For a guardrail: how much relative worsening is acceptable (0.02: the
    /// metric may not get worse by more than 2%). With a tolerance, the
    /// guardrail fails when its interval lies wholly beyond it and holds when
    /// the interval's bad end is within it; without one, any significant
    /// worsening fails it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

impl Default for Goal {
    /// Higher is better, secondary, no tolerance (the TOML's defaults).
    fn default() -> Goal {
        Goal {
            higher_is_better: true,
            role: Role::Secondary,
            tolerance: None,
        }
    }
}

/// A metric as the metrics TOML spells it (every key at one level, an
/// unknown key refused), before its decision keys gather into [`Goal`].
/// (`#[serde(flatten)]` on [`Metric`] would refuse the key too, but without
/// the list of keys a metric takes and pointing at the table, not the key.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricToml {
    name: String,
    kind: MetricKind,
    numerator: Aggregation,
    #[serde(default)]
    denominator: Option<Aggregation>,
    #[serde(default = "yes")]
    cuped: bool,
    #[serde(default = "yes")]
    higher_is_better: bool,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default)]
    cap_percentile: Option<f64>,
    #[serde(default)]
    quantile: Option<f64>,
}

impl From<MetricToml> for Metric {
    fn from(m: MetricToml) -> Metric {
        Metric {
            name: m.name,
            kind: m.kind,
            numerator: m.numerator,
            denominator: m.denominator,
            cuped: m.cuped,
            goal: Goal {
                higher_is_better: m.higher_is_better,
                role: m.role,
                tolerance: m.tolerance,
            },
            cap_percentile: m.cap_percentile,
            quantile: m.quantile,
        }
    }
}

fn yes() -> bool {
    true
}

/// What a metric means for the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The experiment is run to move it: its verdict decides.
    Goal,
    /// It must not get worse (beyond its tolerance, when one is stated).
    Guardrail,
    /// Reported, not decided on.
    #[default]
    Secondary,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Goal => "goal",
            Role::Guardrail => "guardrail",
            Role::Secondary => "secondary",
        })
    }
}

impl Metric {
    /// The metric restricted to one surface (every aggregation filtered to
    /// it): users without impressions there count as zeros. `None` when the
    /// metric is already tied to another surface.
    pub fn on_surface(&self, surface: &str) -> Option<Metric> {
        let fix = |a: &Aggregation| -> Option<Aggregation> {
            match &a.surface {
                Some(s) if s != surface => None,
                _ => Some(Aggregation {
                    surface: Some(surface.to_string()),
                    ..a.clone()
                }),
            }
        };
        Some(Metric {
            numerator: fix(&self.numerator)?,
            denominator: match &self.denominator {
                Some(d) => Some(fix(d)?),
                None => None,
            },
            ..self.clone()
        })
    }
}

fn agg(agg: &str, column: Option<&str>, scale: f64) -> Aggregation {
    Aggregation {
        agg: agg.to_string(),
        column: column.map(str::to_string),
        scale,
        surface: None,
    }
}

fn metric(name: &str, kind: MetricKind, num: Aggregation, den: Option<Aggregation>) -> Metric {
    Metric {
        name: name.to_string(),
        kind,
        numerator: num,
        denominator: den,
        cuped: true,
        goal: Goal::default(),
        cap_percentile: None,
        quantile: None,
    }
}

fn role(role: Role, tolerance: Option<f64>, m: Metric) -> Metric {
    Metric {
        goal: Goal {
            role,
            tolerance,
            ..m.goal
        },
        ..m
    }
}

/// The built-in Reels metrics. Watch time per user is the goal; sessions and
/// active days per user (no worse than 1%) and the skip rate (no rise beyond
/// 2%) are guardrails; the rest are secondary.
pub fn builtin_metrics() -> Vec<Metric> {
    use MetricKind::*;
    let count = || Some(agg("count", None, 1.0));
    vec![
        role(
            Role::Goal,
            None,
            metric(
                "watch_time_per_user",
                Mean,
                agg("sum", Some("watch_ms"), 0.001),
                None,
            ),
        ),
        metric("impressions_per_user", Mean, agg("count", None, 1.0), None),
        role(
            Role::Guardrail,
            Some(0.01),
            metric(
                "sessions_per_user",
                Mean,
                agg("n_unique", Some("session_id"), 1.0),
                None,
            ),
        ),
        role(
            Role::Guardrail,
            Some(0.01),
            metric(
                "active_days_per_user",
                Mean,
                agg("n_unique", Some("day"), 1.0),
                None,
            ),
        ),
        metric("like_rate", Ratio, agg("sum", Some("liked"), 1.0), count()),
        metric(
            "share_rate",
            Ratio,
            agg("sum", Some("shared"), 1.0),
            count(),
        ),
        metric(
            "completion_rate",
            Ratio,
            agg("sum", Some("completed"), 1.0),
            count(),
        ),
        Metric {
            goal: Goal {
                higher_is_better: false,
                role: Role::Guardrail,
                tolerance: Some(0.02),
            },
            ..metric(
                "skip_rate",
                Ratio,
                agg("sum", Some("skipped"), 1.0),
                count(),
            )
        },
        metric(
            "watch_time_per_session",
            Ratio,
            agg("sum", Some("watch_ms"), 0.001),
            Some(agg("n_unique", Some("session_id"), 1.0)),
        ),
        metric(
            "liker_share",
            Proportion,
            agg("sum", Some("liked"), 1.0),
            None,
        ),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    #[serde(default)]
    metric: Vec<Metric>,
}

const COLUMNS: [&str; 17] = [
    "user_id",
    "session_id",
    "ts_ms",
    "video_id",
    "creator_id",
    "surface",
    "position",
    "duration_ms",
    "watch_ms",
    "liked",
    "shared",
    "commented",
    "followed",
    "completed",
    "skipped",
    "day",
    "variant",
];

fn check_agg(metric: &str, part: &str, a: &Aggregation) -> Result<()> {
    let bad = |reason: String| Error::Metric {
        metric: metric.to_string(),
        reason: format!("{part}: {reason}"),
    };
    match (a.agg.as_str(), &a.column) {
        ("count", _) => {}
        ("sum" | "n_unique", Some(c)) if COLUMNS.contains(&c.as_str()) => {}
        ("sum" | "n_unique", Some(c)) => return Err(bad(format!("unknown column `{c}`"))),
        ("sum" | "n_unique", None) => return Err(bad(format!("`{}` needs a column", a.agg))),
        (other, _) => {
            return Err(bad(format!(
                "unknown aggregation `{other}` (sum, count, n_unique)"
            )))
        }
    }
    if let Some(s) = &a.surface {
        if s.parse::<reelkit_logs::Surface>().is_err() {
            return Err(bad(format!("unknown surface `{s}`")));
        }
    }
    if !a.scale.is_finite() || a.scale == 0.0 {
        return Err(bad(format!(
            "scale must be a non-zero number, got {}",
            a.scale
        )));
    }
    Ok(())
}

/// Checks a metric list: known columns and aggregations, a denominator exactly
/// for ratio metrics, unique names.
pub fn check_metrics(metrics: &[Metric]) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for m in metrics {
        if !names.insert(m.name.as_str()) {
            return Err(Error::Metric {
                metric: m.name.clone(),
                reason: "defined twice".into(),
            });
        }
        check_agg(&m.name, "numerator", &m.numerator)?;
        match (m.kind, &m.denominator) {
            (MetricKind::Ratio, Some(d)) => check_agg(&m.name, "denominator", d)?,
            (MetricKind::Ratio, None) => {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: "a ratio metric needs a denominator".into(),
                })
            }
            (_, Some(_)) => {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: "only ratio metrics take a denominator".into(),
                })
            }
            _ => {}
        }
        match (m.kind, m.quantile) {
            (MetricKind::Quantile, Some(q)) if q > 0.0 && q < 1.0 => {}
            (MetricKind::Quantile, other) => {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: format!("a quantile metric needs `quantile` in (0, 1), got {other:?}"),
                })
            }
            (_, Some(_)) => {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: "only quantile metrics take `quantile`".into(),
                })
            }
            _ => {}
        }
        if let Some(t) = m.goal.tolerance {
            if !(t >= 0.0 && t.is_finite()) {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: format!(
                        "tolerance must be a relative change >= 0 (0.02 = 2%), got {t}"
                    ),
                });
            }
            if m.goal.role != Role::Guardrail {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: format!(
                        "only a guardrail takes a tolerance (role is `{}`)",
                        m.goal.role
                    ),
                });
            }
        }
        if let Some(q) = m.cap_percentile {
            if !(q > 0.0 && q < 1.0) {
                return Err(Error::Metric {
                    metric: m.name.clone(),
                    reason: format!("cap_percentile must be in (0, 1), got {q}"),
                });
            }
        }
    }
    Ok(())
}

/// Parses a metrics TOML file's text (`[[metric]]` tables).
pub fn parse_metrics(text: &str) -> Result<Vec<Metric>> {
    let f: MetricsFile = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    check_metrics(&f.metric)?;
    Ok(f.metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_custom_metrics_parse() -> Result<()> {
        check_metrics(&builtin_metrics())?;
        let m = parse_metrics(
            r#"
            [[metric]]
            name = "reels_like_rate"
            kind = "ratio"
            numerator = { agg = "sum", column = "liked", surface = "reels" }
            denominator = { agg = "count", surface = "reels" }
            "#,
        )?;
        assert_eq!(m[0].kind, MetricKind::Ratio);
        assert_eq!(m[0].numerator.surface.as_deref(), Some("reels"));
        assert_eq!(
            (m[0].goal.role, m[0].goal.tolerance),
            (Role::Secondary, None)
        );
        let g = parse_metrics(
            "[[metric]]\nname='s'\nkind='mean'\nnumerator={agg='count'}\nrole='guardrail'\ntolerance=0.02\nhigher_is_better=false\n",
        )?;
        assert_eq!(
            g[0].goal,
            Goal {
                higher_is_better: false,
                role: Role::Guardrail,
                tolerance: Some(0.02),
            }
        );
        Ok(())
    }

    #[test]
    fn bad_metrics_are_named() {
        let cases = [
            (
                "[[metric]]\nname='x'\nkind='ratio'\nnumerator={agg='sum', column='liked'}\n",
                "denominator",
            ),
            (
                "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='sum', column='likes'}\n",
                "likes",
            ),
            (
                "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='avg', column='liked'}\n",
                "avg",
            ),
            (
                "[[metric]]\nname='x'\nkind='median'\nnumerator={agg='count'}\n",
                "median",
            ),
            (
                "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='count'}\nrole='goa'\n",
                "goa",
            ),
            (
                "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='count'}\nrole='goal'\ntolerance=0.02\n",
                "only a guardrail takes a tolerance",
            ),
            (
                "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='count'}\nrole='guardrail'\ntolerance=-1\n",
                "tolerance must be",
            ),
        ];
        for (text, needle) in cases {
            let msg = parse_metrics(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
        // A misspelt key is named, with the keys a metric takes.
        let msg = parse_metrics(
            "[[metric]]\nname='x'\nkind='mean'\nnumerator={agg='count'}\nhigher_is_beter=false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("higher_is_beter")
                && msg.contains("expected one of")
                && msg.contains("`tolerance`"),
            "{msg}"
        );
    }
}
