//! End-to-end tests across reelkit crates (one test binary).

mod calibrate;
mod experiment;
mod ranker_sim;
mod serve_sim;
mod sim_policies;

use reelkit_lab::outcomes::{Estimate, Summary};
use reelkit_lab::{ExperimentSpec, ValidSpec};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A spec from its TOML text, checked.
fn spec_of(text: &str) -> TestResult<ValidSpec> {
    Ok(ExperimentSpec::from_toml(text, std::path::Path::new("."))?.check()?)
}

/// `f` run on a pool of `threads` worker threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> TestResult<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    Ok(pool.install(f))
}

/// The estimate of `variant` against `baseline` on `metric` in `segment`.
fn estimate<'a>(
    s: &'a Summary,
    variant: &str,
    baseline: &str,
    metric: &str,
    segment: &str,
) -> TestResult<&'a Estimate> {
    let found = s.estimates.iter().find(|e| {
        e.variant == variant && e.baseline == baseline && e.metric == metric && e.segment == segment
    });
    Ok(found.ok_or(format!(
        "no estimate of {variant} vs {baseline} on {metric} ({segment})"
    ))?)
}
