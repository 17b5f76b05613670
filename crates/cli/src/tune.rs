//! `reelkit tune`: hyper-parameter search on a validation split carved from the
//! training data only, then a final fit on all of it with the best setting.
//! The search is `reelkit_lab::training::tune_triplets` (shared with the Python
//! package); this parses, prints and writes.

use std::path::PathBuf;

use anyhow::Context;
use reelkit_lab::training::TuneSetup;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{
    tuning::{Trial, Weighting},
    Algo,
};

use crate::data::{load_source, ColumnArgs, SourceArgs};

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
    /// Seconds for the whole search, counted as modeled work on a reference
    /// 2-core machine (so the settings tried and the choice do not depend on
    /// this machine's load or thread count): a setting starts only if it and
    /// the final fit are modeled to end within it. The wall clock stops new
    /// settings at twice the budget plus 30 s (warned).
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

fn write_report(path: &std::path::Path, trials: &[Trial], chosen: &Trial) -> anyhow::Result<()> {
    if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let text = serde_json::to_vec_pretty(trials)?;
        reelkit_logs::files::write_bytes_atomically(path, &text)?;
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
            col_f("work", &|t| t.work),
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
        let same = |a: &std::path::Path, b: &std::path::Path| {
            std::path::absolute(a).ok() == std::path::absolute(b).ok()
        };
        anyhow::ensure!(
            !same(report, &args.out),
            "--report {} is the same file as --out: the model would be lost under the report",
            report.display()
        );
    }
    let (trip, events) = load_source(&args.source, &args.cols)?;
    let weightings = match args.weights.as_str() {
        "auto" => None,
        one => Some(vec![one
            .parse::<Weighting>()
            .context("--weights must be auto, binary, log or linear")?]),
    };
    let algos = match args.algo.as_str() {
        "auto" => vec![Algo::Ease, Algo::Ials],
        one => vec![one
            .parse::<Algo>()
            .context("--algo must be auto, ials, ease or bpr")?],
    };
    let budget =
        reelkit_lab::training::tune_budget(args.budget).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let setup = TuneSetup {
        algos,
        weightings,
        k: args.k,
        budget,
        validation: args.validation,
        seed: args.seed,
    };
    let pb = crate::progress::spinner("tuning");
    let tuned = reelkit_lab::training::tune_triplets(
        trip,
        events.as_ref(),
        &setup,
        format!("reelkit {} tune", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| match e {
        reelkit_lab::Error::Input(m) if m.starts_with("validation") => {
            anyhow::anyhow!("--{m}")
        }
        other => other.into(),
    })?;
    pb.finish_and_clear();
    let (trials, best) = (&tuned.trials, &tuned.best);
    eprintln!(
        "tried {} settings; chosen on validation ({} users): {}, ndcg@{}={:.4} ± {:.4}",
        trials.len(),
        best.judged_users(),
        best.describe(),
        args.k,
        best.ndcg,
        best.ndcg_se
    );
    if let Some(path) = &args.report {
        write_report(path, trials, best)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    tuned
        .model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
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
            "judged_users": best.judged_users(),
            "recall": best.recall,
            "settings_tried": trials.len(),
        }))?
    );
    Ok(())
}
