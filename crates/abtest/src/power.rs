//! Power analysis from a pre-period: sample size, minimum detectable effect and
//! duration for mean and ratio metrics (two-sided, normal approximation, equal
//! split by default).
//!
//! For a relative MDE `m` on a metric with per-user mean `μ` and variance `σ²`
//! (delta-method variance for ratios), each arm needs
//! `n = (z_{1−α/2} + z_{power})² · σ² · (1/w_a + 1/w_b) / (m μ)²` users in total
//! divided by the arm shares `w`; conversely the MDE of `N` users is
//! `(z_{1−α/2} + z_{power}) · σ · sqrt(1/(w_a N) + 1/(w_b N)) / μ`.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::stats::{moments, MetricKind, Sums};

/// The power analysis of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerRow {
    /// The metric.
    pub metric: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Per-user mean over the pre-period.
    pub mean: f64,
    /// Per-user variance (delta method for ratios).
    pub variance: f64,
    /// Users (all arms together) needed to detect `mde` with `power`.
    pub users_needed: f64,
    /// Relative MDE detectable with the pre-period's user count.
    pub mde_at_pre_period_users: f64,
    /// Days to enrol `users_needed` at the pre-period's rate of new active users.
    pub days_needed: f64,
}

fn z(p: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .map(|n| n.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// What a power analysis plans for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerPlan {
    /// Relative minimum detectable effect (0.02 = 2%).
    pub mde: f64,
    /// Two-sided significance level.
    pub alpha: f64,
    /// Wanted power (0.8).
    pub power: f64,
    /// The treatment arm's share of users (0.5: equal split).
    pub treatment_share: f64,
    /// Distinct users that appear per day (for the duration).
    pub users_per_day: f64,
}

/// Power of a metric from its pre-period sums (`s.n` = users of the
/// pre-period) for a plan.
pub fn power(name: &str, kind: MetricKind, s: &Sums, plan: &PowerPlan) -> PowerRow {
    let PowerPlan {
        mde,
        alpha,
        power,
        treatment_share,
        users_per_day,
    } = *plan;
    let m = moments(kind, s);
    let zz = z(1.0 - alpha / 2.0) + z(power);
    let (wa, wb) = (1.0 - treatment_share, treatment_share);
    let k = 1.0 / wa + 1.0 / wb;
    let users_needed = zz * zz * m.var * k / (mde * m.mean).powi(2);
    let mde_at = zz * (m.var * k / s.n).sqrt() / m.mean.abs();
    PowerRow {
        metric: name.to_string(),
        kind,
        mean: m.mean,
        variance: m.var,
        users_needed,
        mde_at_pre_period_users: mde_at,
        days_needed: users_needed / users_per_day.max(f64::MIN_POSITIVE),
    }
}

/// Users (of the two arms together, split as now) that an experiment whose
/// effect estimate has standard error `se` with `n_now` users needs to detect
/// an effect of size `effect` (same scale as `se`) with `power` at `alpha`,
/// two-sided: the standard error shrinks as `1/√N`, so
/// `N = n_now · (se · (z_{1−α/2} + z_{power}) / effect)²` — the sample-size
/// formula of [`power`] with the variance the experiment itself measured
/// (CUPED's included). Infinite when the effect is 0.
pub(crate) fn users_to_detect(n_now: f64, se: f64, effect: f64, alpha: f64, power: f64) -> f64 {
    let zz = z(1.0 - alpha / 2.0) + z(power);
    if effect == 0.0 {
        return f64::INFINITY;
    }
    n_now * (se * zz / effect).powi(2)
}

/// The power of every metric from a pre-period's events (a file): every
/// user active in it counts, enrolment per day is its distinct users over
/// its days. Errors: `mde` not positive; `alpha`, `power` or
/// `treatment_share` outside (0, 1); an unreadable log.
pub fn pre_period_power(
    events: &std::path::Path,
    metrics: &[crate::Metric],
    mde: f64,
    alpha: f64,
    power_wanted: f64,
    treatment_share: f64,
) -> crate::Result<Vec<PowerRow>> {
    let invalid = |what: &str, reason: String| crate::Error::Invalid {
        what: what.to_string(),
        reason,
    };
    if !(mde > 0.0 && mde.is_finite()) {
        return Err(invalid("mde", format!("must be positive, got {mde}")));
    }
    for (what, v) in [
        ("alpha", alpha),
        ("power", power_wanted),
        ("treatment_share", treatment_share),
    ] {
        if !(v > 0.0 && v < 1.0) {
            return Err(invalid(what, format!("must be in (0, 1), got {v}")));
        }
    }
    let ev = reelkit_logs::read_events(events)?;
    if ev.is_empty() {
        return Err(invalid(
            "events",
            "no events: a power analysis needs a pre-period".into(),
        ));
    }
    let (lo, hi) = (
        ev.ts_ms.iter().min().copied().unwrap_or(0),
        ev.ts_ms.iter().max().copied().unwrap_or(0),
    );
    // Ten years of pre-period is no pre-period: a timestamp is wrong (not
    // milliseconds, or a sentinel such as i64::MAX).
    const MAX_SPAN_MS: i64 = 3_650 * 86_400_000;
    if hi.saturating_sub(lo) > MAX_SPAN_MS {
        return Err(invalid(
            "events",
            format!(
                "ts_ms spans {lo} to {hi}, more than ten years: a timestamp is wrong \
                 (ts_ms is milliseconds since 1970)"
            ),
        ));
    }
    // Every user active in the pre-period, all in one arm.
    let mut users: Vec<u64> = ev.user_id.clone();
    users.sort_unstable();
    users.dedup();
    let days = {
        let (lo, hi) = (
            ev.ts_ms.iter().min().copied().unwrap_or(0),
            ev.ts_ms.iter().max().copied().unwrap_or(0),
        );
        ((hi - lo) as f64 / 86_400_000.0).ceil().max(1.0)
    };
    let assignments = reelkit_logs::Assignments {
        variant: vec!["all".to_string(); users.len()],
        user_id: users.clone(),
    };
    let values =
        crate::pipeline::user_values(&crate::Inputs::new(events, &assignments, metrics), None)?;
    let sums = values.sums(&vec![0; values.user_id.len()], 1);
    let plan = PowerPlan {
        mde,
        alpha,
        power: power_wanted,
        treatment_share,
        users_per_day: users.len() as f64 / days,
    };
    Ok(metrics
        .iter()
        .zip(&sums[0])
        .map(|(m, s)| power(&m.name, m.kind, s, &plan))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_to_detect_agrees_with_the_sample_size_formula() {
        // An arm pair with σ = 1 each, n = 500 per arm: se of the difference
        // = sqrt(2/500). To detect 0.5 absolute (5% of μ = 10) the sample-size
        // formula asks for 125.6 users in total, whatever n_now is.
        let se = (2.0f64 / 500.0).sqrt();
        let n = users_to_detect(1000.0, se, 0.5, 0.05, 0.8);
        let sums = Sums {
            n: 1000.0,
            x: 10_000.0,
            x2: 100_000.0 + 999.0,
            ..Sums::default()
        };
        let r = power(
            "m",
            MetricKind::Mean,
            &sums,
            &PowerPlan {
                mde: 0.05,
                alpha: 0.05,
                power: 0.8,
                treatment_share: 0.5,
                users_per_day: 1.0,
            },
        );
        assert!(
            (n - r.users_needed).abs() < 1e-6 * n,
            "{n} vs {}",
            r.users_needed
        );
        assert!(users_to_detect(1000.0, se, 0.0, 0.05, 0.8).is_infinite());
    }

    #[test]
    fn textbook_sample_size() {
        // σ = 1, μ = 10, 5% relative MDE = 0.5 absolute; α 0.05, power 0.8:
        // n per arm = 2 (1.95996 + 0.84162)² / 0.25 = 62.79, so 125.6 in total.
        let n = 1000.0;
        // Σx² = n μ² + (n − 1) σ² gives a sample variance of exactly σ² = 1.
        let sums = |n: f64| Sums {
            n,
            x: 10.0 * n,
            x2: n * 100.0 + (n - 1.0),
            ..Sums::default()
        };
        let plan = PowerPlan {
            mde: 0.05,
            alpha: 0.05,
            power: 0.8,
            treatment_share: 0.5,
            users_per_day: 100.0,
        };
        let s = sums(n);
        let r = power("m", MetricKind::Mean, &s, &plan);
        assert!((r.users_needed - 125.58).abs() < 0.2, "{r:?}");
        assert!((r.days_needed - r.users_needed / 100.0).abs() < 1e-9);
        // And the MDE at the needed size is the MDE asked for.
        let s2 = sums(r.users_needed);
        let back = power("m", MetricKind::Mean, &s2, &plan);
        assert!(
            (back.mde_at_pre_period_users - 0.05).abs() < 1e-3,
            "{back:?}"
        );
    }
}
