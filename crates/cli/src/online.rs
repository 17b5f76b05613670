//! The experiment loop: simulate a pre-period, train the ranker on it, run an
//! online A/B test in the simulator with a known ground truth, analyse it and
//! set every estimate beside the truth (`reelkit demo`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use reelkit_abtest::{
    analyze_sums, builtin_metrics, cumulative_lift, ordered_arm_sums, segments, AnalysisConfig,
    Correction, Metric, MetricRow, Report, TrueLift,
};
use reelkit_logs::{Events, FileSet};
use reelkit_ranker::{
    evaluate, item_counts, popularity_order, recommend_popular, split_by_time, EngagementWeights,
    ItemTable, Metrics, Model, Ranker, TrainControl, TrainParams, TrainingData,
};
use reelkit_sim::{
    builtin_policy, Arms, ExploreFresh, GroundTruth, Policy, Simulator, ValidSimParams, World,
    DEFAULT_EXPLORE,
};
use serde::Serialize;

use crate::RankerPolicy;

/// The arms of an experiment: `control` and `treatment`.
pub const CONTROL: &str = "control";
pub const TREATMENT: &str = "treatment";

/// Hyper-parameters of the ranker trained by the demo (fixed, not tuned, so
/// the demo stays fast; `reelkit tune` finds better ones).
pub fn demo_train_params(seed: u64) -> TrainParams {
    TrainParams {
        factors: 32,
        epochs: 10,
        reg: 10.0,
        alpha: 1.0,
        seed,
        ..TrainParams::default()
    }
}

/// Settings of [`run_demo`].
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub world: ValidSimParams,
    /// Days of the pre-period, everyone on `popular`: training data and the
    /// CUPED covariates.
    pub pre_days: u32,
    /// Days of the experiment.
    pub days: u32,
    /// Experiment salt of the user hashing.
    pub salt: String,
    /// Share of users in treatment.
    pub treatment_share: f64,
    pub train: TrainParams,
    pub alpha: f64,
    /// Cut-off of the offline metrics (NDCG@k, recall@k).
    pub k: usize,
}

/// Offline evaluation of the ranker on a time split of the pre-period.
#[derive(Debug, Clone, Serialize)]
pub struct Offline {
    /// Training days (the pre-period but its last day) and test day.
    pub train_days: u32,
    pub model: Metrics,
    pub popularity: Metrics,
}

/// One metric: the experiment's estimate beside the ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    pub variant: String,
    pub cuped: bool,
    pub estimate_abs: f64,
    pub abs_ci_low: f64,
    pub abs_ci_high: f64,
    pub true_abs: f64,
    pub estimate_rel: f64,
    pub rel_ci_low: f64,
    pub rel_ci_high: f64,
    pub true_rel: f64,
    /// The absolute interval contains the true absolute effect.
    pub covered: bool,
    pub significant: bool,
    /// Width of the absolute interval without CUPED, for comparison.
    pub abs_ci_width_without_cuped: f64,
}

/// `demo.json`: what the demo did and found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub users: usize,
    pub pre_days: u32,
    pub days: u32,
    pub seed: u64,
    pub policies: BTreeMap<String, String>,
    pub pre_period_impressions: usize,
    pub experiment_impressions: usize,
    pub offline: Offline,
    pub comparisons: Vec<Comparison>,
}

/// Everything [`run_demo`] produced.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The analysis with CUPED (written as the report).
    pub report: Report,
    /// The same analysis without CUPED.
    pub report_without_cuped: Report,
    pub truth: GroundTruth,
    pub summary: DemoSummary,
}

/// Trains an iALS ranker on an event log (engagement-weighted), with a value
/// model fitted on the same impressions.
pub fn train_on_events(events: &Events, params: &TrainParams) -> anyhow::Result<Model> {
    let w = EngagementWeights::default();
    let weights = crate::event_weights(events, &w);
    let data = TrainingData::from_triplets(
        &events.user_id,
        &events.video_id,
        Some(&weights),
        w.min_positive,
    )
    .context("building the interaction matrix")?;
    anyhow::ensure!(
        data.matrix.nnz() > 0,
        "no positive interactions to train on"
    );
    let checked = params.clone().check()?;
    let factors = reelkit_ranker::train(&data.matrix, &checked, &mut TrainControl::default())?;
    Ok(crate::build_model(
        &data,
        factors,
        params.clone(),
        Some(events),
        "reelkit demo".into(),
    ))
}

