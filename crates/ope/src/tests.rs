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
        session_weight: None,
    };
    let r = estimate(&log, &Estimator::PER_IMPRESSION, &Options::default())?;
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
            session_weight: None,
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
            .map(|pool| pool.install(|| estimate(&s.log(), &Estimator::PER_IMPRESSION, &opts)))
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
        session_weight: None,
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
            reward_model: None,
            session_weight: None
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

/// A feed logged under ε-uniform exploration, as the simulator logs it:
/// each user has two sessions of two pages of three slots (the last page
/// cut after two); the logging list is the first three unseen of a fixed
/// popularity order, each slot replaced with probability `eps` by a
/// distinct uniform draw from the unseen videos not listed; the candidate
/// shows the user's three best unseen videos by `q`. Rows come out of
/// time order, users interleaved. `expected` is the candidate's choice at
/// each row, `truth` its expected reward per user on the logged requests.
struct Feed {
    user: Vec<u64>,
    session: Vec<u64>,
    ts_ms: Vec<i64>,
    position: Vec<u32>,
    surface: Vec<u8>,
    video: Vec<u64>,
    reward: Vec<f64>,
    propensity: Vec<f64>,
    expected: Vec<Option<u64>>,
    truth: f64,
}

const FEED_VIDEOS: u64 = 24;

/// A video's appeal to everyone plus its appeal to the user.
fn q(u: u64, v: u64) -> f64 {
    1.0 + 2.0 * uniform(77, u64::MAX, v) + 2.0 * uniform(77, u, v)
}

fn best_unseen(u: u64, seen: &[u64], k: usize) -> Vec<u64> {
    let mut v: Vec<u64> = (0..FEED_VIDEOS).filter(|v| !seen.contains(v)).collect();
    v.sort_by(|&a, &b| q(u, b).total_cmp(&q(u, a)).then(a.cmp(&b)));
    v.truncate(k);
    v
}

fn feed(users: u64, seed: u64, eps: f64) -> Feed {
    let mut f = Feed {
        user: vec![],
        session: vec![],
        ts_ms: vec![],
        position: vec![],
        surface: vec![],
        video: vec![],
        reward: vec![],
        propensity: vec![],
        expected: vec![],
        truth: 0.0,
    };
    let mut rows = Vec::new();
    for u in 0..users {
        let mut seen: Vec<u64> = Vec::new();
        let mut ts = 0i64;
        for s in 0..2u64 {
            for page in 0..2u64 {
                let list: Vec<u64> = (0..FEED_VIDEOS)
                    .filter(|v| !seen.contains(v))
                    .take(3)
                    .collect();
                let pool: Vec<u64> = (0..FEED_VIDEOS)
                    .filter(|v| !seen.contains(v) && !list.contains(v))
                    .collect();
                let cand = best_unseen(u, &seen, 3);
                let slots = if page == 1 { 2 } else { 3 };
                let mut shown = list.clone();
                let mut props = [1.0 - eps; 3];
                let mut drawn: Vec<u64> = Vec::new();
                for j in 0..3 {
                    let key = (u << 8) | (s << 4) | (page << 2) | j as u64;
                    if uniform(seed, key, 1) < eps {
                        let free: Vec<u64> = pool
                            .iter()
                            .copied()
                            .filter(|v| !drawn.contains(v))
                            .collect();
                        let pick = free[(uniform(seed, key, 2) * free.len() as f64) as usize];
                        drawn.push(pick);
                        shown[j] = pick;
                        props[j] = eps / pool.len() as f64;
                    }
                }
                for j in 0..slots {
                    let key = (u << 8) | (s << 4) | (page << 2) | j as u64;
                    f.truth += q(u, cand[j]) / users as f64;
                    let noise = uniform(seed, key, 3) - 0.5;
                    rows.push((
                        u,
                        u * 10 + s,
                        ts,
                        (page * 3) as u32 + j as u32,
                        shown[j],
                        q(u, shown[j]) + noise,
                        props[j],
                        Some(cand[j]),
                    ));
                    ts += 1_000;
                }
                seen.extend(&shown[..slots]);
            }
            ts += 3_600_000;
        }
    }
    // Out of time order: by slot, then user, so a replay that trusted the
    // rows' order would get every history wrong.
    rows.sort_by_key(|r| (r.3, std::cmp::Reverse(r.0), r.1));
    for (u, s, ts, pos, v, r, p, c) in rows {
        f.user.push(u);
        f.session.push(s);
        f.ts_ms.push(ts);
        f.position.push(pos);
        f.surface.push(0);
        f.video.push(v);
        f.reward.push(r);
        f.propensity.push(p);
        f.expected.push(c);
    }
    f
}

