//! Champion/challenger through HTTP: two models served by reelkit-serve,
//! simulated users' page requests driving the server, their engagement written
//! as events and analysed from the server's exposure log — and the same
//! experiment played in process with the same seed gives the same events and
//! the same answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reelkit_abtest::{exposure::Exposures, interleaving::InterleaveConfig, Source};
use reelkit_assign::{interleave_seed, team_draft, Allocation, Team};
use reelkit_logs::{Events, Surface};
use reelkit_ranker::{Ranker, Request, Retrieval, TrainParams};
use reelkit_serve::client::Client;
use reelkit_serve::{AppState, Catalog, Design, ExposureConfig, ExposureLog, ServeConfig};
use reelkit_sim::{
    builtin_policy,
    policies::{FeedRequest, Scratch},
    random::Rng,
    Policy, SimParams, Simulator, World,
};
use serde_json::json;

use super::TestResult;

fn surface_name(s: Surface) -> &'static str {
    match s {
        Surface::Reels => "reels",
        Surface::Feed => "feed",
        Surface::Watch => "watch",
    }
}

fn catalog(world: &World) -> Catalog {
    Catalog {
        video_id: world.videos.id.clone(),
        creator_id: world.videos.creator.iter().map(|&c| c as u64).collect(),
        long: world.videos.long.clone(),
    }
}

fn index(world: &World) -> HashMap<u64, u32> {
    world
        .videos
        .id
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect()
}

/// One page served in process: user, time, request id, videos, teams.
type Page = (u64, i64, u64, Vec<u64>, Vec<String>);

/// What [`play`] returns: the served run's events, the in-process run's, the
/// server's exposure directory and the in-process pages.
type Played = (Events, Events, PathBuf, Vec<Page>);

/// A feed filled by the server over HTTP.
struct Http {
    addr: SocketAddr,
    clients: Mutex<Vec<Client>>,
    index: HashMap<u64, u32>,
}

impl Policy for Http {
    fn name(&self) -> &str {
        "http"
    }

    fn fill(&self, req: &FeedRequest<'_>, _: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
        let popped = self.clients.lock().expect("pool").pop();
        let mut c = match popped {
            Some(c) => c,
            None => Client::connect(self.addr).expect("connect"),
        };
        let exclude: Vec<u64> = req
            .seen
            .iter()
            .map(|&v| req.world.videos.id[v as usize])
            .collect();
        let body = json!({
            "user_id": req.world.users.id[req.user],
            "k": req.n,
            "surface": surface_name(req.surface),
            "exclude": exclude,
            "request_id": req.request_id,
            "ts_ms": req.ts_ms,
        });
        let r = c.post_json("/v1/recommend", &body).expect("request");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json().expect("json");
        for it in v["items"].as_array().expect("items") {
            let id = it["video_id"].as_u64().expect("id");
            out.push(self.index[&id]);
        }
        self.clients.lock().expect("pool").push(c);
    }
}

/// The same two models in process: each user's arm from the shared hash
/// (A/B), or both lists merged by the shared team draft (interleaving).
struct Local {
    rankers: [Ranker; 2],
    names: [String; 2],
    design: Design,
    index: HashMap<u64, u32>,
    log: Mutex<Vec<Page>>,
}

impl Policy for Local {
    fn name(&self) -> &str {
        "local"
    }

    fn fill(&self, req: &FeedRequest<'_>, _: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
        let user = req.world.users.id[req.user];
        let r = Request {
            exclude: req
                .seen
                .iter()
                .map(|&v| req.world.videos.id[v as usize])
                .collect(),
            surface: Some(surface_name(req.surface).parse().expect("surface")),
            ..Request::default()
        };
        let list = |i: usize| -> Vec<u64> {
            self.rankers[i].recommend_batch(&[reelkit_ranker::BatchRequest {
                user_id: user,
                k: req.n,
                request: &r,
            }])[0]
                .items
                .iter()
                .map(|x| x.item_id)
                .collect()
        };
        let (ids, teams): (Vec<u64>, Vec<String>) = match &self.design {
            Design::Ab { split, salt } => {
                let arm = split.arm(salt, user);
                let i = self
                    .names
                    .iter()
                    .position(|n| *n == split.names()[arm])
                    .expect("arm");
                let ids = list(i);
                let n = ids.len();
                (ids, vec![self.names[i].clone(); n])
            }
            Design::Interleave { salt } => {
                let merged = team_draft(
                    &list(0),
                    &list(1),
                    req.n,
                    interleave_seed(salt, user, req.request_id),
                );
                merged
                    .into_iter()
                    .map(|(v, t)| (v, self.names[usize::from(t == Team::B)].clone()))
                    .unzip()
            }
            Design::Single => unreachable!("two models"),
        };
        out.extend(ids.iter().map(|id| self.index[id]));
        self.log
            .lock()
            .expect("log")
            .push((user, req.ts_ms, req.request_id, ids, teams));
    }
}

