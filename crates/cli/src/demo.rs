//! `reelkit demo`: the seed's experiment (datasets/experiments/demo.toml).

use std::path::PathBuf;

use reelkit_lab::{specs::parse_value, ExperimentSpec};

/// How big a world the demo simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// The committed sample's world: 2,000 users, 10,000 videos (seconds).
    Small,
    /// 20,000 users, 50,000 videos (a few minutes).
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
    #[arg(long)]
    pre_days: Option<u32>,
    /// Days of the experiment.
    #[arg(long)]
    days: Option<u32>,
    /// Experiment salt of the user hashing.
    #[arg(long)]
    salt: Option<String>,
    /// Seed of the world, the simulation and the training.
    #[arg(long)]
    seed: Option<u64>,
    /// Significance level.
    #[arg(long)]
    alpha: Option<f64>,
}

/// The demo spec with the command line's settings.
pub fn demo_spec(args: &DemoArgs) -> anyhow::Result<ExperimentSpec> {
    let mut spec = reelkit_lab::ExperimentSpec::load(None, &[])?;
    let scale = match args.scale {
        Scale::Small => "small",
        Scale::Medium => "medium",
    };
    spec.set("scale", toml::Value::String(scale.into()))?;
    if let Some(d) = args.pre_days {
        spec.set("pre_period.days", toml::Value::Integer(d.into()))?;
    }
    if let Some(d) = args.days {
        spec.set("experiment.days", toml::Value::Integer(d.into()))?;
    }
    if let Some(s) = &args.salt {
        spec.set("experiment.salt", toml::Value::String(s.clone()))?;
    }
    if let Some(s) = args.seed {
        spec.set("seed", parse_value(&s.to_string()))?;
    }
    if let Some(a) = args.alpha {
        spec.set("analysis.alpha", toml::Value::Float(a))?;
    }
    Ok(spec)
}

pub fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    crate::experiment::run_and_write(&demo_spec(&args)?, &args.out)
}
