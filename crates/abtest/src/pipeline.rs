//! One polars lazy query from event files to per-arm sufficient statistics:
//! events → per-user values (joined to the assignments; users without events
//! count as zeros) → per-arm sums. Runs on polars' streaming engine, so inputs
//! larger than memory work.

use polars::prelude::*;
use reelkit_logs::{schema, Assignments};

use crate::error::{Error, Result};
use crate::metrics::{Aggregation, Metric};
use crate::stats::{MetricKind, QuantileSums, Sums};

use crate::source::{derive, require_columns, Source, DAY_MS};

/// What an analysis reads: the experiment's events, optional pre-period
/// events (CUPED covariates), who is in which arm, and the metrics.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The experiment period's events.
    pub events: Source,
    /// Pre-period events: each metric's CUPED covariate.
    pub pre_events: Option<Source>,
    /// Who is in which arm.
    pub assignments: &'a Assignments,
    /// What to compute.
    pub metrics: &'a [Metric],
}

impl<'a> Inputs<'a> {
    /// Inputs without pre-period events.
    pub fn new(
        events: impl Into<Source>,
        assignments: &'a Assignments,
        metrics: &'a [Metric],
    ) -> Self {
        Inputs {
            events: events.into(),
            pre_events: None,
            assignments,
            metrics,
        }
    }

    /// The same inputs with pre-period events (CUPED).
    pub fn with_pre(mut self, pre_events: impl Into<Source>) -> Self {
        self.pre_events = Some(pre_events.into());
        self
    }

    /// The same events and pre-period for other users or metrics.
    pub fn with<'b>(&self, assignments: &'b Assignments, metrics: &'b [Metric]) -> Inputs<'b> {
        Inputs {
            events: self.events.clone(),
            pre_events: self.pre_events.clone(),
            assignments,
            metrics,
        }
    }
}

/// The per-user expression of one aggregation.
pub(crate) fn agg_expr(a: &Aggregation) -> Expr {
    let filter = a.surface.as_ref().map(|s| {
        col(schema::SURFACE)
            .cast(DataType::String)
            .eq(lit(s.clone()))
    });
    let e = match (a.agg.as_str(), a.column.as_deref(), filter) {
        ("count", _, None) => len().cast(DataType::Float64),
        ("count", _, Some(f)) => f.cast(DataType::Float64).sum(),
        ("sum", Some(c), None) => col(c).cast(DataType::Float64).sum(),
        ("sum", Some(c), Some(f)) => when(f)
            .then(col(c).cast(DataType::Float64))
            .otherwise(lit(0.0))
            .sum(),
        ("n_unique", Some(c), None) => col(c).n_unique().cast(DataType::Float64),
        ("n_unique", Some(c), Some(f)) => col(c).filter(f).n_unique().cast(DataType::Float64),
        _ => lit(0.0),
    };
    if a.scale == 1.0 {
        e
    } else {
        e * lit(a.scale)
    }
}

/// Per-user numerator (and denominator) of every metric: columns `m{i}_num`,
/// `m{i}_den`, one row per user with events.
fn per_user(lf: LazyFrame, metrics: &[Metric]) -> LazyFrame {
    let mut aggs = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        aggs.push(agg_expr(&m.numerator).alias(format!("m{i}_num")));
        if let Some(d) = &m.denominator {
            aggs.push(agg_expr(d).alias(format!("m{i}_den")));
        }
    }
    derive(lf)
        .group_by([col(schema::USER_ID).cast(DataType::UInt64)])
        .agg(aggs)
}

/// The per-user group-by alone: one row per user with events and the columns
/// `m{i}_num` (and `m{i}_den`) of every metric, before any join or statistics
/// (what a hand-written polars query would compute; `reelkit bench ab` times it
/// as the baseline of the whole analysis).
pub fn per_user_values(events: &Source, metrics: &[Metric]) -> Result<LazyFrame> {
    let mut lf = events.scan()?;
    require_columns(events, &mut lf, metrics)?;
    Ok(per_user(lf, metrics))
}

/// Per-arm sums of one metric: keyed by variant name.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmSums {
    /// The arm.
    pub variant: String,
    /// One entry per metric, in metric order.
    pub sums: Vec<Sums>,
    /// Per metric: the arm's quantile statistics for quantile metrics (only
    /// from per-user values; empty from streaming or warehouse sums).
    pub quantiles: Vec<Option<QuantileSums>>,
}

