//! `reelkit ab ...`: A/B analysis.

use std::path::PathBuf;

use anyhow::Context;
use reelkit_abtest::{builtin_metrics, parse_metrics, AnalysisConfig, Correction};

#[derive(Debug, clap::Subcommand)]
pub enum AbCommand {
    /// Analyse an experiment: per-user metrics, SRM, lifts with CIs and p-values;
    /// writes report.json and report.md. Exits 0 whether or not anything is significant.
    Analyze(AnalyzeArgs),
    /// Print the SQL that computes the per-arm sufficient statistics in a
    /// warehouse; `reelkit ab analyze --stats FILE` reads its exported result.
    Sql(SqlArgs),
    /// Sample size, MDE and duration per metric from a pre-period's variance.
    Power(PowerArgs),
    /// Repeated simulated A/A and A/B experiments with known truth: false-positive
    /// rate, coverage of the true effect by the intervals, power, CUPED's gain.
    Calibrate(CalibrateArgs),
    /// Hash users into arms with the server's and the simulator's hash
    /// (salt + user id): writes `user_id, variant`.
    Assign(AssignArgs),
    /// Analyse an interleaving experiment from the server's exposure log:
    /// credit each impression to the ranker that placed the video, test which
    /// ranker users prefer. Writes report.json/md/html.
    Interleave(InterleaveArgs),
}

/// Arguments of `reelkit ab assign`.
#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// Users: a file with a `user_id` column (Parquet, CSV or Arrow IPC), e.g.
    /// the simulator's users.parquet or an export of active users.
    #[arg(long)]
    users: PathBuf,
    /// Arms and shares summing to 1, e.g. control=0.5,treatment=0.5.
    #[arg(long)]
    arms: String,
    /// The experiment's salt (the server's --salt).
    #[arg(long)]
    salt: String,
    /// Output: `user_id, variant` (format by extension).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `reelkit ab interleave`.
#[derive(Debug, clap::Args)]
pub struct InterleaveArgs {
    /// Events (impressions with engagement) of the experiment's users.
    #[arg(long)]
    events: PathBuf,
    /// The server's exposure directory (`reelkit serve --experiment interleave --exposures DIR`).
    #[arg(long)]
    exposures: PathBuf,
    /// Metrics TOML; default: the built-in Reels metrics. Each metric's
    /// numerator is what a team is credited with.
    #[arg(long)]
    metrics: Option<PathBuf>,
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Bootstrap resamples of users.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Experiment name (report title, default output folder).
    #[arg(long, default_value = "interleaving")]
    experiment: String,
    /// Output directory (default notebooks-output/EXPERIMENT/).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `reelkit ab calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Calibrate this experiment spec (its world, periods, arms and metrics);
    /// without it, `popular` against --treatment on a world of --users.
    #[arg(long, conflicts_with_all = ["users", "pre_days", "days", "treatment", "treatment_share", "alpha", "seed"])]
    spec: Option<PathBuf>,
    /// With --spec: set a key of it (KEY=VALUE, as `experiment run --set`).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "spec")]
    set: Vec<String>,
    /// Repetitions (each one A/A and one A/B experiment).
    #[arg(long, default_value_t = 400)]
    runs: usize,
    /// Users of the simulated world [default: 1000].
    #[arg(long)]
    users: Option<usize>,
    /// Days of the pre-period (training data, CUPED covariates) [default: 3].
    #[arg(long)]
    pre_days: Option<u32>,
    /// Days of each experiment [default: 4].
    #[arg(long)]
    days: Option<u32>,
    /// Treatment of the A/B experiments: ranker (iALS trained on the run's
    /// pre-period, frozen), siloed, unified (daily retrained), random, popular
    /// or oracle [default: ranker]. Control is always popular.
    #[arg(long)]
    treatment: Option<String>,
    /// [default: 0.5]
    #[arg(long)]
    treatment_share: Option<f64>,
    /// [default: 0.05]
    #[arg(long)]
    alpha: Option<f64>,
    /// Seed of the world; run r plays with noise seeded from it and r [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory: calibration.{json,md,html}, trials.csv.
    #[arg(long, default_value = "notebooks-output/calibration")]
    out: PathBuf,
}

