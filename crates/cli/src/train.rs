//! `reelkit train`: fit a ranker and write its model file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use reelkit_lab::specs::Specific;
use reelkit_ranker::{tuning::Weighting, Algo, EpochReport, Factors, TrainControl, TrainParams};
use serde_json::json;

use crate::data::{load_source, ColumnArgs, SourceArgs};

/// EASE's default λ.
pub const EASE_REG: f32 = 200.0;

/// Hyper-parameters on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct HyperArgs {
    /// ials, bpr or ease (Steck 2019's closed form, catalogues up to 50,000 items).
    #[arg(long, default_value = "ials")]
    pub algo: Algo,
    /// Embedding dimension [default: 64; ease: 1024, the most dimensions of
    /// its basis, exact up to 1,024 users or items].
    #[arg(long)]
    pub factors: Option<usize>,
    /// Sweeps over the data.
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// L2 regularisation [default: 1; ease: its λ, 200].
    #[arg(long)]
    pub reg: Option<f32>,
    /// iALS confidence scale: c = 1 + alpha * weight.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f32,
    /// iALS conjugate-gradient steps per sweep.
    #[arg(long, default_value_t = 3)]
    pub cg_steps: usize,
    /// iALS frequency-scaled regularisation exponent (0 = off, 1 = Rendle et al. 2022).
    #[arg(long, default_value_t = 0.0)]
    pub reg_exponent: f32,
    /// BPR learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f32,
    /// Seed of initialisation and sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Popularity compensation β: item bias β·s·ln(1 + interactions), s the
    /// RMS score of users' top-100 lists; negative lifts the long tail (tune
    /// learns it). 0 = off.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub pop_bias: f32,
    /// How --weight-col's values become training weights: linear (the weight
    /// itself; iALS's confidence is 1 + alpha·w, and a weight of 0 is no
    /// interaction: such rows are dropped, with a warning saying how many),
    /// log (1 + ln(1 + w): play counts compressed, a rating of 0 still an
    /// interaction) or binary (every row 1).
    #[arg(long, default_value = "linear")]
    pub weights: Weighting,
}

impl HyperArgs {
    pub fn params(&self) -> TrainParams {
        let ease = self.algo == Algo::Ease;
        TrainParams {
            algo: self.algo,
            factors: self.factors.unwrap_or(if ease {
                reelkit_ranker::algorithms::EASE_DIM
            } else {
                64
            }),
            epochs: self.epochs,
            reg: self.reg.unwrap_or(if ease { EASE_REG } else { 1.0 }),
            alpha: self.alpha,
            cg_steps: self.cg_steps,
            reg_exponent: self.reg_exponent,
            learning_rate: self.learning_rate,
            seed: self.seed,
            pop_bias: self.pop_bias,
            ..TrainParams::default()
        }
    }
}

/// Arguments of `reelkit train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub cols: ColumnArgs,
    #[command(flatten)]
    pub hyper: HyperArgs,
    /// Do not fit the value model (ranking stage) on event logs.
    #[arg(long)]
    pub no_value_model: bool,
    /// Event logs: one vector per user and surface (reels, feed, watch),
    /// pulled towards the user's shared taste by each surface's specific
    /// share; `serve` and `recommend` answer a request for a surface with
    /// the user's vector there. iALS only.
    #[arg(long)]
    pub per_surface: bool,
    /// With --per-surface: each surface's specific share φ (0: one taste
    /// everywhere, 1: a taste of the surface's own): `auto` (chosen on the
    /// log's last day, held out), one share (`0.3`) or one per surface
    /// (`reels=0.1,feed=0,watch=0.8`).
    #[arg(long, requires = "per_surface", value_parser = parse_specific)]
    pub specific: Option<Specific>,
    /// With --per-surface: each surface's video share ψ (0: one vector per
    /// video, shared by every surface; 1: a vector of the surface's own),
    /// as --specific: `auto` (the default; chosen from 0, 0.5 and 1 on the
    /// log's last day, held out, keeping 0 unless more is better by over a
    /// standard error), one share, or one per surface. With any ψ above 0
    /// the model file's vectors are wider: one block more per such surface.
    #[arg(long, requires = "per_surface", value_parser = parse_specific)]
    pub item_specific: Option<Specific>,
    /// Model file to write (Arrow IPC).
    #[arg(long)]
    pub out: PathBuf,
}

