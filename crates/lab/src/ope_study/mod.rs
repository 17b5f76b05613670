//! Off-policy estimates held against the truth (`reelkit experiment ope`).
//!
//! Each run plays the spec's world with everyone served by an exploring
//! logging policy (the spec's `logger` arm, mixed page by page with the
//! candidates: [`mixture`]), and plays every user under each candidate alone
//! and under the logger's own ranker alone (potential outcomes with common
//! random numbers, as an experiment's ground truth). Every estimator then
//! estimates each candidate's relative lift in watch time per user over the
//! logging policy from the log alone, and the truth is the ratio of the
//! candidate's potential watch time to the logging policy's. Over the runs:
//! bias, RMSE, how often the interval covers the truth, and how often the
//! estimates order the candidates as the truth does.
//!
//! A candidate is a ranker fixed for the experiment (`retrain = "never"`,
//! or a built-in recipe): a log can only be replayed through a model that
//! exists when it is read, not through the models a daily-retrained arm
//! would have trained on its own traffic. How a candidate answers the log's
//! requests ([`Replaying`]) and what the logging policy's coin is thrown for
//! ([`LoggingUnit`]) are the design's two choices; the study shows what each
//! costs in bias and in interval width.
//!
//! What it found on the demo's world (BENCHMARKS.md, `notebooks-output/ope/`):
//! the slot-level estimators are unbiased only where a ranker does not change
//! how long sessions last and how often users come back (the world's
//! `behaviour.continue_slope` and `behaviour.retention_sensitivity` at 0);
//! with them, a ranker's watch time per user moves mostly through that
//! volume, which no slot's weight sees, and only a coin per user (an A/B
//! test with small candidate shares) is unbiased.

use std::collections::HashMap;

use reelkit_logs::Events;
use reelkit_ope::{cross_fit_rewards, estimate, Estimator, Log, Options, Replay};
use reelkit_sim::{assignment::Arms, random::splitmix64, Policy, Simulator, World};
use serde::Serialize;

use crate::calibrate::par_runs;
use crate::error::{Error, Result};
use crate::ope_run::{impressions, surface_indices};
use crate::recipe::{Recipe, Retrain};
use crate::run::{play_pre_period, ArmPolicy};
use crate::spec::ValidSpec;

mod adjusted;
mod mixture;
mod output;
#[cfg(test)]
mod tests;

use mixture::{EachPage, Mixture, Page};
pub use mixture::{LoggingUnit, Replaying};
pub use output::{ope_study_markdown, write_ope_study};

/// The logging policy's name in a study.
const LOGGING: &str = "logging";

/// How a study logs and estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct OpeDesign {
    /// The arm whose ranker the logging policy shows with probability
    /// `1 − explore` (default: the spec's control).
    pub logger: Option<String>,
    /// The arms estimated from the log (default: every arm).
    pub candidates: Vec<String>,
    /// The share of pages (or of the `unit`s) the logging policy gives to a
    /// candidate, drawn uniformly, in (0, 1).
    pub explore: f64,
    /// What the logging policy's coin chooses a member for.
    pub unit: LoggingUnit,
    /// What history the candidates answer the log's requests from.
    pub replay: Replaying,
    /// Repetitions (each with its own behavioural noise and training).
    pub runs: usize,
    /// Bootstrap resamples of the users per estimate.
    pub bootstrap: usize,
    /// Two-sided interval level.
    pub level: f64,
}

impl Default for OpeDesign {
    fn default() -> Self {
        OpeDesign {
            logger: None,
            candidates: Vec::new(),
            explore: 0.3,
            unit: LoggingUnit::Page,
            replay: Replaying::Own,
            runs: 100,
            bootstrap: 200,
            level: 0.95,
        }
    }
}

/// One estimate of one candidate in one run, beside its truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeTrial {
    /// The run.
    pub run: usize,
    /// The candidate.
    pub candidate: String,
    /// The estimator: reelkit-ope's (`ips`, `snips`, `dr`, `dm`, `pdis`), or
    /// `ips-cuped` with a coin per user.
    pub estimator: String,
    /// Estimated relative lift of watch time per user over the logging policy.
    pub estimate: f64,
    /// Its interval.
    pub ci: [f64; 2],
    /// The true relative lift (potential outcomes).
    pub truth: f64,
    /// Kish's effective sample size of the candidate's weights, as a share of
    /// the log's impressions.
    pub ess_share: f64,
    /// The candidate's mean importance weight: 1 in expectation, since the
    /// logging policy gives every candidate's choice a positive probability.
    pub mean_weight: f64,
    /// Its standard error over users.
    pub mean_weight_se: f64,
}