/// NDCG and recall of a ranker trained on all days of `events` but the last,
/// against popularity, on the last day.
pub fn offline_eval(
    world: &World,
    events: &Events,
    days: u32,
    params: &TrainParams,
    k: usize,
) -> anyhow::Result<Offline> {
    anyhow::ensure!(days >= 2, "offline evaluation needs at least 2 days");
    let w = EngagementWeights::default();
    let weights = crate::event_weights(events, &w);
    let cutoff = world.params.start_ts_ms + (days as i64 - 1) * 86_400_000;
    let split = split_by_time(
        &events.user_id,
        &events.video_id,
        &weights,
        &events.ts_ms,
        cutoff,
        w.min_positive,
    )?;
    let f = reelkit_ranker::train(
        &split.train.matrix,
        &params.clone().check()?,
        &mut TrainControl::default(),
    )?;
    let counts = item_counts(&split.train.matrix);
    let table = ItemTable::new(f.dim, &f.items, None);
    let model = evaluate(&split.train.matrix, &split.test, k, &counts, |u, k, ex| {
        table
            .top_k(f.user(u), k, ex)
            .into_iter()
            .map(|s| s.item)
            .collect()
    });
    let order = popularity_order(&counts);
    let popularity = evaluate(&split.train.matrix, &split.test, k, &counts, |_, k, ex| {
        recommend_popular(&order, k, ex)
    });
    Ok(Offline {
        train_days: days - 1,
        model,
        popularity,
    })
}

/// The built-in metrics with CUPED switched off.
fn without_cuped(metrics: &[Metric]) -> Vec<Metric> {
    metrics
        .iter()
        .map(|m| Metric {
            cuped: false,
            ..m.clone()
        })
        .collect()
}

/// Settings of [`analyse`].
#[derive(Debug, Clone)]
pub struct AnalyseOptions {
    pub treatment_share: f64,
    pub alpha: f64,
    pub correction: Correction,
    pub experiment: String,
    /// Also the cumulative lift by day and the segments.
    pub daily: bool,
}

/// Analyses an experiment's files with and without CUPED (one pipeline run),
/// and with `daily` the cumulative lift by day (CUPED).
pub fn analyse(
    events: &Path,
    pre_events: &Path,
    assignments: &reelkit_logs::Assignments,
    opts: &AnalyseOptions,
) -> anyhow::Result<(Report, Report)> {
    let AnalyseOptions {
        treatment_share,
        alpha,
        correction,
        ref experiment,
        daily,
    } = *opts;
    let metrics = builtin_metrics();
    // Per-user values summed in user-id order: the report is bit-for-bit the
    // same whatever the number of threads.
    let sums = ordered_arm_sums(events, assignments, Some(pre_events), &metrics, None)?;
    let cfg = AnalysisConfig {
        experiment: experiment.clone(),
        control: Some(CONTROL.to_string()),
        alpha,
        correction,
        weights: Some(BTreeMap::from([
            (CONTROL.to_string(), 1.0 - treatment_share),
            (TREATMENT.to_string(), treatment_share),
        ])),
        sequential: None,
    };
    let mut with = analyze_sums(&sums, &metrics, &cfg)?;
    let without = analyze_sums(&sums, &without_cuped(&metrics), &cfg)?;
    if daily {
        with.daily = cumulative_lift(events, assignments, Some(pre_events), &metrics, &cfg)?;
        with.segments = segments(events, assignments, Some(pre_events), &metrics, &cfg)?;
    }
    Ok((with, without))
}

