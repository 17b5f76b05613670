//! `reelkit ab ...`: A/B analysis.

use std::path::PathBuf;

use anyhow::Context;
use reelkit_abtest::{builtin_metrics, parse_metrics, AnalysisConfig, Correction};

#[derive(Debug, clap::Subcommand)]
pub enum AbCommand {
    /// Analyse an experiment: per-user metrics, SRM, lifts with CIs and p-values;
    /// writes report.json and report.md. Exits 0 whether or not anything is significant.
    Analyze(AnalyzeArgs),
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
    }
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
    let report = reelkit_abtest::analyze(
        &args.events,
        &assignments,
        args.pre_events.as_deref(),
        &metrics,
        &cfg,
    )
    .context("analysing the experiment")?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("notebooks-output").join(&args.experiment));
    reelkit_abtest::write_report(&out, &report)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    print!("{}", reelkit_abtest::markdown(&report));
    eprintln!("report -> {}", out.join("report.json").display());
    Ok(())
}
