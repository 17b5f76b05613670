//! `reelkit ope`: what a candidate model would earn on a logged feed, from
//! the log of an exploring policy, before any A/B test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use reelkit_lab::offpolicy::{ServedCandidate, VideoCatalogue};
use reelkit_logs::Events;
use reelkit_ope::{
    cross_fit_rewards, estimate, replay, session_weights, Estimator, Impressions, Log,
    MetricEstimates, OpeReport, Options,
};
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
    /// Output directory: report.json, report.md, report.html (all or nothing).
    #[arg(long)]
    pub out: PathBuf,
}

/// A metric's reward per impression.
fn rewards(ev: &Events, metric: &str) -> anyhow::Result<Vec<f64>> {
    let flag = |v: &[bool]| v.iter().map(|&b| b as u8 as f64).collect();
    Ok(match metric {
        "watch_ms" => ev.watch_ms.iter().map(|&w| w as f64).collect(),
        "liked" => flag(&ev.liked),
        "shared" => flag(&ev.shared),
        "commented" => flag(&ev.commented),
        "followed" => flag(&ev.followed),
        other => anyhow::bail!(
            "--metric {other:?} is not a column summed over impressions: expected watch_ms, \
             liked, shared, commented or followed"
        ),
    })
}

/// The log's propensities, every impression's present.
fn propensities(ev: &Events, path: &Path) -> anyhow::Result<Vec<f64>> {
    let p = ev.propensity.as_ref().with_context(|| {
        format!(
            "{}: no `propensity` column: off-policy evaluation needs the logging policy's \
             probability of every impression (log with `reelkit simulate --explore`, an arm's \
             `explore_uniform` or `reelkit serve --explore`)",
            path.display()
        )
    })?;
    let missing = p.iter().filter(|x| x.is_nan()).count();
    if let Some(row) = p.iter().position(|x| x.is_nan()) {
        anyhow::bail!(
            "{}: `propensity` is null at {missing} of {} impressions (first at row {row}): \
             every impression needs its logging probability",
            path.display(),
            p.len()
        );
    }
    Ok(p.clone())
}

fn open_candidate(args: &OpeArgs) -> anyhow::Result<ServedCandidate> {
    let ranker = Ranker::open(&args.model)
        .with_context(|| format!("reading the candidate {}", args.model.display()))?
        .with_retrieval(args.retrieval);
    let what = || format!("the candidate {}", args.model.display());
    let Some(path) = &args.videos else {
        return ServedCandidate::new(ranker, None, args.value_model).with_context(what);
    };
    let c = crate::serve::read_catalog(path)?;
    let uploaded = upload_times(path)?;
    let catalogue = VideoCatalogue {
        video_id: &c.video_id,
        creator_id: &c.creator_id,
        long: &c.long,
        upload_ts_ms: uploaded.as_deref(),
    };
    ServedCandidate::new(ranker, Some(catalogue), args.value_model)
        .with_context(|| format!("{} with the catalogue {}", what(), path.display()))
}