/// Shares as written (`0.1`, not the f64 nearest the f32 `0.1`).
fn shares(v: &[f32]) -> Vec<f64> {
    v.iter()
        .map(|x| x.to_string().parse().unwrap_or(*x as f64))
        .collect()
}

/// How a share was chosen: the grid and each value's held-out score.
fn choice(c: &reelkit_ranker::per_surface::SpecificChoice) -> serde_json::Value {
    json!({
        "grid": shares(&c.grid),
        "held_out_concordance": c.score,
        "held_out_groups": c.groups,
    })
}

fn parse_specific(text: &str) -> Result<Specific, String> {
    text.parse()
}

/// `reelkit train --events E --per-surface`.
fn run_per_surface(args: &TrainArgs) -> anyhow::Result<()> {
    let Some(path) = &args.source.events else {
        anyhow::bail!("--per-surface needs --events: an event log says on which surface each impression was shown");
    };
    anyhow::ensure!(
        args.hyper.algo == Algo::Ials,
        "--per-surface trains iALS; got --algo {}",
        args.hyper.algo
    );
    let t0 = Instant::now();
    let events = reelkit_logs::read_events(path)
        .with_context(|| format!("reading events {}", path.display()))?;
    let load_s = t0.elapsed().as_secs_f64();
    let params = args.hyper.params();
    let specific = args.specific.clone().unwrap_or_default();
    let item_specific = args.item_specific.clone().unwrap_or_default().for_videos();
    let t1 = Instant::now();
    let fit = reelkit_lab::training::train_surface_on_events(
        &events,
        &params,
        &specific,
        &item_specific,
        &format!("reelkit {} train --per-surface", env!("CARGO_PKG_VERSION")),
    )?;
    let train_s = t1.elapsed().as_secs_f64();
    let mut model = fit.model;
    if args.no_value_model {
        model.meta.value_model = None;
    }
    model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
    let summary = json!({
        "model": args.out,
        "users": model.users.len(),
        "items": model.items.len(),
        "surfaces": model.surfaces.as_ref().map(|s| s.names.clone()),
        "specific": model.meta.specific.as_deref().map(shares),
        "specific_choice": fit.choice.map(|c| choice(&c)),
        "item_specific": model.meta.item_specific.as_deref().map_or(vec![0.0; 3], shares),
        "item_specific_choice": fit.item_choice.map(|c| choice(&c)),
        "dim": model.factors.dim,
        "load_s": load_s,
        "train_s": train_s,
        "value_model_calibration": model.meta.value_model.map(|v| v.calibration),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (flag, input) = args.source.input();
    crate::data::refuse_overwrite("--out", &args.out, &[(flag, Some(input))])?;
    if args.per_surface {
        return run_per_surface(&args);
    }
    let t0 = Instant::now();
    let (trip, events) = load_source(&args.source, &args.cols)?;
    let load_s = t0.elapsed().as_secs_f64();
    let params = args.hyper.params();
    let t1 = Instant::now();
    let pb = crate::progress::bar(params.epochs as u64, "training epochs");
    let mut on_epoch = |r: &EpochReport, _: &Factors| {
        pb.set_position(r.epoch as u64);
        true
    };
    let impressions = events.as_ref().filter(|_| !args.no_value_model);
    let (model, reports) = reelkit_lab::training::train_triplets(
        &trip,
        params,
        args.hyper.weights,
        impressions,
        &mut TrainControl {
            stop: None,
            on_epoch: Some(&mut on_epoch),
        },
        // What made it, not the command line: that could carry file paths or
        // secrets into every copy of the model (the parameters are in `params`).
        format!("reelkit {} train", env!("CARGO_PKG_VERSION")),
    )?;
    pb.finish_and_clear();
    let train_s = t1.elapsed().as_secs_f64();
    model
        .save(&args.out)
        .with_context(|| format!("writing model {}", args.out.display()))?;
    let value_model = model.meta.value_model.clone();
    let summary = json!({
        "model": args.out,
        "users": model.users.len(),
        "items": model.items.len(),
        "interactions": model.item_counts.iter().map(|&c| c as u64).sum::<u64>(),
        "load_s": load_s,
        "train_s": train_s,
        "epochs": reports.iter().map(|r| json!({"epoch": r.epoch, "loss": r.loss, "seconds": r.seconds})).collect::<Vec<_>>(),
        "value_model_calibration": value_model.map(|v| v.calibration),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
