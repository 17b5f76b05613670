//! Off-policy estimation of one candidate on a large log (`reelkit bench ope`).

use std::time::Instant;

use reelkit_assign::splitmix64;
use reelkit_ope::{estimate, Estimator, Log, Options, RewardModel};
use serde_json::json;

/// Arguments of `reelkit bench ope`.
#[derive(Debug, clap::Args)]
pub struct OpeBenchArgs {
    /// Logged impressions.
    #[arg(long, default_value_t = 10_000_000)]
    impressions: usize,
    /// Impressions per user.
    #[arg(long, default_value_t = 10)]
    per_user: usize,
    /// Bootstrap resamples of the users.
    #[arg(long, default_value_t = 500)]
    bootstrap: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn ope(args: OpeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.impressions > 0, "--impressions must be positive");
    anyhow::ensure!(args.per_user > 0, "--per-user must be positive");
    let n = args.impressions;
    // A seeded log: propensities in [0.02, 1], a deterministic candidate that
    // agrees with the logged video a third of the time, rewards and a reward
    // model's predictions around a few seconds of watch time.
    let h = |i: usize, k: u64| splitmix64(args.seed ^ splitmix64((i as u64) << 3 | k));
    let user: Vec<u64> = (0..n).map(|i| (i / args.per_user) as u64).collect();
    let propensity: Vec<f64> = (0..n).map(|i| 0.02 + 0.98 * unit(h(i, 1))).collect();
    let target: Vec<f64> = (0..n).map(|i| (h(i, 2) % 3 == 0) as u8 as f64).collect();
    let reward: Vec<f64> = (0..n).map(|i| 20.0 * unit(h(i, 3))).collect();
    let q_logged: Vec<f64> = reward
        .iter()
        .enumerate()
        .map(|(i, r)| r + unit(h(i, 4)) - 0.5)
        .collect();
    let q_target: Vec<f64> = (0..n).map(|i| 10.0 + unit(h(i, 5))).collect();
    let rss_before = super::peak_rss_mib();
    let log = Log {
        user: &user,
        reward: &reward,
        propensity: &propensity,
        target: &target,
        reward_model: Some(RewardModel {
            logged: &q_logged,
            target: &q_target,
        }),
        session_weight: None,
    };
    // Baseline: one pass over the same columns summing the weighted rewards
    // (what any estimator must at least read).
    let t = Instant::now();
    let plain: f64 = (0..n)
        .map(|i| target[i] / propensity[i] * reward[i])
        .sum::<f64>()
        / (n / args.per_user) as f64;
    let baseline_s = t.elapsed().as_secs_f64();
    let opts = Options {
        bootstrap: args.bootstrap,
        seed: args.seed,
        ..Options::default()
    };
    let t = Instant::now();
    let report = estimate(&log, &Estimator::PER_IMPRESSION, &opts)?;
    let secs = t.elapsed().as_secs_f64();
    let ips = &report.estimates[0];
    anyhow::ensure!(
        (ips.value - plain).abs() <= 1e-9 * plain.abs().max(1.0),
        "IPS {} differs from the plain sum {plain}",
        ips.value
    );
    let out = json!({
        "bench": "ope",
        "impressions": n,
        "users": report.diagnostics.users,
        "estimators": Estimator::PER_IMPRESSION.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "bootstrap": args.bootstrap,
        "threads": rayon::current_num_threads(),
        "seconds": secs,
        "baseline_single_pass_s": baseline_s,
        "vs_single_pass": secs / baseline_s,
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib": super::peak_rss_mib(),
        "ips": ips.value,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
