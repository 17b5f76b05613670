//! `reelkit bench ...`: benchmarks that print one JSON object on stdout.

use anyhow::Context;
use std::time::Instant;

use reelkit_sim::{builtin_policy, SimParams, Simulator, World};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Simulator throughput (impressions per second), all threads against one.
    Simulate(SimBenchArgs),
    /// Batch top-K recommendation time for a list of users (model and files
    /// loaded before the clock starts).
    Recommend(RecBenchArgs),
    /// A/B analysis end to end against a bare polars group-by over the same file.
    Ab(AbBenchArgs),
    /// HTTP serving on loopback: maximum throughput (closed loop), then latency
    /// at half of it (open loop, no coordinated omission).
    Serve(ServeBenchArgs),
    /// Exact top-K retrieval on random data: batch throughput, single-query
    /// latency, GFLOP/s and GB/s, beside a plain streaming read of the same bytes.
    Topk(TopkBenchArgs),
    /// An experiment spec end to end (default: the demo's), phase by phase,
    /// beside the same days simulated with everyone on `popular`.
    Experiment(ExperimentBenchArgs),
    /// Opening a model file: `MappedModel::open` (read into memory) beside
    /// `MappedModel::map` (memory map), each validating and hashing every
    /// byte: time and resident memory.
    Load(LoadBenchArgs),
    /// Seeded mutation fuzzing for a bounded time: model files, event logs
    /// (Parquet, Arrow IPC, CSV) and HTTP request bodies; counts executions
    /// and crashes (panics, a dead server).
    Fuzz(FuzzBenchArgs),
}

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
fn fuzz_all(args: &FuzzBenchArgs) -> anyhow::Result<()> {
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
fn mutate(seed: &[u8], rng: &mut reelkit_sim::Rng) -> Vec<u8> {
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
struct FuzzCounts {
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
enum Refusal {
    /// A typed error of reelkit's own checks or of polars.
    Error,
    /// A panic inside polars, caught by the reader and returned as an error.
    CaughtPanic,
}

fn fuzz(args: FuzzBenchArgs) -> anyhow::Result<()> {
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
    let mut rng = reelkit_sim::Rng::new(args.seed);
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
        let params =
            crate::simulate::load_params(None, Some(args.seed), Some(1), Some(60), Some(200))?;
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
                   rng: &mut reelkit_sim::Rng,
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

/// Arguments of `reelkit bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadBenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Opens of each kind (alternating).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Directory for the model file (default: the system's temporary one).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// `(RssAnon, RssFile)` of this process now, in MiB.
fn rss_parts_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let get = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((get("RssAnon:")?, get("RssFile:")?))
}

fn load(args: LoadBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::{Factors, IdMap, MappedModel, Model, ModelMeta};
    anyhow::ensure!(args.items > 0 && args.dim > 0, "empty model");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let path = dir.path().join("model.arrow");
    {
        let mut rng = reelkit_sim::Rng::new(args.seed);
        let n = args.items * args.dim;
        let items: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids((0..args.items as u64).collect()),
            factors: Factors {
                dim: args.dim,
                users: vec![0.5; args.dim],
                items,
                item_bias: vec![0.0; args.items],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; args.items],
            meta: ModelMeta::default(),
        }
        .save(&path)?;
    }
    let bytes = std::fs::metadata(&path)?.len();
    let (mut read_s, mut map_s) = (Vec::new(), Vec::new());
    let (mut read_anon, mut map_file) = (0.0f64, 0.0f64);
    for _ in 0..args.rounds {
        // The mapped open: the same validation and hash over a memory map.
        let before = rss_parts_mib().unwrap_or_default();
        let t = Instant::now();
        // SAFETY: a private temporary file nothing else writes while mapped.
        let m = unsafe { MappedModel::map(&path) }?;
        map_s.push(t.elapsed().as_secs_f64());
        let after = rss_parts_mib().unwrap_or_default();
        map_file = map_file.max(after.1 - before.1);
        std::hint::black_box(m.content_hash);
        drop(m);
        // reelkit's open: read into an aligned buffer, validate, hash.
        let before = rss_parts_mib().unwrap_or_default();
        let t = Instant::now();
        let m = MappedModel::open(&path)?;
        read_s.push(t.elapsed().as_secs_f64());
        let after = rss_parts_mib().unwrap_or_default();
        read_anon = read_anon.max(after.0 - before.0);
        std::hint::black_box(m.content_hash);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (read, map) = (median(&mut read_s), median(&mut map_s));
    let out = json!({
        "bench": "load",
        "items": args.items,
        "dim": args.dim,
        "file_mib": bytes as f64 / (1 << 20) as f64,
        "rounds": args.rounds,
        "open_read_s": read,
        "baseline_map_s": map,
        "open_vs_mmap": read / map,
        "open_read_gb_s": bytes as f64 / read / 1e9,
        "open_anon_rss_mib": read_anon,
        "mmap_file_rss_mib": map_file,
        "note": "both with the file in the page cache; the read copy is private memory, the map's pages are the cache's and go with the file",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

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

/// Arguments of `reelkit bench topk`.
#[derive(Debug, clap::Args)]
pub struct TopkBenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Queries in the batch.
    #[arg(long, default_value_t = 1_024)]
    queries: usize,
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Single queries timed for the latency percentiles.
    #[arg(long, default_value_t = 200)]
    single: usize,
    /// Also the f16 table with exact rescoring (recall against exact reported).
    #[arg(long)]
    half: bool,
    /// Also the int8 table (per-vector scales, codes in ±63 for items and queries) with
    /// `--oversample`·k + 64 candidates rescored exactly in f32.
    #[arg(long)]
    int8: bool,
    /// Candidates per wanted result for the approximate paths.
    #[arg(long, default_value_t = 2)]
    oversample: usize,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    /// The drawn vectors: `gaussian` (independent normals, the worst case for
    /// an inverted file) or `clustered` (around `--centres` Gaussian centres
    /// with `--noise`, as trained embeddings group by topic).
    #[arg(long, value_enum, default_value_t = TopkData::Gaussian)]
    data: TopkData,
    /// Centres of the clustered data.
    #[arg(long, default_value_t = 4_096)]
    centres: usize,
    /// Spread of the clustered data around its centres (relative to a centre's norm).
    #[arg(long, default_value_t = 0.35)]
    noise: f64,
    /// Also an approximate index: `ivf` (inverted lists of int8 codes,
    /// candidates rescored exactly).
    #[arg(long, value_enum)]
    index: Option<TopkIndex>,
    /// IVF lists (default 4·√items).
    #[arg(long)]
    nlist: Option<usize>,
    /// IVF lists probed per query, comma-separated: a recall / speed curve.
    /// The nprobe tuned to --target-recall (on separate queries) is measured
    /// as well, and the filtered measurement uses it.
    #[arg(long, value_delimiter = ',')]
    nprobe: Vec<usize>,
    /// The recall@k the tuned nprobe aims at (on queries not measured).
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// Also measure the IVF index under filters: an allowed set of this share
    /// of the catalogue (a "surface") and `--exclude` videos per query.
    #[arg(long)]
    filter_share: Option<f64>,
    /// Videos each query excludes in the filtered measurement: half its own
    /// best, half random.
    #[arg(long, default_value_t = 1_000)]
    exclude: usize,
    /// Read the items from a raw little-endian f32 file (items × dim) instead
    /// of drawing them (the peer script's data).
    #[arg(long, requires = "queries_file")]
    items_file: Option<std::path::PathBuf>,
    /// Raw little-endian f32 queries (queries × dim).
    #[arg(long, requires = "items_file")]
    queries_file: Option<std::path::PathBuf>,
    /// Write the exact top-k item indices of every query (little-endian u32,
    /// queries × k, best first) for comparison with a peer.
    #[arg(long)]
    ids_out: Option<std::path::PathBuf>,
}

/// Which vectors `bench topk` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopkData {
    /// Independent normals.
    Gaussian,
    /// Normals around Gaussian centres.
    Clustered,
}

/// Which approximate index `bench topk` also measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TopkIndex {
    /// Inverted file with int8 lists.
    Ivf,
}

/// `n` vectors of `dim` values: normals of variance `1/dim`, or (clustered)
/// one of `centres` such normals plus `noise` times another.
fn draw_vectors(
    rng: &mut reelkit_sim::Rng,
    n: usize,
    dim: usize,
    centres: &[f32],
    noise: f64,
) -> Vec<f32> {
    let scale = 1.0 / (dim as f64).sqrt();
    let k = centres.len() / dim.max(1);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        if k == 0 {
            out.extend((0..dim).map(|_| (rng.normal() * scale) as f32));
        } else {
            let c = rng.below(k as u64) as usize;
            out.extend(
                (0..dim).map(|d| centres[c * dim + d] + (rng.normal() * scale * noise) as f32),
            );
        }
    }
    out
}

/// A raw little-endian f32 file holding `rows × dim` values.
fn read_f32s(path: &std::path::Path, dim: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() % (4 * dim) == 0 && !bytes.is_empty(),
        "{}: {} bytes is not a whole number of {dim}-dim f32 rows",
        path.display(),
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Arguments of `reelkit bench serve`.
#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// Videos in the random model.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Users in the random model (requests cycle through them).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Concurrent keep-alive connections of the load generator (enough that the
    /// open-loop phase does not queue behind its own connections).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per connection in each phase.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Open-loop rate as a share of the measured maximum.
    #[arg(long, default_value_t = 0.5)]
    load_share: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where candidates are retrieved (as `reelkit serve --retrieval`).
    #[arg(long, value_enum, default_value_t = crate::serve::RetrievalArg::default())]
    retrieval: crate::serve::RetrievalArg,
    /// The random model's vectors (users and videos alike): `gaussian` or
    /// `clustered` (as `bench topk`; trained embeddings group by taste).
    #[arg(long, value_enum, default_value_t = TopkData::Gaussian)]
    data: TopkData,
    /// Centres of the clustered data.
    #[arg(long, default_value_t = 20_000)]
    centres: usize,
    /// Spread of the clustered data around its centres.
    #[arg(long, default_value_t = 0.35)]
    noise: f64,
    /// Batch workers scanning alone (0: one worker across all threads).
    #[arg(long, default_value_t = 0)]
    scan_workers: usize,
    /// Also measure champion/challenger serving in the same run: two models
    /// interleaved by team draft, every response written to an exposure log,
    /// and each model hot-reloaded over and over during the open-loop phase.
    #[arg(long)]
    interleave: bool,
}

/// Arguments of `reelkit bench ab`.
#[derive(Debug, clap::Args)]
pub struct AbBenchArgs {
    /// Impressions in the synthetic log (ignored with --events).
    #[arg(long, default_value_t = 50_000_000)]
    impressions: usize,
    /// Users in the synthetic log.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Use this event file instead of a synthetic one.
    #[arg(long)]
    events: Option<std::path::PathBuf>,
    /// Where to write the synthetic file (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Internal: run one phase in this (fresh) process and print its JSON.
    #[arg(long, hide = true, value_parser = ["groupby", "same", "analyze"])]
    phase: Option<String>,
    /// Internal: the assignments file the analyze phase reads.
    #[arg(long, hide = true)]
    assignments: Option<std::path::PathBuf>,
}

/// Arguments of `reelkit bench recommend`.
#[derive(Debug, clap::Args)]
pub struct RecBenchArgs {
    #[arg(long)]
    model: std::path::PathBuf,
    /// Users to recommend for (column user_id).
    #[arg(long)]
    users: std::path::PathBuf,
    /// Interactions to exclude (user_id, item_id).
    #[arg(long)]
    exclude: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Where candidates are retrieved (as `reelkit recommend --retrieval`).
    #[arg(long, value_enum, default_value_t = crate::serve::RetrievalArg::default())]
    retrieval: crate::serve::RetrievalArg,
}

/// Arguments of `reelkit bench simulate`.
#[derive(Debug, clap::Args)]
pub struct SimBenchArgs {
    #[arg(long, default_value_t = 20_000)]
    users: usize,
    #[arg(long, default_value_t = 50_000)]
    videos: usize,
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long, default_value = "popular")]
    policy: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also time a single-threaded run in the same process as the baseline.
    #[arg(long)]
    single_thread_baseline: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Simulate(args) => simulate(args),
        BenchCommand::Recommend(args) => recommend(args),
        BenchCommand::Ab(args) => ab(args),
        BenchCommand::Serve(args) => serve(args),
        BenchCommand::Topk(args) => topk(args),
        BenchCommand::Experiment(args) => experiment(args),
        BenchCommand::Load(args) => load(args),
        BenchCommand::Fuzz(args) => fuzz(args),
    }
}

