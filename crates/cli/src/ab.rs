//! `reelkit ab ...`: A/B analysis.

use std::path::PathBuf;

use anyhow::Context;
use reelkit_abtest::{builtin_metrics, parse_metrics, AnalysisConfig, Correction};

#[derive(Debug, clap::Subcommand)]
pub enum AbCommand {
    /// Analyse an experiment: per-user metrics, SRM, lifts with CIs and p-values;
    /// writes report.json and report.md. Exits 0 whether or not anything is significant.
    Analyze(AnalyzeArgs),
    /// Sample size, MDE and duration per metric from a pre-period's variance.
    Power(PowerArgs),
    /// Repeated simulated A/A and A/B experiments with known truth: false-positive
    /// rate, coverage of the true effect by the intervals, power, CUPED's gain.
    Calibrate(CalibrateArgs),
}

/// Arguments of `reelkit ab calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Repetitions (each one A/A and one A/B experiment).
    #[arg(long, default_value_t = 400)]
    runs: usize,
    /// Users of the simulated world.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Days of the pre-period (CUPED covariates).
    #[arg(long, default_value_t = 3)]
    pre_days: u32,
    /// Days of each experiment.
    #[arg(long, default_value_t = 4)]
    days: u32,
    /// Treatment of the A/B experiments: ranker (trained once on a separate
    /// pre-period), random, popular or oracle. Control is always popular.
    #[arg(long, default_value = "ranker")]
    treatment: String,
    #[arg(long, default_value_t = 0.5)]
    treatment_share: f64,
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Seed of the world; run r plays with noise seeded from it and r.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory: calibration.{json,md,html}, trials.csv.
    #[arg(long, default_value = "notebooks-output/calibration")]
    out: PathBuf,
}

/// Arguments of `reelkit ab power`.
#[derive(Debug, clap::Args)]
pub struct PowerArgs {
    /// Pre-period events.
    #[arg(long)]
    events: PathBuf,
    /// Metrics TOML; default: the built-in Reels metrics.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Relative minimum detectable effect (0.02 = 2%).
    #[arg(long, default_value_t = 0.02)]
    mde: f64,
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    #[arg(long, default_value_t = 0.8)]
    power: f64,
    /// Share of users in treatment.
    #[arg(long, default_value_t = 0.5)]
    treatment_share: f64,
}

/// Arguments of `reelkit ab analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Experiment-period events (Parquet, CSV or Arrow IPC).
    #[arg(long)]
    events: PathBuf,
    /// `user_id, variant`, one row per user.
    #[arg(long)]
    assignments: PathBuf,
    /// Pre-period events: each metric's CUPED covariate.
    #[arg(long)]
    pre_events: Option<PathBuf>,
    /// Metrics TOML (`[[metric]]` tables); default: the built-in Reels metrics.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Control arm (default `control`, else the first arm by name).
    #[arg(long)]
    control: Option<String>,
    /// Significance level.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Multiple-testing correction across metrics and variants.
    #[arg(long, default_value = "holm")]
    correction: Correction,
    /// Always-valid sequential intervals (GrowthBook's asymptotic confidence sequence).
    #[arg(long)]
    sequential: bool,
    /// Also compute the cumulative lift at the end of each day (one pass over
    /// the events per day): `daily` in report.json, a chart per metric in report.html.
    #[arg(long)]
    daily: bool,
    /// Also break the analysis down by surface (reels, feed, watch) and, with
    /// --pre-events, by new vs returning users.
    #[arg(long)]
    segments: bool,
    /// Tuning N* of the sequential intervals.
    #[arg(long, default_value_t = 5000.0)]
    sequential_n: f64,
    /// Experiment name (report title, default output folder).
    #[arg(long, default_value = "experiment")]
    experiment: String,
    /// Output directory (default notebooks-output/<experiment>/).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cmd: AbCommand) -> anyhow::Result<()> {
    match cmd {
        AbCommand::Analyze(args) => analyze(args),
        AbCommand::Power(args) => power(args),
        AbCommand::Calibrate(args) => calibrate(args),
    }
}

