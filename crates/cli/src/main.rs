//! `reelkit`: simulate Reels-style engagement, train and serve rankers, and
//! analyse A/B tests.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ab;
mod data;
mod demo;
mod evaluate;
mod experiment;
mod import;
mod index;
mod interrupt;
mod ope;
mod progress;
mod recommend;
mod serve;
mod simulate;
mod train;
mod tune;

/// reelkit: recommendation-engine engagement experiments.
#[derive(Debug, Parser)]
#[command(name = "reelkit", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command.
#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true, env = "REELKIT_THREADS")]
    threads: Option<usize>,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed's experiment (datasets/experiments/demo.toml): `popular` against
    /// per-surface rankers (siloed) and one unified ranker, both retrained daily,
    /// with the ground truth of every comparison beside its estimate.
    Demo(demo::DemoArgs),
    /// Run an experiment spec, or sweep one of its keys.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Simulate a synthetic Reels-style world and write its logs.
    Simulate(simulate::SimulateArgs),
    /// Train a ranker (iALS or BPR) on events or interactions and write a model file.
    Train(train::TrainArgs),
    /// Offline metrics of a model (full catalogue, training items excluded) beside
    /// the popularity baseline, as JSON.
    Eval(evaluate::EvalArgs),
    /// Top-K recommendations as user_id,item_id,rank,score.
    Recommend(recommend::RecommendArgs),
    /// Search hyper-parameters on a validation split of the training data, then
    /// train the best setting on all of it.
    Tune(tune::TuneArgs),
    /// Build and tune a model's IVF index once and store it beside the model
    /// (MODEL.ivf), where `serve --retrieval ivf` and `recommend --retrieval
    /// ivf` load it instead of building it (a stale index is rebuilt, never used).
    Index(index::IndexArgs),
    /// A model file from factors trained elsewhere (Spark MLlib ALS's saved
    /// userFactors/itemFactors, or id + vector columns).
    ImportFactors(import::ImportArgs),
    /// Serve a model over HTTP: recommend, score, similar, metrics, hot reload.
    Serve(serve::ServeArgs),
    /// A/B test analysis.
    #[command(subcommand)]
    Ab(ab::AbCommand),
    /// Off-policy evaluation: a candidate model's value and lift over the
    /// logging policy, estimated from an exploring policy's log (IPS, SNIPS,
    /// doubly robust, direct method, per-decision over sessions) before any
    /// A/B test.
    Ope(ope::OpeArgs),
    /// Benchmarks that print one JSON object.
    #[command(subcommand)]
    Bench(reelkit_bench::BenchCommand),
}

fn init_logging(verbose: u8, serving: bool) {
    let default = match verbose {
        // A server's reloads and refusals are an operator's audit trail.
        0 if serving => "warn,reelkit_serve=info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let serving = matches!(cli.command, Command::Serve(_));
    init_logging(cli.global.verbose, serving);
    if !serving {
        // The server stops gracefully on its own; every other command is
        // cleaned up after and stopped.
        interrupt::install();
    }
    if let Some(t) = cli.global.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        // Threads beyond a few per core only cost: each has its stack, and
        // creating tens of thousands stalls the machine.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most = (cores * 4).max(64);
        anyhow::ensure!(
            t <= most,
            "--threads {t} is more than this machine can use ({cores} cores; at most {most})"
        );
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| anyhow::anyhow!("building the thread pool: {e}"))?;
    }
    match cli.command {
        Command::Demo(args) => demo::run_demo(args),
        Command::Experiment(cmd) => experiment::run_command(cmd),
        Command::Simulate(args) => simulate::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => evaluate::run(args),
        Command::Recommend(args) => recommend::run(args),
        Command::Tune(args) => tune::run(args),
        Command::Index(args) => index::run(args),
        Command::ImportFactors(args) => import::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Ab(cmd) => ab::run(cmd),
        Command::Ope(args) => ope::run(args),
        Command::Bench(cmd) => reelkit_bench::run(cmd),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Exit status of a command that stopped on a bug (sysexits' EX_SOFTWARE).
const EXIT_BUG: u8 = 70;

/// A panic is a bug, not a crash dump: one line naming what and where (the
/// backtrace only when `RUST_BACKTRACE` asks for it). The command then exits
/// with [`EXIT_BUG`]; outputs are written atomically, so none is half-written.
fn install_panic_hook() {
    let wants_backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let mut report = format!(
            "error: internal error (a bug in reelkit {}; please report it with the command line): {what}{at}",
            env!("CARGO_PKG_VERSION")
        );
        if wants_backtrace {
            report = format!("{report}\n{}", std::backtrace::Backtrace::force_capture());
        }
        // polars on a corrupt input file: held while the read runs; the
        // reader turns it into an error, and any other panic is printed at
        // exit by `print_held_panics`.
        if !reelkit_logs::guard::hold_panic_report(&what, report.clone()) {
            eprintln!("{report}");
        }
    }));
}

/// Prints the panics held back during guarded reads that no read explained.
fn print_held_panics() {
    for report in reelkit_logs::guard::take_held_panic_reports() {
        eprintln!("{report}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_panic_hook();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    print_held_panics();
    let Ok(outcome) = outcome else {
        return ExitCode::from(EXIT_BUG);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Library errors do not repeat their causes, so the chain reads once.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
