//! The experiment loop: pre-period → arms hashed → day by day (refresh the
//! trained arms on the events so far, play the day under every arm) →
//! ground truth → analysis on the in-memory events → every estimate beside
//! its truth.

use std::collections::BTreeMap;
use std::time::Instant;

use reelkit_abtest::{
    analyze_sums,
    per_user::{cumulative_lift, ordered_arm_sums, segments},
    AnalysisConfig, Inputs, Metric, MetricRow, Report, Source,
};
use reelkit_logs::{Assignments, Events};
use reelkit_sim::{
    assignment::Arms,
    builtin_policy,
    policies::{Explore, ExploreFresh},
    Experiment, Policy, Simulator, World,
};
use serde::Serialize;

use crate::error::Result;
use crate::recipe::Recipe;
use crate::spec::{Arm, ValidSpec};
use crate::trained::{FitTime, Refresh, TrainedPolicy};
use crate::truth::{ground_truth, GroundTruth, ALL};

/// One arm's policy: built in, or a trained recipe that refreshes; either
/// explored uniformly when the arm says so (`explore_uniform`).
pub(crate) enum ArmPolicy {
    Builtin(Box<dyn Policy>),
    Trained(Box<ExploreFresh<TrainedPolicy>>),
    ExploredTrained(Box<Explore<ExploreFresh<TrainedPolicy>>>),
}

impl ArmPolicy {
    /// The policy of the arm named `name` playing `play` (its recipe and
    /// exploration).
    pub(crate) fn new(name: &str, play: &Arm) -> Result<ArmPolicy> {
        let recipe = &play.recipe;
        Ok(match recipe {
            Recipe::Siloed(t) | Recipe::Unified(t) => {
                let trained = ExploreFresh::new(
                    TrainedPolicy::new(name, t, matches!(recipe, Recipe::Unified(_)))?,
                    t.explore,
                );
                match play.explore_uniform {
                    Some(e) => ArmPolicy::ExploredTrained(Box::new(Explore::new(trained, e)?)),
                    None => ArmPolicy::Trained(Box::new(trained)),
                }
            }
            other => {
                let policy = builtin_policy(other.name())?;
                ArmPolicy::Builtin(match play.explore_uniform {
                    Some(e) => Box::new(Explore::new(policy, e)?),
                    None => policy,
                })
            }
        })
    }

    pub(crate) fn as_policy(&self) -> &dyn Policy {
        match self {
            ArmPolicy::Builtin(p) => p.as_ref(),
            ArmPolicy::Trained(p) => p.as_ref(),
            ArmPolicy::ExploredTrained(p) => p.as_ref(),
        }
    }

    pub(crate) fn policy(&mut self) -> &mut dyn Policy {
        match self {
            ArmPolicy::Builtin(p) => p.as_mut(),
            ArmPolicy::Trained(p) => p.as_mut(),
            ArmPolicy::ExploredTrained(p) => p.as_mut(),
        }
    }

    /// The trained recipe's policy, when the arm has one.
    pub(crate) fn trained(&mut self) -> Option<&mut TrainedPolicy> {
        match self {
            ArmPolicy::Builtin(_) => None,
            ArmPolicy::Trained(p) => Some(&mut p.inner),
            ArmPolicy::ExploredTrained(p) => Some(&mut p.inner.inner),
        }
    }

    /// The trained recipe's policy, when the arm has one, by value.
    pub(crate) fn into_trained(self) -> Option<TrainedPolicy> {
        match self {
            ArmPolicy::Builtin(_) => None,
            ArmPolicy::Trained(p) => Some(p.inner),
            ArmPolicy::ExploredTrained(p) => Some(p.inner.inner),
        }
    }
}

/// Wall time of each phase, seconds (not deterministic: kept out of the
/// summary).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Building the world.
    pub world: f64,
    /// Simulating the pre-period.
    pub pre_period: f64,
    /// Simulating the experiment days (every user under every arm).
    pub experiment: f64,
    /// Fitting and refreshing the trained arms (inside the experiment days).
    pub training: f64,
    /// Computing the ground truth from the potential outcomes.
    pub truth: f64,
    /// Analysing the experiment (with and without CUPED).
    pub analysis: f64,
    /// Every fit: arm, day, model, kind, size and seconds.
    pub refreshes: Vec<RefreshTime>,
}

/// One fit's wall time, by part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshTime {
    #[serde(flatten)]
    /// Which fit.
    pub refresh: Refresh,
    /// Its total wall time.
    pub seconds: f64,
    #[serde(flatten)]
    /// The total by part.
    pub parts: FitTime,
}