/// SQL dialects of `reelkit ab sql`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DialectArg {
    Ansi,
    Bigquery,
    Spark,
}

/// Arguments of `reelkit ab sql`.
#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// SQL dialect: identifier quoting and the double type.
    #[arg(long, value_enum, default_value = "ansi")]
    dialect: DialectArg,
    /// Metrics TOML; default: the built-in Reels metrics.
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Experiment-period event table (may be qualified: project.dataset.events).
    #[arg(long, default_value = "events")]
    events_table: String,
    /// Assignment table: `user_id, variant`, one row per user.
    #[arg(long, default_value = "assignments")]
    assignments_table: String,
    /// Pre-period event table: adds the CUPED covariates' sums.
    #[arg(long)]
    pre_events_table: Option<String>,
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
    #[arg(long, required_unless_present = "stats", conflicts_with = "stats")]
    events: Option<PathBuf>,
    /// `user_id, variant`, one row per user.
    #[arg(long, required_unless_present_any = ["stats", "exposures"], conflicts_with_all = ["stats", "exposures"])]
    assignments: Option<PathBuf>,
    /// The server's exposure directory as the assignment: each exposed user
    /// in the arm that served them, entering at their first exposure.
    #[arg(long, conflicts_with = "stats")]
    exposures: Option<PathBuf>,
    /// With --exposures: count only events at or after each user's first
    /// exposure (a triggered analysis); the report states what it removed.
    #[arg(long, requires = "exposures")]
    triggered: bool,
    /// Per-arm sums computed in a warehouse by the query of `reelkit ab sql`
    /// (its result exported as CSV, Parquet or Arrow IPC), instead of
    /// --events and --assignments. Use the same --metrics for both.
    #[arg(long, conflicts_with_all = ["pre_events", "daily", "segments"])]
    stats: Option<PathBuf>,
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
    /// Output directory (default notebooks-output/EXPERIMENT/).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cmd: AbCommand) -> anyhow::Result<()> {
    match cmd {
        AbCommand::Analyze(args) => analyze(args),
        AbCommand::Sql(args) => sql(args),
        AbCommand::Power(args) => power(args),
        AbCommand::Calibrate(args) => calibrate(args),
        AbCommand::Assign(args) => assign(args),
        AbCommand::Interleave(args) => interleave(args),
    }
}

