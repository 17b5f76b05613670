//! Interleaving analysis: each impression's engagement credited to the team
//! (ranker) that placed the video, each user's preference, and the share of
//! users preferring each ranker.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;
use reelkit_logs::schema;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::error::{Error, Result};
use crate::exposures::Exposures;
use crate::metrics::Metric;
use crate::pipeline::agg_expr;
use crate::source::{derive, require_columns, Source};

/// Settings of an interleaving analysis.
#[derive(Debug, Clone)]
pub struct InterleaveConfig {
    /// The report's title.
    pub experiment: String,
    /// Significance level of the tests.
    pub alpha: f64,
    /// Bootstrap resamples of users (the credit lift's interval and p-value).
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for InterleaveConfig {
    fn default() -> Self {
        InterleaveConfig {
            experiment: "interleaving".into(),
            alpha: 0.05,
            bootstrap: 1_000,
            seed: 42,
        }
    }
}

/// One metric's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preference {
    /// The metric credited.
    pub metric: String,
    /// Exposed users who preferred team A, team B, or neither (equal credit).
    pub prefer_a: u64,
    /// Exposed users who preferred team B.
    pub prefer_b: u64,
    /// Exposed users with equal credit for both teams (left out of the sign test).
    pub ties: u64,
    /// Share of users with a preference who preferred B, and its Wilson interval.
    pub share_b: f64,
    /// The Wilson score interval of `share_b`.
    pub share_b_ci: [f64; 2],
    /// Two-sided exact binomial (sign) test of share_b = 1/2.
    pub p_sign: f64,
    /// Total credit of each team.
    pub credit_a: f64,
    /// Total credit of team B (`credit_a` is team A's).
    pub credit_b: f64,
    /// credit_b / credit_a − 1, with a per-user bootstrap percentile interval
    /// and two-sided bootstrap p-value.
    pub credit_lift: f64,
    /// The per-user bootstrap percentile interval of `credit_lift`.
    pub credit_lift_ci: [f64; 2],
    /// Two-sided bootstrap p-value of `credit_lift = 0`.
    pub p_bootstrap: f64,
    /// The team preferred by a significant majority of users (sign test), if any.
    pub winner: Option<String>,
}

/// What `reelkit ab interleave` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterleaveReport {
    /// The experiment's name.
    pub experiment: String,
    /// Team A (the first model given to the server) and team B.
    pub teams: [String; 2],
    /// Significance level.
    pub alpha: f64,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Responses in the exposure log, and users who received one.
    pub requests: u64,
    /// Users who received an interleaved response.
    pub users: u64,
    /// Exposed users with at least one credited impression.
    pub users_with_credit: u64,
    /// Impressions credited to a team (served, then seen at or after serving).
    pub credited_impressions: u64,
    /// Unfinished exposure files left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<String>,
    /// One preference per metric.
    pub metrics: Vec<Preference>,
}

/// Each exposed user's credit per team and metric.
#[derive(Debug, Clone, Default)]
pub struct Credits {
    /// Team A's and team B's names.
    pub teams: [String; 2],
    /// Every exposed user, ascending.
    pub users: Vec<u64>,
    /// `credit[metric][user] = [team A, team B]`.
    pub credit: Vec<Vec<[f64; 2]>>,
    /// Impressions credited to a team.
    pub credited_impressions: u64,
    /// Users with at least one credited impression.
    pub users_with_credit: u64,
}

/// Credits `events` to the teams of an interleaving exposure log and tests
/// each metric's preference (see [`credits`]).
pub fn interleave(
    events: &Source,
    exposures: &Exposures,
    metrics: &[Metric],
    cfg: &InterleaveConfig,
) -> Result<InterleaveReport> {
    if !(cfg.alpha > 0.0 && cfg.alpha < 1.0) {
        return Err(Error::Invalid {
            what: "alpha".into(),
            reason: format!("must be in (0, 1), got {}", cfg.alpha),
        });
    }
    if cfg.bootstrap < 100 {
        return Err(Error::Invalid {
            what: "bootstrap".into(),
            reason: format!("at least 100 resamples, got {}", cfg.bootstrap),
        });
    }
    let c = credits(events, exposures, metrics)?;
    let rows = metrics
        .iter()
        .zip(&c.credit)
        .enumerate()
        .map(|(i, (m, credit))| preference(m, credit, &c.teams, cfg, i as u64))
        .collect();
    Ok(InterleaveReport {
        experiment: cfg.experiment.clone(),
        teams: c.teams,
        alpha: cfg.alpha,
        bootstrap: cfg.bootstrap,
        seed: cfg.seed,
        requests: exposures.len() as u64,
        users: c.users.len() as u64,
        users_with_credit: c.users_with_credit,
        credited_impressions: c.credited_impressions,
        skipped_files: exposures
            .skipped
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        metrics: rows,
    })
}