/// An estimator's record on one candidate (or on all, `candidate = "all"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeRates {
    /// The estimator: reelkit-ope's (`ips`, `snips`, `dr`, `dm`, `pdis`), or
    /// `ips-cuped` with a coin per user.
    pub estimator: String,
    /// The candidate, or `all`.
    pub candidate: String,
    /// Trials.
    pub trials: usize,
    /// Mean true relative lift.
    pub mean_truth: f64,
    /// Mean estimate.
    pub mean_estimate: f64,
    /// Mean of estimate − truth.
    pub bias: f64,
    /// Its standard error over the trials.
    pub bias_se: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Share of intervals covering the truth.
    pub coverage: f64,
    /// Mean interval half-width.
    pub mean_half_width: f64,
}

/// How often an estimator ordered the candidates as the truth did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeOrdering {
    /// The estimator: reelkit-ope's (`ips`, `snips`, `dr`, `dm`, `pdis`), or
    /// `ips-cuped` with a coin per user.
    pub estimator: String,
    /// Runs whose estimates put every pair of candidates in the true order.
    pub runs_in_true_order: usize,
    /// Their share.
    pub share: f64,
    /// Whether coverage ≥ 90% on every candidate, |bias| ≤ a third of the
    /// mean half-width on every candidate, and the order right in ≥ 90% of
    /// runs.
    pub meets_bar: bool,
}

/// `ope_study.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeStudy {
    /// The spec's name.
    pub name: String,
    /// Users of the world.
    pub users: usize,
    /// Pre-period and experiment days.
    pub pre_days: u32,
    /// Experiment days (the log's).
    pub days: u32,
    /// The world's taste divergence.
    pub surface_taste_divergence: f64,
    /// The logger's arm.
    pub logger: String,
    /// The candidates.
    pub candidates: Vec<String>,
    /// The share of pages (or units) explored.
    pub explore: f64,
    /// What the logging policy's coin chooses a member for.
    pub unit: LoggingUnit,
    /// What history the candidates answer the log's requests from.
    pub replay: Replaying,
    /// Runs.
    pub runs: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Interval level.
    pub level: f64,
    /// The logging policy's true relative lift in watch time per user over
    /// its ranker alone, per run: what exploring costs.
    pub logging_cost: Vec<f64>,
    /// Logged impressions per run (mean).
    pub impressions: f64,
    /// Per estimator and candidate, then per estimator over all candidates.
    pub rates: Vec<OpeRates>,
    /// Per estimator.
    pub ordering: Vec<OpeOrdering>,
    /// Every estimate.
    pub trials: Vec<OpeTrial>,
    /// How the truth and the estimates are defined.
    pub definition: String,
}

/// The design's arms as spec indices: the logger's, then the candidates'.
fn resolve(spec: &ValidSpec, d: &OpeDesign) -> Result<(usize, Vec<usize>)> {
    let find = |key: &str, name: &str| {
        spec.arms
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = spec.arms.iter().map(|a| a.name.as_str()).collect();
                Error::spec(
                    key,
                    format!("no arm named `{name}` (arms: {})", names.join(", ")),
                )
            })
    };
    let logger = match &d.logger {
        Some(l) => find("logger", l)?,
        None => spec.control,
    };
    let mut candidates = Vec::new();
    if d.candidates.is_empty() {
        candidates.extend(0..spec.arms.len());
    }
    for c in &d.candidates {
        let i = find("candidates", c)?;
        if candidates.contains(&i) {
            return Err(Error::spec("candidates", format!("`{c}` is named twice")));
        }
        candidates.push(i);
    }
    if !(d.explore > 0.0 && d.explore < 1.0) {
        return Err(Error::spec(
            "explore",
            format!(
                "the share of pages explored must be in (0, 1), got {}",
                d.explore
            ),
        ));
    }
    if d.runs == 0 {
        return Err(Error::spec("runs", "must be at least 1, got 0"));
    }
    if d.bootstrap < 20 {
        return Err(Error::spec(
            "bootstrap",
            format!(
                "at least 20 resamples make an interval, got {}",
                d.bootstrap
            ),
        ));
    }
    if !(d.level > 0.5 && d.level < 1.0) {
        return Err(Error::spec(
            "level",
            format!("the interval level must be in (0.5, 1), got {}", d.level),
        ));
    }
    for &c in &candidates {
        let arm = &spec.arms[c];
        if let Recipe::Siloed(t) | Recipe::Unified(t) = &arm.recipe {
            if t.retrain != Retrain::Never {
                return Err(Error::spec(
                    format!("arms.{}.retrain", arm.name),
                    "a candidate of an off-policy study is a ranker fixed while the log is \
                     written (a daily-retrained arm's later models exist only on its own \
                     traffic): set retrain = \"never\" (--set arms.NAME.retrain=never)",
                ));
            }
        }
    }
    Ok((logger, candidates))
}

