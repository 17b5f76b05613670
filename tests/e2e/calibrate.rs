//! A small calibration of a three-arm design against the simulator's truth.
//! The full one (400 runs) is run by hand; its figures are in
//! notebooks-output/calibration/. Everything is seeded, so these bounds are
//! checked on one fixed set of 30 runs: a broken interval or a biased truth
//! moves them far outside.

use reelkit_lab::calibrate;

use super::{on_threads, spec_of, TestResult};

#[test]
fn intervals_cover_the_truth_and_a_a_tests_rarely_fire() -> TestResult {
    let spec = spec_of(
        r#"
name = "calibration-e2e"
seed = 9
[world]
users = 500
videos = 2500
creators = 250
new_videos_per_day = 40
[pre_period]
days = 2
[experiment]
days = 3
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "oracle"
recipe = "oracle"
[[arms]]
name = "random"
recipe = "random"
"#,
    )?;
    let c = calibrate(&spec, 30, &|_| {})?;
    eprintln!("{}", reelkit_lab::calibration_markdown(&c));
    // 30 runs x 2 kinds (A/A, A/B) x 2 comparisons x 10 metrics x 2 (plain, CUPED).
    assert_eq!(c.trials.len(), 30 * 2 * 2 * 10 * 2);
    let p = &c.pooled[0];
    assert_eq!(p.comparison, "all comparisons");
    // 600 A/A tests per variant: a calibrated test gives 5% ± 0.9%.
    assert!(p.false_positive_rate < 0.1, "{p:?}");
    assert!(p.false_positive_rate_cuped < 0.1, "{p:?}");
    for r in &c.pooled {
        assert!(r.coverage_aa > 0.9 && r.coverage_aa_cuped > 0.9, "{r:?}");
        assert!(r.coverage_ab > 0.9 && r.coverage_ab_cuped > 0.9, "{r:?}");
    }
    // The oracle's effect is large and found; random's is negative.
    let watch = |comparison: &str| {
        c.metrics
            .iter()
            .find(|r| r.comparison == comparison && r.metric == "watch_time_per_user")
            .ok_or("no watch time")
    };
    let oracle = watch("oracle vs popular")?;
    assert!(oracle.power_cuped > 0.9, "{oracle:?}");
    assert!(oracle.mean_true_rel.is_some_and(|x| x > 0.3), "{oracle:?}");
    assert!(
        oracle.cuped_width_ratio.is_some_and(|x| x < 0.95),
        "{oracle:?}"
    );
    assert!(watch("random vs popular")?
        .mean_true_rel
        .is_some_and(|x| x < 0.0));
    // The A/A histogram holds every A/A CUPED test.
    assert_eq!(c.p_histogram_aa.iter().sum::<u64>(), 30 * 2 * 10);
    Ok(())
}

#[test]
fn calibration_runs_in_parallel_and_gives_the_same_trials_on_any_thread_count() -> TestResult {
    let spec = spec_of(
        r#"
name = "calibration-threads"
seed = 4
[world]
users = 200
videos = 800
creators = 80
new_videos_per_day = 15
[pre_period]
days = 2
[experiment]
days = 2
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "unified"
recipe = "unified"
factors = 8
epochs = 3
[analysis]
daily = false
segments = false
"#,
    )?;
    let once = |threads: usize| -> TestResult<Vec<String>> {
        let c = on_threads(threads, || calibrate(&spec, 4, &|_| {}))??;
        Ok(c.trials.iter().map(|t| format!("{t:?}")).collect())
    };
    let (one, three) = (once(1)?, once(3)?);
    assert_eq!(one.len(), 4 * 2 * 10 * 2);
    assert!(one == three, "trials differ between 1 and 3 threads");
    Ok(())
}

/// Interleaving against the truth on a tiny world: the oracle is found by
/// every run's interleaving, A/A credits split evenly, and the result does
/// not depend on the thread count.
#[test]
fn interleaving_finds_the_oracle_and_ignores_the_thread_count() -> TestResult {
    let spec = spec_of(
        r#"
name = "interleave-e2e"
seed = 4
[world]
users = 300
videos = 1500
creators = 150
new_videos_per_day = 20
[pre_period]
days = 2
[experiment]
days = 2
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "oracle"
recipe = "oracle"
"#,
    )?;
    let run = |threads: usize| {
        on_threads(threads, || {
            reelkit_lab::interleaving::calibrate_interleaving(
                &spec,
                "popular",
                "oracle",
                4,
                100,
                &|_| {},
            )
        })
    };
    let one = run(1)??;
    let two = run(2)??;
    assert_eq!(serde_json::to_string(&one)?, serde_json::to_string(&two)?);
    eprintln!("{}", reelkit_lab::interleaving::interleaving_markdown(&one));
    assert_eq!(one.trials.len(), 4);
    for t in &one.trials {
        assert!(t.true_rel > 0.2, "{t:?}");
        // Interleaving agrees with the truth and is significant.
        assert!(t.ab.share_b > 0.5 && t.ab.p_sign < 0.05, "{t:?}");
        // A/A: both teams place the same videos; credit splits by chance only.
        assert!(t.aa.credit_lift.abs() < 0.1, "{t:?}");
        assert_eq!(t.check_users, 100);
    }
    assert_eq!(one.ab_direction_right, 1.0);
    assert!(reelkit_lab::interleaving::calibrate_interleaving(
        &spec,
        "popular",
        "popular",
        1,
        0,
        &|_| {}
    )
    .is_err());
    assert!(reelkit_lab::interleaving::calibrate_interleaving(
        &spec,
        "popular",
        "nope",
        1,
        0,
        &|_| {}
    )
    .err()
    .is_some_and(|e| e.to_string().contains("no arm `nope`")));
    Ok(())
}