/// Every report row beside the true effect of the same (metric, variant).
pub fn compare(report: &Report, without: &Report, truth: &GroundTruth) -> Vec<Comparison> {
    report
        .metrics
        .iter()
        .filter_map(|row: &MetricRow| {
            let t = truth
                .effects
                .iter()
                .find(|e| e.metric == row.metric && e.variant == row.variant)?;
            let plain = without
                .metrics
                .iter()
                .find(|r| r.metric == row.metric && r.variant == row.variant)?;
            let r = &row.test;
            Some(Comparison {
                metric: row.metric.clone(),
                variant: row.variant.clone(),
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
                abs_ci_width_without_cuped: plain.test.abs_ci_high - plain.test.abs_ci_low,
            })
        })
        .collect()
}

/// The Markdown table of estimates beside the truth.
pub fn comparison_markdown(s: &DemoSummary) -> String {
    use std::fmt::Write as _;
    let pct = |x: f64| format!("{:+.2}%", 100.0 * x);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# reelkit demo: `{}` vs `{}`\n\n{} users; {}-day pre-period on `popular`, then a {}-day experiment (seed {}).\n",
        s.policies[TREATMENT], s.policies[CONTROL], s.users, s.pre_days, s.days, s.seed
    );
    let _ = writeln!(
        out,
        "Offline (train on {} days, test on the next): NDCG@{} ranker {:.4} vs popularity {:.4}; recall@{} {:.4} vs {:.4}.\n",
        s.offline.train_days,
        s.offline.model.k,
        s.offline.model.ndcg,
        s.offline.popularity.ndcg,
        s.offline.model.k,
        s.offline.model.recall,
        s.offline.popularity.recall
    );
    let _ = writeln!(
        out,
        "| metric | estimated lift | CI | true lift | truth in CI | significant | CUPED CI width vs plain |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|:-:|:-:|---:|");
    for c in &s.comparisons {
        let width = c.abs_ci_high - c.abs_ci_low;
        let ratio = if c.abs_ci_width_without_cuped > 0.0 {
            format!("{:.2}", width / c.abs_ci_width_without_cuped)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | [{}, {}] | {} | {} | {} | {} |",
            c.metric,
            pct(c.estimate_rel),
            pct(c.rel_ci_low),
            pct(c.rel_ci_high),
            pct(c.true_rel),
            if c.covered { "yes" } else { "**no**" },
            if c.significant { "yes" } else { "no" },
            ratio
        );
    }
    out
}