/// The catalogue's `upload_ts_ms` column, when it has one.
fn upload_times(path: &Path) -> anyhow::Result<Option<Vec<i64>>> {
    let df = reelkit_logs::read_frame(path)?;
    let Ok(col) = df.column("upload_ts_ms") else {
        return Ok(None);
    };
    let c = col
        .cast(&reelkit_logs::polars::prelude::DataType::Int64)
        .with_context(|| format!("{}: `upload_ts_ms` must be a number", path.display()))?;
    let times = c
        .i64()?
        .iter()
        .enumerate()
        .map(|(row, t)| {
            t.with_context(|| format!("{}: `upload_ts_ms` is null at row {row}", path.display()))
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    Ok(Some(times))
}

/// What the reader must know about how well the candidate knows the log.
fn coverage_notes(ev: &Events, ranker: &Ranker, path: &Path) -> anyhow::Result<Vec<String>> {
    let videos: HashSet<u64> = ev.video_id.iter().copied().collect();
    let known = videos
        .iter()
        .filter(|&&v| ranker.model().items.get(v).is_some())
        .count();
    anyhow::ensure!(
        known > 0,
        "the candidate {} knows none of the log's {} videos: it was trained on another \
         catalogue",
        path.display(),
        videos.len()
    );
    let mut notes = Vec::new();
    if known < videos.len() {
        notes.push(format!(
            "the candidate knows {known} of the log's {} videos ({:.1}%): it never shows the \
             others, so impressions of them weigh 0",
            videos.len(),
            100.0 * known as f64 / videos.len() as f64
        ));
    }
    let users: HashSet<u64> = ev.user_id.iter().copied().collect();
    let unknown = users
        .iter()
        .filter(|&&u| ranker.user_embedding(u).is_none())
        .count();
    if unknown > 0 {
        notes.push(format!(
            "{unknown} of the log's {} users are not in the candidate: it answers them with \
             its most popular videos, as `reelkit serve` would",
            users.len()
        ));
    }
    Ok(notes)
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
    anyhow::ensure!(!estimators.is_empty(), "--estimator names none");
    anyhow::ensure!(!args.metric.is_empty(), "--metric names none");
    let events = reelkit_logs::read_events(&args.events)?;
    let propensity = propensities(&events, &args.events)?;
    let metric_rewards = args
        .metric
        .iter()
        .map(|m| rewards(&events, m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cand = open_candidate(&args)?;
    let ranker = cand.ranker();
    let mut notes = coverage_notes(&events, ranker, &args.model)?;
    if args.videos.is_none() {
        notes.push(
            "no --videos catalogue: the candidate may choose videos not eligible on a surface \
             or not yet uploaded, which the log can never show (they weigh 0)"
                .into(),
        );
    }
    let surface: Vec<u8> = events.surface.iter().map(|s| s.index() as u8).collect();
    let imp = Impressions {
        user: &events.user_id,
        session: &events.session_id,
        ts_ms: &events.ts_ms,
        position: &events.position,
        surface: &surface,
        video: &events.video_id,
    };
    let replayed = replay(&imp, args.page_size, &cand)?;
    let opts = Options {
        bootstrap: args.bootstrap,
        level: args.level,
        seed: args.seed,
        max_weight: args.max_weight,
    };
    let session_weight = estimators
        .contains(&Estimator::Pdis)
        .then(|| session_weights(&imp, &propensity, &replayed.target))
        .transpose()?;
    let mut metrics = Vec::with_capacity(args.metric.len());
    for (name, reward) in args.metric.iter().zip(&metric_rewards) {
        let model = cross_fit_rewards(&imp, reward, &replayed, args.seed)?;
        let log = Log {
            user: &events.user_id,
            reward,
            propensity: &propensity,
            target: &replayed.target,
            reward_model: Some(model.as_model()),
            session_weight: session_weight.as_deref(),
        };
        let report =
            estimate(&log, &estimators, &opts).with_context(|| format!("--metric {name}"))?;
        metrics.push(MetricEstimates {
            metric: name.clone(),
            report,
        });
    }
    let report = OpeReport {
        log: args.events.display().to_string(),
        candidate: args.model.display().to_string(),
        page_size: args.page_size,
        pages: replayed.pages,
        agreement: replayed.agreement(),
        level: args.level,
        bootstrap: args.bootstrap,
        notes,
        metrics,
    };
    write_report(&args.out, &report)?;
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

fn write_report(dir: &Path, r: &OpeReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut set = reelkit_logs::files::FileSet::new();
    set.write_bytes(
        &dir.join("report.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    set.write_bytes(&dir.join("report.md"), reelkit_ope::markdown(r).as_bytes())?;
    set.write_bytes(&dir.join("report.html"), reelkit_ope::html(r).as_bytes())?;
    set.commit()?;
    Ok(())
}