fn value_expr(m: &Metric, i: usize, prefix: &str) -> (Expr, Option<Expr>) {
    let num = col(format!("{prefix}m{i}_num")).fill_null(lit(0.0));
    match m.kind {
        MetricKind::Mean | MetricKind::Quantile => (num, None),
        MetricKind::Proportion => (num.gt(lit(0.0)).cast(DataType::Float64), None),
        MetricKind::Ratio => (
            num,
            Some(col(format!("{prefix}m{i}_den")).fill_null(lit(0.0))),
        ),
    }
}

/// Assignments joined to per-user numerators, denominators and pre-period
/// covariates (users without events: nulls, read as zeros).
fn joined(inputs: &Inputs<'_>, until_ms: Option<i64>) -> Result<LazyFrame> {
    let Inputs {
        events,
        pre_events,
        assignments,
        metrics,
    } = inputs;
    let mut lf = events.scan()?;
    require_columns(events, &mut lf, metrics)?;
    if let Some(t) = until_ms {
        lf = lf.filter(col(schema::TS_MS).cast(DataType::Int64).lt(lit(t)));
    }
    let users = per_user(lf, metrics);
    let assign = assignments
        .to_dataframe()
        .map_err(Error::Logs)?
        .lazy()
        .with_column(col(schema::USER_ID).cast(DataType::UInt64));
    let mut joined = assign.left_join(users, col(schema::USER_ID), col(schema::USER_ID));
    if let Some(pre) = pre_events {
        let mut plf = pre.scan()?;
        require_columns(pre, &mut plf, metrics)?;
        let mut pre_cols = vec![col(schema::USER_ID)];
        for (i, m) in metrics.iter().enumerate() {
            pre_cols.push(col(format!("m{i}_num")).alias(format!("pre_m{i}_num")));
            if m.denominator.is_some() {
                pre_cols.push(col(format!("m{i}_den")).alias(format!("pre_m{i}_den")));
            }
        }
        let pre_users = per_user(plf, metrics).select(pre_cols);
        joined = joined.left_join(pre_users, col(schema::USER_ID), col(schema::USER_ID));
    }
    Ok(joined)
}

/// Every assigned user's metric values: `x` (value or numerator), `y`
/// (denominator, ratio metrics), `p` (pre-period covariate: value or
/// numerator) and `q` (pre-period denominator), per metric.
#[derive(Debug, Clone, Default)]
pub struct UserValues {
    /// Assigned users, in the assignments' order (or sorted by id).
    pub user_id: Vec<u64>,
    /// Each user's arm.
    pub variant: Vec<String>,
    /// `[metric][user]`.
    pub x: Vec<Vec<f64>>,
    /// Ratio denominators `[metric][user]` (0 for other kinds).
    pub y: Vec<Vec<f64>>,
    /// Pre-period values or numerators `[metric][user]` (0 without a pre-period).
    pub p: Vec<Vec<f64>>,
    /// Pre-period denominators `[metric][user]`.
    pub q: Vec<Vec<f64>>,
}

impl UserValues {
    /// Orders the users by id, so sums over them add in one fixed order
    /// whatever the number of threads that produced the rows.
    pub fn sort_by_user(&mut self) {
        let mut order: Vec<usize> = (0..self.user_id.len()).collect();
        order.sort_by_key(|&i| self.user_id[i]);
        let permute = |v: &mut Vec<f64>| *v = order.iter().map(|&i| v[i]).collect();
        for m in 0..self.x.len() {
            permute(&mut self.x[m]);
            permute(&mut self.y[m]);
            permute(&mut self.p[m]);
            permute(&mut self.q[m]);
        }
        self.variant = order.iter().map(|&i| self.variant[i].clone()).collect();
        self.user_id = order.iter().map(|&i| self.user_id[i]).collect();
    }

    /// Caps metric `m`'s per-user values at their `q` quantile over all
    /// users (numerator, denominator and covariates separately); returns the
    /// numerator's cap.
    pub fn cap(&mut self, m: usize, q: f64) -> f64 {
        let cap_one = |v: &mut Vec<f64>| -> f64 {
            let c = quantile(v, q);
            for x in v.iter_mut() {
                if *x > c {
                    *x = c;
                }
            }
            c
        };
        let c = cap_one(&mut self.x[m]);
        if self.y[m].iter().any(|&y| y != 0.0) {
            cap_one(&mut self.y[m]);
        }
        for pre in [&mut self.p[m], &mut self.q[m]] {
            if pre.iter().any(|&p| p != 0.0) {
                cap_one(pre);
            }
        }
        c
    }