impl Feed {
    fn impressions(&self) -> Impressions<'_> {
        Impressions {
            user: &self.user,
            session: &self.session,
            ts_ms: &self.ts_ms,
            position: &self.position,
            surface: &self.surface,
            video: &self.video,
        }
    }
}

fn candidate(req: &PageRequest<'_>) -> Vec<u64> {
    assert!(req.seen.windows(2).all(|w| w[0] < w[1]), "seen is sorted");
    best_unseen(req.user, req.seen, req.k)
}

#[test]
fn a_replayed_candidate_chooses_on_each_page_what_it_would_have_shown() -> Result<()> {
    let f = feed(50, 3, 0.3);
    let r = replay(&f.impressions(), 3, &candidate)?;
    assert_eq!(r.choice, f.expected);
    assert_eq!(r.pages, 50 * 4);
    for (i, &t) in r.target.iter().enumerate() {
        assert_eq!(
            t,
            (f.expected[i] == Some(f.video[i])) as u8 as f64,
            "row {i}"
        );
    }
    // Another page size is another set of requests: other choices.
    let wrong = replay(&f.impressions(), 2, &candidate)?;
    assert_ne!(wrong.choice, f.expected);
    assert!(matches!(
        replay(&f.impressions(), 0, &candidate),
        Err(Error::Setting {
            field: "page_size",
            ..
        })
    ));
    let mut short = f.impressions();
    short.video = &f.video[1..];
    assert!(matches!(
        replay(&short, 3, &candidate),
        Err(Error::Length {
            column: "video",
            ..
        })
    ));
    Ok(())
}

#[test]
fn a_replayed_candidates_estimates_cover_its_value_on_the_logged_requests() -> Result<()> {
    let opts = Options {
        bootstrap: 200,
        ..Options::default()
    };
    let runs = 20;
    let mut covered = [0usize; 2];
    let mut bias = [0.0f64; 2];
    let mut width = [0.0f64; 2];
    for run in 0..runs {
        let f = feed(400, 1_000 + run, 0.3);
        let imp = f.impressions();
        let r = replay(&imp, 3, &candidate)?;
        let model = cross_fit_rewards(&imp, &f.reward, &r, run)?;
        let log = Log {
            user: &f.user,
            reward: &f.reward,
            propensity: &f.propensity,
            target: &r.target,
            reward_model: Some(model.as_model()),
            session_weight: None,
        };
        let est = estimate(&log, &[Estimator::Ips, Estimator::Dr], &opts)?;
        for (k, e) in est.estimates.iter().enumerate() {
            covered[k] += (e.value_ci[0] <= f.truth && f.truth <= e.value_ci[1]) as usize;
            bias[k] += (e.value - f.truth) / runs as f64;
            width[k] += (e.value_ci[1] - e.value_ci[0]) / runs as f64;
        }
    }
    for k in 0..2 {
        eprintln!(
            "{k}: covered {} bias {} width {}",
            covered[k], bias[k], width[k]
        );
        assert!(covered[k] >= 16, "{k}: covered {} of {runs}", covered[k]);
        assert!(
            bias[k].abs() < width[k] / 4.0,
            "{k}: bias {} width {}",
            bias[k],
            width[k]
        );
    }
    // The reward model knows each video's mean: DR is the tighter.
    assert!(width[1] < width[0], "{width:?}");
    Ok(())
}

