//! `reelkit simulate`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reelkit_sim::{builtin_policy, SimParams, Simulator, World};

/// Arguments of `reelkit simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// World configuration (TOML; every field optional, see --print-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Days to simulate (overrides the config).
    #[arg(long)]
    days: Option<u32>,
    /// Users (overrides the config).
    #[arg(long)]
    users: Option<usize>,
    /// Initial catalogue size (overrides the config).
    #[arg(long)]
    videos: Option<usize>,
    /// Policy filling the feed: random, popular, oracle, or ranker (needs --model).
    #[arg(long, default_value = "popular")]
    policy: String,
    /// Model file served by the `ranker` policy.
    #[arg(long)]
    model: Option<PathBuf>,
    /// With the `ranker` policy: re-rank with the model's value model.
    #[arg(long)]
    value_model: bool,
    /// With the `ranker` policy: the share of slots given to a random fresh
    /// upload (new videos get a chance, as with `popular`), in [0, 1);
    /// default 0.1. Inserted among the model's videos, they shift the
    /// page: 0 for a log `reelkit ope` can replay the model on.
    #[arg(long)]
    fresh: Option<f64>,
    /// Explore: each slot of each page, with this probability (in (0, 1)),
    /// shows a video drawn uniformly from the eligible ones the user has not
    /// seen instead of the policy's; every impression's exact probability is
    /// written as the events' `propensity` column (for off-policy evaluation).
    #[arg(long, allow_negative_numbers = true)]
    explore: Option<f64>,
    /// With --explore: draw the explored videos from the M the policy would
    /// list after the page instead of from every eligible one, so the log
    /// supports a candidate that ranks them high (weights about M / ε, not
    /// catalogue / ε). At least the page size.
    #[arg(long, value_name = "M", requires = "explore")]
    explore_top: Option<usize>,
    /// Seed of every random process (overrides the config).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory: events.parquet, users.parquet, videos.parquet, world.json.
    #[arg(long, required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Print the documented default configuration and exit.
    #[arg(long)]
    print_config: bool,
}

/// Reads the configuration and applies command-line overrides.
pub fn load_params(
    config: Option<&Path>,
    seed: Option<u64>,
    days: Option<u32>,
    users: Option<usize>,
    videos: Option<usize>,
) -> anyhow::Result<reelkit_sim::ValidSimParams> {
    let mut params = match config {
        Some(path) => {
            let text = reelkit_logs::files::read_text_capped(path, reelkit_logs::files::TEXT_CAP)
                .with_context(|| format!("reading config {}", path.display()))?;
            SimParams::from_toml(&text).with_context(|| format!("in config {}", path.display()))?
        }
        None => SimParams::default(),
    };
    if let Some(s) = seed {
        params.seed = s;
    }
    if let Some(d) = days {
        params.days = d;
    }
    if let Some(u) = users {
        params.users = u;
    }
    if let Some(v) = videos {
        params = params.with_videos(v);
    }
    let params = params.check()?;
    reelkit_lab::limits::ensure_fits(
        &format!(
            "simulating {} users × {} videos × {} days",
            params.users, params.videos, params.days
        ),
        reelkit_lab::limits::simulation_bytes(params.users, params.videos, params.days),
    )?;
    Ok(params)
}

/// A built-in policy, or `ranker` serving a model file as the service
/// answers (each page afresh, the user's seen videos excluded), with a
/// `fresh` share of slots for new uploads as `popular` has.
pub fn make_policy(
    name: &str,
    model: Option<&Path>,
    value_model: bool,
    fresh: Option<f64>,
    world: &World,
) -> anyhow::Result<Box<dyn reelkit_sim::Policy>> {
    if name != "ranker" {
        anyhow::ensure!(model.is_none(), "--model is only used with --policy ranker");
        anyhow::ensure!(fresh.is_none(), "--fresh is only used with --policy ranker");
        return Ok(builtin_policy(name)?);
    }
    let fresh = fresh.unwrap_or(reelkit_sim::policies::DEFAULT_EXPLORE);
    anyhow::ensure!(
        (0.0..1.0).contains(&fresh),
        "--fresh {fresh} is not a share of slots in [0, 1)"
    );
    let path = model.context("--policy ranker needs --model FILE")?;
    let ranker = reelkit_ranker::Ranker::open(path)
        .with_context(|| format!("loading model {}", path.display()))?;
    let policy =
        reelkit_lab::specs::RankerPolicy::new(std::sync::Arc::new(ranker), world, value_model)
            .answering_each_page();
    if fresh == 0.0 {
        return Ok(Box::new(policy));
    }
    Ok(Box::new(reelkit_sim::policies::ExploreFresh::new(
        policy, fresh,
    )))
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", reelkit_sim::DEFAULT_CONFIG);
        return Ok(());
    }
    let out = args.out.context("--out is required")?;
    let params = load_params(
        args.config.as_deref(),
        args.seed,
        args.days,
        args.users,
        args.videos,
    )?;
    let world = World::generate(&params);
    let mut policy = make_policy(
        &args.policy,
        args.model.as_deref(),
        args.value_model,
        args.fresh,
        &world,
    )?;
    if let Some(epsilon) = args.explore {
        policy = match args.explore_top {
            Some(m) => Box::new(reelkit_sim::policies::Explore::within_top(
                policy, epsilon, m,
            )?),
            None => Box::new(reelkit_sim::policies::Explore::new(policy, epsilon)?),
        };
    }
    std::fs::create_dir_all(&out)
        .with_context(|| format!("creating output directory {}", out.display()))?;

    let mut sim = Simulator::new(&world);
    let pb = crate::progress::bar(params.days as u64, "simulating days");
    let events = sim.run(params.days, policy.as_mut(), &|d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let files = reelkit_sim::write_run(&out, &world, &events)
        .with_context(|| format!("writing the run to {}", out.display()))?;
    let sessions: std::collections::HashSet<u64> = events.session_id.iter().copied().collect();
    eprintln!(
        "simulated {} users x {} days with `{}`{}: {} impressions, {} sessions -> {}",
        params.users,
        params.days,
        args.policy,
        args.explore
            .map(|e| match args.explore_top {
                Some(m) => format!(" exploring {e} within its next {m}"),
                None => format!(" exploring {e}"),
            })
            .unwrap_or_default(),
        events.len(),
        sessions.len(),
        files.events.parent().unwrap_or(&out).display()
    );
    Ok(())
}
