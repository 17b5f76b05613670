//! The estimators against hand-worked values, against a simulated log whose
//! truth is known, and on bad input.

use super::*;
use reelkit_assign::splitmix64;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn every_estimator_equals_its_hand_worked_value() -> Result<()> {
    // Weights 2, 2, 0. IPS: Σ w r = 4 over 2 users = 2 (4/3 per impression).
    // SNIPS: Σ w r / Σ w = 1 per impression, × 3/2 impressions per user.
    // DR rows: 3 + 2(2 − 1) = 5, 1 + 2(0 − 1) = −1, 2 + 0 = 2: 6 / 2 = 3.
    // DM: (3 + 1 + 2) / 2 = 3. The log: (2 + 0 + 4) / 2 = 3.
    let log = Log {
        user: &[7, 7, 9],
        reward: &[2.0, 0.0, 4.0],
        propensity: &[0.5, 0.25, 1.0],
        target: &[1.0, 0.5, 0.0],
        reward_model: Some(RewardModel {
            logged: &[1.0, 1.0, 2.0],
            target: &[3.0, 1.0, 2.0],
        }),
    };
    let r = estimate(&log, &Estimator::ALL, &Options::default())?;
    let want = [(2.0, 4.0 / 3.0), (1.5, 1.0), (3.0, 2.0), (3.0, 2.0)];
    for (e, (v, per)) in r.estimates.iter().zip(want) {
        assert!(close(e.value, v), "{:?}: {} vs {v}", e.estimator, e.value);
        assert!(close(e.per_impression, per), "{:?}", e.estimator);
        assert!(close(e.lift, v - 3.0), "{:?}", e.estimator);
        assert!(close(e.rel_lift, (v - 3.0) / 3.0), "{:?}", e.estimator);
    }
    let d = &r.diagnostics;
    assert_eq!((d.users, d.impressions), (2, 3));
    assert!(close(d.logged_value, 3.0));
    assert!(close(d.mean_weight, 4.0 / 3.0));
    assert!(
        close(d.effective_sample_size, 2.0),
        "{}",
        d.effective_sample_size
    );
    assert!(close(d.zero_weight_share, 1.0 / 3.0));
    assert_eq!(d.max_weight, 2.0);
    Ok(())
}

/// A seeded log of `users` users, three slots each: the logging policy
/// draws one of four videos per slot from a softmax of a user's taste, the
/// candidate shows the user's best video (deterministically) or, when
/// `gap`, a video the logging policy never shows. Rewards are normal around
/// `q(u, a)`. Returns the log's columns and the candidate's true value per
/// user, `Σ_slots q(u, best)` averaged over users.
struct Sim {
    user: Vec<u64>,
    reward: Vec<f64>,
    propensity: Vec<f64>,
    target: Vec<f64>,
    q_logged: Vec<f64>,
    q_target: Vec<f64>,
    truth: f64,
}

fn uniform(seed: u64, a: u64, b: u64) -> f64 {
    (splitmix64(seed ^ splitmix64(a ^ splitmix64(b))) >> 11) as f64 / (1u64 << 53) as f64
}

fn simulate(users: u64, seed: u64, gap: bool) -> Sim {
    let mut s = Sim {
        user: vec![],
        reward: vec![],
        propensity: vec![],
        target: vec![],
        q_logged: vec![],
        q_target: vec![],
        truth: 0.0,
    };
    let videos = 4u64;
    for u in 0..users {
        // The user's mean reward of each video: fixed by the user (not the
        // seed), so every run estimates the same truth.
        let q: Vec<f64> = (0..videos).map(|a| 10.0 * uniform(1, u, a)).collect();
        // Logging: softmax of a noisy view of q; video 3 never shown when `gap`.
        let shown = if gap { videos - 1 } else { videos };
        let logits: Vec<f64> = (0..shown)
            .map(|a| 0.2 * q[a as usize] + uniform(2, u, a))
            .collect();
        let z: f64 = logits.iter().map(|l| l.exp()).sum();
        let p: Vec<f64> = logits.iter().map(|l| l.exp() / z).collect();
        // The candidate: the best video overall (may be the unshown one),
        // else the best shown one.
        let pick = if gap {
            videos - 1
        } else {
            (0..videos)
                .max_by(|&a, &b| q[a as usize].total_cmp(&q[b as usize]))
                .unwrap_or(0)
        };
        for slot in 0..3u64 {
            let x = uniform(seed, u, slot);
            let mut acc = 0.0;
            let mut a = shown - 1;
            for (k, &pk) in p.iter().enumerate() {
                acc += pk;
                if x < acc {
                    a = k as u64;
                    break;
                }
            }
            let noise = (uniform(seed ^ 0xABCD, u, slot) - 0.5) * 6.0;
            s.user.push(u);
            s.reward.push(q[a as usize] + noise);
            s.propensity.push(p[a as usize]);
            s.target.push(if a == pick { 1.0 } else { 0.0 });
            // An imperfect reward model: off by a user-level error.
            let err = uniform(3, u, 0) - 0.5;
            s.q_logged.push(q[a as usize] + err);
            s.q_target.push(q[pick as usize] + err);
            s.truth += q[pick as usize];
        }
    }
    s.truth /= users as f64;
    s
}