/// A simulated experiment before its analysis.
#[derive(Debug)]
pub(crate) struct Simulated {
    pub pre_events: Events,
    pub exp: Experiment,
    pub refreshes: Vec<Refresh>,
    pub timings: Timings,
}

/// Plays the spec's pre-period (everyone on its policy), one entry per day.
pub(crate) fn play_pre_period(spec: &ValidSpec, sim: &mut Simulator<'_>) -> Result<Vec<Events>> {
    let mut pre_policy = builtin_policy(&spec.pre_policy)?;
    let mut pre_days = Vec::with_capacity(spec.pre_days as usize);
    for _ in 0..spec.pre_days {
        pre_days.push(sim.run(1, pre_policy.as_mut(), &|_| {})?);
    }
    Ok(pre_days)
}

/// Plays the spec's experiment on `world` with the simulator seeded `seed`
/// and users hashed with `salt`; `plays` overrides how the spec's arms rank
/// and explore (the A/A runs of a calibration play the control everywhere).
pub(crate) fn simulate(
    spec: &ValidSpec,
    world: &World,
    seed: u64,
    salt: &str,
    plays: &[Arm],
    log: &dyn Fn(&str),
) -> Result<Simulated> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let mut sim = Simulator::new(world).with_seed(seed);
    let pre_days = play_pre_period(spec, &mut sim)?;
    timings.pre_period = t.elapsed().as_secs_f64();
    let n_pre: usize = pre_days.iter().map(Events::len).sum();
    log(&format!(
        "pre-period: {} users x {} days on `{}`: {n_pre} impressions ({:.1} s)",
        world.n_users(),
        spec.pre_days,
        spec.pre_policy,
        timings.pre_period
    ));

    let names: Vec<String> = spec.arms.iter().map(|a| a.name.clone()).collect();
    let shares: Vec<f64> = spec.arms.iter().map(|a| a.share).collect();
    let arms = Arms::hashed(world, &names, &shares, salt)?;
    let mut policies = names
        .iter()
        .zip(plays)
        .map(|(n, a)| ArmPolicy::new(n, a))
        .collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    let mut run = sim.start_experiment(&arms)?;
    for _ in 0..spec.days {
        let today = run.day();
        let t_fit = Instant::now();
        for (a, p) in policies.iter_mut().enumerate() {
            if let Some(p) = p.trained() {
                // The arm learns from what it would have logged serving everyone:
                // its own users' events and every other user's play under it.
                let day_log: Vec<&Events> = pre_days.iter().chain(run.potential(a)).collect();
                // Settings are judged on what the control served everyone:
                // impressions no model of this arm chose.
                let judge: Vec<&Events> =
                    pre_days.iter().chain(run.potential(spec.control)).collect();
                p.refresh(world, &day_log, &judge, today)?;
            }
        }
        timings.training += t_fit.elapsed().as_secs_f64();
        let mut refs: Vec<&mut dyn Policy> = policies.iter_mut().map(ArmPolicy::policy).collect();
        let events = run.step(&mut refs)?;
        log(&format!(
            "day {today}: {} impressions observed ({:.1} s so far)",
            events.len(),
            t.elapsed().as_secs_f64()
        ));
    }
    let exp = run.finish();
    timings.experiment = t.elapsed().as_secs_f64() - timings.training;
    let mut refreshes = Vec::new();
    for p in policies.into_iter().filter_map(ArmPolicy::into_trained) {
        refreshes.extend(p.refreshes);
    }
    timings.refreshes = refreshes
        .iter()
        .map(|r| RefreshTime {
            refresh: r.clone(),
            seconds: r.time.total(),
            parts: r.time,
        })
        .collect();
    let mut pre_events = Events::default();
    for mut d in pre_days {
        pre_events.append(&mut d);
    }
    Ok(Simulated {
        pre_events,
        exp,
        refreshes,
        timings,
    })
}

/// The analysis settings of a spec.
pub(crate) fn analysis_config(spec: &ValidSpec) -> AnalysisConfig {
    let names = |(v, b): &(usize, usize)| (spec.arms[*v].name.clone(), spec.arms[*b].name.clone());
    AnalysisConfig {
        experiment: spec.name.clone(),
        control: Some(spec.arms[spec.control].name.clone()),
        alpha: spec.alpha,
        correction: spec.correction,
        weights: Some(
            spec.arms
                .iter()
                .map(|a| (a.name.clone(), a.share))
                .collect(),
        ),
        sequential: None,
        comparisons: spec.comparisons.iter().map(names).collect(),
    }
}