fn load_metrics(path: Option<&std::path::Path>) -> anyhow::Result<Vec<reelkit_abtest::Metric>> {
    Ok(match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading metrics {}", p.display()))?;
            parse_metrics(&text).with_context(|| format!("in metrics {}", p.display()))?
        }
        None => builtin_metrics(),
    })
}

fn power(args: PowerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.mde > 0.0, "--mde must be positive, got {}", args.mde);
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must be in (0, 1)"
    );
    anyhow::ensure!(
        args.power > 0.0 && args.power < 1.0,
        "--power must be in (0, 1)"
    );
    anyhow::ensure!(
        args.treatment_share > 0.0 && args.treatment_share < 1.0,
        "--treatment-share must be in (0, 1)"
    );
    let metrics = load_metrics(args.metrics.as_deref())?;
    let ev = reelkit_logs::read_events(&args.events)
        .with_context(|| format!("reading events {}", args.events.display()))?;
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
    let values = reelkit_abtest::user_values(&args.events, &assignments, None, &metrics)?;
    let sums = values.sums(&vec![0; values.user_id.len()], 1);
    let rows: Vec<reelkit_abtest::PowerRow> = metrics
        .iter()
        .zip(&sums[0])
        .map(|(m, s)| {
            reelkit_abtest::power(
                &m.name,
                m.kind,
                s,
                args.mde,
                args.alpha,
                args.power,
                args.treatment_share,
                users.len() as f64 / days,
            )
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let metrics = match &args.metrics {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading metrics {}", p.display()))?;
            parse_metrics(&text).with_context(|| format!("in metrics {}", p.display()))?
        }
        None => builtin_metrics(),
    };
    let assignments = reelkit_logs::read_assignments(&args.assignments)
        .with_context(|| format!("reading assignments {}", args.assignments.display()))?;
    let cfg = AnalysisConfig {
        experiment: args.experiment.clone(),
        control: args.control.clone(),
        alpha: args.alpha,
        correction: args.correction,
        weights: None,
        sequential: args.sequential.then_some(args.sequential_n),
    };
    let mut report = reelkit_abtest::analyze(
        &args.events,
        &assignments,
        args.pre_events.as_deref(),
        &metrics,
        &cfg,
    )
    .context("analysing the experiment")?;
    if args.daily {
        report.daily = reelkit_abtest::cumulative_lift(
            &args.events,
            &assignments,
            args.pre_events.as_deref(),
            &metrics,
            &cfg,
        )
        .context("computing the cumulative lift by day")?;
    }
    if args.segments {
        report.segments = reelkit_abtest::segments(
            &args.events,
            &assignments,
            args.pre_events.as_deref(),
            &metrics,
            &cfg,
        )
        .context("analysing the segments")?;
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("notebooks-output").join(&args.experiment));
    reelkit_abtest::write_report(&out, &report)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!("{}", reelkit_abtest::markdown(&report));
    eprintln!("report -> {}", out.join("report.json").display());
    Ok(())
}

fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must be in (0, 1)"
    );
    let users = args.users;
    let world = reelkit_sim::SimParams {
        users,
        videos: (users * 5).max(500),
        creators: (users / 2).max(50),
        new_videos_per_day: (users / 13).max(10),
        days: args.pre_days + args.days,
        seed: args.seed,
        ..reelkit_sim::SimParams::default()
    }
    .check()?;
    let cfg = reelkit_cli::calibrate::CalibrateConfig {
        world,
        runs: args.runs,
        pre_days: args.pre_days,
        days: args.days,
        treatment: args.treatment,
        train: reelkit_cli::online::demo_train_params(args.seed),
        treatment_share: args.treatment_share,
        alpha: args.alpha,
    };
    let t0 = std::time::Instant::now();
    let pb = crate::progress::bar(args.runs as u64, "calibration runs");
    let c = reelkit_cli::calibrate::calibrate(&cfg, &|r| pb.set_position(r as u64))?;
    pb.finish_and_clear();
    reelkit_cli::calibrate::write_calibration(&args.out, &c)?;
    print!("{}", reelkit_cli::calibrate::calibration_markdown(&c));
    eprintln!(
        "calibration -> {} in {:.1} s",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
