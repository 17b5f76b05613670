//! `reelkit demo`: the experiment loop end to end on a simulated world.

use std::path::PathBuf;
use std::time::Instant;

use reelkit_cli::online::{comparison_markdown, demo_train_params, run_demo, DemoConfig};
use reelkit_sim::SimParams;

/// How big a world the demo simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// The committed sample's world: 2,000 users, 10,000 videos (about a minute).
    Small,
    /// 20,000 users, 50,000 videos.
    Medium,
}

/// Arguments of `reelkit demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output directory: reports, ground truth, summary and data/.
    #[arg(long, default_value = "notebooks-output/demo")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "small")]
    scale: Scale,
    /// Days of the pre-period (everyone on `popular`): training data and CUPED covariates.
    #[arg(long, default_value_t = 7)]
    pre_days: u32,
    /// Days of the experiment.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Share of users hashed into treatment.
    #[arg(long, default_value_t = 0.5)]
    treatment_share: f64,
    /// Experiment salt of the user hashing.
    #[arg(long, default_value = "reelkit-demo")]
    salt: String,
    /// Seed of the world, the simulation and the training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

/// World parameters of a demo scale (the small one is `datasets/sample/world.toml`).
pub fn scale_params(scale: Scale, seed: u64, days: u32) -> SimParams {
    let base = SimParams {
        seed,
        days,
        ..SimParams::default()
    };
    match scale {
        Scale::Small => SimParams {
            users: 2_000,
            videos: 10_000,
            creators: 1_000,
            new_videos_per_day: 150,
            ..base
        },
        Scale::Medium => SimParams {
            users: 20_000,
            videos: 50_000,
            creators: 5_000,
            new_videos_per_day: 500,
            ..base
        },
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cfg = DemoConfig {
        world: scale_params(args.scale, args.seed, args.pre_days + args.days).check()?,
        pre_days: args.pre_days,
        days: args.days,
        salt: args.salt,
        treatment_share: args.treatment_share,
        train: demo_train_params(args.seed),
        alpha: args.alpha,
        k: 10,
    };
    let outcome = run_demo(&cfg, &args.out, &|msg| eprintln!("{msg}"))?;
    print!("{}", comparison_markdown(&outcome.summary));
    eprintln!(
        "reports -> {} (report.html, report.md, report.json, ground_truth.json, demo.json, summary.md) in {:.1} s",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