impl Sim {
    fn log(&self) -> Log<'_> {
        Log {
            user: &self.user,
            reward: &self.reward,
            propensity: &self.propensity,
            target: &self.target,
            reward_model: Some(RewardModel {
                logged: &self.q_logged,
                target: &self.q_target,
            }),
        }
    }
}

#[test]
fn ips_and_dr_cover_the_true_value_of_a_simulated_candidate() -> Result<()> {
    let opts = Options {
        bootstrap: 200,
        ..Options::default()
    };
    let runs = 30;
    let (mut covered, mut mean) = ([0usize; 2], [0.0f64; 2]);
    let (mut spread_ips, mut spread_dr) = (0.0, 0.0);
    let mut truth = 0.0;
    for run in 0..runs {
        let s = simulate(600, 100 + run, false);
        truth = s.truth;
        let r = estimate(&s.log(), &[Estimator::Ips, Estimator::Dr], &opts)?;
        for (k, e) in r.estimates.iter().enumerate() {
            covered[k] += (e.value_ci[0] <= s.truth && s.truth <= e.value_ci[1]) as usize;
            mean[k] += e.value / runs as f64;
        }
        spread_ips += r.estimates[0].value_ci[1] - r.estimates[0].value_ci[0];
        spread_dr += r.estimates[1].value_ci[1] - r.estimates[1].value_ci[0];
        assert!(
            r.diagnostics.warnings.is_empty(),
            "{:?}",
            r.diagnostics.warnings
        );
    }
    // Unbiased: the mean of 30 runs is near the truth (a few % of it);
    // intervals cover it in most runs; DR, with a good reward model, is
    // much tighter than IPS.
    for k in 0..2 {
        assert!(
            (mean[k] - truth).abs() < 0.03 * truth,
            "{k}: {} vs {truth}",
            mean[k]
        );
        assert!(covered[k] >= 24, "{k}: covered {} of {runs}", covered[k]);
    }
    assert!(spread_dr < 0.5 * spread_ips, "{spread_dr} vs {spread_ips}");
    Ok(())
}

#[test]
fn a_candidate_outside_the_logs_support_is_warned_about() -> Result<()> {
    // The candidate always shows the one video the logging policy never
    // does: no logged row has its choice, every weight is 0.
    let s = simulate(300, 5, true);
    let r = estimate(&s.log(), &[Estimator::Ips], &Options::default())?;
    let d = &r.diagnostics;
    assert_eq!(d.mean_weight, 0.0);
    assert!(
        d.warnings.iter().any(|w| w.contains("no support")),
        "{:?}",
        d.warnings
    );
    // With full support, no such warning.
    let s = simulate(300, 5, false);
    let r = estimate(&s.log(), &[Estimator::Ips], &Options::default())?;
    assert!(
        r.diagnostics.warnings.is_empty(),
        "{:?}",
        r.diagnostics.warnings
    );
    assert!((r.diagnostics.mean_weight - 1.0).abs() < 3.0 * r.diagnostics.mean_weight_se + 0.05);
    Ok(())
}

