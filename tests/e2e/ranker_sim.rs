//! The ranker on the simulator's logs: beats popularity offline (NDCG@10 on a
//! time split) and online (watch time per user when it serves the feed).

use std::sync::Arc;

use reelkit_lab::specs::RankerPolicy;
use reelkit_logs::Events;
use reelkit_ranker::{Ranker, TrainParams};
use reelkit_sim::{
    builtin_policy,
    policies::{ExploreFresh, DEFAULT_EXPLORE},
    SimParams, Simulator, World,
};

use super::TestResult;

fn params() -> TrainParams {
    TrainParams {
        factors: 32,
        epochs: 10,
        reg: 10.0,
        alpha: 1.0,
        ..TrainParams::default()
    }
}

fn watch_per_user(world: &World, ev: &Events) -> f64 {
    ev.watch_ms.iter().map(|&w| w as f64 / 1000.0).sum::<f64>() / world.n_users() as f64
}

#[test]
fn ials_beats_popularity_offline_and_online() -> TestResult {
    let world = World::generate(
        &SimParams {
            users: 1_000,
            videos: 4_000,
            creators: 400,
            new_videos_per_day: 60,
            days: 14,
            seed: 11,
            ..SimParams::default()
        }
        .check()?,
    );
    let mut sim = Simulator::new(&world);
    let mut popular = builtin_policy("popular")?;
    let history = sim.run(7, popular.as_mut(), &|_| {})?;

    // Offline: train on days 0-5, test on day 6.
    let cutoff = world.params.start_ts_ms + 6 * 86_400_000;
    let offline = reelkit_lab::training::offline_eval(&history, cutoff, &params(), 10)?;
    let (model, pop) = (offline.model, offline.popularity);
    eprintln!("ials {model:?}\npopular {pop:?}");
    assert!(
        model.ndcg > 1.5 * pop.ndcg,
        "{} vs {}",
        model.ndcg,
        pop.ndcg
    );

    // Online: train on the whole week, then serve the next week from the same
    // state; compare with popular continuing from that state.
    let ranker = Arc::new(Ranker::from_model(reelkit_lab::training::train_on_events(
        &history,
        &params(),
        "e2e",
    )?));
    let mut with_ranker = sim.clone();
    let mut ranker_policy =
        ExploreFresh::new(RankerPolicy::new(ranker, &world, false), DEFAULT_EXPLORE);
    let ev_ranker = with_ranker.run(7, &mut ranker_policy, &|_| {})?;
    let mut with_popular = sim.clone();
    let ev_popular = with_popular.run(7, popular.as_mut(), &|_| {})?;
    let (r, q) = (
        watch_per_user(&world, &ev_ranker),
        watch_per_user(&world, &ev_popular),
    );
    eprintln!("watch s/user: ranker {r:.0}, popular {q:.0}");
    assert!(r > 1.2 * q, "ranker {r} vs popular {q}");
    Ok(())
}