/// The spec's metrics with CUPED on (as each metric says) or off.
pub(crate) fn with_cuped(metrics: &[Metric], on: bool) -> Vec<Metric> {
    metrics
        .iter()
        .map(|m| Metric {
            cuped: on && m.cuped,
            ..m.clone()
        })
        .collect()
}

/// Analyses a simulated experiment from memory: the report (CUPED as the
/// spec says; with the daily lift and segments when asked) and the same
/// report without CUPED.
pub(crate) fn analyse(
    spec: &ValidSpec,
    pre: &Events,
    events: &Events,
    assignments: &Assignments,
    extras: bool,
) -> Result<(Report, Report)> {
    let metrics = with_cuped(&spec.metrics, spec.cuped);
    let plain = with_cuped(&spec.metrics, false);
    let cfg = analysis_config(spec);
    let inputs = Inputs::new(
        Source::events("experiment events", events)?,
        assignments,
        &metrics,
    )
    .with_pre(Source::events("pre-period events", pre)?);
    let sums = ordered_arm_sums(&inputs, None)?;
    let mut report = analyze_sums(&sums, &metrics, &cfg)?;
    let without = analyze_sums(&sums, &plain, &cfg)?;
    if extras && spec.daily {
        report.daily = cumulative_lift(&inputs, &cfg)?;
    }
    if extras && spec.segments {
        report.segments = segments(&inputs, &cfg)?;
    }
    Ok((report, without))
}

/// One estimate beside its truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The variant arm.
    pub variant: String,
    /// The arm it is compared with.
    pub baseline: String,
    /// The metric's name.
    pub metric: String,
    /// `all` or `surface=…`.
    pub segment: String,
    /// Whether CUPED adjusted the estimate.
    pub cuped: bool,
    /// Estimated absolute effect (variant − baseline).
    pub estimate_abs: f64,
    /// Lower end of the absolute confidence interval.
    pub abs_ci_low: f64,
    /// Upper end of the absolute confidence interval.
    pub abs_ci_high: f64,
    /// True absolute effect (every user under each arm).
    pub true_abs: f64,
    /// Estimated relative effect (a fraction: 0.02 is +2%).
    pub estimate_rel: f64,
    /// Lower end of the relative confidence interval.
    pub rel_ci_low: f64,
    /// Upper end of the relative confidence interval.
    pub rel_ci_high: f64,
    /// True relative effect.
    pub true_rel: f64,
    /// The absolute interval holds the true absolute effect.
    pub covered: bool,
    /// Significant after the multiple-comparison adjustment.
    pub significant: bool,
    /// p-value after the multiple-comparison adjustment.
    pub p_value_adjusted: f64,
    /// The same interval's width without CUPED (overall rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abs_ci_width_without_cuped: Option<f64>,
}

fn estimate(
    row: &MetricRow,
    segment: &str,
    truth: &GroundTruth,
    plain: Option<&Report>,
) -> Option<Estimate> {
    let t = truth.get(&row.variant, &row.control, &row.metric, segment)?;
    let r = &row.test;
    let width = plain.and_then(|p| {
        p.metrics
            .iter()
            .find(|x| {
                x.metric == row.metric && x.variant == row.variant && x.control == row.control
            })
            .map(|x| x.test.abs_ci_high - x.test.abs_ci_low)
    });
    Some(Estimate {
        variant: row.variant.clone(),
        baseline: row.control.clone(),
        metric: row.metric.clone(),
        segment: segment.to_string(),
        cuped: row.cuped,
        estimate_abs: r.abs_effect,
        abs_ci_low: r.abs_ci_low,
        abs_ci_high: r.abs_ci_high,
        true_abs: t.abs_effect,
        estimate_rel: r.rel_effect,
        rel_ci_low: r.rel_ci_low,
        rel_ci_high: r.rel_ci_high,
        true_rel: t.rel_effect,
        covered: r.abs_ci_low <= t.abs_effect && t.abs_effect <= r.abs_ci_high,
        significant: row.significant,
        p_value_adjusted: row.p_value_adjusted,
        abs_ci_width_without_cuped: width,
    })
}

/// Every report row (overall and per surface) that has a truth, beside it.
pub(crate) fn estimates(report: &Report, plain: &Report, truth: &GroundTruth) -> Vec<Estimate> {
    let mut out: Vec<Estimate> = report
        .metrics
        .iter()
        .filter_map(|r| estimate(r, ALL, truth, Some(plain)))
        .collect();
    for seg in &report.segments {
        out.extend(
            seg.metrics
                .iter()
                .filter_map(|r| estimate(r, &seg.segment, truth, None)),
        );
    }
    out
}