fn experiment(args: ExperimentBenchArgs) -> anyhow::Result<()> {
    let spec = crate::experiment::load_spec(args.spec.as_deref(), &args.set)?;
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
    let mut by_arm: std::collections::BTreeMap<&str, (usize, reelkit_lab::FitTime)> =
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

fn simulate(args: SimBenchArgs) -> anyhow::Result<()> {
    let params = SimParams {
        users: args.users,
        videos: args.videos,
        creators: (args.videos / 10).max(1),
        days: args.days,
        seed: args.seed,
        ..SimParams::default()
    }
    .check()?;
    let t0 = Instant::now();
    let world = World::generate(&params);
    let world_s = t0.elapsed().as_secs_f64();

    let time_run = |world: &World| -> anyhow::Result<(usize, f64, u64)> {
        let mut policy = builtin_policy(&args.policy)?;
        let mut sim = Simulator::new(world);
        let t = Instant::now();
        let events = sim.run(args.days, policy.as_mut(), &|_| {})?;
        let secs = t.elapsed().as_secs_f64();
        // A fingerprint so runs with different thread counts can be compared.
        let fp = events
            .watch_ms
            .iter()
            .zip(&events.video_id)
            .fold(0u64, |h, (&w, &v)| {
                reelkit_sim::splitmix64(h ^ w as u64 ^ v.rotate_left(17))
            });
        Ok((events.len(), secs, fp))
    };
    let threads = rayon::current_num_threads();
    let (impressions, secs, fp) = time_run(&world)?;
    let mut out = json!({
        "bench": "simulate",
        "policy": args.policy,
        "users": args.users,
        "videos": world.videos.len(),
        "days": args.days,
        "threads": threads,
        "world_generation_s": world_s,
        "impressions": impressions,
        "simulate_s": secs,
        "impressions_per_s": impressions as f64 / secs,
        "target_impressions_per_s": 1_000_000,
        "ratio_to_target": impressions as f64 / secs / 1e6,
        "fingerprint": format!("{fp:016x}"),
    });
    if args.single_thread_baseline {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let (n1, secs1, fp1) = pool.install(|| time_run(&world))?;
        anyhow::ensure!(
            n1 == impressions && fp1 == fp,
            "single-threaded run differs from the {threads}-thread run: not deterministic"
        );
        out["single_thread_s"] = json!(secs1);
        out["speedup_vs_single_thread"] = json!(secs1 / secs);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn recommend(args: RecBenchArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let r = reelkit_ranker::Ranker::open(&args.model)
        .with_context(|| format!("loading model {}", args.model.display()))?
        .with_retrieval(args.retrieval.into());
    let users = match reelkit_logs::read_ids(&args.users, "user_id", &Default::default())
        .with_context(|| format!("reading users {}", args.users.display()))?
    {
        reelkit_logs::Ids::Numbers(v) => v,
        reelkit_logs::Ids::Strings(_) => anyhow::bail!("bench recommend takes numeric user ids"),
    };
    let m = r.model();
    let mut exclude: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    if let Some(path) = &args.exclude {
        let it = reelkit_logs::read_interactions(path, &Default::default())?;
        for (u, i) in it.user_id.iter().zip(&it.item_id) {
            exclude.entry(*u).or_default().push(*i);
        }
    }
    let d = r.dim();
    let known: Vec<u64> = users
        .iter()
        .copied()
        .filter(|&u| m.users.get(u).is_some())
        .collect();
    // What `reelkit recommend` does, exclusion mapping included.
    let t = Instant::now();
    let mut total = 0usize;
    r.recommend_users(&known, args.k, &exclude, false, None, |_, recs| {
        total += recs.items.len()
    });
    let secs = t.elapsed().as_secs_f64();
    let out = json!({
        "bench": "recommend",
        "retrieval": format!("{:?}", args.retrieval),
        "users": known.len(),
        "k": args.k,
        "items": m.items.len(),
        "dim": d,
        "threads": rayon::current_num_threads(),
        "recommendations": total,
        "seconds": secs,
        "users_per_s": known.len() as f64 / secs,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A synthetic impression log written in chunks (no simulator: pure speed).
fn synthetic_events(path: &std::path::Path, n: usize, users: u64) -> anyhow::Result<()> {
    use reelkit_logs::{Event, Events, Surface};
    let mut rng = reelkit_sim::Rng::new(7);
    let mut ev = Events::with_capacity(n);
    for i in 0..n {
        let u = rng.below(users);
        let d = 3_000 + rng.below(60_000) as u32;
        ev.push(&Event {
            user_id: u,
            session_id: u * 64 + rng.below(16),
            ts_ms: 1_767_571_200_000 + rng.below(14 * 86_400_000) as i64,
            video_id: rng.below(1_000_000),
            creator_id: rng.below(50_000),
            surface: Surface::ALL[i % 3],
            position: rng.below(50) as u32,
            duration_ms: d,
            watch_ms: (d as f64 * rng.f64() * 1.3) as u32,
            liked: rng.bernoulli(0.05),
            shared: rng.bernoulli(0.01),
            commented: rng.bernoulli(0.005),
            followed: rng.bernoulli(0.002),
        });
    }
    reelkit_logs::write_events(path, &ev)?;
    Ok(())
}

/// `reelkit bench ab`: each phase runs in its own fresh process (this binary
/// with `--phase`), so its peak RSS is its own and not what an earlier phase
/// left in the allocator; the phases run one after another in the same run.
fn ab(args: AbBenchArgs) -> anyhow::Result<()> {
    if let Some(phase) = &args.phase {
        return ab_phase(phase, &args);
    }
    if args.events.is_none() {
        crate::limits::ensure_fits(
            &format!("--impressions {}", args.impressions),
            // The generated columns, then the file written from them.
            args.impressions as f64 * 64.0 * 2.0,
        )?;
    }
    let tmp = tempfile_dir(args.dir.as_deref())?;
    let path = match &args.events {
        Some(p) => p.clone(),
        None => {
            let p = tmp.join("bench_events.parquet");
            let t = Instant::now();
            synthetic_events(&p, args.impressions, args.users)?;
            eprintln!(
                "wrote {} impressions in {:.1}s",
                args.impressions,
                t.elapsed().as_secs_f64()
            );
            p
        }
    };
    let assignments = tmp.join("bench_assignments.parquet");
    let exe = std::env::current_exe()?;
    let phase = |name: &str| -> anyhow::Result<serde_json::Value> {
        let out = std::process::Command::new(&exe)
            .args(["bench", "ab", "--phase", name, "--events"])
            .arg(&path)
            .arg("--assignments")
            .arg(&assignments)
            .stderr(std::process::Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "bench phase {name} failed");
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    // The bare group-by writes the assignments (every user with events, split
    // by a hash) that the analysis reads.
    let groupby = phase("groupby")?;
    let analyze = phase("analyze")?;
    let same = phase("same")?;
    let secs = |v: &serde_json::Value| v["seconds"].as_f64().unwrap_or(f64::NAN);
    let peak = |v: &serde_json::Value| v["peak_rss_mib"].as_f64();
    anyhow::ensure!(
        same["users"] == analyze["users_with_events"],
        "baselines disagree on users: {} vs {}",
        same["users"],
        analyze["users_with_events"]
    );
    let out = json!({
        "bench": "ab",
        "file": path,
        "file_mib": std::fs::metadata(&path).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0),
        "users": analyze["users"],
        "metrics": analyze["metrics"],
        "rows": analyze["rows"],
        "baseline_groupby_s": secs(&groupby),
        "analyze_s": secs(&analyze),
        "ratio_to_baseline": secs(&analyze) / secs(&groupby),
        "same_aggregations_groupby_s": secs(&same),
        "ratio_to_same_aggregations": secs(&analyze) / secs(&same),
        "target_ratio_to_same_aggregations": 1.0,
        "peak_rss_mib_baseline_groupby": peak(&groupby),
        "peak_rss_mib_analyze": peak(&analyze),
        "peak_rss_mib_same_aggregations_groupby": peak(&same),
        "peak_rss_ratio_analyze_to_same_aggregations":
            peak(&analyze).zip(peak(&same)).map(|(a, b)| a / b),
        "target_peak_rss_mib_analyze": 2048,
        "peak_rss": "VmHWM of each phase's own process (the analysis's includes reading the assignments)",
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// One phase of `bench ab` in this process; prints `{seconds, peak_rss_mib, ...}`.
fn ab_phase(phase: &str, args: &AbBenchArgs) -> anyhow::Result<()> {
    use reelkit_logs::polars::prelude::*;
    let path = args
        .events
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--phase needs --events"))?;
    let assignments_path = args
        .assignments
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--phase needs --assignments"))?;
    let metrics = reelkit_abtest::builtin_metrics();
    let out = match phase {
        "groupby" => {
            // The barest per-user group-by (one sum of one column).
            let t = Instant::now();
            let base = reelkit_abtest::scan(&path)?
                .group_by([col("user_id")])
                .agg([col("watch_ms").cast(DataType::Float64).sum()])
                .collect_with_engine(Engine::Streaming)?
                .unwrap_single();
            let seconds = t.elapsed().as_secs_f64();
            let peak = peak_rss_mib();
            let users = base
                .column("user_id")?
                .as_materialized_series()
                .cast(&DataType::UInt64)?;
            let mut user_ids: Vec<u64> = users.u64()?.iter().flatten().collect();
            user_ids.sort_unstable();
            let a = reelkit_logs::Assignments {
                variant: user_ids
                    .iter()
                    .map(|&u| {
                        if reelkit_sim::splitmix64(u).is_multiple_of(2) {
                            "control"
                        } else {
                            "treatment"
                        }
                        .to_string()
                    })
                    .collect(),
                user_id: user_ids,
            };
            reelkit_logs::write_assignments(&assignments_path, &a)?;
            json!({"seconds": seconds, "peak_rss_mib": peak, "users": a.len()})
        }
        "same" => {
            // The same per-user aggregations of every metric as one bare
            // polars group-by (no join, no per-arm sums, no statistics).
            let t = Instant::now();
            let same =
                reelkit_abtest::per_user_values(&reelkit_abtest::Source::from(&path), &metrics)?
                    .collect_with_engine(Engine::Streaming)?
                    .unwrap_single();
            json!({"seconds": t.elapsed().as_secs_f64(), "peak_rss_mib": peak_rss_mib(), "users": same.height()})
        }
        _ => {
            // The whole analysis: per-user values of the ten metrics joined
            // to the assignments, sums in user order, statistics, decisions.
            let a = reelkit_logs::read_assignments(&assignments_path)?;
            let cfg = reelkit_abtest::AnalysisConfig {
                experiment: "bench".into(),
                ..Default::default()
            };
            let t = Instant::now();
            let report =
                reelkit_abtest::analyze(&reelkit_abtest::Inputs::new(&path, &a, &metrics), &cfg)?;
            json!({
                "seconds": t.elapsed().as_secs_f64(),
                "peak_rss_mib": peak_rss_mib(),
                "users": a.len(),
                "users_with_events": report.srm.counts.values().sum::<u64>(),
                "metrics": metrics.len(),
                "rows": report.metrics.len(),
            })
        }
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn tempfile_dir(dir: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let d = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("reelkit-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn serve(args: ServeBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::{Factors, IdMap, Model, ModelMeta, Ranker, TrainParams};
    anyhow::ensure!(
        args.items > 0 && args.users > 0 && args.dim > 0,
        "empty model"
    );
    crate::limits::ensure_fits(
        &format!(
            "--items {} and --users {} × --dim {}",
            args.items, args.users, args.dim
        ),
        (args.items + args.users) as f64 * args.dim as f64 * 4.0 * 3.0,
    )?;
    anyhow::ensure!(
        args.load_share > 0.0 && args.load_share <= 1.0,
        "--load-share must be in (0, 1]"
    );
    let mut rng = reelkit_sim::Rng::new(args.seed);
    let centres = match args.data {
        TopkData::Gaussian => Vec::new(),
        TopkData::Clustered => draw_vectors(&mut rng, args.centres.max(1), args.dim, &[], 1.0),
    };
    // `n` values: `n / dim` vectors.
    let mut gauss = |n: usize| -> Vec<f32> {
        draw_vectors(&mut rng, n / args.dim, args.dim, &centres, args.noise)
    };
    let model = Model {
        users: IdMap::from_ids((0..args.users as u64).map(|u| 1_000_000 + u).collect()),
        items: IdMap::from_ids((0..args.items as u64).collect()),
        factors: Factors {
            dim: args.dim,
            users: gauss(args.users * args.dim),
            items: gauss(args.items * args.dim),
            item_bias: vec![0.0; args.items],
        },
        user_counts: vec![1; args.users],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        item_counts: vec![1; args.items],
        meta: ModelMeta {
            params: TrainParams {
                factors: args.dim,
                ..TrainParams::default()
            },
            fingerprint: "bench".into(),
            value_model: None,
            source: "reelkit bench serve".into(),
            specific: None,
        },
    };
    let config = reelkit_serve::ServeConfig {
        retrieval: args.retrieval.into(),
        scan_workers: args.scan_workers,
        ..reelkit_serve::ServeConfig::default()
    };
    let bodies: Vec<Vec<u8>> = (0..args.users.min(10_000))
        .map(|u| {
            serde_json::to_vec(&serde_json::json!({"user_id": 1_000_000 + u as u64, "k": args.k}))
                .unwrap_or_default()
        })
        .collect();
    let second = args.interleave.then(|| {
        let mut m = model.clone();
        m.factors.items = gauss(args.items * args.dim);
        m
    });
    let state = std::sync::Arc::new(reelkit_serve::AppState::from_ranker(
        Ranker::from_model(model.clone()),
        "bench",
        config.clone(),
    ));
    let single = serve_phases(state, &bodies, &args, None)?;
    let mut report = serde_json::json!({
        "bench": "serve",
        "items": args.items,
        "dim": args.dim,
        "k": args.k,
        "threads": rayon::current_num_threads(),
        "closed_loop_max": single.max,
        "open_loop_at_share": single.at_share,
        "load_share": args.load_share,
        "retrieval": format!("{:?}", args.retrieval),
        "data": format!("{:?}", args.data),
        "p99_ms_at_share": single.at_share.p99_ms,
        "max_throughput_rps": single.max.throughput_rps,
    });
    if let Some(b) = second {
        let dir = tempfile::tempdir()?;
        let paths = [
            dir.path().join("control.arrow"),
            dir.path().join("treatment.arrow"),
        ];
        model.save(&paths[0])?;
        b.save(&paths[1])?;
        let models = vec![
            ("control".to_string(), paths[0].clone()),
            ("treatment".to_string(), paths[1].clone()),
        ];
        let log = reelkit_serve::ExposureLog::open(reelkit_serve::ExposureConfig::new(
            dir.path().join("exposures"),
        ))?;
        let state = std::sync::Arc::new(
            reelkit_serve::AppState::open_models(
                &models,
                reelkit_serve::Design::Interleave {
                    salt: "bench".into(),
                },
                None,
                config,
            )?
            .with_exposures(log)?,
        );
        let mixed = serve_phases(
            state.clone(),
            &bodies,
            &args,
            Some(&["control", "treatment"]),
        )?;
        let log = state.exposures().context("the exposure log")?;
        let rows = reelkit_abtest::read_exposures(&dir.path().join("exposures"))?.len();
        report["interleave"] = serde_json::json!({
            "closed_loop_max": mixed.max,
            "open_loop_at_share": mixed.at_share,
            "p99_ms_at_share": mixed.at_share.p99_ms,
            "p99_ratio_vs_single": mixed.at_share.p99_ms / single.at_share.p99_ms,
            "max_throughput_ratio_vs_single": mixed.max.throughput_rps / single.max.throughput_rps,
            "requests_sent": mixed.sent,
            "exposure_rows": rows,
            "exposures_dropped": log.dropped(),
            "exposure_files": log.files(),
            "open_loop_under_reloads": mixed.under_reloads,
            "reloads_during_open_loop": mixed.reloads,
            "reload_failures": mixed.reload_failures,
            "failed_requests": mixed.max.errors
                + mixed.at_share.errors
                + mixed.under_reloads.as_ref().map_or(0, |r| r.errors),
        });
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// What one served configuration measured.
struct Phases {
    max: reelkit_serve::client::LoadReport,
    at_share: reelkit_serve::client::LoadReport,
    /// The open-loop phase again while the models are reloaded in turn.
    under_reloads: Option<reelkit_serve::client::LoadReport>,
    /// Requests sent in all phases (warm-up included).
    sent: usize,
    reloads: usize,
    reload_failures: usize,
}

/// Serves `state` on loopback, warms up, measures the closed-loop maximum,
/// then the open-loop phase at `load_share` of it (reloading each of
/// `reload` models in turn meanwhile), and shuts the server down (the
/// exposure log, if any, is closed when this returns).
fn serve_phases(
    state: std::sync::Arc<reelkit_serve::AppState>,
    bodies: &[Vec<u8>],
    args: &ServeBenchArgs,
    reload: Option<&[&str]>,
) -> anyhow::Result<Phases> {
    use reelkit_serve::client::load;
    let server = reelkit_serve::client::LocalServer::start(state)?;
    let (addr, admin_addr) = (server.addr, server.admin_addr);

    // Warm up (page in the model, start the blocking pool).
    let warm = load(addr, "/v1/recommend", bodies, args.connections, 200, None)?;
    let max = load(
        addr,
        "/v1/recommend",
        bodies,
        args.connections,
        args.requests,
        None,
    )?;
    let rate = max.throughput_rps * args.load_share;
    let at_share = load(
        addr,
        "/v1/recommend",
        bodies,
        args.connections,
        args.requests,
        Some(rate),
    )?;
    // Then the same open-loop load while each model is reloaded in turn.
    let mut under_reloads = None;
    let (mut reloads, mut reload_failures) = (0, 0);
    if let Some(names) = reload {
        let done = std::sync::atomic::AtomicBool::new(false);
        let (r, (n, failed)) = std::thread::scope(|scope| {
            let reloader = scope.spawn(|| -> anyhow::Result<(usize, usize)> {
                let mut c = reelkit_serve::client::Client::connect(admin_addr)?;
                let (mut n, mut failed) = (0, 0);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = names[n % names.len()];
                    let r = c.send("POST", &format!("/admin/reload?model={name}"), None)?;
                    n += 1;
                    if r.status != 200 {
                        failed += 1;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Ok((n, failed))
            });
            let r = load(
                addr,
                "/v1/recommend",
                bodies,
                args.connections,
                args.requests,
                Some(rate),
            );
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let counts = reloader
                .join()
                .map_err(|_| anyhow::anyhow!("the reload thread panicked"))?;
            anyhow::Ok((r?, counts?))
        })?;
        under_reloads = Some(r);
        reloads = n;
        reload_failures = failed;
    }
    server.stop()?;
    Ok(Phases {
        sent: warm.requests
            + max.requests
            + at_share.requests
            + under_reloads.as_ref().map_or(0, |r| r.requests),
        max,
        at_share,
        under_reloads,
        reloads,
        reload_failures,
    })
}

/// Seconds for `matrixmultiply`'s sgemm to compute every query × item score
/// (into a reused buffer, a block of items per task so it stays in memory
/// bounds), the work split over the rayon threads.
fn sgemm_all_scores(queries: &[Vec<f32>], items: &[f32], dim: usize) -> f64 {
    use rayon::prelude::*;
    const BLOCK: usize = 8_192;
    let q: Vec<f32> = queries.iter().flatten().copied().collect();
    let m = queries.len();
    let n = items.len() / dim;
    let t = Instant::now();
    (0..n.div_ceil(BLOCK)).into_par_iter().for_each_init(
        || vec![0f32; m * BLOCK],
        |c, b| {
            let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
            let cols = hi - lo;
            // SAFETY: A is m × dim (row stride dim), B is dim × cols read
            // from row-major items (column stride dim), C is m × cols
            // (row stride cols) inside a buffer of m × BLOCK floats.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    dim,
                    cols,
                    1.0,
                    q.as_ptr(),
                    dim as isize,
                    1,
                    items[lo * dim..].as_ptr(),
                    1,
                    dim as isize,
                    0.0,
                    c.as_mut_ptr(),
                    cols as isize,
                    1,
                )
            };
            std::hint::black_box(&c[..]);
        },
    );
    t.elapsed().as_secs_f64()
}

fn topk(args: TopkBenchArgs) -> anyhow::Result<()> {
    use reelkit_ranker::{recall, HalfTable, Isa, ItemTable};
    anyhow::ensure!(
        args.items > 0 && args.dim > 0 && args.queries > 0,
        "empty benchmark"
    );
    crate::limits::ensure_fits(
        &format!("--items {} × --dim {}", args.items, args.dim),
        // The f32 table, its reduced copies and the index: about twice it.
        args.items as f64 * args.dim as f64 * 4.0 * 2.0,
    )?;
    // Measured queries, and queries that tune nprobe (never measured): drawn
    // from the same distribution, or (with files) a seeded sample of items.
    let (items, queries, tuning): (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) =
        match (&args.items_file, &args.queries_file) {
            (Some(i), Some(q)) => {
                let items = read_f32s(i, args.dim)?;
                let mut rng = reelkit_sim::Rng::new(args.seed);
                let n = items.len() / args.dim;
                let tuning = (0..512)
                    .map(|_| {
                        let r = rng.below(n as u64) as usize;
                        items[r * args.dim..(r + 1) * args.dim].to_vec()
                    })
                    .collect();
                let queries = read_f32s(q, args.dim)?
                    .chunks(args.dim)
                    .map(<[f32]>::to_vec)
                    .collect();
                (items, queries, tuning)
            }
            _ => {
                let mut rng = reelkit_sim::Rng::new(args.seed);
                let centres = match args.data {
                    TopkData::Gaussian => Vec::new(),
                    TopkData::Clustered => {
                        draw_vectors(&mut rng, args.centres.max(1), args.dim, &[], 1.0)
                    }
                };
                let items = draw_vectors(&mut rng, args.items, args.dim, &centres, args.noise);
                let queries = draw_vectors(&mut rng, args.queries, args.dim, &centres, args.noise);
                let tuning = draw_vectors(&mut rng, 512, args.dim, &centres, args.noise);
                let rows = |v: Vec<f32>| v.chunks(args.dim).map(<[f32]>::to_vec).collect();
                (items, rows(queries), rows(tuning))
            }
        };
    let args = TopkBenchArgs {
        items: items.len() / args.dim,
        queries: queries.len(),
        ..args
    };
    // Where a Ranker with IVF retrieval keeps its table: in 2 MiB pages.
    let items = {
        let owned = items;
        reelkit_ranker::in_huge_pages(&owned)
    };
    let table = ItemTable::new(args.dim, &items, None);
    let bytes = (items.len() * 4) as f64;
    // Baseline: a plain parallel streaming read (sum) of the same bytes.
    let stream = || -> f64 {
        use rayon::prelude::*;
        let t = Instant::now();
        // XOR of the bit patterns: associative, so it vectorises and the read
        // is bound by memory, not by a floating-point dependency chain.
        let s: u32 = items
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u32, |a, x| a ^ x.to_bits()))
            .reduce(|| 0, |a, b| a ^ b);
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    };
    stream();
    let stream_s = (0..5).map(|_| stream()).fold(f64::INFINITY, f64::min);
    // Baseline: the machine's sgemm on the same product (queries × items,
    // every score written out, no selection), both cores, best of three.
    let sgemm_s = (0..3)
        .map(|_| sgemm_all_scores(&queries, &items, args.dim))
        .fold(f64::INFINITY, f64::min);
    let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
    let ks = vec![args.k; qs.len()];
    let ex: Vec<&[u32]> = vec![&[]; qs.len()];
    let t = Instant::now();
    let exact = table.top_k_batch(&qs, &ks, &ex);
    let batch_s = t.elapsed().as_secs_f64();
    // Single queries alternate with streaming reads of the same bytes, so
    // both see the same machine; the ratio compares their medians.
    let (mut lat, mut reads): (Vec<f64>, Vec<f64>) = (0..args.single)
        .map(|i| {
            let t = Instant::now();
            std::hint::black_box(table.top_k_parallel(qs[i % qs.len()], args.k, &[]));
            (t.elapsed().as_secs_f64(), stream())
        })
        .unzip();
    lat.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1e3;
    if let Some(path) = &args.ids_out {
        let mut out = Vec::with_capacity(exact.len() * args.k * 4);
        for r in &exact {
            for s in r {
                out.extend_from_slice(&s.item.to_le_bytes());
            }
        }
        reelkit_logs::write_bytes_atomically(path, &out)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let flops = 2.0 * args.items as f64 * args.dim as f64;
    let mut report = json!({
        "bench": "topk",
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "threads": rayon::current_num_threads(),
        "kernel": Isa::detect().name(),
        "stream_read_gb_s": bytes / stream_s / 1e9,
        "sgemm_gflop_s": flops * args.queries as f64 / sgemm_s / 1e9,
        "exact_f32": {
            "batch_queries_per_s": args.queries as f64 / batch_s,
            "batch_gflop_s": flops * args.queries as f64 / batch_s / 1e9,
            "batch_vs_sgemm": sgemm_s / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
            "single_gb_s": bytes / (pct(&lat, 0.5) / 1e3) / 1e9,
            "stream_read_p50_ms": pct(&reads, 0.5),
            "single_bandwidth_vs_stream": pct(&reads, 0.5) / pct(&lat, 0.5),
            "single_best_vs_stream_best": reads[0] / lat[0],
        },
    });
    if args.half {
        let h = HalfTable::new(args.dim, &items, None);
        let pool = (4 * args.k + 64).min(args.items);
        let pools = vec![pool; qs.len()];
        let t = Instant::now();
        let cands = h.top_k_batch(&qs, &pools, &ex);
        let rescored: Vec<Vec<reelkit_ranker::Scored>> = cands
            .iter()
            .zip(&qs)
            .map(|(c, q)| table.rescore(q, args.k, c))
            .collect();
        let half_s = t.elapsed().as_secs_f64();
        let mut hlat: Vec<f64> = (0..args.single)
            .map(|i| {
                let q = qs[i % qs.len()];
                let t = Instant::now();
                let c = h.top_k_batch(&[q], &[pool], &[&[]]);
                std::hint::black_box(table.rescore(q, args.k, &c[0]));
                t.elapsed().as_secs_f64()
            })
            .collect();
        hlat.sort_by(f64::total_cmp);
        report["f16_rescored"] = json!({
            "single_p50_ms": pct(&hlat, 0.5),
            "single_p99_ms": pct(&hlat, 0.99),
            "batch_queries_per_s": args.queries as f64 / half_s,
            "speedup_vs_exact_batch": batch_s / half_s,
            "recall_at_k": recall(&rescored, &exact),
        });
    }
    if args.int8 {
        let t = Instant::now();
        let q8 = reelkit_ranker::Int8Table::new(args.dim, &items, None);
        let build_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let found = q8.search(&table, &qs, &ks, &ex, args.oversample);
        let int8_s = t.elapsed().as_secs_f64();
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let q = qs[i % qs.len()];
                let t = Instant::now();
                std::hint::black_box(q8.search(&table, &[q], &[args.k], &[&[]], args.oversample));
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        report["int8_rescored"] = json!({
            "oversample": args.oversample,
            "build_s": build_s,
            "table_mb": q8.bytes() as f64 / 1e6,
            "batch_queries_per_s": args.queries as f64 / int8_s,
            "speedup_vs_exact_batch": batch_s / int8_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
            "recall_at_k": recall(&found, &exact),
        });
    }
    if let Some(TopkIndex::Ivf) = args.index {
        report["ivf"] = ivf_bench(&args, &table, &qs, &tuning, &exact, batch_s)?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The IVF part of `bench topk`: build, nprobe (tuned or given), recall@k
/// against `exact`, batch and single-query speed, memory; with
/// `--filter-share`, the same under a surface filter and exclusions.
fn ivf_bench(
    args: &TopkBenchArgs,
    table: &reelkit_ranker::ItemTable<'_>,
    qs: &[&[f32]],
    tuning: &[Vec<f32>],
    exact: &[Vec<reelkit_ranker::Scored>],
    exact_batch_s: f64,
) -> anyhow::Result<serde_json::Value> {
    use reelkit_ranker::{recall, IvfIndex, IvfParams, IvfQuery};
    if let Some(share) = args.filter_share {
        anyhow::ensure!(
            share > 0.0 && share <= 1.0,
            "--filter-share must be in (0, 1], got {share}"
        );
    }
    let t = Instant::now();
    let mut index = IvfIndex::build(
        table,
        &IvfParams {
            nlist: args.nlist,
            seed: args.seed,
            ..IvfParams::default()
        },
    )?;
    let build_s = t.elapsed().as_secs_f64();
    // What `Int8Table::bytes` counts for the whole table: codes in whole
    // panels of sixteen, a scale and a sum per item.
    let int8_bytes = (args.items.div_ceil(16) * 16 * (args.dim.div_ceil(4) * 4 + 8)) as f64;
    let pct = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1e3;
    let plain: Vec<IvfQuery<'_>> = qs
        .iter()
        .map(|v| IvfQuery {
            vector: v,
            k: args.k,
            exclude: &[],
            filter: None,
        })
        .collect();
    // Batch (best of two after a warm-up) and single-query timings of the
    // index as it is set.
    let measure = |index: &IvfIndex| -> anyhow::Result<serde_json::Value> {
        let mut batch_s = f64::INFINITY;
        let mut found = index.search(table, &plain)?;
        for _ in 0..2 {
            let t = Instant::now();
            found = index.search(table, &plain)?;
            batch_s = batch_s.min(t.elapsed().as_secs_f64());
        }
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let t = Instant::now();
                let r = index.search_one(table, &plain[i % plain.len()]);
                std::hint::black_box(r.ok());
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        Ok(json!({
            "nprobe": index.nprobe(),
            "recall_at_k": recall(&found, exact),
            "batch_queries_per_s": qs.len() as f64 / batch_s,
            "speedup_vs_exact_batch": exact_batch_s / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
        }))
    };
    // The nprobe, probe order and depth tables tuned to --target-recall on
    // the tuning queries, measured; then the curve over the given nprobes in
    // the tuned order.
    let sample: Vec<&[f32]> = tuning.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    let (n, r) = index.tune_nprobe(table, &sample, args.k, args.target_recall)?;
    let tune_s = t.elapsed().as_secs_f64();
    let mut tuned = measure(&index)?;
    tuned["tuning"] = json!({"nprobe": n, "order": index.probe_order(), "tuning_recall_lower_bound": r, "tuning_queries": sample.len(), "seconds": tune_s});
    // The index file (what `reelkit index` writes and serve loads): save,
    // load back, and check the loaded index answers exactly as the built one.
    let file = std::env::temp_dir().join(format!(".reelkit-bench-{}.ivf", std::process::id()));
    let t = Instant::now();
    index.save(&file)?;
    let save_s = t.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let t = Instant::now();
    let loaded = IvfIndex::load(&file, table);
    let load_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    let loaded = loaded?;
    anyhow::ensure!(
        loaded.search(table, &plain)? == index.search(table, &plain)?,
        "the loaded index answers differently from the built one"
    );
    drop(loaded);
    let mut out = json!({
        "nlist": index.nlist(),
        "kernel": index.kernel_name(),
        "build_s": build_s,
        "index_mb": index.bytes() as f64 / 1e6,
        "int8_table_mb": int8_bytes / 1e6,
        "index_vs_int8_table": index.bytes() as f64 / int8_bytes,
        "imbalance": index.imbalance(),
        "file": {"mb": file_mb, "save_s": save_s, "load_s": load_s,
                 "build_and_tune_over_load": (build_s + tune_s) / load_s},
        "tuned": tuned,
    });
    if let Some(share) = args.filter_share {
        let keep = |i: u32| {
            ((reelkit_sim::splitmix64(i as u64 ^ 0x5eed) >> 11) as f64 / (1u64 << 53) as f64)
                < share
        };
        let filter = index.filter(keep);
        // Exclusions: half the query's own best (as seen videos are), half random.
        let own = table.top_k_batch(
            qs,
            &vec![args.exclude / 2; qs.len()],
            &vec![&[][..]; qs.len()],
        );
        let mut rng = reelkit_sim::Rng::new(args.seed ^ 0xe8c1);
        let excludes: Vec<Vec<u32>> = own
            .iter()
            .map(|o| {
                let mut e: Vec<u32> = o.iter().map(|s| s.item).collect();
                e.extend(
                    (0..args.exclude - args.exclude / 2)
                        .map(|_| rng.below(args.items as u64) as u32),
                );
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        // The truth: the exact top-k of the allowed items, exclusions mapped
        // into that sub-table.
        let allowed: Vec<u32> = (0..args.items as u32).filter(|&i| keep(i)).collect();
        let f = args.dim;
        let sub: Vec<f32> = allowed
            .iter()
            .flat_map(|&i| {
                table.factors()[i as usize * f..(i as usize + 1) * f]
                    .iter()
                    .copied()
            })
            .collect();
        let sub_table = reelkit_ranker::ItemTable::new(f, &sub, None);
        let sub_ex: Vec<Vec<u32>> = excludes
            .iter()
            .map(|e| {
                e.iter()
                    .filter_map(|i| allowed.binary_search(i).ok().map(|p| p as u32))
                    .collect()
            })
            .collect();
        let sub_ex_refs: Vec<&[u32]> = sub_ex.iter().map(Vec::as_slice).collect();
        let truth: Vec<Vec<reelkit_ranker::Scored>> = sub_table
            .top_k_batch(qs, &vec![args.k; qs.len()], &sub_ex_refs)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|s| reelkit_ranker::Scored {
                        item: allowed[s.item as usize],
                        score: s.score,
                    })
                    .collect()
            })
            .collect();
        let filtered: Vec<IvfQuery<'_>> = qs
            .iter()
            .zip(&excludes)
            .map(|(v, e)| IvfQuery {
                vector: v,
                k: args.k,
                exclude: e,
                filter: Some(&filter),
            })
            .collect();
        let t = Instant::now();
        let found = index.search(table, &filtered)?;
        let batch_s = t.elapsed().as_secs_f64();
        let violations = found
            .iter()
            .zip(&excludes)
            .map(|(r, e)| {
                r.iter()
                    .filter(|s| !keep(s.item) || e.binary_search(&s.item).is_ok())
                    .count()
            })
            .sum::<usize>();
        let mut lat: Vec<f64> = (0..args.single)
            .map(|i| {
                let t = Instant::now();
                std::hint::black_box(index.search_one(table, &filtered[i % filtered.len()]).ok());
                t.elapsed().as_secs_f64()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        out["filtered"] = json!({
            "allowed_share": filter.allowed() as f64 / args.items as f64,
            "excluded_per_query": excludes.iter().map(Vec::len).sum::<usize>() as f64 / excludes.len().max(1) as f64,
            "nprobe": index.nprobe(),
            "recall_at_k": recall(&found, &truth),
            "results_violating_the_filter": violations,
            "batch_queries_per_s": qs.len() as f64 / batch_s,
            "single_p50_ms": pct(&lat, 0.5),
            "single_p99_ms": pct(&lat, 0.99),
        });
    }
    // Last: setting nprobe forgets the tuned depth tables the filter used.
    let mut curve = Vec::new();
    for &np in &args.nprobe {
        index.set_nprobe(np);
        curve.push(measure(&index)?);
    }
    out["curve"] = json!(curve);
    Ok(out)
}
