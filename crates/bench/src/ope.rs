//! Off-policy estimation of one candidate on a large log (`reelkit bench ope`).

use std::time::Instant;

use rayon::prelude::*;
use reelkit_assign::splitmix64;
use reelkit_lab::offpolicy::ServedCandidate;
use reelkit_ope::{
    cross_fit_rewards, estimate, replay, session_weights, Estimator, Impressions, Log, Options,
    RewardModel,
};
use reelkit_ranker::{Factors, IdMap, Model, ModelMeta, Ranker, Request, TrainParams};
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
    /// Replay a model on the log first, as `reelkit ope` does: a random
    /// model of --videos videos answers each page (8 impressions, sessions
    /// of 24) as the service would; the log is its own answers with a
    /// --explore share of slots replaced by a random video. Times the
    /// replay, the session weights, the cross-fitted reward model and every
    /// estimator.
    #[arg(long)]
    replay: bool,
    /// Videos of the replayed model.
    #[arg(long, default_value_t = 20_000)]
    videos: usize,
    /// Its dimension.
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Share of the log's slots explored.
    #[arg(long, default_value_t = 0.1)]
    explore: f64,
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(super) fn ope(args: OpeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.impressions > 0, "--impressions must be positive");
    anyhow::ensure!(args.per_user > 0, "--per-user must be positive");
    if args.replay {
        return replay_bench(&args);
    }
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

/// Impressions per page and per session of the replay benchmark's log.
const PAGE: usize = 8;
const SESSION: usize = 24;

/// A random model: `users` users and `videos` videos of `dim` dimensions.
fn random_model(users: usize, videos: usize, dim: usize, seed: u64) -> Model {
    let draw = |n: usize, tag: u64| -> Vec<f32> {
        (0..n)
            .map(|i| (unit(splitmix64(seed ^ splitmix64(tag << 40 | i as u64))) - 0.5) as f32)
            .collect()
    };
    Model {
        users: IdMap::from_ids((0..users as u64).collect()),
        items: IdMap::from_ids((0..videos as u64).map(|v| 1_000_000 + v).collect()),
        factors: Factors {
            dim,
            users: draw(users * dim, 1),
            items: draw(videos * dim, 2),
            item_bias: vec![0.0; videos],
        },
        user_counts: vec![1; users],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        item_counts: vec![1; videos],
        meta: ModelMeta {
            params: TrainParams {
                factors: dim,
                ..TrainParams::default()
            },
            fingerprint: "bench".into(),
            value_model: None,
            source: "reelkit bench ope --replay".into(),
            specific: None,
            item_specific: None,
        },
    }
}

/// The log's columns.
#[derive(Default)]
struct Logged {
    user: Vec<u64>,
    session: Vec<u64>,
    ts_ms: Vec<i64>,
    position: Vec<u32>,
    surface: Vec<u8>,
    video: Vec<u64>,
    reward: Vec<f64>,
    propensity: Vec<f64>,
}

/// One user's log: pages of the model's best unseen videos from one long
/// list (what the service answers), each slot explored with probability
/// `explore` (a random video, its propensity `explore / videos`).
fn user_log(ranker: &Ranker, u: usize, args: &OpeBenchArgs) -> Logged {
    let n = args.per_user;
    let list: Vec<u64> = ranker
        .recommend(u as u64, n + PAGE, &Request::default())
        .items
        .iter()
        .map(|r| r.item_id)
        .collect();
    let mut seen: std::collections::HashSet<u64> = Default::default();
    let mut out = Logged::default();
    let h = |t: usize, k: u64| splitmix64(args.seed ^ splitmix64(((u * n + t) as u64) << 3 | k));
    let mut t = 0;
    while t < n {
        let page: Vec<u64> = list
            .iter()
            .filter(|v| !seen.contains(v))
            .take(PAGE)
            .copied()
            .collect();
        let start = out.video.len();
        for &best in page.iter().take(n - t) {
            let explored = unit(h(t, 1)) < args.explore;
            let v = if explored {
                1_000_000 + h(t, 2) % args.videos as u64
            } else {
                best
            };
            out.user.push(u as u64);
            out.session.push((u * n + t / SESSION) as u64);
            out.ts_ms.push(t as i64 * 10_000);
            out.position.push((t % SESSION) as u32);
            out.surface.push(1);
            out.video.push(v);
            out.reward.push(20_000.0 * unit(h(t, 3)));
            out.propensity.push(if explored {
                args.explore / args.videos as f64
            } else {
                1.0 - args.explore
            });
            t += 1;
        }
        seen.extend(out.video[start..].iter().copied());
        if page.is_empty() {
            break;
        }
    }
    out
}

