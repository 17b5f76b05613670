//! A/B analysis end to end against bare polars group-bys (`reelkit bench ab`).

use std::time::Instant;

use serde_json::json;

use super::*;

/// Arguments of `reelkit bench ab`.
#[derive(Debug, clap::Args)]
pub struct AbBenchArgs {
    /// Impressions in the synthetic log (ignored with --events).
    #[arg(long, default_value_t = 50_000_000)]
    impressions: usize,
    /// Users in the synthetic log.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Use this event file instead of a synthetic one.
    #[arg(long)]
    events: Option<std::path::PathBuf>,
    /// Where to write the synthetic file (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Internal: run one phase in this (fresh) process and print its JSON.
    #[arg(long, hide = true, value_parser = ["groupby", "same", "analyze"])]
    phase: Option<String>,
    /// Internal: the assignments file the analyze phase reads.
    #[arg(long, hide = true)]
    assignments: Option<std::path::PathBuf>,
}

/// A synthetic impression log written in chunks (no simulator: pure speed).
pub(super) fn synthetic_events(path: &std::path::Path, n: usize, users: u64) -> anyhow::Result<()> {
    use reelkit_logs::{Event, Events, Surface};
    let mut rng = reelkit_sim::random::Rng::new(7);
    let mut ev = Events::with_capacity(n);
    for i in 0..n {
        let u = rng.below(users);
        let d = 3_000 + rng.below(60_000) as u32;
        ev.push(&Event {
            user_id: u,
            session_id: u * 64 + rng.below(16),
            ts_ms: 1_767_571_200_000 + rng.below(14 * 86_400_000) as i64,
            video_id: rng.below(1_000_000),
            creator_id: rng.below(50_000),
            surface: Surface::ALL[i % 3],
            position: rng.below(50) as u32,
            duration_ms: d,
            watch_ms: (d as f64 * rng.f64() * 1.3) as u32,
            liked: rng.bernoulli(0.05),
            shared: rng.bernoulli(0.01),
            commented: rng.bernoulli(0.005),
            followed: rng.bernoulli(0.002),
        });
    }
    reelkit_logs::write_events(path, &ev)?;
    Ok(())
}

