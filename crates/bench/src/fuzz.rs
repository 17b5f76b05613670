//! Seeded mutation fuzzing of the readers and the server (`reelkit bench fuzz`).

use std::time::Instant;

use serde_json::json;

/// Arguments of `reelkit bench fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzBenchArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One target (model, parquet, arrow, csv, http); without it each runs
    /// in a process of its own, so an abort (a failed allocation cannot be
    /// caught) is counted, not fatal.
    #[arg(long)]
    target: Option<String>,
}

/// Every fuzz target, each in a child process; a child killed by a signal
/// is a crash.
pub(super) fn fuzz_all(args: &FuzzBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut targets = serde_json::Map::new();
    let mut crashes = 0u64;
    for t in ["model", "parquet", "arrow", "csv", "http"] {
        let o = std::process::Command::new(&exe)
            .args(["bench", "fuzz", "--target", t])
            .args([
                "--seconds",
                &args.seconds.to_string(),
                "--seed",
                &args.seed.to_string(),
            ])
            .stderr(std::process::Stdio::piped())
            .output()?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&o.stdout).ok();
        let entry = match parsed {
            Some(v) => {
                crashes += v["crashes"].as_u64().unwrap_or(0);
                v["targets"][t].clone()
            }
            None => {
                crashes += 1;
                let stderr = String::from_utf8_lossy(&o.stderr);
                let first = stderr.lines().next().unwrap_or("").to_string();
                json!({"aborted": format!("{} ({first})", o.status)})
            }
        };
        targets.insert(t.into(), entry);
    }
    let out = json!({
        "bench": "fuzz",
        "seed": args.seed,
        "seconds_per_target": args.seconds,
        "targets": targets,
        "crashes": crashes,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    anyhow::ensure!(crashes == 0, "{crashes} crashes");
    Ok(())
}

/// One mutation of `seed`'s bytes: bit flips, a byte overwritten, a
/// truncation, a chunk duplicated, random bytes inserted or a range zeroed.
pub(super) fn mutate(seed: &[u8], rng: &mut reelkit_sim::random::Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let n = b.len().max(1) as u64;
        let at = rng.below(n) as usize;
        match rng.below(6) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(n) as usize;
                    if i < b.len() {
                        b[i] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => {
                if at < b.len() {
                    b[at] = rng.below(256) as u8;
                }
            }
            2 => b.truncate(at),
            3 => {
                let len = (rng.below(64) as usize).min(b.len().saturating_sub(at));
                let chunk = b[at..at + len].to_vec();
                b.splice(at..at, chunk);
            }
            4 => {
                let bytes: Vec<u8> = (0..1 + rng.below(16))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                b.splice(at.min(b.len())..at.min(b.len()), bytes);
            }
            _ => {
                let end = (at + 1 + rng.below(32) as usize).min(b.len());
                b[at.min(end)..end].iter_mut().for_each(|x| *x = 0);
            }
        }
    }
    b
}

/// Executions, clean errors, accepted inputs and crashes of one target.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct FuzzCounts {
    executions: u64,
    errors: u64,
    /// Errors that were a panic inside polars, caught by the reader and
    /// reported as "polars cannot read this file" (counted in `errors`).
    caught_panics: u64,
    accepted: u64,
    crashes: u64,
    /// The first crashing input's file, kept for a bug report.
    first_crash: Option<String>,
}

/// How a fuzz case was refused (an error, not a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A typed error of reelkit's own checks or of polars.
    Error,
    /// A panic inside polars, caught by the reader and returned as an error.
    CaughtPanic,
}