#[test]
fn the_reward_model_never_predicts_a_users_rows_from_their_own_rewards() -> Result<()> {
    let f = feed(200, 8, 0.3);
    let imp = f.impressions();
    let r = replay(&imp, 3, &candidate)?;
    let before = cross_fit_rewards(&imp, &f.reward, &r, 4)?;
    // Change one user's rewards wildly: their own predictions stay, the
    // other fold's move.
    let mut reward = f.reward.clone();
    for (i, &u) in f.user.iter().enumerate() {
        if u == 7 {
            reward[i] += 100.0;
        }
    }
    let after = cross_fit_rewards(&imp, &reward, &r, 4)?;
    let mut moved = 0;
    for i in 0..f.user.len() {
        if f.user[i] == 7 {
            assert_eq!(before.logged[i], after.logged[i], "row {i}");
            assert_eq!(before.target[i], after.target[i], "row {i}");
        } else if before.logged[i] != after.logged[i] {
            moved += 1;
        }
    }
    assert!(moved > 0, "the other fold learns from user 7");
    // A video's prediction follows what it earns: across videos, the mean
    // prediction of a video's impressions rises with its appeal to
    // everyone (the part of the reward a model of videos can know).
    let mut per: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
    for (i, &v) in f.video.iter().enumerate() {
        let e = per.entry(v).or_default();
        e.0 += before.logged[i];
        e.1 += 1.0;
    }
    let pts: Vec<(f64, f64)> = per
        .iter()
        .map(|(&v, &(s, n))| (uniform(77, u64::MAX, v), s / n))
        .collect();
    let m = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0 / m, a.1 + p.1 / m));
    let cov: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let vx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let vy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let corr = cov / (vx * vy).sqrt();
    assert!(corr > 0.8, "{corr}");
    let mut bad = f.reward.clone();
    bad[3] = f64::NAN;
    assert!(matches!(
        cross_fit_rewards(&imp, &bad, &r, 4),
        Err(Error::OutOfRange {
            column: "reward",
            row: 3,
            ..
        })
    ));
    Ok(())
}

/// One session per user of up to 30 impressions (pages of one) over 60
/// videos; after each impression the session goes on with a probability
/// that rises with what the video earned, so a better feed is a longer
/// one. The logging policy shows the user's best unseen video, or with
/// probability `eps` a uniform draw among the other unseen ones; the
/// candidate is the same ranking without exploring. `truth` is the
/// candidate's expected reward per user in its own sessions (lengths
/// included).
struct Sessions {
    feed: Feed,
    truth: f64,
}

const SESSION_VIDEOS: u64 = 60;

fn go_on(q: f64) -> f64 {
    (0.55 + 0.1 * (q - 3.0)).clamp(0.05, 0.95)
}

fn best_of(u: u64, seen: &[u64]) -> u64 {
    (0..SESSION_VIDEOS)
        .filter(|v| !seen.contains(v))
        .max_by(|&a, &b| q(u, a).total_cmp(&q(u, b)).then(b.cmp(&a)))
        .expect("an unseen video")
}

fn sessions(users: u64, seed: u64, eps: f64) -> Sessions {
    let mut f = feed(0, seed, eps);
    let mut truth = 0.0;
    for u in 0..users {
        let mut seen: Vec<u64> = Vec::new();
        for t in 0..30u64 {
            let key = (u << 8) | t;
            let best = best_of(u, &seen);
            let pool: Vec<u64> = (0..SESSION_VIDEOS)
                .filter(|v| !seen.contains(v) && *v != best)
                .collect();
            let explore = uniform(seed, key, 1) < eps;
            let (v, p) = if explore {
                let at = (uniform(seed, key, 2) * pool.len() as f64) as usize;
                (pool[at], eps / pool.len() as f64)
            } else {
                (best, 1.0 - eps)
            };
            f.user.push(u);
            f.session.push(u);
            f.ts_ms.push(t as i64 * 1_000);
            f.position.push(t as u32);
            f.surface.push(0);
            f.video.push(v);
            f.reward.push(q(u, v) + uniform(seed, key, 3) - 0.5);
            f.propensity.push(p);
            f.expected.push(Some(best));
            seen.push(v);
            if uniform(seed, key, 4) >= go_on(q(u, v)) {
                break;
            }
        }
        let (mut seen, mut reach) = (Vec::new(), 1.0);
        for _ in 0..30 {
            let c = best_of(u, &seen);
            truth += reach * q(u, c) / users as f64;
            reach *= go_on(q(u, c));
            seen.push(c);
        }
    }
    Sessions { feed: f, truth }
}

