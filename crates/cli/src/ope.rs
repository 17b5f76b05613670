//! `reelkit ope`: what a candidate model would earn on a logged feed, from
//! the log of an exploring policy, before any A/B test.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reelkit_lab::offpolicy::{evaluate_with_weights, OpeSettings, ServedCandidate, Videos};
use reelkit_logs::polars::prelude::DataFrame;
use reelkit_ope::{Estimator, OpeReport, Options};
use reelkit_ranker::{Ranker, Retrieval};

/// Arguments of `reelkit ope`.
#[derive(Debug, clap::Args)]
pub struct OpeArgs {
    /// The log of an exploring policy: an event log with a `propensity`
    /// column (`reelkit simulate --explore`, an experiment arm with
    /// `explore_uniform`, or your own logging).
    #[arg(long)]
    pub events: PathBuf,
    /// The candidate: a model file, replayed as `reelkit serve` would answer
    /// each logged request (its best videos on the request's surface,
    /// none the user had seen earlier in the log).
    #[arg(long)]
    pub model: PathBuf,
    /// Video catalogue (`video_id`, `creator_id`, `format`, and
    /// `upload_ts_ms` when known), as `serve --videos`, e.g. the simulator's
    /// videos.parquet: the candidate then shows only videos eligible on each
    /// surface (reels short, watch long), in the catalogue and uploaded
    /// before the request. Without it, it may choose any video it knows.
    #[arg(long)]
    pub videos: Option<PathBuf>,
    /// Where candidates are retrieved, as `reelkit serve --retrieval`: the
    /// candidate is replayed as the service would answer.
    #[arg(long, value_enum, default_value_t = Retrieval::default())]
    pub retrieval: Retrieval,
    /// Re-rank with the model's value model, as a request with `use_value_model`.
    #[arg(long)]
    pub value_model: bool,
    /// Metrics to estimate, each a column summed over a user's impressions:
    /// watch_ms, liked, shared, commented, followed (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "watch_ms,liked")]
    pub metric: Vec<String>,
    /// Estimators (comma-separated): ips, snips, dr, dm (one impression at
    /// a time) and pdis (per-decision over each session: what the candidate
    /// would do to a session's length too).
    #[arg(long, value_delimiter = ',', default_value = "ips,snips,dr,dm,pdis")]
    pub estimator: Vec<String>,
    /// Impressions per request: the log's positions 0..N are the first page
    /// of a session (the simulator's `behaviour.page_size`, 8).
    #[arg(long, default_value_t = 8)]
    pub page_size: usize,
    /// Bootstrap resamples of the users.
    #[arg(long, default_value_t = 500)]
    pub bootstrap: usize,
    /// Interval level.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Importance weights above this are clipped to it.
    #[arg(long)]
    pub max_weight: Option<f64>,
    /// Seed of the bootstrap and of the reward model's folds.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write impressions.parquet: per logged impression, the
    /// candidate's video at its slot, the propensity, the candidate's
    /// probability and the weight, and per metric the reward and the
    /// cross-fitted reward model's predictions of the logged and the
    /// candidate's video. Every estimate is a sum over these rows; hand them
    /// to another implementation (bench/ope_vs_obp.py) or look for the
    /// impressions that carry the estimate.
    #[arg(long)]
    pub impressions: bool,
    /// Output directory: report.json, report.md, report.html (and
    /// impressions.parquet), all or nothing.
    #[arg(long)]
    pub out: PathBuf,
}

fn open_candidate(args: &OpeArgs) -> anyhow::Result<ServedCandidate> {
    let ranker = Ranker::open(&args.model)
        .with_context(|| format!("reading the candidate {}", args.model.display()))?
        .with_retrieval(args.retrieval);
    let what = || format!("the candidate {}", args.model.display());
    let Some(path) = &args.videos else {
        return ServedCandidate::new(ranker, None, args.value_model).with_context(what);
    };
    let videos = Videos::read(path)?;
    ServedCandidate::new(ranker, Some(videos.as_catalogue()), args.value_model)
        .with_context(|| format!("{} with the catalogue {}", what(), path.display()))
}

pub fn run(args: OpeArgs) -> anyhow::Result<()> {
    crate::data::refuse_overwrite(
        "--out",
        &args.out,
        &[
            ("--events", Some(&args.events)),
            ("--model", Some(&args.model)),
            ("--videos", args.videos.as_deref()),
        ],
    )?;
    anyhow::ensure!(args.page_size > 0, "--page-size must be at least 1");
    let estimators = args
        .estimator
        .iter()
        .map(|e| e.parse::<Estimator>().context("--estimator"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let events = reelkit_logs::read_events(&args.events)?;
    let cand = open_candidate(&args)?;
    let settings = OpeSettings {
        metrics: args.metric.clone(),
        estimators,
        page_size: args.page_size,
        options: Options {
            bootstrap: args.bootstrap,
            level: args.level,
            seed: args.seed,
            max_weight: args.max_weight,
        },
    };
    let (report, weights) = evaluate_with_weights(
        &events,
        &cand,
        &args.events.display().to_string(),
        &args.model.display().to_string(),
        &settings,
    )?;
    let rows = match args.impressions {
        true => Some(weights.to_frame(&events)?),
        false => None,
    };
    write_report(&args.out, &report, rows)?;
    println!("{}", serde_json::to_string_pretty(&summary(&report))?);
    Ok(())
}

/// The command's JSON on stdout: each metric's estimates of the lift.
fn summary(r: &OpeReport) -> serde_json::Value {
    serde_json::json!({
        "candidate": r.candidate,
        "pages": r.pages,
        "agreement": r.agreement,
        "metrics": r.metrics.iter().map(|m| serde_json::json!({
            "metric": m.metric,
            "logged_value": m.report.diagnostics.logged_value,
            "effective_sample_size": m.report.diagnostics.effective_sample_size,
            "estimates": m.report.estimates.iter().map(|e| serde_json::json!({
                "estimator": e.estimator,
                "value": e.value,
                "lift": e.lift,
                "rel_lift": e.rel_lift,
                "rel_lift_ci": e.rel_lift_ci,
            })).collect::<Vec<_>>(),
            "warnings": m.report.diagnostics.warnings,
        })).collect::<Vec<_>>(),
        "notes": r.notes,
    })
}

fn write_report(dir: &Path, r: &OpeReport, rows: Option<DataFrame>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut set = reelkit_logs::files::FileSet::new();
    set.write_bytes(
        &dir.join("report.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    set.write_bytes(&dir.join("report.md"), reelkit_ope::markdown(r).as_bytes())?;
    set.write_bytes(&dir.join("report.html"), reelkit_ope::html(r).as_bytes())?;
    if let Some(mut df) = rows {
        set.write_frame(&dir.join("impressions.parquet"), &mut df)?;
    }
    set.commit()?;
    Ok(())
}