/// Each exposed user's credit per team: a video counts for the team that
/// placed it the first time it was served to that user, and an impression
/// before that is not credited. A metric's credit is its numerator
/// aggregated over a team's impressions (watch time, likes, completions, …).
/// Events that share no user with the exposures are an error.
pub fn credits(events: &Source, exposures: &Exposures, metrics: &[Metric]) -> Result<Credits> {
    let teams = exposures.teams()?;
    // First serving of each (user, video): when, and by which team.
    let mut first: HashMap<(u64, u64), (i64, u8)> = HashMap::new();
    let mut users: Vec<u64> = Vec::new();
    let mut seen_users: HashSet<u64> = HashSet::new();
    for i in 0..exposures.len() {
        let u = exposures.user_id[i];
        if seen_users.insert(u) {
            users.push(u);
        }
        let Some(t) = &exposures.teams[i] else {
            return Err(Error::Invalid {
                what: format!("exposure log {}", exposures.dir.display()),
                reason: format!("response {i} (user {u}) carries no teams"),
            });
        };
        for (v, team) in exposures.video_ids[i].iter().zip(t) {
            let code = if *team == teams[0] {
                0
            } else if *team == teams[1] {
                1
            } else {
                return Err(Error::Invalid {
                    what: format!("exposure log {}", exposures.dir.display()),
                    reason: format!("team `{team}` is neither `{}` nor `{}`", teams[0], teams[1]),
                });
            };
            let ts = exposures.ts_ms[i];
            first
                .entry((u, *v))
                .and_modify(|e| {
                    if ts < e.0 {
                        *e = (ts, code)
                    }
                })
                .or_insert((ts, code));
        }
    }
    users.sort_unstable();
    let mut served: Vec<((u64, u64), (i64, u8))> = first.into_iter().collect();
    served.sort_unstable_by_key(|x| x.0);
    let served_df = DataFrame::new(
        served.len(),
        vec![
            Column::new(
                schema::USER_ID.into(),
                served.iter().map(|x| x.0 .0).collect::<Vec<u64>>(),
            ),
            Column::new(
                schema::VIDEO_ID.into(),
                served.iter().map(|x| x.0 .1).collect::<Vec<u64>>(),
            ),
            Column::new(
                "served_ts".into(),
                served.iter().map(|x| x.1 .0).collect::<Vec<i64>>(),
            ),
            Column::new(
                "team".into(),
                served.iter().map(|x| x.1 .1 as u32).collect::<Vec<u32>>(),
            ),
        ],
    )
    .map_err(|e| Error::Polars {
        input: "<exposures>".into(),
        source: reelkit_logs::guard::without_python_hints(e),
    })?;
    let mut lf = events.scan()?;
    require_columns(events, &mut lf, metrics)?;
    let schema_ = lf.collect_schema().map_err(events.err())?;
    if schema_.get(schema::VIDEO_ID).is_none() {
        return Err(reelkit_logs::Error::MissingColumn {
            path: events.name().into(),
            column: schema::VIDEO_ID.into(),
            available: schema_
                .iter_names()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    let lf = lf.with_columns([
        col(schema::USER_ID).cast(DataType::UInt64),
        col(schema::VIDEO_ID).cast(DataType::UInt64),
    ]);
    let credited = derive(lf.clone())
        .join(
            served_df.lazy(),
            [col(schema::USER_ID), col(schema::VIDEO_ID)],
            [col(schema::USER_ID), col(schema::VIDEO_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col(schema::TS_MS)
                .cast(DataType::Int64)
                .gt_eq(col("served_ts")),
        );
    let mut aggs = vec![len().alias("impressions")];
    for (i, m) in metrics.iter().enumerate() {
        aggs.push(agg_expr(&m.numerator).alias(format!("m{i}")));
    }
    let per = credited
        .group_by([col(schema::USER_ID), col("team")])
        .agg(aggs)
        .sort([schema::USER_ID, "team"], SortMultipleOptions::default())
        .collect()
        .map_err(events.err())?;
    if per.height() == 0 {
        let event_users: HashSet<u64> = lf
            .select([col(schema::USER_ID)])
            .unique(None, UniqueKeepStrategy::Any)
            .collect()
            .map_err(events.err())?
            .column(schema::USER_ID)
            .and_then(|c| c.u64().cloned())
            .map_err(events.err())?
            .iter()
            .flatten()
            .collect();
        let shared = users.iter().filter(|u| event_users.contains(u)).count();
        return Err(Error::Invalid {
            what: format!(
                "events {} and exposures {}",
                events.name(),
                exposures.dir.display()
            ),
            reason: if shared == 0 {
                format!(
                    "they share no user ({} users in the events, {} exposed): wrong files, or ids of another system?",
                    event_users.len(),
                    users.len()
                )
            } else {
                format!("{shared} users are in both, but none of their impressions is of a video served to them by the experiment")
            },
        });
    }
    // credit[m][user][team]
    let index: HashMap<u64, usize> = users.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let mut credit = vec![vec![[0.0f64; 2]; users.len()]; metrics.len()];
    let pu = per
        .column(schema::USER_ID)
        .and_then(|c| c.u64().cloned())
        .map_err(events.err())?;
    let pt = per
        .column("team")
        .and_then(|c| c.u32().cloned())
        .map_err(events.err())?;
    let imp = per
        .column("impressions")
        .and_then(|c| c.cast(&DataType::UInt64))
        .and_then(|c| c.u64().cloned())
        .map_err(events.err())?;
    let credited_impressions: u64 = imp.iter().flatten().sum();
    let mut with_credit: HashSet<u64> = HashSet::new();
    for (i, c) in credit.iter_mut().enumerate() {
        let vals = per
            .column(&format!("m{i}"))
            .and_then(|c| c.cast(&DataType::Float64))
            .and_then(|c| c.f64().cloned())
            .map_err(events.err())?;
        for ((u, t), v) in pu.iter().zip(pt.iter()).zip(vals.iter()) {
            if let (Some(u), Some(t), Some(v)) = (u, t, v) {
                if let Some(&j) = index.get(&u) {
                    c[j][t as usize] += v;
                    with_credit.insert(u);
                }
            }
        }
    }
    Ok(Credits {
        teams,
        users,
        credit,
        credited_impressions,
        users_with_credit: with_credit.len() as u64,
    })
}

/// Two-sided exact binomial test of p = 1/2 (scipy's `binomtest`): `k`
/// successes in `n` trials.
pub fn sign_test(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let Ok(b) = Binomial::new(0.5, n) else {
        return 1.0;
    };
    let low = k.min(n - k);
    (2.0 * b.cdf(low)).min(1.0)
}

/// Wilson score interval of a proportion.
fn wilson(k: u64, n: u64, alpha: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = Normal::standard().inverse_cdf(1.0 - alpha / 2.0);
    let (n, p) = (n as f64, k as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// The bootstrap's generator: SplitMix64 over a counter (sequential, so the
/// result does not depend on the thread count).
fn splitmix(state: &mut u64) -> u64 {
    let r = reelkit_assign::splitmix64(*state);
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    r
}

/// One metric's preference test over users' credits `[team A, team B]`;
/// `stream` picks the bootstrap's random stream. A user prefers the team
/// with more credit, or less for a metric where lower is better.
pub fn preference(
    metric: &Metric,
    c: &[[f64; 2]],
    teams: &[String; 2],
    cfg: &InterleaveConfig,
    stream: u64,
) -> Preference {
    let (mut pa, mut pb, mut ties) = (0u64, 0u64, 0u64);
    let (mut sa, mut sb) = (0.0, 0.0);
    let name = &metric.name;
    for x in c {
        sa += x[0];
        sb += x[1];
        let order = x[1].partial_cmp(&x[0]);
        let order = if metric.goal.higher_is_better {
            order
        } else {
            order.map(std::cmp::Ordering::reverse)
        };
        match order {
            Some(std::cmp::Ordering::Greater) => pb += 1,
            Some(std::cmp::Ordering::Less) => pa += 1,
            _ => ties += 1,
        }
    }
    let n = pa + pb;
    let p_sign = sign_test(pb, n);
    let lift = |a: f64, b: f64| if a > 0.0 { b / a - 1.0 } else { f64::NAN };
    let mut state = cfg.seed ^ (stream.wrapping_mul(0xA076_1D64_78BD_642F));
    let mut lifts = Vec::with_capacity(cfg.bootstrap);
    let users = c.len() as u64;
    for _ in 0..cfg.bootstrap {
        let (mut ra, mut rb) = (0.0, 0.0);
        for _ in 0..users {
            let j = ((splitmix(&mut state) as u128 * users as u128) >> 64) as usize;
            ra += c[j][0];
            rb += c[j][1];
        }
        lifts.push(lift(ra, rb));
    }
    lifts.retain(|x| x.is_finite());
    lifts.sort_unstable_by(f64::total_cmp);
    let q = |p: f64| -> f64 {
        if lifts.is_empty() {
            return f64::NAN;
        }
        let pos = p * (lifts.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        lifts[lo] + (lifts[hi] - lifts[lo]) * (pos - lo as f64)
    };
    let p_bootstrap = if lifts.is_empty() {
        1.0
    } else {
        let below = lifts.iter().filter(|x| **x <= 0.0).count() as f64;
        let above = lifts.iter().filter(|x| **x >= 0.0).count() as f64;
        (2.0 * below.min(above) / lifts.len() as f64).clamp(1.0 / lifts.len() as f64, 1.0)
    };
    let winner = (p_sign < cfg.alpha && pa != pb).then(|| {
        if pb > pa {
            teams[1].clone()
        } else {
            teams[0].clone()
        }
    });
    Preference {
        metric: name.to_string(),
        prefer_a: pa,
        prefer_b: pb,
        ties,
        share_b: if n > 0 {
            pb as f64 / n as f64
        } else {
            f64::NAN
        },
        share_b_ci: wilson(pb, n, cfg.alpha),
        p_sign,
        credit_a: sa,
        credit_b: sb,
        credit_lift: lift(sa, sb),
        credit_lift_ci: [q(cfg.alpha / 2.0), q(1.0 - cfg.alpha / 2.0)],
        p_bootstrap,
        winner,
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.2}%", 100.0 * x)
    } else {
        "-".into()
    }
}

/// A metric's row as both tables print it: metric, users preferring A,
/// B and neither, the share preferring B and its interval, the sign test's
/// p, the credit lift and its interval, the bootstrap p, the winner.
fn cells(m: &Preference) -> [String; 11] {
    let share = |x: f64| format!("{:.1}%", 100.0 * x);
    let [s0, s1] = m.share_b_ci;
    let [l0, l1] = m.credit_lift_ci;
    [
        m.metric.clone(),
        m.prefer_a.to_string(),
        m.prefer_b.to_string(),
        m.ties.to_string(),
        share(m.share_b),
        format!("[{}, {}]", share(s0), share(s1)),
        format!("{:.2e}", m.p_sign),
        pct(m.credit_lift),
        format!("[{}, {}]", pct(l0), pct(l1)),
        format!("{:.3}", m.p_bootstrap),
        m.winner
            .as_deref()
            .unwrap_or("no significant preference")
            .to_string(),
    ]
}

/// The report as Markdown.
pub fn interleave_markdown(r: &InterleaveReport) -> String {
    let [a, b] = &r.teams;
    let mut s = format!(
        "# `{}`: `{a}` (A) vs `{b}` (B), interleaved\n\n{} requests to {} users; {} users with credited impressions ({} impressions). α = {}; {} bootstrap resamples (seed {}).\n\n",
        r.experiment, r.requests, r.users, r.users_with_credit, r.credited_impressions, r.alpha, r.bootstrap, r.seed
    );
    if !r.skipped_files.is_empty() {
        let _ = writeln!(
            s,
            "Unfinished exposure files left out: {}.\n",
            r.skipped_files.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "| metric | prefer {a} | prefer {b} | ties | share preferring {b} | CI | p (sign) | credit lift {b} vs {a} | CI (bootstrap) | p (bootstrap) | preferred |\n|---|---:|---:|---:|---:|---|---:|---:|---|---:|---|"
    );
    for m in &r.metrics {
        let _ = writeln!(s, "| {} |", cells(m).join(" | "));
    }
    s.push_str(
        "\nEach user's preference: the team whose videos earned more of the metric's numerator (watch time, likes, …) in that user's impressions. The sign test counts users; the bootstrap resamples users. For a metric where lower is better (skip_rate), users prefer the team with less.\n",
    );
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The report as a standalone HTML page.
pub fn interleave_html(r: &InterleaveReport) -> String {
    let [a, b] = &r.teams;
    let mut rows = String::new();
    for m in &r.metrics {
        // A bar of the share preferring B with its interval, 50% marked.
        let x = |v: f64| 10.0 + 200.0 * v.clamp(0.0, 1.0);
        let bar = format!(
            "<svg width=\"220\" height=\"18\"><line x1=\"110\" y1=\"0\" x2=\"110\" y2=\"18\" stroke=\"#888\" stroke-dasharray=\"2\"/>\
<line x1=\"{:.1}\" y1=\"9\" x2=\"{:.1}\" y2=\"9\" stroke=\"#333\" stroke-width=\"2\"/><circle cx=\"{:.1}\" cy=\"9\" r=\"4\" fill=\"{}\"/></svg>",
            x(m.share_b_ci[0]),
            x(m.share_b_ci[1]),
            x(if m.share_b.is_finite() { m.share_b } else { 0.5 }),
            if m.winner.is_some() { "#1a7f37" } else { "#555" }
        );
        let [metric, a, b, ties, share, share_ci, p_sign, lift, lift_ci, p_boot, winner] = cells(m);
        let tds: String = [
            esc(&metric),
            a,
            b,
            ties,
            format!("{share} {share_ci}"),
            bar,
            p_sign,
            format!("{lift} {lift_ci}"),
            p_boot,
        ]
        .map(|c| format!("<td>{c}</td>"))
        .concat();
        let class = if m.winner.is_some() { "ok" } else { "" };
        let _ = writeln!(
            rows,
            "<tr>{tds}<td class=\"{class}\">{}</td></tr>",
            esc(&winner)
        );
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}}td:first-child,th:first-child{{text-align:left}}\
.ok{{color:#1a7f37;font-weight:bold}}</style></head><body>\
<h1>{title}: {a} (A) vs {b} (B), interleaved</h1>\
<p>{req} requests to {users} users; {credited} users with credited impressions. α = {alpha}. \
The bar shows the share of users (with a preference) preferring <b>{b}</b>; the dashed line is 50%. \
For a metric where lower is better (skip_rate), users prefer the team with less.</p>\
<table><tr><th>metric</th><th>prefer {a}</th><th>prefer {b}</th><th>ties</th><th>share preferring {b}</th><th></th>\
<th>p (sign)</th><th>credit lift</th><th>p (bootstrap)</th><th>preferred</th></tr>\n{rows}</table></body></html>\n",
        title = esc(&r.experiment),
        a = esc(a),
        b = esc(b),
        req = r.requests,
        users = r.users,
        credited = r.users_with_credit,
        alpha = r.alpha,
    )
}

/// Writes report.json, report.md and report.html into `dir`, all or nothing.
pub fn write_interleave_report(dir: &Path, r: &InterleaveReport) -> Result<()> {
    crate::report::write_files(
        dir,
        &[
            ("report.json", crate::report::json_text(r)?),
            ("report.md", interleave_markdown(r)),
            ("report.html", interleave_html(r)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_matches_scipy() {
        // scipy.stats.binomtest(k, n, 0.5).pvalue (scipy 1.17.1):
        // (7, 20) -> 0.26317596435546875; (3, 20) -> 0.0025768280029296875;
        // (50, 100) -> 1.0; (60, 100) -> 0.05688793364098089.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.max(1e-12) + 1e-12;
        assert!(
            close(sign_test(7, 20), 0.263_175_964_355_468_75),
            "{}",
            sign_test(7, 20)
        );
        assert!(close(sign_test(13, 20), 0.263_175_964_355_468_75));
        assert!(close(sign_test(3, 20), 0.002_576_828_002_929_687_5));
        assert_eq!(sign_test(50, 100), 1.0);
        assert!((sign_test(60, 100) - 0.056_887_933_640_980_89).abs() < 1e-9);
    }

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels 0.15.0: proportion_confint(30, 100, alpha=0.05, method="wilson")
        // -> (0.21894885294932756, 0.39584854633346667).
        let [lo, hi] = wilson(30, 100, 0.05);
        assert!((lo - 0.218_948_852_949_327_56).abs() < 1e-9, "{lo}");
        assert!((hi - 0.395_848_546_333_466_67).abs() < 1e-9, "{hi}");
    }

    #[test]
    fn preferences_count_users_and_the_bootstrap_is_seeded() {
        let teams = ["a".to_string(), "b".to_string()];
        let cfg = InterleaveConfig::default();
        // 60 users prefer b by 2 units, 30 prefer a by 1, 10 tie.
        let mut c = vec![[1.0, 3.0]; 60];
        c.extend(vec![[2.0, 1.0]; 30]);
        c.extend(vec![[1.0, 1.0]; 10]);
        let m = crate::builtin_metrics().remove(0);
        let p = preference(&m, &c, &teams, &cfg, 0);
        assert_eq!((p.prefer_a, p.prefer_b, p.ties), (30, 60, 10));
        assert!((p.share_b - 2.0 / 3.0).abs() < 1e-12);
        assert!(p.p_sign < 0.01);
        assert_eq!(p.winner.as_deref(), Some("b"));
        // credit: a = 60 + 60 + 10 = 130, b = 180 + 30 + 10 = 220.
        assert!((p.credit_lift - (220.0 / 130.0 - 1.0)).abs() < 1e-12);
        assert!(p.credit_lift_ci[0] < p.credit_lift && p.credit_lift < p.credit_lift_ci[1]);
        assert!(p.credit_lift_ci[0] > 0.0);
        assert_eq!(p, preference(&m, &c, &teams, &cfg, 0));
        // Where lower is better, the same credits make `a` the preferred team.
        let skip = crate::builtin_metrics()
            .into_iter()
            .find(|m| m.name == "skip_rate")
            .expect("skip_rate");
        let inverse = preference(&skip, &c, &teams, &cfg, 0);
        assert_eq!((inverse.prefer_a, inverse.prefer_b), (60, 30));
        assert_eq!(inverse.winner.as_deref(), Some("a"));
        // Balanced: no winner.
        let even: Vec<[f64; 2]> = (0..100)
            .map(|i| if i % 2 == 0 { [1.0, 2.0] } else { [2.0, 1.0] })
            .collect();
        let q = preference(&m, &even, &teams, &cfg, 0);
        assert_eq!(q.winner, None);
        assert_eq!(q.p_sign, 1.0);
    }

    #[test]
    fn both_tables_print_a_metric_row_in_their_own_cells() {
        let p = Preference {
            metric: "watch_ms".into(),
            prefer_a: 10,
            prefer_b: 20,
            ties: 3,
            share_b: 2.0 / 3.0,
            share_b_ci: [0.5, 0.8],
            p_sign: 0.0123,
            credit_a: 100.0,
            credit_b: 105.0,
            credit_lift: 0.05,
            credit_lift_ci: [-0.01, 0.1],
            p_bootstrap: 0.04,
            winner: Some("b<i>".into()),
        };
        let r = InterleaveReport {
            experiment: "e".into(),
            teams: ["a".into(), "b<i>".into()],
            alpha: 0.05,
            bootstrap: 100,
            seed: 1,
            requests: 40,
            users: 33,
            users_with_credit: 33,
            credited_impressions: 200,
            skipped_files: Vec::new(),
            metrics: vec![p],
        };
        let md = interleave_markdown(&r);
        let row = "| watch_ms | 10 | 20 | 3 | 66.7% | [50.0%, 80.0%] | 1.23e-2 | +5.00% \
                   | [-1.00%, +10.00%] | 0.040 | b<i> |";
        assert!(md.contains(row), "{md}");
        let html = interleave_html(&r);
        let before_bar = "<tr><td>watch_ms</td><td>10</td><td>20</td><td>3</td>\
                          <td>66.7% [50.0%, 80.0%]</td><td><svg";
        let after_bar = "</svg></td><td>1.23e-2</td><td>+5.00% [-1.00%, +10.00%]</td>\
                         <td>0.040</td><td class=\"ok\">b&lt;i&gt;</td></tr>";
        assert!(
            html.contains(before_bar) && html.contains(after_bar),
            "{html}"
        );
    }
}
