//! `reelkit experiment ...`: run a spec, or sweep one of its keys.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use reelkit_lab::{
    outcomes::sweep_specs, run, summary_markdown, sweep, sweep_markdown, write_sweep,
    ExperimentSpec,
};

#[derive(Debug, clap::Subcommand)]
pub enum ExperimentCommand {
    /// Run an experiment spec: pre-period, arms (ranker recipes) with their
    /// refreshes, the ground truth of every comparison, the analysis, and every
    /// estimate beside its truth. Writes report.{json,md,html}, ground_truth.json,
    /// summary.{json,md}, timings.json, spec.toml and data/ under --out.
    Run(RunArgs),
    /// Rerun a spec over the values of one key; writes sweep.json (value,
    /// comparison, metric, segment, true and estimated lift with its interval),
    /// sweep.md, sweep.svg and each value's summary.
    Sweep(SweepArgs),
    /// Calibrate interleaving on two arms of a spec: every run plays every
    /// user under each arm alone (the A/B truth), under the two interleaved,
    /// and under team A interleaved with itself (A/A). Writes
    /// interleaving.json and interleaving.md: A/A false-positive rate, how
    /// often the truly better ranker is picked, users needed for 80% power by
    /// an A/B test (plain, CUPED) and by interleaving.
    Interleave(InterleaveArgs),
    /// Hold off-policy estimates against the truth: every run logs the world
    /// under an exploring policy (the --logger arm's ranker, each page given
    /// with probability --explore to one of the --candidates, exact
    /// propensities), estimates each candidate's lift in watch time per user
    /// over it with every estimator (IPS, SNIPS, DR, DM, PDIS), and plays
    /// everyone under each candidate alone for the truth. Writes
    /// ope_study.{json,md,html,svg} and trials.csv: bias, RMSE, interval
    /// coverage and how often the candidates come out in their true order.
    /// Candidates must be fixed rankers (retrain = "never", or built-in).
    Ope(OpeArgs),
}