/// The regression-adjusted estimator of a coin per user.
const CUPED: &str = "ips-cuped";

/// The estimators a logging unit supports: with a coin per page, the
/// slot-level ones and PDIS over whole pages; with a coin per larger unit,
/// the unit's own weight on every row (IPS is then Horvitz–Thompson over
/// units, SNIPS its ratio form); with a coin per user, also `ips-cuped`.
fn estimators(unit: LoggingUnit) -> &'static [Estimator] {
    match unit {
        LoggingUnit::Page => &Estimator::ALL,
        _ => &[Estimator::Ips, Estimator::Snips],
    }
}

/// Every estimator's name a study of `unit` reports, in order.
fn estimator_names(unit: LoggingUnit) -> Vec<&'static str> {
    let mut names: Vec<&str> = estimators(unit).iter().map(|e| e.as_str()).collect();
    if unit == LoggingUnit::User {
        names.push(CUPED);
    }
    names
}

/// With a coin per user, each user of the experiment's population: watch
/// time in the log and in the pre-period, and the member that served them.
fn per_user_table(
    world: &World,
    exp: &reelkit_sim::Experiment,
    pre_days: &[Events],
    mix: &Mixture,
    mix_at: usize,
) -> Option<adjusted::Users> {
    mix.member_of_user(0)?;
    let pop = exp.population(world);
    let row: HashMap<u64, usize> = pop
        .iter()
        .enumerate()
        .map(|(r, &u)| (world.users.id[u], r))
        .collect();
    let mut y = vec![0.0; pop.len()];
    let mut x = vec![0.0; pop.len()];
    for (sums, logs) in [
        (&mut y, std::slice::from_ref(&exp.potential[mix_at])),
        (&mut x, pre_days),
    ] {
        for ev in logs {
            for (u, &w) in ev.user_id.iter().zip(&ev.watch_ms) {
                if let Some(&r) = row.get(u) {
                    sums[r] += w as f64;
                }
            }
        }
    }
    let member = pop.iter().filter_map(|&u| mix.member_of_user(u)).collect();
    Some(adjusted::Users { y, x, member })
}

/// What one run measured.
struct RunOutcome {
    trials: Vec<OpeTrial>,
    logging_cost: f64,
    impressions: usize,
}

/// Σ watch time of a log.
fn watch(ev: &Events) -> f64 {
    ev.watch_ms.iter().map(|&w| w as f64).sum()
}

/// The log's rows joined to the pages that showed them.
struct Joined {
    /// Each row's slot propensity.
    propensity: Vec<f64>,
    /// `answers[c][row]`: candidate `c`'s answer at the row's slot
    /// (`u32::MAX`: none).
    answers: Vec<Vec<u32>>,
    /// Each row's page.
    page: Vec<u32>,
}

/// The log's rows with their propensity, page and each candidate's answer
/// at the row's slot.
fn join(log: &Events, pages: &[Page], candidates: usize) -> Result<Joined> {
    let mut at: HashMap<(u64, u32), (u32, u8)> = HashMap::with_capacity(log.len());
    for (p, page) in pages.iter().enumerate() {
        for j in 0..page.shown.len() {
            at.insert(
                (page.session, page.position + j as u32),
                (p as u32, j as u8),
            );
        }
    }
    let mut propensity = Vec::with_capacity(log.len());
    let mut answers = vec![Vec::with_capacity(log.len()); candidates];
    let mut row_page = Vec::with_capacity(log.len());
    for i in 0..log.len() {
        let &(p, j) = at
            .get(&(log.session_id[i], log.position[i]))
            .ok_or_else(|| {
                Error::Input(format!(
                    "the logging policy has no page for impression {i} (session {}, position {})",
                    log.session_id[i], log.position[i]
                ))
            })?;
        let page = &pages[p as usize];
        propensity.push(page.propensity[j as usize]);
        row_page.push(p);
        for (c, a) in answers.iter_mut().enumerate() {
            a.push(page.answers[c][j as usize]);
        }
    }
    Ok(Joined {
        propensity,
        answers,
        page: row_page,
    })
}

