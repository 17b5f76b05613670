//! `reelkit tune`: hyper-parameter search on a validation split carved from the
//! training data only, then a final fit on all of it with the best setting.
//! The search itself is `reelkit_ranker::tune`; this parses, splits and prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{
    split_by_time, split_random, Algo, Split, TrainingData, Trial, TuneOptions, Weighting,
};

use crate::data::{load_source, ColumnArgs, SourceArgs, Triplets};
use crate::train::save_model;

/// Arguments of `reelkit tune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub cols: ColumnArgs,
    /// auto (EASE and iALS, the better on validation), ials, ease or bpr.
    #[arg(long, default_value = "auto")]
    pub algo: String,
    /// Seconds for the whole search: a setting starts only if it and the
    /// final fit are expected (from earlier settings' times) to end within it.
    #[arg(long, default_value_t = 80.0)]
    pub budget: f64,
    /// How --weight-col's values become training weights: auto (binary and
    /// log, chosen on validation), binary, log or linear (see `train
    /// --weights`). Data without a weight column is binary.
    #[arg(long, default_value = "auto")]
    pub weights: String,
    /// Metric cut-off: the search maximises NDCG@k.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Share of each user's training interactions held out for validation
    /// (interactions; event logs are split by time at the same quantile).
    #[arg(long, default_value_t = 0.2)]
    pub validation: f64,
    /// Seed of the split and of training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Model file written with the best setting, trained on all the data.
    #[arg(long)]
    pub out: PathBuf,
    /// Table of every setting tried (.json, .csv or .parquet).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn carve(
    t: &Triplets,
    data: &TrainingData,
    validation: f64,
    seed: u64,
    by_time: bool,
) -> anyhow::Result<Split> {
    match (&t.ts, by_time) {
        (Some(ts), true) => {
            let mut sorted = ts.clone();
            sorted.sort_unstable();
            let cut =
                sorted[((sorted.len() as f64) * (1.0 - validation)) as usize].max(sorted[0] + 1);
            Ok(split_by_time(
                &t.user_id,
                &t.item_id,
                &t.weight,
                ts,
                cut,
                t.min_weight,
            )?)
        }
        _ => Ok(split_random(data, validation, seed)),
    }
}

fn write_report(path: &std::path::Path, trials: &[Trial], chosen: &Trial) -> anyhow::Result<()> {
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text = serde_json::to_vec_pretty(trials)?;
        reelkit_logs::write_bytes_atomically(path, &text)?;
        return Ok(());
    }
    let col_f = |name: &str, f: &dyn Fn(&Trial) -> f64| {
        Column::new(name.into(), trials.iter().map(f).collect::<Vec<f64>>())
    };
    let col_s = |name: &str, f: &dyn Fn(&Trial) -> String| {
        Column::new(name.into(), trials.iter().map(f).collect::<Vec<String>>())
    };
    let mut df = DataFrame::new(
        trials.len(),
        vec![
            col_s("stage", &|t| t.stage.to_string()),
            col_s("model", &|t| t.candidate.kind().to_string()),
            col_s("algo", &|t| t.candidate.kind().to_string()),
            col_s("setting", &|t| t.describe()),
            col_s("weights", &|t| t.weighting.as_str().to_string()),
            col_f("pop_bias", &|t| t.pop_bias as f64),
            col_f("ndcg", &|t| t.ndcg),
            col_f("ndcg_se", &|t| t.ndcg_se),
            col_f("recall", &|t| t.recall),
            col_f("hit_rate", &|t| t.hit_rate),
            col_f("map", &|t| t.map),
            col_f("seconds", &|t| t.seconds),
            col_s("chosen", &|t| {
                (t.describe() == chosen.describe() && t.stage == chosen.stage).to_string()
            }),
        ],
    )?;
    reelkit_logs::write_frame(path, &mut df)?;
    Ok(())
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    let (flag, input) = args.source.input();
    crate::data::refuse_overwrite("--out", &args.out, &[(flag, Some(input))])?;
    if let Some(report) = &args.report {
        crate::data::refuse_overwrite("--report", report, &[(flag, Some(input))])?;
    }
    anyhow::ensure!(
        args.validation > 0.0 && args.validation < 1.0,
        "--validation must be in (0, 1), got {}",
        args.validation
    );
    let (mut trip, events) = load_source(&args.source, &args.cols)?;
    let weightings = match (args.weights.as_str(), trip.weighted) {
        (_, false) => vec![Weighting::Binary],
        ("auto", true) => vec![Weighting::Log, Weighting::Binary],
        (one, true) => vec![one
            .parse::<Weighting>()
            .context("--weights must be auto, binary, log or linear")?],
    };
    // The tuner turns raw weights into training weights itself, so a weight
    // of 0 (a rating-less interaction) must stay an entry: stored as the
    // smallest positive weight, which `linear` still reads as nearly none.
    const ZERO: f32 = 1e-6;
    trip.weight.iter_mut().for_each(|w| *w = w.max(ZERO));
    let data = crate::train::training_data(&trip)?;
    let split = carve(&trip, &data, args.validation, args.seed, events.is_some())?;
    let algos = match args.algo.as_str() {
        "auto" => vec![Algo::Ease, Algo::Ials],
        one => vec![one
            .parse::<Algo>()
            .context("--algo must be auto, ials, ease or bpr")?],
    };
    anyhow::ensure!(
        args.budget.is_finite() && args.budget >= 0.0,
        "--budget must be a number of seconds, got {}",
        args.budget
    );
    let opts = TuneOptions {
        algos,
        weightings,
        k: args.k,
        budget: Duration::from_secs_f64(args.budget),
        seed: args.seed,
        ..TuneOptions::default()
    };
    let pb = crate::progress::spinner("tuning");
    let trials = reelkit_ranker::tune(&split, &opts)?;
    pb.finish_and_clear();
    let best = reelkit_ranker::choose(&trials)
        .cloned()
        .context("no setting was evaluated")?;
    eprintln!(
        "tried {} settings; chosen on validation: {}, ndcg@{}={:.4} ± {:.4}",
        trials.len(),
        best.describe(),
        args.k,
        best.ndcg,
        best.ndcg_se
    );
    if let Some(path) = &args.report {
        write_report(path, &trials, &best)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    let factors = reelkit_ranker::fit_trial(&best, &data.matrix, &opts)?;
    let mut params = best.candidate.params(args.seed);
    params.pop_bias = best.pop_bias;
    save_model(
        "tune",
        &data,
        factors,
        params,
        events.as_ref(),
        (&trip.user_keys, &trip.item_keys),
        &args.out,
    )?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "chosen": best.describe(),
            "model": best.candidate.kind(),
            "algo": best.candidate.params(args.seed).algo,
            "candidate": best.candidate,
            "weighting": best.weighting,
            "pop_bias": best.pop_bias,
            "ndcg": best.ndcg,
            "ndcg_se": best.ndcg_se,
            "recall": best.recall,
            "settings_tried": trials.len(),
        }))?
    );
    Ok(())
}