fn best_unseen_one(req: &PageRequest<'_>) -> Vec<u64> {
    vec![best_of(req.user, req.seen)]
}

#[test]
fn per_decision_weights_see_what_a_candidate_does_to_a_sessions_length() -> Result<()> {
    let opts = Options {
        bootstrap: 200,
        ..Options::default()
    };
    let runs = 20;
    let (mut covered, mut bias, mut width) = ([0usize; 2], [0.0f64; 2], [0.0f64; 2]);
    for run in 0..runs {
        let s = sessions(400, 7_000 + run, 0.3);
        let f = &s.feed;
        let imp = f.impressions();
        let r = replay(&imp, 1, &best_unseen_one)?;
        assert_eq!(r.choice, f.expected);
        let pw = session_weights(&imp, &f.propensity, &r.target)?;
        let log = Log {
            user: &f.user,
            reward: &f.reward,
            propensity: &f.propensity,
            target: &r.target,
            reward_model: None,
            session_weight: Some(&pw),
        };
        let est = estimate(&log, &[Estimator::Ips, Estimator::Pdis], &opts)?;
        for (k, e) in est.estimates.iter().enumerate() {
            covered[k] += (e.value_ci[0] <= s.truth && s.truth <= e.value_ci[1]) as usize;
            bias[k] += (e.value - s.truth) / runs as f64;
            width[k] += (e.value_ci[1] - e.value_ci[0]) / runs as f64;
        }
    }
    // Per-decision IS covers the candidate's value, lengths included.
    assert!(covered[1] >= 16, "pdis covered {} of {runs}", covered[1]);
    assert!(
        bias[1].abs() < width[1] / 4.0,
        "pdis bias {} width {}",
        bias[1],
        width[1]
    );
    // Per-impression IPS holds the log's (shorter) sessions: it misses.
    // (Measured: PDIS covered 18 of 20, bias −0.42 against a mean width of
    // 4.6; IPS covered 5, bias −1.55 against 2.1.)
    assert!(
        bias[0] < -width[0] / 2.0,
        "ips bias {} width {}",
        bias[0],
        width[0]
    );
    assert!(covered[0] <= 8, "ips covered {} of {runs}", covered[0]);
    Ok(())
}

#[test]
fn session_weights_multiply_along_each_session_in_time_order() -> Result<()> {
    // Two sessions, rows out of order: session 5 at times 2, 0, 1.
    let imp = Impressions {
        user: &[1, 1, 1, 2],
        session: &[5, 5, 5, 6],
        ts_ms: &[2, 0, 1, 0],
        position: &[2, 0, 1, 0],
        surface: &[0; 4],
        video: &[1, 2, 3, 4],
    };
    let w = session_weights(&imp, &[0.5, 0.25, 1.0, 0.8], &[1.0, 1.0, 0.0, 1.0])?;
    // Session 5 in time order: w 4, then 0 (the candidate would not show
    // it), then 0 for good. Session 6: 1.25.
    assert_eq!(w, vec![0.0, 4.0, 0.0, 1.25]);
    assert!(matches!(
        session_weights(&imp, &[0.5, 0.0, 1.0, 0.8], &[1.0; 4]),
        Err(Error::OutOfRange {
            column: "propensity",
            row: 1,
            ..
        })
    ));
    let log = Log {
        user: imp.user,
        reward: &[1.0; 4],
        propensity: &[0.5; 4],
        target: &[1.0; 4],
        reward_model: None,
        session_weight: None,
    };
    assert!(matches!(
        estimate(&log, &[Estimator::Pdis], &Options::default()),
        Err(Error::NeedsSessions("pdis"))
    ));
    Ok(())
}