#[test]
fn snips_ignores_the_weights_scale_and_clipping_caps_them() -> Result<()> {
    let s = simulate(200, 9, false);
    let half: Vec<f64> = s.target.iter().map(|t| t * 0.5).collect();
    let opts = Options {
        bootstrap: 0,
        ..Options::default()
    };
    let full = estimate(&s.log(), &[Estimator::Ips, Estimator::Snips], &opts)?;
    let scaled = estimate(
        &Log {
            target: &half,
            ..s.log()
        },
        &[Estimator::Ips, Estimator::Snips],
        &opts,
    )?;
    assert!(close(
        scaled.estimates[0].value,
        0.5 * full.estimates[0].value
    ));
    assert!(close(scaled.estimates[1].value, full.estimates[1].value));
    assert!(
        full.estimates[0].value_ci[0].is_nan(),
        "no resamples, no interval"
    );
    let clipped = estimate(
        &s.log(),
        &[Estimator::Ips],
        &Options {
            max_weight: Some(1.5),
            ..opts
        },
    )?;
    assert_eq!(clipped.diagnostics.max_weight, 1.5);
    assert!(clipped.diagnostics.clipped_share > 0.0);
    assert!(clipped.estimates[0].value < full.estimates[0].value);
    Ok(())
}

#[test]
fn the_same_seed_gives_the_same_intervals_whatever_the_threads() -> Result<()> {
    let s = simulate(300, 11, false);
    let opts = Options::default();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(|pool| pool.install(|| estimate(&s.log(), &Estimator::ALL, &opts)))
    };
    let (Ok(one), Ok(two)) = (run(1), run(2)) else {
        panic!("thread pools");
    };
    assert_eq!(one?, two?);
    let a = estimate(&s.log(), &[Estimator::Ips], &opts)?;
    let b = estimate(
        &s.log(),
        &[Estimator::Ips],
        &Options {
            seed: 43,
            ..Options::default()
        },
    )?;
    assert_eq!(a.estimates[0].value, b.estimates[0].value);
    assert_ne!(a.estimates[0].value_ci, b.estimates[0].value_ci);
    Ok(())
}

#[test]
fn bad_input_is_refused_naming_the_column_and_row() {
    let ok = Log {
        user: &[1, 2],
        reward: &[1.0, 2.0],
        propensity: &[0.5, 0.5],
        target: &[1.0, 0.0],
        reward_model: None,
    };
    let opts = Options::default();
    let run = |log: Log<'_>| estimate(&log, &[Estimator::Ips], &opts).map(|_| ());
    assert_eq!(run(ok), Ok(()));
    for (p, row) in [([0.5, 0.0], 1), ([1.5, 0.5], 0), ([0.5, f64::NAN], 1)] {
        let e = run(Log {
            propensity: &p,
            ..ok
        });
        assert!(
            matches!(e, Err(Error::OutOfRange { column: "propensity", row: r, .. }) if r == row),
            "{e:?}"
        );
    }
    let e = run(Log {
        target: &[1.0, -0.1],
        ..ok
    });
    assert!(
        matches!(
            e,
            Err(Error::OutOfRange {
                column: "target",
                row: 1,
                ..
            })
        ),
        "{e:?}"
    );
    let e = run(Log {
        reward: &[f64::INFINITY, 1.0],
        ..ok
    });
    assert!(
        matches!(
            e,
            Err(Error::OutOfRange {
                column: "reward",
                row: 0,
                ..
            })
        ),
        "{e:?}"
    );
    let e = run(Log {
        reward: &[1.0],
        ..ok
    });
    assert_eq!(
        e,
        Err(Error::Length {
            column: "reward",
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        run(Log {
            user: &[],
            reward: &[],
            propensity: &[],
            target: &[],
            reward_model: None
        }),
        Err(Error::Empty)
    );
    assert_eq!(
        estimate(&ok, &[Estimator::Dr], &opts).map(|_| ()),
        Err(Error::NeedsRewardModel("dr"))
    );
    let e = estimate(
        &ok,
        &[Estimator::Ips],
        &Options {
            level: 1.0,
            ..Options::default()
        },
    );
    assert!(matches!(e, Err(Error::Setting { field: "level", .. })));
    assert!("ipw".parse::<Estimator>().is_err());
    assert_eq!("snips".parse::<Estimator>(), Ok(Estimator::Snips));
    // Messages name what is wrong and where.
    let msg = run(Log {
        propensity: &[0.5, 0.0],
        ..ok
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(msg.contains("propensity at row 1 is 0"), "{msg}");
}