fn assign(args: AssignArgs) -> anyhow::Result<()> {
    crate::data::refuse_overwrite("--out", &args.out, &[("--users", Some(&args.users))])?;
    let split = reelkit_assign::Allocation::parse(&args.arms)
        .with_context(|| format!("--arms {}", args.arms))?;
    let df = reelkit_logs::read_frame(&args.users)
        .with_context(|| format!("reading users {}", args.users.display()))?;
    let col = df.column("user_id").map_err(|_| {
        anyhow::anyhow!(
            "{}: missing column `user_id` (has: {})",
            args.users.display(),
            df.get_column_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let ids = col
        .cast(&reelkit_logs::polars::prelude::DataType::UInt64)
        .with_context(|| {
            format!(
                "{}: `user_id` must be unsigned integers",
                args.users.display()
            )
        })?;
    let mut users = Vec::with_capacity(ids.len());
    for (row, v) in ids.u64()?.iter().enumerate() {
        users.push(v.with_context(|| {
            format!("{}: `user_id` is null at row {row}", args.users.display())
        })?);
    }
    users.sort_unstable();
    users.dedup();
    let variant: Vec<String> = users
        .iter()
        .map(|&u| split.names()[split.arm(&args.salt, u)].clone())
        .collect();
    let assignments = reelkit_logs::Assignments {
        user_id: users,
        variant,
    };
    reelkit_logs::write_assignments(&args.out, &assignments)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut counts = vec![0usize; split.names().len()];
    for v in &assignments.variant {
        if let Some(i) = split.names().iter().position(|n| n == v) {
            counts[i] += 1;
        }
    }
    let shares: Vec<String> = split
        .names()
        .iter()
        .zip(&counts)
        .map(|(n, c)| {
            format!(
                "{n}: {c} ({:.2}%)",
                100.0 * *c as f64 / assignments.len().max(1) as f64
            )
        })
        .collect();
    eprintln!(
        "{} users -> {} ({})",
        assignments.len(),
        args.out.display(),
        shares.join(", ")
    );
    Ok(())
}

fn interleave(args: InterleaveArgs) -> anyhow::Result<()> {
    let metrics = load_metrics(args.metrics.as_deref())?;
    let exposures = reelkit_abtest::exposure::read_exposures(&args.exposures)?;
    for p in &exposures.skipped {
        eprintln!("warning: skipped unfinished exposure file {}", p.display());
    }
    let cfg = reelkit_abtest::interleaving::InterleaveConfig {
        experiment: args.experiment.clone(),
        alpha: args.alpha,
        bootstrap: args.bootstrap,
        seed: args.seed,
    };
    let report = reelkit_abtest::interleaving::interleave(
        &args.events.as_path().into(),
        &exposures,
        &metrics,
        &cfg,
    )
    .context("analysing the interleaving experiment")?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("notebooks-output").join(&args.experiment));
    reelkit_abtest::interleaving::write_interleave_report(&out, &report)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!(
        "{}",
        reelkit_abtest::interleaving::interleave_markdown(&report)
    );
    eprintln!("report -> {}", out.join("report.json").display());
    Ok(())
}

fn load_metrics(path: Option<&std::path::Path>) -> anyhow::Result<Vec<reelkit_abtest::Metric>> {
    Ok(match path {
        Some(p) => {
            let text = reelkit_logs::files::read_text_capped(p, reelkit_logs::files::TEXT_CAP)
                .with_context(|| format!("reading metrics {}", p.display()))?;
            parse_metrics(&text).with_context(|| format!("in metrics {}", p.display()))?
        }
        None => builtin_metrics(),
    })
}

fn power(args: PowerArgs) -> anyhow::Result<()> {
    let metrics = load_metrics(args.metrics.as_deref())?;
    let rows = reelkit_abtest::statistics::pre_period_power(
        &args.events,
        &metrics,
        args.mde,
        args.alpha,
        args.power,
        args.treatment_share,
    )
    .map_err(|e| match e {
        reelkit_abtest::Error::Invalid { what, reason } if what == "events" => {
            anyhow::anyhow!("--events {}: {reason}", args.events.display())
        }
        reelkit_abtest::Error::Invalid { what, reason } => {
            anyhow::anyhow!("--{} {reason}", what.replace('_', "-"))
        }
        other => anyhow::Error::new(other).context("reading events"),
    })?;
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let metrics = load_metrics(args.metrics.as_deref())?;
    let dialect = match args.dialect {
        DialectArg::Ansi => reelkit_abtest::warehouse::Dialect::Ansi,
        DialectArg::Bigquery => reelkit_abtest::warehouse::Dialect::Bigquery,
        DialectArg::Spark => reelkit_abtest::warehouse::Dialect::Spark,
    };
    let tables = reelkit_abtest::warehouse::SqlTables {
        events: args.events_table,
        assignments: args.assignments_table,
        pre_events: args.pre_events_table,
    };
    print!(
        "{}",
        reelkit_abtest::warehouse::warehouse_sql(&metrics, dialect, &tables)?
    );
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.sequential_n.is_finite() && args.sequential_n > 0.0,
        "--sequential-n must be a positive number of users, got {}",
        args.sequential_n
    );
    anyhow::ensure!(
        !args.experiment.is_empty()
            && args.experiment.len() <= 64
            && args
                .experiment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !args.experiment.starts_with('.'),
        "--experiment {:?}: a name of letters, digits, `-`, `_` and `.` (not leading), at most 64 \
         characters: it names the default output folder",
        crate::data::cut(&args.experiment)
    );
    let metrics = load_metrics(args.metrics.as_deref())?;
    let cfg = AnalysisConfig {
        experiment: args.experiment.clone(),
        control: args.control.clone(),
        alpha: args.alpha,
        correction: args.correction,
        weights: None,
        sequential: args.sequential.then_some(args.sequential_n),
        comparisons: Vec::new(),
    };
    let report = match (&args.stats, &args.events, &args.assignments) {
        (Some(stats), _, _) => {
            let sums = reelkit_abtest::warehouse::read_stats(stats, &metrics)
                .with_context(|| format!("reading warehouse sums {}", stats.display()))?;
            reelkit_abtest::analyze_sums(&sums, &metrics, &cfg)
                .context("analysing the experiment")?
        }
        (None, Some(events), Some(assignments)) => {
            let assignments =
                reelkit_logs::read_assignments(assignments).context("reading assignments")?;
            analyze_events(&args, events.as_path().into(), &assignments, &metrics, &cfg)?
        }
        (None, Some(events), None) => match &args.exposures {
            Some(dir) => reelkit_abtest::exposure::analyze_by_exposure(
                events,
                dir,
                args.triggered,
                args.pre_events.as_deref(),
                &metrics,
                &cfg,
                extras(&args),
            )
            .context("analysing the experiment")?,
            None => anyhow::bail!("give --assignments or --exposures with --events"),
        },
        // clap requires --events and --assignments without --stats.
        _ => anyhow::bail!("give --events and --assignments, or --stats"),
    };
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("notebooks-output").join(&args.experiment));
    reelkit_abtest::write_report(&out, &report)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!("{}", reelkit_abtest::markdown(&report));
    eprintln!("report -> {}", out.join("report.json").display());
    Ok(())
}