/// `reelkit bench ab`: each phase runs in its own fresh process (this binary
/// with `--phase`), so its peak RSS is its own and not what an earlier phase
/// left in the allocator; the phases run one after another in the same run.
pub(super) fn ab(args: AbBenchArgs) -> anyhow::Result<()> {
    if let Some(phase) = &args.phase {
        return ab_phase(phase, &args);
    }
    if args.events.is_none() {
        reelkit_lab::limits::ensure_fits(
            &format!("--impressions {}", args.impressions),
            // The generated columns, then the file written from them.
            args.impressions as f64 * 64.0 * 2.0,
        )?;
    }
    let tmp = tempfile_dir(args.dir.as_deref())?;
    let path = match &args.events {
        Some(p) => p.clone(),
        None => {
            let p = tmp.join("bench_events.parquet");
            let t = Instant::now();
            synthetic_events(&p, args.impressions, args.users)?;
            eprintln!(
                "wrote {} impressions in {:.1}s",
                args.impressions,
                t.elapsed().as_secs_f64()
            );
            p
        }
    };
    let assignments = tmp.join("bench_assignments.parquet");
    let exe = std::env::current_exe()?;
    let phase = |name: &str| -> anyhow::Result<serde_json::Value> {
        let out = std::process::Command::new(&exe)
            .args(["bench", "ab", "--phase", name, "--events"])
            .arg(&path)
            .arg("--assignments")
            .arg(&assignments)
            .stderr(std::process::Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "bench phase {name} failed");
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    // The bare group-by writes the assignments (every user with events, split
    // by a hash) that the analysis reads.
    let groupby = phase("groupby")?;
    let analyze = phase("analyze")?;
    let same = phase("same")?;
    let secs = |v: &serde_json::Value| v["seconds"].as_f64().unwrap_or(f64::NAN);
    let peak = |v: &serde_json::Value| v["peak_rss_mib"].as_f64();
    anyhow::ensure!(
        same["users"] == analyze["users_with_events"],
        "baselines disagree on users: {} vs {}",
        same["users"],
        analyze["users_with_events"]
    );
    let out = json!({
        "bench": "ab",
        "file": path,
        "file_mib": std::fs::metadata(&path).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0),
        "users": analyze["users"],
        "metrics": analyze["metrics"],
        "rows": analyze["rows"],
        "baseline_groupby_s": secs(&groupby),
        "analyze_s": secs(&analyze),
        "ratio_to_baseline": secs(&analyze) / secs(&groupby),
        "same_aggregations_groupby_s": secs(&same),
        "ratio_to_same_aggregations": secs(&analyze) / secs(&same),
        "target_ratio_to_same_aggregations": 1.0,
        "peak_rss_mib_baseline_groupby": peak(&groupby),
        "peak_rss_mib_analyze": peak(&analyze),
        "peak_rss_mib_same_aggregations_groupby": peak(&same),
        "peak_rss_ratio_analyze_to_same_aggregations":
            peak(&analyze).zip(peak(&same)).map(|(a, b)| a / b),
        "target_peak_rss_mib_analyze": 2048,
        "peak_rss": "VmHWM of each phase's own process (the analysis's includes reading the assignments)",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// One phase of `bench ab` in this process; prints `{seconds, peak_rss_mib, ...}`.
pub(super) fn ab_phase(phase: &str, args: &AbBenchArgs) -> anyhow::Result<()> {
    use reelkit_logs::polars::prelude::*;
    let path = args
        .events
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--phase needs --events"))?;
    let assignments_path = args
        .assignments
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--phase needs --assignments"))?;
    let metrics = reelkit_abtest::builtin_metrics();
    let out = match phase {
        "groupby" => {
            // The barest per-user group-by (one sum of one column).
            let t = Instant::now();
            let base = reelkit_abtest::per_user::scan(&path)?
                .group_by([col("user_id")])
                .agg([col("watch_ms").cast(DataType::Float64).sum()])
                .collect_with_engine(Engine::Streaming)?
                .unwrap_single();
            let seconds = t.elapsed().as_secs_f64();
            let peak = peak_rss_mib();
            let users = base
                .column("user_id")?
                .as_materialized_series()
                .cast(&DataType::UInt64)?;
            let mut user_ids: Vec<u64> = users.u64()?.iter().flatten().collect();
            user_ids.sort_unstable();
            let a = reelkit_logs::Assignments {
                variant: user_ids
                    .iter()
                    .map(|&u| {
                        if reelkit_sim::random::splitmix64(u).is_multiple_of(2) {
                            "control"
                        } else {
                            "treatment"
                        }
                        .to_string()
                    })
                    .collect(),
                user_id: user_ids,
            };
            reelkit_logs::write_assignments(&assignments_path, &a)?;
            json!({"seconds": seconds, "peak_rss_mib": peak, "users": a.len()})
        }
        "same" => {
            // The same per-user aggregations of every metric as one bare
            // polars group-by (no join, no per-arm sums, no statistics).
            let t = Instant::now();
            let same = reelkit_abtest::per_user::per_user_values(
                &reelkit_abtest::Source::from(&path),
                &metrics,
            )?
            .collect_with_engine(Engine::Streaming)?
            .unwrap_single();
            json!({"seconds": t.elapsed().as_secs_f64(), "peak_rss_mib": peak_rss_mib(), "users": same.height()})
        }
        _ => {
            // The whole analysis: per-user values of the ten metrics joined
            // to the assignments, sums in user order, statistics, decisions.
            let a = reelkit_logs::read_assignments(&assignments_path)?;
            let cfg = reelkit_abtest::AnalysisConfig {
                experiment: "bench".into(),
                ..Default::default()
            };
            let t = Instant::now();
            let report =
                reelkit_abtest::analyze(&reelkit_abtest::Inputs::new(&path, &a, &metrics), &cfg)?;
            json!({
                "seconds": t.elapsed().as_secs_f64(),
                "peak_rss_mib": peak_rss_mib(),
                "users": a.len(),
                "users_with_events": report.srm.counts.values().sum::<u64>(),
                "metrics": metrics.len(),
                "rows": report.metrics.len(),
            })
        }
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