struct Setup {
    world: &'static World,
    sim: Simulator<'static>,
    models: Vec<(String, PathBuf)>,
}

fn setup(dir: &Path) -> TestResult<Setup> {
    let world = World::generate(
        &SimParams {
            users: 300,
            videos: 1_500,
            creators: 150,
            new_videos_per_day: 0,
            days: 6,
            seed: 5,
            ..SimParams::default()
        }
        .check()?,
    );
    let world: &'static World = Box::leak(Box::new(world));
    let mut sim = Simulator::new(world);
    let mut popular = builtin_policy("popular")?;
    let pre = sim.run(3, popular.as_mut(), &|_| {})?;
    let mut models = Vec::new();
    for (name, factors) in [("control", 4), ("treatment", 24)] {
        let params = TrainParams {
            factors,
            epochs: 8,
            reg: 5.0,
            ..TrainParams::default()
        };
        let m = reelkit_lab::training::train_on_events(&pre, &params, name)?;
        let path = dir.join(format!("{name}.arrow"));
        m.save(&path)?;
        models.push((name.to_string(), path));
    }
    Ok(Setup { world, sim, models })
}

/// Plays 2 days with the server (over HTTP) and in process; returns both
/// runs' events, the server's exposure directory and the in-process log.
fn play(s: &Setup, design: Design, dir: &Path) -> TestResult<Played> {
    let config = ServeConfig {
        retrieval: Retrieval::Exact,
        ..ServeConfig::default()
    };
    let exposures = dir.join(format!("exposures-{}", design.kind()));
    let state = Arc::new(
        AppState::open_models(&s.models, design.clone(), Some(catalog(s.world)), config)?
            .with_exposures(ExposureLog::open(ExposureConfig::new(&exposures))?)?,
    );
    let server = reelkit_serve::client::LocalServer::start(state)?;
    let mut http = Http {
        addr: server.addr,
        clients: Mutex::new(Vec::new()),
        index: index(s.world),
    };
    let served = s.sim.clone().run(2, &mut http, &|_| {})?;
    server.stop()?;

    let c = catalog(s.world);
    let open = |p: &Path| -> TestResult<Ranker> {
        Ok(Ranker::open(p)?
            .with_retrieval(Retrieval::Exact)
            .with_catalog(&c.video_id, &c.creator_id, &c.long)?)
    };
    let mut local = Local {
        rankers: [open(&s.models[0].1)?, open(&s.models[1].1)?],
        names: [s.models[0].0.clone(), s.models[1].0.clone()],
        design,
        index: index(s.world),
        log: Mutex::new(Vec::new()),
    };
    let played = s.sim.clone().run(2, &mut local, &|_| {})?;
    let log = std::mem::take(&mut *local.log.lock().map_err(|_| "log")?);
    Ok((served, played, exposures, log))
}

