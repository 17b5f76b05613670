//! The experiment loop end to end on a small world: the ranker's lift on watch
//! time is significant, every interval covers the simulation's true effect, and
//! CUPED narrows the watch-time interval.

use reelkit_cli::online::{demo_train_params, run_demo, DemoConfig, CONTROL, TREATMENT};
use reelkit_sim::SimParams;

#[test]
fn demo_recovers_the_true_lift() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cfg = DemoConfig {
        world: SimParams {
            users: 1_200,
            videos: 5_000,
            creators: 500,
            new_videos_per_day: 80,
            days: 10,
            seed: 3,
            ..SimParams::default()
        }
        .check()?,
        pre_days: 5,
        days: 5,
        salt: "e2e".into(),
        treatment_share: 0.5,
        train: demo_train_params(3),
        alpha: 0.05,
        k: 10,
    };
    let out = run_demo(&cfg, dir.path(), &|m| eprintln!("{m}"))?;
    let s = &out.summary;
    eprintln!("{}", reelkit_cli::online::comparison_markdown(s));

    // Offline, the ranker beats popularity on the pre-period's last day.
    assert!(
        s.offline.model.ndcg > s.offline.popularity.ndcg,
        "{:?}",
        s.offline
    );
    // Online, watch time per user rises, significantly, and the interval holds
    // the true lift, which is itself positive.
    let watch = s
        .comparisons
        .iter()
        .find(|c| c.metric == "watch_time_per_user" && c.variant == TREATMENT)
        .ok_or("no watch time row")?;
    assert!(watch.true_rel > 0.05, "{watch:?}");
    assert!(watch.significant && watch.estimate_abs > 0.0, "{watch:?}");
    assert!(watch.covered, "{watch:?}");
    assert!(watch.cuped);
    let width = watch.abs_ci_high - watch.abs_ci_low;
    assert!(
        width < 0.9 * watch.abs_ci_width_without_cuped,
        "CUPED width {width} vs {}",
        watch.abs_ci_width_without_cuped
    );
    // All ten built-in metrics are compared; at most one interval may miss
    // its truth (each misses with probability 5%).
    assert_eq!(s.comparisons.len(), 10);
    let missed: Vec<&str> = s
        .comparisons
        .iter()
        .filter(|c| !c.covered)
        .map(|c| c.metric.as_str())
        .collect();
    assert!(missed.len() <= 1, "intervals missing the truth: {missed:?}");

    // The files: reports, truth and data, and the report reads back.
    for f in [
        "report.json",
        "report.md",
        "report.html",
        "forest.svg",
        "ground_truth.json",
        "demo.json",
        "summary.md",
        "data/events.parquet",
        "data/pre_events.parquet",
        "data/assignments.parquet",
        "data/model.arrow",
    ] {
        assert!(dir.path().join(f).is_file(), "missing {f}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json"))?)?;
    assert_eq!(report["control"], CONTROL);
    assert_eq!(report["srm"]["ok"], true);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ground_truth.json"))?)?;
    assert_eq!(truth["effects"].as_array().map(Vec::len), Some(10));
    let html = std::fs::read_to_string(dir.path().join("report.html"))?;
    assert!(html.contains("true lift"));
    Ok(())
}
