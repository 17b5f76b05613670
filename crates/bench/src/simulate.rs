//! Simulator throughput, all threads against one (`reelkit bench simulate`).

use std::time::Instant;

use reelkit_sim::{builtin_policy, SimParams, Simulator, World};
use serde_json::json;

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

pub(super) fn simulate(args: SimBenchArgs) -> anyhow::Result<()> {
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
                reelkit_sim::random::splitmix64(h ^ w as u64 ^ v.rotate_left(17))
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