#[test]
fn interleaving_over_http_gives_the_in_process_answer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = setup(dir.path())?;
    let design = Design::Interleave { salt: "e2e".into() };
    let (served, played, exp_dir, mut log) = play(&s, design, dir.path())?;
    assert!(served.len() > 1_000, "{} impressions", served.len());
    assert_eq!(
        served, played,
        "the server and the in-process run show the same videos"
    );

    // The server's log, read back, against the in-process one.
    let from_server = reelkit_abtest::exposure::read_exposures(&exp_dir)?;
    log.sort_by_key(|x| (x.0, x.2));
    log.dedup_by_key(|x| (x.0, x.2));
    assert_eq!(from_server.len(), log.len(), "one exposure row per request");
    let local = Exposures {
        dir: "<in process>".into(),
        experiment: "interleave".into(),
        model_versions: from_server.model_versions.clone(),
        variant: vec![None; log.len()],
        user_id: log.iter().map(|x| x.0).collect(),
        ts_ms: log.iter().map(|x| x.1).collect(),
        request_id: log.iter().map(|x| x.2).collect(),
        teams: log.iter().map(|x| Some(x.4.clone())).collect(),
        video_ids: log.iter().map(|x| x.3.clone()).collect(),
        skipped: Vec::new(),
    };
    let events_file = dir.path().join("events.parquet");
    reelkit_logs::write_events(&events_file, &served)?;
    let metrics = reelkit_abtest::builtin_metrics();
    let cfg = InterleaveConfig::default();
    let a = reelkit_abtest::interleaving::interleave(
        &Source::Path(events_file.clone()),
        &from_server,
        &metrics,
        &cfg,
    )?;
    let b = reelkit_abtest::interleaving::interleave(
        &Source::events("in process", &played)?,
        &local,
        &metrics,
        &cfg,
    )?;
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.teams, ["control".to_string(), "treatment".to_string()]);
    let watch = &a.metrics[0];
    eprintln!("{}", reelkit_abtest::interleaving::interleave_markdown(&a));
    assert!(watch.prefer_a + watch.prefer_b > 100, "{watch:?}");
    // The richer model's videos earn more watch time (too few users here
    // for significance: the point is that both paths agree).
    assert!(
        watch.prefer_b > watch.prefer_a && watch.credit_lift > 0.0,
        "{watch:?}"
    );

    // An interleaving log is not an A/B assignment.
    let err = from_server
        .exposed()
        .err()
        .ok_or("an interleaving log as assignments")?;
    assert!(err.to_string().contains("reelkit ab interleave"), "{err}");
    // Events that share no user with the exposures: a clear error.
    let mut strangers = served.clone();
    for u in &mut strangers.user_id {
        *u += 1 << 40;
    }
    let err = reelkit_abtest::interleaving::interleave(
        &Source::events("strangers", &strangers)?,
        &from_server,
        &metrics,
        &cfg,
    )
    .err()
    .ok_or("no error")?;
    assert!(err.to_string().contains("share no user"), "{err}");
    // A truncated exposure file: named; an unfinished one: skipped.
    let file = std::fs::read_dir(&exp_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .ok_or("no exposure file")?;
    let bytes = std::fs::read(&file)?;
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken)?;
    std::fs::write(
        broken.join("exposures-1.parquet"),
        &bytes[..bytes.len() / 2],
    )?;
    let err = reelkit_abtest::exposure::read_exposures(&broken)
        .err()
        .ok_or("read a truncated file")?;
    assert!(
        err.to_string().contains("exposures-1.parquet") && err.to_string().contains("truncated"),
        "{err}"
    );
    std::fs::remove_file(broken.join("exposures-1.parquet"))?;
    std::fs::write(broken.join("exposures-1.parquet"), &bytes)?;
    std::fs::write(broken.join("exposures-2.parquet.partial"), &bytes[..100])?;
    let read = reelkit_abtest::exposure::read_exposures(&broken)?;
    assert_eq!(read.len(), from_server.len());
    assert_eq!(read.skipped.len(), 1);
    Ok(())
}

#[test]
fn ab_over_http_gives_the_in_process_answer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = setup(dir.path())?;
    let split = Allocation::parse("control=0.5,treatment=0.5")?;
    let design = Design::Ab {
        split: split.clone(),
        salt: "e2e-ab".into(),
    };
    let (served, played, exp_dir, _) = play(&s, design, dir.path())?;
    assert_eq!(served, played);
    let exposures = reelkit_abtest::exposure::read_exposures(&exp_dir)?;
    let exposed = exposures.exposed()?;
    for (u, v) in exposed
        .assignments
        .user_id
        .iter()
        .zip(&exposed.assignments.variant)
    {
        assert_eq!(v, &split.names()[split.arm("e2e-ab", *u)], "user {u}");
    }
    let events_file = dir.path().join("events.parquet");
    reelkit_logs::write_events(&events_file, &served)?;
    let metrics = reelkit_abtest::builtin_metrics();
    let cfg = reelkit_abtest::AnalysisConfig::default();
    let from_log = reelkit_abtest::analyze(
        &reelkit_abtest::Inputs::new(
            Source::Path(events_file.clone()),
            &exposed.assignments,
            &metrics,
        ),
        &cfg,
    )?;
    // In process: the same users, their arms from the shared hash.
    let assignments = reelkit_logs::Assignments {
        user_id: exposed.assignments.user_id.clone(),
        variant: exposed
            .assignments
            .user_id
            .iter()
            .map(|&u| split.names()[split.arm("e2e-ab", u)].clone())
            .collect(),
    };
    let in_process = reelkit_abtest::analyze(
        &reelkit_abtest::Inputs::new(
            Source::events("in process", &played)?,
            &assignments,
            &metrics,
        ),
        &cfg,
    )?;
    assert_eq!(from_log.metrics, in_process.metrics);
    // Triggered: every event here follows its user's first exposure.
    let d = reelkit_abtest::exposure::exposure_dilution(&events_file, &exposed)?;
    assert_eq!(d.events_after, d.events_of_exposed);
    assert_eq!(
        d.exposed_users_with_events as usize,
        exposed.assignments.len()
    );
    Ok(())
}