/// Per-decision weights of whole pages for candidate `c`: each row's is the
/// product, over its session's pages up to and including its own, of
/// `[the candidate's page = the page shown] / π₀(page)`. (The product over
/// slots instead would weigh a page of `K` slots `(K / ε)^K`.)
fn page_session_weights(log: &Events, joined: &Joined, pages: &[Page], c: usize) -> Vec<f64> {
    let mut rows: Vec<usize> = (0..log.len()).collect();
    rows.sort_by_key(|&i| (log.session_id[i], log.position[i]));
    let mut weight = vec![0.0; log.len()];
    let (mut session, mut page, mut w) = (u64::MAX, u32::MAX, 1.0);
    for i in rows {
        if log.session_id[i] != session {
            (session, page, w) = (log.session_id[i], u32::MAX, 1.0);
        }
        if joined.page[i] != page {
            page = joined.page[i];
            let p = &pages[page as usize];
            let same = p.answers[c].len() == p.shown.len() && p.answers[c] == p.shown;
            w *= if same { 1.0 / p.page_propensity } else { 0.0 };
        }
        weight[i] = w;
    }
    weight
}

/// One run: the log, the truth and every estimate.
fn one_run(
    spec: &ValidSpec,
    d: &OpeDesign,
    world: &World,
    (logger, candidates): (usize, &[usize]),
    run: usize,
) -> Result<RunOutcome> {
    let seed = splitmix64(spec.world.seed.wrapping_add(run as u64));
    let mut sim = Simulator::new(world).with_seed(seed);
    let pre_days = play_pre_period(spec, &mut sim)?;
    // The arms played alone: the candidates and the logger's ranker.
    let mut alone: Vec<usize> = candidates.to_vec();
    if !alone.contains(&logger) {
        alone.push(logger);
    }
    let arm = |i: usize| ArmPolicy::new(&spec.arms[i].name, &spec.arms[i]);
    let mut arms: Vec<EachPage> = alone
        .iter()
        .map(|&i| arm(i).map(|p| EachPage(p, d.replay)))
        .collect::<Result<_>>()?;
    let mut mix = Mixture::new(
        LOGGING,
        arm(logger)?,
        candidates.iter().map(|&i| arm(i)).collect::<Result<_>>()?,
        d.explore,
        d.unit,
        splitmix64(seed ^ 0x0E1A),
        d.replay,
    );
    let mut names: Vec<String> = alone.iter().map(|&i| spec.arms[i].name.clone()).collect();
    names.push(LOGGING.to_string());
    // Everyone is served by the logging policy (the others' tiny shares
    // only make them arms whose potential outcomes are played).
    let mut weights = vec![1e-9; alone.len()];
    weights.push(1.0);
    let split = Arms::hashed(world, &names, &weights, &format!("ope-{run}"))?;
    let mix_at = alone.len();
    let base_at = alone.iter().position(|&i| i == logger).unwrap_or(0);
    let mut exp = sim.start_experiment(&split)?;
    for _ in 0..spec.days {
        let today = exp.day();
        let judge: Vec<&Events> = pre_days.iter().chain(exp.potential(base_at)).collect();
        for (a, p) in arms.iter_mut().enumerate() {
            if let Some(t) = p.0.trained() {
                let own: Vec<&Events> = pre_days.iter().chain(exp.potential(a)).collect();
                t.refresh(world, &own, &judge, today)?;
            }
        }
        let logged: Vec<&Events> = pre_days.iter().chain(exp.potential(mix_at)).collect();
        for m in mix.members_mut() {
            if let Some(t) = m.trained() {
                t.refresh(world, &logged, &judge, today)?;
            }
        }
        let mut refs: Vec<&mut dyn Policy> =
            arms.iter_mut().map(|p| p as &mut dyn Policy).collect();
        refs.push(&mut mix);
        exp.step(&mut refs)?;
    }
    let exp = exp.finish();
    let pages = mix.take_pages();
    let log = &exp.potential[mix_at];
    let joined = join(log, &pages, candidates.len())?;
    let (propensity, answers) = (&joined.propensity, &joined.answers);
    let reward: Vec<f64> = log.watch_ms.iter().map(|&w| w as f64).collect();
    let surface = surface_indices(log);
    let imp = impressions(log, &surface);
    let logged_watch = watch(log);
    let opts = Options {
        bootstrap: d.bootstrap,
        level: d.level,
        seed,
        max_weight: None,
    };
    let ids = &world.videos.id;
    let mut trials = Vec::new();
    let per_user = per_user_table(world, &exp, &pre_days, &mix, mix_at);
    let k = candidates.len() as f64;
    for (c, &cand) in candidates.iter().enumerate() {
        let report = if d.unit == LoggingUnit::Page {
            let target: Vec<f64> = answers[c]
                .iter()
                .zip(&log.video_id)
                .map(|(&a, &v)| f64::from(a != u32::MAX && ids[a as usize] == v))
                .collect();
            let choice: Vec<Option<u64>> = answers[c]
                .iter()
                .map(|&a| (a != u32::MAX).then(|| ids[a as usize]))
                .collect();
            let replayed = Replay {
                choice,
                target,
                pages: pages.len(),
            };
            let model = cross_fit_rewards(&imp, &reward, &replayed, seed)?;
            let sw = page_session_weights(log, &joined, &pages, c);
            estimate(
                &Log {
                    user: &log.user_id,
                    reward: &reward,
                    propensity,
                    target: &replayed.target,
                    reward_model: Some(model.as_model()),
                    session_weight: Some(&sw),
                },
                estimators(d.unit),
                &opts,
            )?
        } else {
            // One coin per unit: a row's weight is its unit's, the
            // candidate's indicator over the member's probability.
            let chosen = |i: usize| pages[joined.page[i] as usize].chosen;
            let unit_p: Vec<f64> = (0..log.len())
                .map(|i| {
                    if chosen(i) == 0 {
                        1.0 - d.explore
                    } else {
                        d.explore / k
                    }
                })
                .collect();
            let target: Vec<f64> = (0..log.len())
                .map(|i| f64::from(chosen(i) == c + 1))
                .collect();
            estimate(
                &Log {
                    user: &log.user_id,
                    reward: &reward,
                    propensity: &unit_p,
                    target: &target,
                    reward_model: None,
                    session_weight: None,
                },
                estimators(d.unit),
                &opts,
            )?
        };
        let at = alone.iter().position(|&i| i == cand).unwrap_or(0);
        let truth = watch(&exp.potential[at]) / logged_watch - 1.0;
        let ess_share = report.diagnostics.effective_sample_size / log.len().max(1) as f64;
        let mean_weight = report.diagnostics.mean_weight;
        let mean_weight_se = report.diagnostics.mean_weight_se;
        let trial = |estimator: &str, estimate: f64, ci: [f64; 2]| OpeTrial {
            run,
            candidate: spec.arms[cand].name.clone(),
            estimator: estimator.to_string(),
            estimate,
            ci,
            truth,
            ess_share,
            mean_weight,
            mean_weight_se,
        };
        for e in &report.estimates {
            trials.push(trial(e.estimator.as_str(), e.rel_lift, e.rel_lift_ci));
        }
        if let Some(users) = &per_user {
            let (estimate, ci) = adjusted::cuped_lift(users, c + 1, d.bootstrap, d.level, seed);
            trials.push(trial(CUPED, estimate, ci));
        }
    }
    Ok(RunOutcome {
        trials,
        logging_cost: logged_watch / watch(&exp.potential[base_at]) - 1.0,
        impressions: log.len(),
    })
}

