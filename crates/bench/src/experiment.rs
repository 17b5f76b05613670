//! An experiment spec end to end, phase by phase (`reelkit bench experiment`).

use std::time::Instant;

use reelkit_sim::{builtin_policy, Simulator, World};
use serde_json::json;

/// Arguments of `reelkit bench experiment`.
#[derive(Debug, clap::Args)]
pub struct ExperimentBenchArgs {
    /// The spec (default: datasets/experiments/demo.toml, built in).
    #[arg(long)]
    spec: Option<std::path::PathBuf>,
    /// Set a key of the spec, e.g. --set scale=medium.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Report every trained arm's fit time as a ratio to this arm's (e.g.
    /// `shared` in datasets/experiments/divergence.toml), fitted in the same run.
    #[arg(long)]
    fit_baseline: Option<String>,
}

pub(super) fn experiment(args: ExperimentBenchArgs) -> anyhow::Result<()> {
    let spec = reelkit_lab::ExperimentSpec::load(args.spec.as_deref(), &args.set)?;
    let valid = spec.check()?;
    if let Some(base) = &args.fit_baseline {
        let trained: Vec<&str> = valid
            .arms()
            .iter()
            .filter(|a| a.recipe.trained().is_some())
            .map(|a| a.name.as_str())
            .collect();
        if !trained.contains(&base.as_str()) {
            anyhow::bail!(
                "--fit-baseline {base}: the spec has no trained arm of that name (trained arms: {})",
                trained.join(", ")
            );
        }
    }
    let t = Instant::now();
    let outcome = reelkit_lab::run(&valid, &|_| {})?;
    let run_s = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    outcome.write(dir.path(), &spec.to_toml())?;
    let write_s = t.elapsed().as_secs_f64();
    // Baseline: the same world and days with everyone on `popular`, no
    // counterfactual plays, no training, no analysis.
    let t = Instant::now();
    let world = World::generate(valid.world());
    let (pre, days) = valid.days();
    let mut popular = builtin_policy("popular")?;
    let base = Simulator::new(&world).run(pre + days, popular.as_mut(), &|_| {})?;
    let baseline_s = t.elapsed().as_secs_f64();
    let tm = &outcome.timings;
    let mut by_arm: std::collections::BTreeMap<&str, (usize, reelkit_lab::outcomes::FitTime)> =
        Default::default();
    for r in &tm.refreshes {
        let e = by_arm.entry(r.refresh.arm.as_str()).or_default();
        e.0 += 1;
        e.1.data += r.parts.data;
        e.1.train += r.parts.train;
        e.1.fold_in += r.parts.fold_in;
        e.1.heads += r.parts.heads;
        e.1.choose += r.parts.choose;
    }
    let fit_ratios = match &args.fit_baseline {
        None => None,
        Some(base) => {
            let b = by_arm
                .get(base.as_str())
                .map(|x| x.1.total())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--fit-baseline {base}: no trained arm of that name (trained arms: {})",
                        by_arm.keys().copied().collect::<Vec<_>>().join(", ")
                    )
                })?;
            Some(
                by_arm
                    .iter()
                    .map(|(a, (_, t))| (a.to_string(), t.total() / b.max(1e-9)))
                    .collect::<std::collections::BTreeMap<String, f64>>(),
            )
        }
    };
    let total = run_s + write_s;
    let out = json!({
        "bench": "experiment",
        "spec": valid.name(),
        "users": outcome.summary.users,
        "arms": valid.arms().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        "pre_days": pre,
        "days": days,
        "threads": rayon::current_num_threads(),
        "impressions_observed": outcome.events.len(),
        "total_s": total,
        "phases_s": {
            "world": tm.world,
            "pre_period": tm.pre_period,
            "experiment_simulation": tm.experiment,
            "training": tm.training,
            "truth": tm.truth,
            "analysis": tm.analysis,
            "writing": write_s,
        },
        "fits_by_arm": by_arm
            .iter()
            .map(|(a, (n, t))| json!({"arm": a, "fits": n, "seconds": t.total(), "parts_s": t}))
            .collect::<Vec<_>>(),
        "fit_vs_baseline_arm": fit_ratios.map(|r| json!({"baseline": args.fit_baseline, "ratios": r})),
        "baseline_popular_only_s": baseline_s,
        "baseline_impressions": base.len(),
        "total_vs_baseline": total / baseline_s.max(1e-9),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
