//! reelkit's benchmarks and its fuzzer, run as `reelkit bench ...`: each
//! prints one JSON object on stdout, its figures beside a baseline measured
//! in the same run (BENCHMARKS.md says which command gave which figure).
//!
//! Look here for how a figure was measured: one file per benchmark (its
//! arguments and its run); what several share (resident memory, random
//! vectors, scratch directories) is in this file. Not here: anything a
//! user's run depends on (the command line is `reelkit`, the work is in the
//! library crates).
//!
//! ```
//! use clap::Parser;
//!
//! /// A command line with `reelkit bench`'s subcommands.
//! #[derive(clap::Parser)]
//! struct Bench {
//!     #[command(subcommand)]
//!     command: reelkit_bench::BenchCommand,
//! }
//!
//! // The off-policy estimators on a small seeded log: prints
//! // `{"bench": "ope", ...}` with the time of each part.
//! let cli = Bench::try_parse_from(["bench", "ope", "--impressions", "20000", "--per-user", "10", "--bootstrap", "20"])?;
//! reelkit_bench::run(cli.command)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod ab;
mod experiment;
mod fuzz;
mod load;
mod ope;
mod recommend;
mod serve;
mod simulate;
mod topk;

pub use ab::AbBenchArgs;
pub use experiment::ExperimentBenchArgs;
pub use fuzz::FuzzBenchArgs;
pub use load::LoadBenchArgs;
pub use ope::OpeBenchArgs;
pub use recommend::RecBenchArgs;
pub use serve::ServeBenchArgs;
pub use simulate::SimBenchArgs;
pub use topk::TopkBenchArgs;

use anyhow::Context;

/// A benchmark and its arguments.
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
    /// Off-policy estimation (IPS, SNIPS, DR, DM with bootstrap intervals)
    /// of one candidate on a seeded log, beside one plain pass over its columns.
    Ope(OpeBenchArgs),
}

/// Runs one benchmark, printing its JSON object on stdout.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Simulate(args) => simulate::simulate(args),
        BenchCommand::Recommend(args) => recommend::recommend(args),
        BenchCommand::Ab(args) => ab::ab(args),
        BenchCommand::Serve(args) => serve::serve(args),
        BenchCommand::Topk(args) => topk::topk(args),
        BenchCommand::Experiment(args) => experiment::experiment(args),
        BenchCommand::Load(args) => load::load(args),
        BenchCommand::Fuzz(args) => fuzz::fuzz(args),
        BenchCommand::Ope(args) => ope::ope(args),
    }
}

/// `(RssAnon, RssFile)` of this process now, in MiB.
pub(crate) fn rss_parts_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let get = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((get("RssAnon:")?, get("RssFile:")?))
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn tempfile_dir(dir: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let d = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("reelkit-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// `n` vectors of `dim` values: normals of variance `1/dim`, or (clustered)
/// one of `centres` such normals plus `noise` times another.
pub(crate) fn draw_vectors(
    rng: &mut reelkit_sim::random::Rng,
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
pub(crate) fn read_f32s(path: &std::path::Path, dim: usize) -> anyhow::Result<Vec<f32>> {
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