/// Rates of a set of trials.
fn rates(estimator: &str, candidate: &str, ts: &[&OpeTrial]) -> OpeRates {
    let n = ts.len().max(1) as f64;
    let mean = |f: &dyn Fn(&OpeTrial) -> f64| ts.iter().map(|t| f(t)).sum::<f64>() / n;
    let bias = mean(&|t| t.estimate - t.truth);
    let var = ts
        .iter()
        .map(|t| (t.estimate - t.truth - bias).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    OpeRates {
        estimator: estimator.to_string(),
        candidate: candidate.to_string(),
        trials: ts.len(),
        mean_truth: mean(&|t| t.truth),
        mean_estimate: mean(&|t| t.estimate),
        bias,
        bias_se: (var / n).sqrt(),
        rmse: mean(&|t| (t.estimate - t.truth).powi(2)).sqrt(),
        coverage: mean(&|t| f64::from(t.ci[0] <= t.truth && t.truth <= t.ci[1])),
        mean_half_width: mean(&|t| (t.ci[1] - t.ci[0]) / 2.0),
    }
}

/// Whether the estimates of one run and estimator order every pair of
/// candidates as their truths do.
fn in_true_order(ts: &[&OpeTrial]) -> bool {
    ts.iter().all(|a| {
        ts.iter()
            .all(|b| a.truth <= b.truth || a.estimate > b.estimate)
    })
}

/// Runs the study (see the module's text); `progress` receives the number
/// of runs done. Runs go in parallel and are kept in run order: the result
/// does not depend on the thread count. Refused before any run: a logger or
/// candidate that is not an arm, a daily-retrained candidate, an exploration
/// share outside (0, 1), no run, fewer than 20 resamples, a level outside
/// (0.5, 1).
pub fn ope_study(
    spec: &ValidSpec,
    design: &OpeDesign,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<OpeStudy> {
    let (logger, candidates) = resolve(spec, design)?;
    let world = World::generate(&spec.world);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = par_runs(design.runs, |run| {
        let out = one_run(spec, design, &world, (logger, &candidates), run)?;
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        Ok(out)
    })?;
    let mut trials = Vec::new();
    let mut logging_cost = Vec::new();
    let mut impressions = 0.0;
    for o in outcomes {
        trials.extend(o.trials);
        logging_cost.push(o.logging_cost);
        impressions += o.impressions as f64 / design.runs as f64;
    }
    let names: Vec<String> = candidates
        .iter()
        .map(|&c| spec.arms[c].name.clone())
        .collect();
    let mut all_rates = Vec::new();
    let mut ordering = Vec::new();
    for e in estimator_names(design.unit) {
        let of_e: Vec<&OpeTrial> = trials.iter().filter(|t| t.estimator == e).collect();
        let mut per: Vec<OpeRates> = names
            .iter()
            .map(|c| {
                let ts: Vec<&OpeTrial> =
                    of_e.iter().copied().filter(|t| &t.candidate == c).collect();
                rates(e, c, &ts)
            })
            .collect();
        let right = (0..design.runs)
            .filter(|&r| {
                let ts: Vec<&OpeTrial> = of_e.iter().copied().filter(|t| t.run == r).collect();
                in_true_order(&ts)
            })
            .count();
        let share = right as f64 / design.runs as f64;
        let meets_bar = share >= 0.9
            && per
                .iter()
                .all(|r| r.coverage >= 0.9 && r.bias.abs() <= r.mean_half_width / 3.0);
        ordering.push(OpeOrdering {
            estimator: e.to_string(),
            runs_in_true_order: right,
            share,
            meets_bar,
        });
        all_rates.append(&mut per);
        all_rates.push(rates(e, "all", &of_e));
    }
    Ok(OpeStudy {
        name: spec.name.clone(),
        users: spec.world.users,
        pre_days: spec.pre_days,
        days: spec.days,
        surface_taste_divergence: spec.world.surface_taste_divergence,
        logger: spec.arms[logger].name.clone(),
        candidates: names,
        explore: design.explore,
        unit: design.unit,
        replay: design.replay,
        runs: design.runs,
        bootstrap: design.bootstrap,
        level: design.level,
        logging_cost,
        impressions,
        rates: all_rates,
        ordering,
        trials,
        definition: format!(
            "Everyone is served by the logging policy: for each {unit} the `{logger}` arm's \
             answers with probability {keep}, else one candidate's, drawn uniformly \
             (propensities exact given the members' answers). Candidates answer the log's \
             requests from {history}. Truth: Σ watch time of every user played under the \
             candidate alone over Σ under the logging policy, minus 1 (common random \
             numbers). Estimate: the estimator's relative lift of watch time per user over \
             the log's, from the log alone; intervals: {level}% percentile bootstrap over users.",
            unit = design.unit.as_str(),
            logger = spec.arms[logger].name,
            keep = 1.0 - design.explore,
            history = match design.replay {
                Replaying::Own =>
                    "their own history (each walks its list and remembers what it \
                                   offered, as it would serving alone; the truth plays the arms \
                                   as an experiment does)",
                Replaying::Log =>
                    "the log's history (every page afresh, as `reelkit ope` replays \
                                   a served model; the truth plays each arm answering every page \
                                   that way)",
            },
            level = 100.0 * design.level,
        ),
    })
}