/// Arguments of `reelkit experiment ope`.
#[derive(Debug, clap::Args)]
pub struct OpeArgs {
    /// The spec (datasets/experiments/ope.toml is the documented example).
    spec: PathBuf,
    /// The arm whose ranker logs (default: the spec's control).
    #[arg(long)]
    logger: Option<String>,
    /// The arms to estimate, e.g. unified,siloed,random (default: every arm).
    #[arg(long, value_delimiter = ',')]
    candidates: Vec<String>,
    /// The share of the logging policy's pages given to a candidate, in (0, 1).
    #[arg(long, default_value_t = 0.3)]
    explore: f64,
    /// What the logging policy's coin chooses a member for: page, session,
    /// day (user-day) or user (the whole log: an A/B test with small
    /// candidate shares).
    #[arg(long, default_value = "page")]
    unit: reelkit_lab::offpolicy::LoggingUnit,
    /// What history a candidate answers the log's requests from: own (it
    /// walks its own list and remembers what it offered, as serving alone)
    /// or log (every page afresh from what the log showed, as `reelkit ope`
    /// replays a served model).
    #[arg(long, default_value = "own")]
    replay: reelkit_lab::offpolicy::Replaying,
    /// Repetitions.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Bootstrap resamples of the users per estimate.
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    /// Two-sided interval level.
    #[arg(long, default_value_t = 0.95)]
    level: f64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Set keys of the spec first, as with `experiment run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Arguments of `reelkit experiment interleave`.
#[derive(Debug, clap::Args)]
pub struct InterleaveArgs {
    /// The spec.
    spec: PathBuf,
    /// Team A and team B: two arms of the spec, e.g. siloed,unified.
    #[arg(long, value_delimiter = ',', num_args = 1, required = true)]
    teams: Vec<String>,
    /// Repetitions.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Users drawn per run for the check at a fixed size (0: the median
    /// interleaving need for 80% power, found from the runs).
    #[arg(long, default_value_t = 0)]
    check_users: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Set keys of the spec first, as with `experiment run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Arguments of `reelkit experiment run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The spec (TOML; datasets/experiments/demo.toml is a documented example).
    spec: PathBuf,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Set a key of the spec, e.g. --set world.users=5000 --set arms.unified.factors=64;
    /// a value is TOML: --set 'arms.unified.specific_grid=[0,0.5,1]'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Arguments of `reelkit experiment sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The spec.
    spec: PathBuf,
    /// The key to sweep, e.g. world.surface_taste_divergence.
    #[arg(long)]
    param: String,
    /// Comma-separated values, e.g. 0,0.25,0.5,0.75,1.
    #[arg(long, value_delimiter = ',', required = true)]
    values: Vec<String>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Set other keys first, as with `experiment run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Refuses a spec whose run cannot fit in memory: the world is played
/// under every arm (the ground truth), for the pre-period and the experiment.
pub fn ensure_spec_fits(v: &reelkit_lab::ValidSpec) -> anyhow::Result<()> {
    let w = v.world();
    let (pre, days) = v.days();
    let arms = v.arms().len().max(1);
    reelkit_lab::limits::ensure_fits(
        &format!(
            "an experiment of {} users × {} videos × {} days under {arms} arms",
            w.users,
            w.videos,
            pre + days
        ),
        reelkit_lab::limits::simulation_bytes(w.users, w.videos, pre + days) * (arms as f64 + 1.0),
    )?;
    Ok(())
}

/// Checks the spec (before anything is simulated or written), runs it,
/// writes everything under `out` and prints the summary.
pub fn run_and_write(spec: &ExperimentSpec, out: &std::path::Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let valid = spec.check()?;
    ensure_spec_fits(&valid)?;
    let outcome = run(&valid, &|msg| eprintln!("{msg}"))?;
    outcome
        .write(out, &spec.to_toml())
        .with_context(|| format!("writing the results to {}", out.display()))?;
    print!("{}", summary_markdown(&outcome.summary));
    eprintln!(
        "results -> {} (report.html, summary.md, ground_truth.json, ...) in {:.1} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run_command(cmd: ExperimentCommand) -> anyhow::Result<()> {
    match cmd {
        ExperimentCommand::Run(args) => {
            // The run writes its own spec.toml (with the --set keys) into
            // --out: never over the user's spec.
            crate::data::refuse_overwrite(
                "--out",
                &args.out.join("spec.toml"),
                &[("the spec", Some(&args.spec))],
            )
            .with_context(|| {
                format!(
                    "--out {}: the run writes spec.toml there",
                    args.out.display()
                )
            })?;
            run_and_write(
                &ExperimentSpec::load(Some(&args.spec), &args.set)?,
                &args.out,
            )
        }
        ExperimentCommand::Sweep(args) => {
            let t0 = Instant::now();
            let spec = ExperimentSpec::load(Some(&args.spec), &args.set)?;
            let specs = sweep_specs(&spec, &args.param, &args.values)?;
            let s = sweep(&args.param, &args.values, &specs, &|msg| eprintln!("{msg}"))?;
            write_sweep(&args.out, &s)
                .with_context(|| format!("writing the sweep to {}", args.out.display()))?;
            print!("{}", sweep_markdown(&s));
            eprintln!(
                "sweep -> {} (sweep.json, sweep.md, sweep.svg) in {:.1} s",
                args.out.display(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ExperimentCommand::Interleave(args) => {
            let t0 = Instant::now();
            let [a, b] = args.teams.as_slice() else {
                anyhow::bail!(
                    "--teams takes two arms, e.g. --teams siloed,unified; got {:?}",
                    args.teams
                )
            };
            let spec = ExperimentSpec::load(Some(&args.spec), &args.set)?.check()?;
            let c = reelkit_lab::interleaving::calibrate_interleaving(
                &spec,
                a,
                b,
                args.runs,
                args.check_users,
                &|done| {
                    if done % 10 == 0 || done == args.runs {
                        eprintln!(
                            "{done}/{} runs ({:.0} s)",
                            args.runs,
                            t0.elapsed().as_secs_f64()
                        );
                    }
                },
            )?;
            reelkit_lab::interleaving::write_interleaving(&args.out, &c)
                .with_context(|| format!("writing to {}", args.out.display()))?;
            print!("{}", reelkit_lab::interleaving::interleaving_markdown(&c));
            eprintln!(
                "interleaving -> {} in {:.1} s",
                args.out.display(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        ExperimentCommand::Ope(args) => {
            let t0 = Instant::now();
            let spec = ExperimentSpec::load(Some(&args.spec), &args.set)?.check()?;
            ensure_spec_fits(&spec)?;
            let design = reelkit_lab::offpolicy::OpeDesign {
                logger: args.logger,
                candidates: args.candidates,
                explore: args.explore,
                unit: args.unit,
                replay: args.replay,
                runs: args.runs,
                bootstrap: args.bootstrap,
                level: args.level,
            };
            let runs = args.runs;
            let study = reelkit_lab::offpolicy::ope_study(&spec, &design, &|done| {
                if done % 10 == 0 || done == runs {
                    eprintln!("{done}/{runs} runs ({:.0} s)", t0.elapsed().as_secs_f64());
                }
            })?;
            reelkit_lab::offpolicy::write_ope_study(&args.out, &study)
                .with_context(|| format!("writing to {}", args.out.display()))?;
            print!("{}", reelkit_lab::offpolicy::ope_study_markdown(&study));
            eprintln!(
                "ope study -> {} (ope_study.html, ope_study.md, trials.csv) in {:.1} s",
                args.out.display(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
