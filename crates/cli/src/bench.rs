//! `reelkit bench ...`: benchmarks that print one JSON object on stdout.

use std::time::Instant;

use reelkit_sim::{builtin_policy, SimParams, Simulator, World};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Simulator throughput (impressions per second), all threads against one.
    Simulate(SimBenchArgs),
    /// Batch top-K recommendation time for a list of users (model and files
    /// loaded before the clock starts).
    Recommend(RecBenchArgs),
}

/// Arguments of `reelkit bench recommend`.
#[derive(Debug, clap::Args)]
pub struct RecBenchArgs {
    #[arg(long)]
    model: std::path::PathBuf,
    /// Users to recommend for (column user_id).
    #[arg(long)]
    users: std::path::PathBuf,
    /// Interactions to exclude (user_id, item_id).
    #[arg(long)]
    exclude: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 100)]
    k: usize,
}

/// Arguments of `reelkit bench simulate`.
#[derive(Debug, clap::Args)]
pub struct SimBenchArgs {
    #[arg(long, default_value_t = 20_000)]
    users: usize,
    #[arg(long, default_value_t = 50_000)]
    videos: usize,
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long, default_value = "popular")]
    policy: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also time a single-threaded run in the same process as the baseline.
    #[arg(long)]
    single_thread_baseline: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Simulate(args) => simulate(args),
        BenchCommand::Recommend(args) => recommend(args),
    }
}

fn simulate(args: SimBenchArgs) -> anyhow::Result<()> {
    let params = SimParams {
        users: args.users,
        videos: args.videos,
        creators: (args.videos / 10).max(1),
        days: args.days,
        seed: args.seed,
        ..SimParams::default()
    }
    .check()?;
    let t0 = Instant::now();
    let world = World::generate(&params);
    let world_s = t0.elapsed().as_secs_f64();

    let time_run = |world: &World| -> anyhow::Result<(usize, f64, u64)> {
        let mut policy = builtin_policy(&args.policy)?;
        let mut sim = Simulator::new(world);
        let t = Instant::now();
        let events = sim.run(args.days, policy.as_mut(), &|_| {})?;
        let secs = t.elapsed().as_secs_f64();
        // A fingerprint so runs with different thread counts can be compared.
        let fp = events
            .watch_ms
            .iter()
            .zip(&events.video_id)
            .fold(0u64, |h, (&w, &v)| {
                reelkit_sim::splitmix64(h ^ w as u64 ^ v.rotate_left(17))
            });
        Ok((events.len(), secs, fp))
    };
    let threads = rayon::current_num_threads();
    let (impressions, secs, fp) = time_run(&world)?;
    let mut out = json!({
        "bench": "simulate",
        "policy": args.policy,
        "users": args.users,
        "videos": world.videos.len(),
        "days": args.days,
        "threads": threads,
        "world_generation_s": world_s,
        "impressions": impressions,
        "simulate_s": secs,
        "impressions_per_s": impressions as f64 / secs,
        "target_impressions_per_s": 1_000_000,
        "ratio_to_target": impressions as f64 / secs / 1e6,
        "fingerprint": format!("{fp:016x}"),
    });
    if args.single_thread_baseline {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let (n1, secs1, fp1) = pool.install(|| time_run(&world))?;
        anyhow::ensure!(
            n1 == impressions && fp1 == fp,
            "single-threaded run differs from the {threads}-thread run: not deterministic"
        );
        out["single_thread_s"] = json!(secs1);
        out["speedup_vs_single_thread"] = json!(secs1 / secs);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn recommend(args: RecBenchArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use rayon::prelude::*;
    let r = reelkit_ranker::Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let users = reelkit_logs::read_id_column(&args.users, "user_id", &Default::default())
        .with_context(|| format!("reading users {}", args.users.display()))?;
    let m = r.model();
    let mut exclude: Vec<Vec<u32>> = vec![Vec::new(); m.users.len()];
    if let Some(path) = &args.exclude {
        let it = reelkit_logs::read_interactions(path, &Default::default())?;
        for (u, i) in it.user_id.iter().zip(&it.item_id) {
            if let (Some(u), Some(i)) = (m.users.get(*u), m.items.get(*i)) {
                exclude[u as usize].push(i);
            }
        }
        exclude.par_iter_mut().for_each(|e| e.sort_unstable());
    }
    let d = r.dim();
    let idx: Vec<u32> = users.iter().filter_map(|&u| m.users.get(u)).collect();
    let t = Instant::now();
    let total: usize = idx
        .par_iter()
        .map(|&u| {
            let q = &m.user_factors[u as usize * d..(u as usize + 1) * d];
            r.rank(q, args.k, &exclude[u as usize], false).len()
        })
        .sum();
    let secs = t.elapsed().as_secs_f64();
    let out = json!({
        "bench": "recommend",
        "users": idx.len(),
        "k": args.k,
        "items": m.items.len(),
        "dim": d,
        "threads": rayon::current_num_threads(),
        "recommendations": total,
        "seconds": secs,
        "users_per_s": idx.len() as f64 / secs,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