    /// Per-arm sums by the users' own variants, arms in name order (as the
    /// streaming `arm_sums` function gives them), adding users in the current
    /// row order, with quantile statistics for the metrics whose level is given
    /// (`levels[m] = Some(nu)`; shorter or empty: none).
    pub fn arm_sums(&self, levels: &[Option<f64>]) -> Vec<ArmSums> {
        let mut names: Vec<&str> = self.variant.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let arm_of: Vec<usize> = self
            .variant
            .iter()
            .map(|v| names.binary_search(&v.as_str()).unwrap_or(0))
            .collect();
        self.sums(&arm_of, names.len())
            .into_iter()
            .zip(names)
            .enumerate()
            .map(|(a, (sums, v))| ArmSums {
                variant: v.to_string(),
                sums,
                quantiles: levels
                    .iter()
                    .enumerate()
                    .map(|(m, nu)| {
                        nu.map(|nu| {
                            let vals: Vec<f64> = arm_of
                                .iter()
                                .zip(&self.x[m])
                                .filter(|(&arm, _)| arm == a)
                                .map(|(_, &x)| x)
                                .collect();
                            QuantileSums::from_values(&vals, nu)
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    /// Per-arm sums for an arbitrary split: `arm_of[user] = arm index`.
    pub fn sums(&self, arm_of: &[usize], n_arms: usize) -> Vec<Vec<Sums>> {
        let mut out = vec![vec![Sums::default(); self.x.len()]; n_arms];
        let columns = self.x.iter().zip(&self.y).zip(&self.p).zip(&self.q);
        for (m, (((xs, ys), ps), qs)) in columns.enumerate() {
            for (u, &a) in arm_of.iter().enumerate() {
                out[a][m].push(xs[u], ys[u], ps[u], qs[u]);
            }
        }
        out
    }
}

/// The `q` quantile of `v`, interpolated linearly between order statistics
/// (numpy's default); 0 for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

/// Collects [`UserValues`] (for re-randomisation studies such as A/A tests)
/// over the events before `until_ms` (all of them with `None`), one row per
/// assigned user in the assignments' order. The events stream through once
/// (per period); only the per-user table is held (see `stream.rs`).
pub fn user_values(inputs: &Inputs<'_>, until_ms: Option<i64>) -> Result<UserValues> {
    user_values_of(inputs, until_ms, true)
}

/// [`user_values`]; `whole` says the assignments are the experiment's (not a
/// segment's subset, which may well have no event), so that no event of an
/// assigned user is an error.
fn user_values_of(inputs: &Inputs<'_>, until_ms: Option<i64>, whole: bool) -> Result<UserValues> {
    let Inputs {
        events,
        pre_events,
        assignments,
        metrics,
    } = inputs;
    let index = crate::stream::UserIndex::new(&assignments.user_id)?;
    let (post, (read, matched)) = crate::stream::per_user(events, metrics, until_ms, &index)?;
    if whole && until_ms.is_none() && matched == 0 && !assignments.is_empty() {
        // Otherwise a report of zeros: usually ids of another type or table.
        return Err(Error::NoOverlap {
            events: events.name(),
            read,
            assigned: assignments.len(),
            first: assignments.user_id[0],
        });
    }
    let pre = match pre_events {
        Some(p) => Some(crate::stream::per_user(p, metrics, None, &index)?.0),
        None => None,
    };
    let n = assignments.len();
    let values = |m: &Metric, u: crate::stream::PerUser| -> (Vec<f64>, Vec<f64>) {
        match m.kind {
            MetricKind::Mean | MetricKind::Quantile => (u.num, vec![0.0; n]),
            MetricKind::Proportion => (
                u.num
                    .iter()
                    .map(|&x| f64::from(u8::from(x > 0.0)))
                    .collect(),
                vec![0.0; n],
            ),
            MetricKind::Ratio => (u.num, u.den.unwrap_or_else(|| vec![0.0; n])),
        }
    };
    let mut v = UserValues {
        user_id: assignments.user_id.clone(),
        variant: assignments.variant.clone(),
        ..UserValues::default()
    };
    let mut pre = pre.map(|p| p.into_iter());
    for (m, post) in metrics.iter().zip(post) {
        let (x, y) = values(m, post);
        let pre_m = pre.as_mut().and_then(|p| p.next());
        let (p, q) = match pre_m {
            Some(pre_m) if m.kind.takes_cuped() => values(m, pre_m),
            _ => (vec![0.0; n], vec![0.0; n]),
        };
        v.x.push(x);
        v.y.push(y);
        v.p.push(p);
        v.q.push(q);
    }
    Ok(v)
}

/// Timestamps reelkit takes for Unix milliseconds: 2000-01-01 to
/// 2100-01-01 (UTC). Outside, a timestamp is in other units (seconds,
/// microseconds) or corrupt, and a loop over its days would not end.
const PLAUSIBLE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

/// Most days a per-day analysis draws (a year and a day).
const MAX_DAYS: i64 = 366;

/// The first and last UTC day (as their first millisecond) with events; an
/// error when a timestamp is not a plausible Unix millisecond or the events
/// span more than `MAX_DAYS` (366) days.
pub fn event_days(events: &Source) -> Result<Option<(i64, i64)>> {
    let df = events
        .scan()?
        .select([
            col(schema::TS_MS).cast(DataType::Int64).min().alias("lo"),
            col(schema::TS_MS).cast(DataType::Int64).max().alias("hi"),
        ])
        .collect()
        .map_err(events.err())?;
    let get = |name: &str| -> Option<i64> {
        df.column(name)
            .ok()
            .and_then(|c| c.get(0).ok())
            .and_then(|v| v.extract::<i64>())
    };
    let (Some(lo), Some(hi)) = (get("lo"), get("hi")) else {
        return Ok(None);
    };
    let what = || format!("{}: column `{}`", events.name(), schema::TS_MS);
    for t in [lo, hi] {
        if !PLAUSIBLE_MS.contains(&t) {
            return Err(Error::Invalid {
                what: what(),
                reason: format!(
                    "timestamp {t} is not a Unix millisecond between 2000-01-01 and 2100-01-01 \
                     (events span {lo} to {hi}); are they seconds or microseconds, or is a row corrupt?"
                ),
            });
        }
    }
    let (first, last) = (lo - lo.rem_euclid(DAY_MS), hi - hi.rem_euclid(DAY_MS));
    let days = (last - first) / DAY_MS + 1;
    if days > MAX_DAYS {
        return Err(Error::Invalid {
            what: what(),
            reason: format!(
                "the events span {days} days ({} to {}), more than the {MAX_DAYS} a daily \
                 analysis draws; look for stray timestamps",
                crate::text::utc_date(first),
                crate::text::utc_date(last)
            ),
        });
    }
    Ok(Some((first, last)))
}

/// Per-arm sums from per-user values (events before `until_ms` only, when
/// given), added in user-id order so they are identical for any number of
/// threads, with each metric's percentile capping applied and the arms'
/// quantile statistics for quantile metrics.
pub fn ordered_arm_sums(inputs: &Inputs<'_>, until_ms: Option<i64>) -> Result<Vec<ArmSums>> {
    arm_sums_of(inputs, until_ms, true)
}

/// [`ordered_arm_sums`] of a segment's users (see [`user_values_of`]).
pub(crate) fn segment_arm_sums(inputs: &Inputs<'_>) -> Result<Vec<ArmSums>> {
    arm_sums_of(inputs, None, false)
}

fn arm_sums_of(inputs: &Inputs<'_>, until_ms: Option<i64>, whole: bool) -> Result<Vec<ArmSums>> {
    let metrics = inputs.metrics;
    let mut values = user_values_of(inputs, until_ms, whole)?;
    values.sort_by_user();
    for (i, m) in metrics.iter().enumerate() {
        if let Some(q) = m.cap_percentile {
            values.cap(i, q);
        }
    }
    let levels: Vec<Option<f64>> = metrics
        .iter()
        .map(|m| m.quantile.filter(|_| m.kind == MetricKind::Quantile))
        .collect();
    Ok(values.arm_sums(&levels))
}

/// Runs the whole query: events (and optional pre-period events) joined to the
/// assignments, reduced to per-arm sums for every metric.
pub fn arm_sums(inputs: &Inputs<'_>) -> Result<Vec<ArmSums>> {
    let Inputs {
        events,
        pre_events,
        metrics,
        ..
    } = inputs;
    let joined = joined(inputs, None)?;
    let mut aggs = vec![len().cast(DataType::Float64).alias("n")];
    for (i, m) in metrics.iter().enumerate() {
        let (x, y) = value_expr(m, i, "");
        aggs.push(x.clone().sum().alias(format!("s{i}_x")));
        aggs.push((x.clone() * x.clone()).sum().alias(format!("s{i}_x2")));
        aggs.push(
            (x.clone() * x.clone() * x.clone())
                .sum()
                .alias(format!("s{i}_x3")),
        );
        if let Some(y) = y.clone() {
            aggs.push(y.clone().sum().alias(format!("s{i}_y")));
            aggs.push((y.clone() * y.clone()).sum().alias(format!("s{i}_y2")));
            aggs.push((x.clone() * y.clone()).sum().alias(format!("s{i}_xy")));
            aggs.push(
                (y.clone() * y.clone() * y.clone())
                    .sum()
                    .alias(format!("s{i}_y3")),
            );
            aggs.push(
                (x.clone() * x.clone() * y.clone())
                    .sum()
                    .alias(format!("s{i}_x2y")),
            );
            aggs.push((x.clone() * y.clone() * y).sum().alias(format!("s{i}_xy2")));
        }
        if pre_events.is_some() && m.kind.takes_cuped() {
            let (p, q) = value_expr(m, i, "pre_");
            aggs.push(p.clone().sum().alias(format!("s{i}_p")));
            aggs.push((p.clone() * p.clone()).sum().alias(format!("s{i}_p2")));
            aggs.push((x.clone() * p.clone()).sum().alias(format!("s{i}_xp")));
            if let (Some(q), Some(y)) = (q, y) {
                aggs.push(q.clone().sum().alias(format!("s{i}_q")));
                aggs.push((q.clone() * q.clone()).sum().alias(format!("s{i}_q2")));
                aggs.push((p.clone() * q.clone()).sum().alias(format!("s{i}_pq")));
                aggs.push((x * q.clone()).sum().alias(format!("s{i}_xq")));
                aggs.push((y.clone() * p).sum().alias(format!("s{i}_yp")));
                aggs.push((y * q).sum().alias(format!("s{i}_yq")));
            }
        }
    }
    let df = joined
        .group_by([col(schema::VARIANT)])
        .agg(aggs)
        .sort([schema::VARIANT], Default::default())
        .collect_with_engine(Engine::Streaming)
        .map_err(events.err())?
        // One query, one sink: always a single frame.
        .unwrap_single();
    let get = |name: &str, row: usize| -> f64 {
        df.column(name)
            .ok()
            .and_then(|c| c.get(row).ok())
            .and_then(|v| v.extract::<f64>())
            .unwrap_or(0.0)
    };
    let variants = df.column(schema::VARIANT).map_err(events.err())?;
    let mut out = Vec::with_capacity(df.height());
    for row in 0..df.height() {
        let variant = variants
            .get(row)
            .map_err(events.err())?
            .get_str()
            .unwrap_or_default()
            .to_string();
        let n = get("n", row);
        let sums = (0..metrics.len())
            .map(|i| Sums {
                n,
                x: get(&format!("s{i}_x"), row),
                x2: get(&format!("s{i}_x2"), row),
                y: get(&format!("s{i}_y"), row),
                y2: get(&format!("s{i}_y2"), row),
                xy: get(&format!("s{i}_xy"), row),
                p: get(&format!("s{i}_p"), row),
                p2: get(&format!("s{i}_p2"), row),
                xp: get(&format!("s{i}_xp"), row),
                q: get(&format!("s{i}_q"), row),
                q2: get(&format!("s{i}_q2"), row),
                pq: get(&format!("s{i}_pq"), row),
                xq: get(&format!("s{i}_xq"), row),
                yp: get(&format!("s{i}_yp"), row),
                yq: get(&format!("s{i}_yq"), row),
                x3: get(&format!("s{i}_x3"), row),
                y3: get(&format!("s{i}_y3"), row),
                x2y: get(&format!("s{i}_x2y"), row),
                xy2: get(&format!("s{i}_xy2"), row),
            })
            .collect();
        out.push(ArmSums {
            variant,
            sums,
            quantiles: Vec::new(),
        });
    }
    Ok(out)
}