/// One arm as run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    /// The arm's name.
    pub name: String,
    /// Its traffic share.
    pub share: f64,
    /// Users hashed into the arm (of those in the experiment).
    pub users: usize,
    #[serde(flatten)]
    /// How it ranks.
    pub recipe: Recipe,
}

/// `summary.json`: what the experiment did and found (deterministic: the
/// same spec gives the same bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The spec's name.
    pub name: String,
    /// The seed every random process derived from.
    pub seed: u64,
    /// Users in the world.
    pub users: usize,
    /// Pre-period days (everyone on `pre_policy`).
    pub pre_days: u32,
    /// The policy every user saw in the pre-period.
    pub pre_policy: String,
    /// Experiment days.
    pub days: u32,
    /// The world's `surface_taste_divergence` (the parameter that decides unified vs siloed).
    pub surface_taste_divergence: f64,
    /// The control arm.
    pub control: String,
    /// Every arm.
    pub arms: Vec<ArmSummary>,
    /// Impressions logged in the pre-period.
    pub pre_period_impressions: usize,
    /// Impressions logged in the experiment (the observed arm of each user).
    pub experiment_impressions: usize,
    /// Every fit of the trained arms (sizes; times are in timings.json).
    pub refreshes: Vec<Refresh>,
    /// Every comparison × metric × segment: estimate beside truth.
    pub estimates: Vec<Estimate>,
}

/// Everything an experiment run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The analysis (CUPED as the spec says), with daily lift and segments.
    pub report: Report,
    /// The same analysis without CUPED.
    pub report_without_cuped: Report,
    /// The true effects (every user under every arm).
    pub truth: GroundTruth,
    /// `summary.json`.
    pub summary: Summary,
    /// The pre-period's events (CUPED's covariates).
    pub pre_events: Events,
    /// The experiment's events, each user under its assigned arm.
    pub events: Events,
    /// Who was assigned to which arm.
    pub assignments: Assignments,
    /// Wall time of each phase.
    pub timings: Timings,
}

/// Runs a checked spec end to end in memory; `log` receives progress lines.
/// Write the results with [`Outcome::write`].
pub fn run(spec: &ValidSpec, log: &dyn Fn(&str)) -> Result<Outcome> {
    let t = Instant::now();
    let world = World::generate(&spec.world);
    let world_s = t.elapsed().as_secs_f64();
    let sim = simulate(spec, &world, spec.world.seed, &spec.salt, &spec.arms, log)?;
    let Simulated {
        pre_events,
        exp,
        refreshes,
        mut timings,
    } = sim;
    timings.world = world_s;
    log(&format!(
        "experiment: {} days x {} arms, {} impressions observed ({:.1} s simulating, {:.1} s training)",
        spec.days,
        spec.arms.len(),
        exp.events.len(),
        timings.experiment,
        timings.training
    ));
    let t = Instant::now();
    let truth = ground_truth(&world, &exp, &spec.metrics, &spec.comparisons)?;
    timings.truth = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let assignments = exp.assignments(&world);
    let (report, without) = analyse(spec, &pre_events, &exp.events, &assignments, true)?;
    timings.analysis = t.elapsed().as_secs_f64();
    log(&format!(
        "truth ({:.1} s) and analysis ({:.1} s)",
        timings.truth, timings.analysis
    ));
    let mut users: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &assignments.variant {
        *users.entry(v.as_str()).or_default() += 1;
    }
    let summary = Summary {
        name: spec.name.clone(),
        seed: spec.seed,
        users: assignments.len(),
        pre_days: spec.pre_days,
        pre_policy: spec.pre_policy.clone(),
        days: spec.days,
        surface_taste_divergence: spec.world.surface_taste_divergence,
        control: spec.arms[spec.control].name.clone(),
        arms: spec
            .arms
            .iter()
            .map(|a| ArmSummary {
                name: a.name.clone(),
                share: a.share,
                users: users.get(a.name.as_str()).copied().unwrap_or(0),
                recipe: a.recipe.clone(),
            })
            .collect(),
        pre_period_impressions: pre_events.len(),
        experiment_impressions: exp.events.len(),
        refreshes,
        estimates: estimates(&report, &without, &truth),
    };
    Ok(Outcome {
        report,
        report_without_cuped: without,
        truth,
        summary,
        pre_events,
        events: exp.events,
        assignments,
        timings,
    })
}
