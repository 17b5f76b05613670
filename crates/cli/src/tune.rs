//! `reelkit tune`: hyper-parameter search on a validation split carved from the
//! training data only, then a final fit on all of it with the best setting.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_ranker::{
    split_by_time, split_random, Algo, EpochReport, Factors, ItemTable, Metrics, Split,
    TrainControl, TrainParams, TrainingData,
};
use serde::Serialize;

use crate::data::{load_source, ColumnArgs, SourceArgs, Triplets};
use crate::train::{fit, save_model, training_data};

/// Arguments of `reelkit tune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub cols: ColumnArgs,
    /// ials or bpr.
    #[arg(long, default_value = "ials")]
    pub algo: Algo,
    /// quick (8 settings) or full (84 for iALS).
    #[arg(long, default_value = "full")]
    pub grid: String,
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

/// One setting tried and its validation metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub algo: String,
    pub factors: usize,
    pub reg: f32,
    pub alpha: f32,
    pub reg_exponent: f32,
    pub learning_rate: f32,
    pub epochs: usize,
    pub ndcg: f64,
    pub recall: f64,
    pub hit_rate: f64,
    pub map: f64,
    pub seconds: f64,
}

/// The settings of a grid; epochs are checkpoints of one run per setting.
fn grid(algo: Algo, name: &str, seed: u64) -> anyhow::Result<(Vec<TrainParams>, Vec<usize>)> {
    let base = TrainParams {
        algo,
        seed,
        ..TrainParams::default()
    };
    let mut out = Vec::new();
    match (algo, name) {
        (Algo::Ials, "quick") => {
            for factors in [32, 64] {
                for reg in [0.1, 1.0] {
                    for alpha in [2.0, 10.0] {
                        out.push(TrainParams {
                            factors,
                            reg,
                            alpha,
                            ..base.clone()
                        });
                    }
                }
            }
            Ok((out, vec![5, 10]))
        }
        (Algo::Ials, "full") => {
            let regs = [
                (0.0, 0.01),
                (0.0, 0.1),
                (0.0, 1.0),
                (0.0, 10.0),
                (1.0, 0.001),
                (1.0, 0.01),
                (1.0, 0.1),
            ];
            for factors in [32, 64, 128] {
                for alpha in [1.0, 4.0, 16.0, 64.0] {
                    for (reg_exponent, reg) in regs {
                        out.push(TrainParams {
                            factors,
                            reg,
                            alpha,
                            reg_exponent,
                            ..base.clone()
                        });
                    }
                }
            }
            Ok((out, vec![5, 10, 20]))
        }
        (Algo::Bpr, "quick") => {
            for factors in [32, 64] {
                for learning_rate in [0.02, 0.1] {
                    out.push(TrainParams {
                        factors,
                        learning_rate,
                        reg: 0.001,
                        ..base.clone()
                    });
                }
            }
            Ok((out, vec![10, 30]))
        }
        (Algo::Bpr, "full") => {
            for factors in [32, 64, 128] {
                for learning_rate in [0.01, 0.05, 0.1] {
                    for reg in [0.0001, 0.001, 0.01] {
                        out.push(TrainParams {
                            factors,
                            learning_rate,
                            reg,
                            ..base.clone()
                        });
                    }
                }
            }
            Ok((out, vec![20, 50, 100]))
        }
        (_, other) => anyhow::bail!("unknown grid `{other}` (expected quick or full)"),
    }
}

/// NDCG and friends of factors on a split's validation part.
pub fn validate(f: &Factors, split: &Split, k: usize) -> Metrics {
    let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let counts = reelkit_ranker::item_counts(&split.train.matrix);
    reelkit_ranker::evaluate_embeddings(
        &table,
        &f.users,
        &split.train.matrix,
        &split.test,
        k,
        &counts,
    )
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
    let mut df = DataFrame::new(
        trials.len(),
        vec![
            Column::new(
                "algo".into(),
                trials.iter().map(|t| t.algo.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "factors".into(),
                trials.iter().map(|t| t.factors as u32).collect::<Vec<_>>(),
            ),
            col_f("reg", &|t| t.reg as f64),
            col_f("alpha", &|t| t.alpha as f64),
            col_f("reg_exponent", &|t| t.reg_exponent as f64),
            col_f("learning_rate", &|t| t.learning_rate as f64),
            Column::new(
                "epochs".into(),
                trials.iter().map(|t| t.epochs as u32).collect::<Vec<_>>(),
            ),
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
    let (settings, checkpoints) = grid(args.algo, &args.grid, args.seed)?;
    let max_epochs = checkpoints.iter().copied().max().unwrap_or(1);
    let pb = crate::progress::bar(settings.len() as u64, "tuning settings");
    let mut trials = Vec::new();
    for base in settings {
        let params = TrainParams {
            epochs: max_epochs,
            ..base
        }
        .check()?;
        let t = Instant::now();
        let mut found = Vec::new();
        let mut cb = |r: &EpochReport, f: &Factors| {
            if checkpoints.contains(&r.epoch) {
                found.push((
                    r.epoch,
                    validate(f, &split, args.k),
                    t.elapsed().as_secs_f64(),
                ));
            }
            true
        };
        reelkit_ranker::train(
            &split.train.matrix,
            &params,
            &mut TrainControl {
                stop: None,
                on_epoch: Some(&mut cb),
            },
        )?;
        for (epochs, m, seconds) in found {
            trials.push(Trial {
                algo: params.algo.to_string(),
                factors: params.factors,
                reg: params.reg,
                alpha: params.alpha,
                reg_exponent: params.reg_exponent,
                learning_rate: params.learning_rate,
                epochs,
                ndcg: m.ndcg,
                recall: m.recall,
                hit_rate: m.hit_rate,
                map: m.map,
                seconds,
            });
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let best = trials
        .iter()
        .max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))
        .cloned()
        .context("no setting was evaluated")?;
    eprintln!(
        "best on validation: {} factors={} reg={} alpha={} reg_exponent={} lr={} epochs={} ndcg@{}={:.4}",
        best.algo, best.factors, best.reg, best.alpha, best.reg_exponent, best.learning_rate, best.epochs, args.k, best.ndcg
    );
    if let Some(path) = &args.report {
        write_report(path, &trials)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    let params = TrainParams {
        algo: args.algo,
        factors: best.factors,
        reg: best.reg,
        alpha: best.alpha,
        reg_exponent: best.reg_exponent,
        learning_rate: best.learning_rate,
        epochs: best.epochs,
        seed: args.seed,
        ..TrainParams::default()
    };
    let (factors, _) = fit(&data, params.clone(), false)?;
    save_model("tune", &data, factors, params, events.as_ref(), &args.out)?;
    println!("{}", serde_json::to_string_pretty(&best)?);
    Ok(())
}