/// Runs the whole loop and writes everything under `out`: `report.{json,md,html}`
/// (the CUPED analysis), `ground_truth.json`, `demo.json`, `summary.md`, and the
/// data (`data/pre_events.parquet`, `data/events.parquet`,
/// `data/assignments.parquet`, `data/model.arrow`).
pub fn run_demo(cfg: &DemoConfig, out: &Path, log: &dyn Fn(&str)) -> anyhow::Result<DemoOutcome> {
    anyhow::ensure!(cfg.pre_days >= 2, "the pre-period needs at least 2 days");
    anyhow::ensure!(cfg.days >= 1, "the experiment needs at least 1 day");
    anyhow::ensure!(
        cfg.treatment_share > 0.0 && cfg.treatment_share < 1.0,
        "the treatment share must be in (0, 1), got {}",
        cfg.treatment_share
    );
    let t0 = Instant::now();
    let world = World::generate(&cfg.world);
    let mut sim = Simulator::new(&world);
    let mut popular = builtin_policy("popular")?;
    let pre = sim.run(cfg.pre_days, popular.as_mut(), &|_| {})?;
    log(&format!(
        "pre-period: {} users x {} days on `popular`: {} impressions ({:.1} s)",
        world.n_users(),
        cfg.pre_days,
        pre.len(),
        t0.elapsed().as_secs_f64()
    ));

    let t = Instant::now();
    let offline = offline_eval(&world, &pre, cfg.pre_days, &cfg.train, cfg.k)?;
    let model = train_on_events(&pre, &cfg.train)?;
    log(&format!(
        "ranker: NDCG@{} {:.4} vs popularity {:.4} on the pre-period's last day ({:.1} s)",
        cfg.k,
        offline.model.ndcg,
        offline.popularity.ndcg,
        t.elapsed().as_secs_f64()
    ));

    let t = Instant::now();
    let names = vec![CONTROL.to_string(), TREATMENT.to_string()];
    let arms = Arms::hashed(
        &world,
        &names,
        &[1.0 - cfg.treatment_share, cfg.treatment_share],
        &cfg.salt,
    )?;
    let mut control = builtin_policy("popular")?;
    let model_path = out.join("data").join("model.arrow");
    std::fs::create_dir_all(out.join("data"))
        .with_context(|| format!("creating output directory {}", out.display()))?;
    model
        .save(&model_path)
        .with_context(|| format!("writing model {}", model_path.display()))?;
    let ranker = Arc::new(Ranker::from_model(model));
    let mut treatment =
        ExploreFresh::new(RankerPolicy::new(ranker, &world, false), DEFAULT_EXPLORE);
    let exp = sim.run_experiment(
        cfg.days,
        &mut [control.as_mut(), &mut treatment as &mut dyn Policy],
        &arms,
        &|_| {},
    )?;
    let truth = exp.ground_truth(&world, CONTROL)?;
    let assignments = exp.assignments(&world);
    log(&format!(
        "experiment: {} days, {} users, {} impressions, potential outcomes under both arms ({:.1} s)",
        cfg.days,
        assignments.len(),
        exp.events.len(),
        t.elapsed().as_secs_f64()
    ));

    // Data first (the analysis reads files, as `reelkit ab analyze` does).
    let data = out.join("data");
    let (pre_path, events_path, assign_path) = (
        data.join("pre_events.parquet"),
        data.join("events.parquet"),
        data.join("assignments.parquet"),
    );
    let mut set = FileSet::new();
    set.write_frame(&pre_path, &mut pre.to_dataframe()?)?;
    set.write_frame(&events_path, &mut exp.events.to_dataframe()?)?;
    set.write_frame(&assign_path, &mut assignments.to_dataframe()?)?;
    set.commit()
        .with_context(|| format!("writing the data to {}", data.display()))?;

    let t = Instant::now();
    let (report, without) = analyse(
        &events_path,
        &pre_path,
        &assignments,
        &AnalyseOptions {
            treatment_share: cfg.treatment_share,
            alpha: cfg.alpha,
            correction: Correction::Holm,
            experiment: "demo".into(),
            daily: true,
        },
    )?;
    log(&format!(
        "analysis with and without CUPED ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));
    let summary = DemoSummary {
        users: assignments.len(),
        pre_days: cfg.pre_days,
        days: cfg.days,
        seed: cfg.world.seed,
        policies: BTreeMap::from([
            (CONTROL.to_string(), "popular".to_string()),
            (
                TREATMENT.to_string(),
                "ranker (iALS trained on the pre-period)".to_string(),
            ),
        ]),
        pre_period_impressions: pre.len(),
        experiment_impressions: exp.events.len(),
        comparisons: compare(&report, &without, &truth),
        offline,
    };

    let lifts: Vec<TrueLift> = truth
        .effects
        .iter()
        .map(|e| TrueLift {
            metric: e.metric.clone(),
            variant: e.variant.clone(),
            rel_effect: e.rel_effect,
        })
        .collect();
    reelkit_abtest::write_report_with_truth(out, &report, &lifts)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    let mut set = FileSet::new();
    let truth_json = pretty_json(&truth)?;
    let summary_json = pretty_json(&summary)?;
    let md = comparison_markdown(&summary);
    set.write(&out.join("ground_truth.json"), |w| {
        std::io::Write::write_all(w, &truth_json)
    })?;
    set.write(&out.join("demo.json"), |w| {
        std::io::Write::write_all(w, &summary_json)
    })?;
    set.write(&out.join("summary.md"), |w| {
        std::io::Write::write_all(w, md.as_bytes())
    })?;
    set.commit()
        .with_context(|| format!("writing the summary to {}", out.display()))?;
    Ok(DemoOutcome {
        report,
        report_without_cuped: without,
        truth,
        summary,
    })
}

/// Pretty JSON with a final newline.
pub fn pretty_json<T: Serialize>(v: &T) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}