/// The local pipeline: events and an assignment to a report.
fn analyze_events(
    args: &AnalyzeArgs,
    events: reelkit_abtest::Source,
    assignments: &reelkit_logs::Assignments,
    metrics: &[reelkit_abtest::Metric],
    cfg: &AnalysisConfig,
) -> anyhow::Result<reelkit_abtest::Report> {
    let mut inputs = reelkit_abtest::Inputs::new(events, assignments, metrics);
    if let Some(pre) = &args.pre_events {
        inputs = inputs.with_pre(pre);
    }
    reelkit_abtest::analyze_report(&inputs, cfg, extras(args)).context("analysing the experiment")
}

/// The report's parts besides the decision rows the flags ask for.
fn extras(args: &AnalyzeArgs) -> reelkit_abtest::Extras {
    reelkit_abtest::Extras {
        daily: args.daily,
        segments: args.segments,
    }
}

/// The design of a calibration without --spec, from the flags given.
fn calibration_design(args: &CalibrateArgs) -> anyhow::Result<reelkit_lab::CalibrationDesign> {
    let d = reelkit_lab::CalibrationDesign::default();
    let share = args.treatment_share.unwrap_or(d.treatment_share);
    anyhow::ensure!(
        share > 0.0 && share < 1.0,
        "--treatment-share must be in (0, 1), got {share}"
    );
    Ok(reelkit_lab::CalibrationDesign {
        users: args.users.unwrap_or(d.users),
        treatment: args.treatment.clone().unwrap_or(d.treatment),
        treatment_share: share,
        seed: args.seed.unwrap_or(d.seed),
        pre_days: args.pre_days.unwrap_or(d.pre_days),
        days: args.days.unwrap_or(d.days),
        alpha: args.alpha.unwrap_or(d.alpha),
    })
}

fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(path) => reelkit_lab::ExperimentSpec::load(Some(path), &args.set)?,
        None => calibration_design(&args)?.spec()?,
    };
    let valid = spec.check()?;
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let (w, (pre, days)) = (valid.world(), valid.days());
    reelkit_lab::limits::ensure_fits(
        &format!("--runs {} of {} users", args.runs, w.users),
        // Every run's estimates are kept (a few hundred bytes each); a run's
        // world is played under each arm, on both cores.
        args.runs as f64 * 512.0
            + reelkit_lab::limits::simulation_bytes(w.users, w.videos, pre + days)
                * (valid.arms().len() as f64 + 1.0)
                * 2.0,
    )?;
    let t0 = std::time::Instant::now();
    let pb = crate::progress::bar(args.runs as u64, "calibration runs");
    let c = reelkit_lab::calibrate(&valid, args.runs, &|r| pb.set_position(r as u64))?;
    pb.finish_and_clear();
    reelkit_lab::write_calibration(&args.out, &c)?;
    print!("{}", reelkit_lab::calibration_markdown(&c));
    eprintln!(
        "calibration -> {} in {:.1} s",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