pub(super) fn fuzz(args: FuzzBenchArgs) -> anyhow::Result<()> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    let Some(target) = args.target.clone() else {
        return fuzz_all(&args);
    };
    anyhow::ensure!(
        ["model", "parquet", "arrow", "csv", "http"].contains(&target.as_str()),
        "--target must be model, parquet, arrow, csv or http, got {target}"
    );
    let dir = tempfile::tempdir()?;
    let keep = std::env::temp_dir().join(format!("reelkit-fuzz-{}", std::process::id()));
    let budget = std::time::Duration::from_secs(args.seconds);
    let mut rng = reelkit_sim::random::Rng::new(args.seed);
    // Seeds: a small model, and a slice of the committed sample's events.
    let model_path = dir.path().join("model_seed.arrow");
    {
        use reelkit_ranker::{Factors, IdMap, Model, ModelMeta};
        let items = 50;
        Model {
            users: IdMap::from_ids(vec![1, 2, 3]),
            items: IdMap::from_ids((0..items as u64).collect()),
            factors: Factors {
                dim: 4,
                users: (0..12).map(|i| i as f32 * 0.1).collect(),
                items: (0..items * 4).map(|i| (i % 7) as f32 * 0.2).collect(),
                item_bias: vec![0.0; items],
            },
            user_counts: vec![1; 3],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; items],
            meta: ModelMeta::default(),
        }
        .save(&model_path)?;
    }
    // A day of a small simulated world, seeded: the binary needs no file of
    // the source tree.
    let events = {
        let params = reelkit_sim::SimParams {
            seed: args.seed,
            days: 1,
            users: 60,
            ..reelkit_sim::SimParams::default()
        }
        .with_videos(200)
        .check()?;
        let world = reelkit_sim::World::generate(&params);
        let mut policy = reelkit_sim::builtin_policy("popular")?;
        reelkit_sim::Simulator::new(&world).run(1, policy.as_mut(), &|_| {})?
    };
    let mut df = events.to_dataframe()?.head(Some(300));
    let mut seeds = Vec::new();
    for ext in ["parquet", "arrow", "csv"] {
        let p = dir.path().join(format!("seed.{ext}"));
        reelkit_logs::write_frame(&p, &mut df)?;
        seeds.push((ext, std::fs::read(&p)?));
    }
    let model_seed = std::fs::read(&model_path)?;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut report = serde_json::Map::new();
    let mut run = |name: &str,
                   seed: &[u8],
                   ext: &str,
                   rng: &mut reelkit_sim::random::Rng,
                   check: &dyn Fn(&std::path::Path) -> Result<(), Refusal>|
     -> anyhow::Result<()> {
        let mut c = FuzzCounts::default();
        let t = Instant::now();
        let path = dir.path().join(format!("case.{ext}"));
        while t.elapsed() < budget {
            let bytes = mutate(seed, rng);
            std::fs::write(&path, &bytes)?;
            c.executions += 1;
            match catch_unwind(AssertUnwindSafe(|| check(&path))) {
                Ok(Ok(())) => c.accepted += 1,
                Ok(Err(refusal)) => {
                    c.errors += 1;
                    c.caught_panics += u64::from(refusal == Refusal::CaughtPanic);
                }
                Err(_) => {
                    c.crashes += 1;
                    if c.first_crash.is_none() {
                        std::fs::create_dir_all(&keep)?;
                        let kept = keep.join(format!("{name}.{ext}"));
                        std::fs::write(&kept, &bytes)?;
                        c.first_crash = Some(kept.display().to_string());
                    }
                }
            }
        }
        report.insert(name.into(), serde_json::to_value(&c)?);
        Ok(())
    };
    if target == "model" {
        run("model", &model_seed, "arrow", &mut rng, &|p| {
            reelkit_ranker::Ranker::open(p)
                .map(drop)
                .map_err(|_| Refusal::Error)
        })?;
    }
    for (ext, seed) in &seeds {
        let name = if *ext == "parquet" || *ext == "csv" {
            *ext
        } else {
            "arrow"
        };
        if target == name {
            run(name, seed, ext, &mut rng, &|p| {
                reelkit_logs::read_events(p).map(drop).map_err(|e| match e {
                    // polars panicked on the file; the reader caught it.
                    reelkit_logs::Error::Unreadable { .. } => Refusal::CaughtPanic,
                    _ => Refusal::Error,
                })
            })?;
        }
    }
    if target != "http" {
        std::panic::set_hook(quiet);
        let crashes: u64 = report.values().filter_map(|v| v["crashes"].as_u64()).sum();
        let out = json!({"bench": "fuzz", "targets": report, "crashes": crashes});
        println!("{}", serde_json::to_string_pretty(&out)?);
        anyhow::ensure!(
            crashes == 0,
            "{crashes} crashes (inputs kept under {})",
            keep.display()
        );
        return Ok(());
    }
    // HTTP bodies against a live server: a crash is a dead connection.
    let state = std::sync::Arc::new(reelkit_serve::AppState::from_ranker(
        reelkit_ranker::Ranker::open(&model_path)?,
        "fuzz",
        reelkit_serve::ServeConfig::default(),
    ));
    let server = reelkit_serve::client::LocalServer::start(state)?;
    let bodies: [&[u8]; 3] = [
        br#"{"user_id": 1, "k": 5, "exclude": [1, 2], "history": [3]}"#,
        br#"{"user_id": 2, "videos": [1, 2, 3]}"#,
        br#"{"user_id": 9, "k": 3, "surface": "reels", "max_per_creator": 1}"#,
    ];
    let mut c = FuzzCounts::default();
    let t = Instant::now();
    let mut client = reelkit_serve::client::Client::connect(server.addr)?;
    while t.elapsed() < budget {
        let which = rng.below(3) as usize;
        let body = mutate(bodies[which], &mut rng);
        let route = if which == 1 {
            "/v1/score"
        } else {
            "/v1/recommend"
        };
        c.executions += 1;
        match client.send("POST", route, Some(&body)) {
            Ok(r) if r.status < 500 || r.status == 503 => {
                if r.status == 200 {
                    c.accepted += 1;
                } else {
                    c.errors += 1;
                }
            }
            _ => {
                c.crashes += 1;
                if c.first_crash.is_none() {
                    std::fs::create_dir_all(&keep)?;
                    let kept = keep.join("http.json");
                    std::fs::write(&kept, &body)?;
                    c.first_crash = Some(kept.display().to_string());
                }
                client = reelkit_serve::client::Client::connect(server.addr)?;
            }
        }
    }
    report.insert("http".into(), serde_json::to_value(&c)?);
    server.stop()?;
    std::panic::set_hook(quiet);
    let crashes: u64 = report.values().filter_map(|v| v["crashes"].as_u64()).sum();
    let out = json!({
        "bench": "fuzz",
        "seed": args.seed,
        "seconds_per_target": args.seconds,
        "targets": report,
        "crashes": crashes,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    anyhow::ensure!(
        crashes == 0,
        "{crashes} crashes (inputs kept under {})",
        keep.display()
    );
    Ok(())
}
