//! A small calibration of the whole A/B pipeline against the simulator's
//! truth. The full one (400 runs) is run by hand; its figures are in
//! notebooks-output/calibration/. Everything is seeded, so these bounds are
//! checked on one fixed set of 30 runs: a broken interval or a biased truth
//! moves them far outside.

use reelkit_cli::calibrate::{calibrate, CalibrateConfig};
use reelkit_cli::online::demo_train_params;
use reelkit_sim::SimParams;

#[test]
fn intervals_cover_the_truth_and_a_a_tests_rarely_fire() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = CalibrateConfig {
        world: SimParams {
            users: 500,
            videos: 2_500,
            creators: 250,
            new_videos_per_day: 40,
            days: 5,
            seed: 9,
            ..SimParams::default()
        }
        .check()?,
        runs: 30,
        pre_days: 2,
        days: 3,
        treatment: "oracle".into(),
        train: demo_train_params(9),
        treatment_share: 0.5,
        alpha: 0.05,
    };
    let c = calibrate(&cfg, &|_| {})?;
    eprintln!("{}", reelkit_cli::calibrate::calibration_markdown(&c));
    // 30 runs x 10 metrics x 2 (plain, CUPED) x 2 (A/A, A/B).
    assert_eq!(c.trials.len(), 1_200);
    let p = &c.pooled;
    // 300 A/A tests per variant: a calibrated test gives 5% ± 1.3%.
    assert!(p.false_positive_rate < 0.1, "{p:?}");
    assert!(p.false_positive_rate_cuped < 0.1, "{p:?}");
    assert!(p.coverage_aa > 0.9 && p.coverage_aa_cuped > 0.9, "{p:?}");
    assert!(p.coverage_ab > 0.9 && p.coverage_ab_cuped > 0.9, "{p:?}");
    // The oracle's effect is large: the tests find it.
    let watch = c
        .metrics
        .iter()
        .find(|r| r.metric == "watch_time_per_user")
        .ok_or("no watch time")?;
    assert!(watch.power_cuped > 0.9, "{watch:?}");
    assert!(watch.mean_true_rel > 0.3, "{watch:?}");
    assert!(watch.cuped_width_ratio < 0.95, "{watch:?}");
    // A/A histogram holds every A/A CUPED test.
    assert_eq!(c.p_histogram_aa.iter().sum::<u64>(), 300);
    Ok(())
}