fn replay_bench(args: &OpeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.explore > 0.0 && args.explore < 1.0,
        "--explore must be in (0, 1)"
    );
    anyhow::ensure!(
        args.videos > 0 && args.dim > 0,
        "--videos and --dim must be positive"
    );
    let users = args.impressions.div_ceil(args.per_user);
    let ranker = Ranker::from_model(random_model(users, args.videos, args.dim, args.seed));
    let cand = ServedCandidate::new(ranker, None, false)?;
    let t = Instant::now();
    let mut log = Logged::default();
    // A few thousand users at a time: the log's columns, not twice them.
    for chunk in (0..users).collect::<Vec<_>>().chunks(4096) {
        let parts: Vec<Logged> = chunk
            .par_iter()
            .map(|&u| user_log(cand.ranker(), u, args))
            .collect();
        for p in parts {
            log.user.extend(p.user);
            log.session.extend(p.session);
            log.ts_ms.extend(p.ts_ms);
            log.position.extend(p.position);
            log.surface.extend(p.surface);
            log.video.extend(p.video);
            log.reward.extend(p.reward);
            log.propensity.extend(p.propensity);
        }
    }
    let made_s = t.elapsed().as_secs_f64();
    let rss_before = super::peak_rss_mib();
    let imp = Impressions {
        user: &log.user,
        session: &log.session,
        ts_ms: &log.ts_ms,
        position: &log.position,
        surface: &log.surface,
        video: &log.video,
    };
    // Baseline: one pass summing the logged rewards per user's row (what
    // reading the log at all costs).
    let t = Instant::now();
    let plain: f64 = log
        .reward
        .iter()
        .zip(&log.propensity)
        .map(|(r, p)| r / p)
        .sum();
    let baseline_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let replayed = replay(&imp, PAGE, &cand)?;
    let replay_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pw = session_weights(&imp, &log.propensity, &replayed.target)?;
    let model = cross_fit_rewards(&imp, &log.reward, &replayed, args.seed)?;
    let opts = Options {
        bootstrap: args.bootstrap,
        seed: args.seed,
        ..Options::default()
    };
    let report = estimate(
        &Log {
            user: &log.user,
            reward: &log.reward,
            propensity: &log.propensity,
            target: &replayed.target,
            reward_model: Some(model.as_model()),
            session_weight: Some(&pw),
        },
        &Estimator::ALL,
        &opts,
    )?;
    let estimate_s = t.elapsed().as_secs_f64();
    let out = json!({
        "bench": "ope-replay",
        "impressions": log.user.len(),
        "users": users,
        "videos": args.videos,
        "dim": args.dim,
        "pages": replayed.pages,
        "agreement": replayed.agreement(),
        "bootstrap": args.bootstrap,
        "threads": rayon::current_num_threads(),
        "log_made_s": made_s,
        "replay_s": replay_s,
        "estimate_s": estimate_s,
        "seconds": replay_s + estimate_s,
        "baseline_single_pass_s": baseline_s,
        "plain_sum": plain,
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib": super::peak_rss_mib(),
        "ips": report.estimates[0].value,
        "pdis": report.estimates[4].value,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
