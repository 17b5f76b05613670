//! `reelkit tune`: hyper-parameter search on a validation split carved from the
//! training data only, then a final fit on all of it with the best setting.
//! The search itself is `reelkit_ranker::tune`; this parses, splits and prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{
    split_by_time, split_random, Algo, Split, TrainParams, TrainingData, Trial, TuneOptions,
};

use crate::data::{load_source, ColumnArgs, SourceArgs, Triplets};
use crate::train::{fit, save_model, training_data};

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
    #[arg(long, default_value_t = 60.0)]
    pub budget: f64,
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

fn write_report(path: &std::path::Path, trials: &[Trial]) -> anyhow::Result<()> {
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
    let col_u = |name: &str, f: &dyn Fn(&Trial) -> usize| {
        Column::new(
            name.into(),
            trials.iter().map(|t| f(t) as u32).collect::<Vec<u32>>(),
        )
    };
    let mut df = DataFrame::new(
        trials.len(),
        vec![
            col_s("stage", &|t| t.stage.to_string()),
            col_s("algo", &|t| t.params.algo.to_string()),
            col_u("factors", &|t| t.params.factors),
            col_f("reg", &|t| t.params.reg as f64),
            col_f("alpha", &|t| t.params.alpha as f64),
            col_f("reg_exponent", &|t| t.params.reg_exponent as f64),
            col_f("learning_rate", &|t| t.params.learning_rate as f64),
            col_u("epochs", &|t| t.params.epochs),
            col_f("pop_bias", &|t| t.params.pop_bias as f64),
            col_f("ndcg", &|t| t.ndcg),
            col_f("recall", &|t| t.recall),
            col_f("hit_rate", &|t| t.hit_rate),
            col_f("map", &|t| t.map),
            col_f("seconds", &|t| t.seconds),
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
    let (trip, events) = load_source(&args.source, &args.cols)?;
    let data = training_data(&trip)?;
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
        k: args.k,
        budget: Duration::from_secs_f64(args.budget),
        seed: args.seed,
        ..TuneOptions::default()
    };
    let pb = crate::progress::spinner("tuning");
    let trials = reelkit_ranker::tune(&split, &opts)?;
    pb.finish_and_clear();
    let best = reelkit_ranker::best(&trials)
        .cloned()
        .context("no setting was evaluated")?;
    let b = &best.params;
    eprintln!(
        "tried {} settings; best on validation: {} factors={} reg={} alpha={} reg_exponent={} lr={} epochs={} pop_bias={} ndcg@{}={:.4}",
        trials.len(), b.algo, b.factors, b.reg, b.alpha, b.reg_exponent, b.learning_rate, b.epochs, b.pop_bias, args.k, best.ndcg
    );
    if let Some(path) = &args.report {
        write_report(path, &trials)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    let params = TrainParams {
        seed: args.seed,
        ..best.params.clone()
    };
    let (factors, _) = fit(&data, params.clone(), false)?;
    save_model("tune", &data, factors, params, events.as_ref(), &args.out)?;
    println!("{}", serde_json::to_string_pretty(&best)?);
    Ok(())
}
