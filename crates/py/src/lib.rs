//! `reelkit._reelkit`: the native module of the `reelkit` Python package
//! (`python/`). A thin layer over the library crates, no logic of its own:
//! each function calls what the command line calls, so the package and the
//! CLI give the same numbers on the same input. Frames arrive as Arrow
//! streams (`__arrow_c_stream__`) written to an IPC file the readers take
//! (`stream::frame_to_ipc`); results leave as Arrow streams, JSON or files.
//! Long calls release the GIL and hear Ctrl-C (`errors::blocking`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use reelkit_abtest::{AnalysisConfig, Correction};
use reelkit_lab::{
    specs::parse_value,
    training::{Triplets, TuneSetup},
    ExperimentSpec,
};
use reelkit_logs::{InteractionColumns, Layout};
use reelkit_ranker::{tuning::Weighting, Algo, Retrieval, TrainControl, TrainParams};

mod errors;
mod model;
mod stream;

use errors::{blocking, to_py};
use model::Model;

fn value_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Writes the frame `obj` (anything with `__arrow_c_stream__`) as an Arrow
/// IPC file at `path`; `name` labels errors.
#[pyfunction]
fn write_frame(obj: &Bound<'_, PyAny>, name: &str, path: PathBuf) -> PyResult<()> {
    stream::frame_to_ipc(obj, name, &path)
}

/// The simulator's documented default configuration (TOML).
#[pyfunction]
fn default_world_config() -> &'static str {
    reelkit_sim::DEFAULT_CONFIG
}

/// A world's parameters as JSON: the defaults with `config` (TOML) and the
/// given overrides applied, validated.
#[pyfunction]
#[pyo3(signature = (config=None, days=None, users=None, videos=None, seed=None))]
fn world_params(
    config: Option<&str>,
    days: Option<u32>,
    users: Option<usize>,
    videos: Option<usize>,
    seed: Option<u64>,
) -> PyResult<String> {
    let p = params(config, days, users, videos, seed)?;
    serde_json::to_string(&*p).map_err(value_err)
}

fn params(
    config: Option<&str>,
    days: Option<u32>,
    users: Option<usize>,
    videos: Option<usize>,
    seed: Option<u64>,
) -> PyResult<reelkit_sim::ValidSimParams> {
    let mut p = match config {
        Some(text) => reelkit_sim::SimParams::from_toml(text).map_err(to_py)?,
        None => reelkit_sim::SimParams::default(),
    };
    if let Some(s) = seed {
        p.seed = s;
    }
    if let Some(d) = days {
        p.days = d;
    }
    if let Some(u) = users {
        p.users = u;
    }
    if let Some(v) = videos {
        p = p.with_videos(v);
    }
    p.check().map_err(to_py)
}

/// Simulates `days` of the world under `policy` (random, popular, oracle,
/// or ranker with `model`, a model file) and writes events, users and
/// videos (Parquet) under `out`, as `reelkit simulate` does. Returns a JSON
/// summary.
#[pyfunction]
#[pyo3(signature = (out, config=None, days=None, users=None, videos=None, seed=None, policy="popular", model=None))]
#[allow(clippy::too_many_arguments)]
fn simulate(
    py: Python<'_>,
    out: PathBuf,
    config: Option<&str>,
    days: Option<u32>,
    users: Option<usize>,
    videos: Option<usize>,
    seed: Option<u64>,
    policy: &str,
    model: Option<PathBuf>,
) -> PyResult<String> {
    let p = params(config, days, users, videos, seed)?;
    let policy = policy.to_string();
    blocking(py, None, move || -> PyResult<String> {
        let world = reelkit_sim::World::generate(&p);
        let mut pol: Box<dyn reelkit_sim::Policy> = if policy == "ranker" {
            let path = model.ok_or_else(|| value_err("policy \"ranker\" needs model=PATH"))?;
            let ranker = reelkit_ranker::Ranker::open(&path).map_err(to_py)?;
            Box::new(reelkit_sim::policies::ExploreFresh::new(
                reelkit_lab::specs::RankerPolicy::new(Arc::new(ranker), &world, false)
                    .answering_each_page(),
                reelkit_sim::policies::DEFAULT_EXPLORE,
            ))
        } else {
            if model.is_some() {
                return Err(value_err("model is only used with policy=\"ranker\""));
            }
            reelkit_sim::builtin_policy(&policy).map_err(to_py)?
        };
        let mut sim = reelkit_sim::Simulator::new(&world);
        let events = sim.run(p.days, pol.as_mut(), &|_| {}).map_err(to_py)?;
        std::fs::create_dir_all(&out).map_err(to_py)?;
        reelkit_sim::write_run(&out, &world, &events).map_err(to_py)?;
        Ok(serde_json::json!({
            "impressions": events.len(),
            "users": p.users,
            "videos": p.videos,
            "days": p.days,
            "policy": policy,
        })
        .to_string())
    })?
}

/// Where training data comes from, as Python's `_source` gives it: a file,
/// whether it is an event log, and the interaction columns (user, item,
/// weight, timestamp) when it is not.
#[derive(FromPyObject)]
struct Source(
    PathBuf,
    bool,
    String,
    String,
    Option<String>,
    Option<String>,
);

impl Source {
    /// The triplets, and the events when the source is an event log.
    fn load(self) -> reelkit_lab::Result<(Triplets, Option<reelkit_logs::Events>)> {
        let Source(path, events, user, item, weight, ts) = self;
        if events {
            let ev = reelkit_logs::read_events(&path)?;
            return Ok((Triplets::from_events(&ev), Some(ev)));
        }
        let cols = InteractionColumns {
            user,
            item,
            weight,
            ts,
            text: Layout::default(),
        };
        Ok((Triplets::read(&path, &cols)?, None))
    }
}

/// Trains a model on `source`, as `reelkit train` does.
#[pyfunction]
#[pyo3(signature = (source, algo, factors, epochs, reg, alpha, cg_steps, reg_exponent, learning_rate, seed, pop_bias, weights, per_surface=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    source: Source,
    algo: &str,
    factors: Option<usize>,
    epochs: usize,
    reg: Option<f32>,
    alpha: f32,
    cg_steps: usize,
    reg_exponent: f32,
    learning_rate: f32,
    seed: u64,
    pop_bias: f32,
    weights: &str,
    per_surface: Option<(String, String)>,
) -> PyResult<Model> {
    let algo: Algo = algo.parse().map_err(value_err)?;
    let weighting: Weighting = weights.parse().map_err(value_err)?;
    let ease = algo == Algo::Ease;
    let params = TrainParams {
        algo,
        factors: factors.unwrap_or(if ease {
            reelkit_ranker::algorithms::EASE_DIM
        } else {
            64
        }),
        epochs,
        reg: reg.unwrap_or(if ease { 200.0 } else { 1.0 }),
        alpha,
        cg_steps,
        reg_exponent,
        learning_rate,
        seed,
        pop_bias,
        ..TrainParams::default()
    };
    if let Some((specific, item_specific)) = per_surface {
        return train_per_surface(py, source, params, &specific, &item_specific);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let m = blocking(py, Some(stop), move || -> reelkit_lab::Result<_> {
        let (trip, ev) = source.load()?;
        let (model, _) = reelkit_lab::training::train_triplets(
            &trip,
            params,
            weighting,
            ev.as_ref(),
            &mut TrainControl {
                stop: Some(&flag),
                on_epoch: None,
            },
            format!("reelkit {} python train", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(model)
    })?
    .map_err(to_py)?;
    Ok(Model::from_owned(m))
}

/// A per-surface model on an event log, as `reelkit train --per-surface`
/// does: the users' and the videos' shares `auto` or given.
fn train_per_surface(
    py: Python<'_>,
    source: Source,
    params: TrainParams,
    specific: &str,
    item_specific: &str,
) -> PyResult<Model> {
    use reelkit_lab::specs::Specific;
    if !source.1 {
        return Err(value_err(
            "per_surface needs events: an event log says on which surface each impression was shown",
        ));
    }
    if params.algo != Algo::Ials {
        return Err(value_err(format!(
            "per_surface trains ials; got algo {}",
            params.algo
        )));
    }
    let parse = |what: &str, text: &str| -> PyResult<Specific> {
        text.parse::<Specific>()
            .map_err(|e| value_err(format!("{what}: {e}")))
    };
    let specific = parse("specific", specific)?;
    let item_specific = parse("item_specific", item_specific)?.for_videos();
    let m = blocking(py, None, move || -> reelkit_lab::Result<_> {
        let (_, ev) = source.load()?;
        let ev = ev.unwrap_or_default();
        let fit = reelkit_lab::training::train_surface_on_events(
            &ev,
            &params,
            &specific,
            &item_specific,
            &format!(
                "reelkit {} python train per_surface",
                env!("CARGO_PKG_VERSION")
            ),
        )?;
        Ok(fit.model)
    })?
    .map_err(to_py)?;
    Ok(Model::from_owned(m))
}

/// Searches settings on a validation split of `source` and trains the
/// chosen one on all of it, as `reelkit tune` does. Returns the model, every
/// trial (JSON) and the chosen one (JSON).
#[pyfunction]
#[pyo3(signature = (source, algo, weights, budget, k, validation, seed))]
#[allow(clippy::too_many_arguments)]
fn tune(
    py: Python<'_>,
    source: Source,
    algo: &str,
    weights: &str,
    budget: f64,
    k: usize,
    validation: f64,
    seed: u64,
) -> PyResult<(Model, String, String)> {
    let algos = match algo {
        "auto" => vec![Algo::Ease, Algo::Ials],
        one => vec![one.parse::<Algo>().map_err(value_err)?],
    };
    let weightings = match weights {
        "auto" => None,
        one => Some(vec![one.parse::<Weighting>().map_err(value_err)?]),
    };
    let budget = reelkit_lab::training::tune_budget(budget).map_err(to_py)?;
    if k == 0 {
        return Err(value_err("k must be 1 or more"));
    }
    let setup = TuneSetup {
        algos,
        weightings,
        k,
        budget,
        validation,
        seed,
    };
    let tuned = blocking(py, None, move || -> reelkit_lab::Result<_> {
        let (trip, ev) = source.load()?;
        reelkit_lab::training::tune_triplets(
            trip,
            ev.as_ref(),
            &setup,
            format!("reelkit {} python tune", env!("CARGO_PKG_VERSION")),
        )
    })?
    .map_err(to_py)?;
    let trials = serde_json::to_string(&tuned.trials).map_err(value_err)?;
    let best = serde_json::json!({
        "chosen": tuned.best.describe(),
        "model": tuned.best.candidate.kind(),
        "candidate": tuned.best.candidate,
        "weighting": tuned.best.weighting,
        "pop_bias": tuned.best.pop_bias,
        "ndcg": tuned.best.ndcg,
        "ndcg_se": tuned.best.ndcg_se,
        "judged_users": tuned.best.judged_users(),
        "recall": tuned.best.recall,
        "settings_tried": tuned.trials.len(),
    })
    .to_string();
    Ok((Model::from_owned(tuned.model), trials, best))
}

fn metrics(toml_text: Option<&str>) -> PyResult<Vec<reelkit_abtest::Metric>> {
    match toml_text {
        Some(t) => reelkit_abtest::parse_metrics(t).map_err(to_py),
        None => Ok(reelkit_abtest::builtin_metrics()),
    }
}

/// Where a Python argument's events are: a file, or a frame (scanned in
/// memory, its buffers shared).
fn events_source(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<reelkit_abtest::Source> {
    if let Ok(p) = obj.extract::<PathBuf>() {
        return Ok(reelkit_abtest::Source::Path(p));
    }
    let df = stream::frame_to_polars(obj, name)?;
    Ok(reelkit_abtest::Source::Frame {
        name: format!("the `{name}` frame"),
        frame: Box::new(reelkit_logs::polars::prelude::IntoLazy::lazy(df)),
    })
}

/// Analyses an experiment, as `reelkit ab analyze` does: `events` and
/// `pre_events` are files or frames, `assignments` a file. Returns the
/// report as (JSON, Markdown, HTML).
#[pyfunction]
#[pyo3(signature = (events, assignments, pre_events, metrics_toml, experiment, control, alpha, correction, sequential, daily, segments))]
#[allow(clippy::too_many_arguments)]
fn ab_analyze(
    py: Python<'_>,
    events: &Bound<'_, PyAny>,
    assignments: PathBuf,
    pre_events: Option<&Bound<'_, PyAny>>,
    metrics_toml: Option<&str>,
    experiment: &str,
    control: Option<String>,
    alpha: f64,
    correction: &str,
    sequential: Option<f64>,
    daily: bool,
    segments: bool,
) -> PyResult<(String, String, String)> {
    let metrics = metrics(metrics_toml)?;
    let correction = match correction {
        "holm" => Correction::Holm,
        "bh" => Correction::Bh,
        "none" => Correction::None,
        other => {
            return Err(value_err(format!(
                "correction must be holm, bh or none; got {other:?}"
            )))
        }
    };
    let cfg = AnalysisConfig {
        experiment: experiment.to_string(),
        control,
        alpha,
        correction,
        weights: None,
        sequential,
        comparisons: Vec::new(),
    };
    let events = events_source(events, "events")?;
    let pre = pre_events
        .map(|p| events_source(p, "pre_events"))
        .transpose()?;
    blocking(py, None, move || -> Result<_, reelkit_abtest::Error> {
        let assignments = reelkit_logs::read_assignments(&assignments)?;
        let mut inputs = reelkit_abtest::Inputs::new(events, &assignments, &metrics);
        if let Some(pre) = pre {
            inputs = inputs.with_pre(pre);
        }
        let extras = reelkit_abtest::Extras { daily, segments };
        let report = reelkit_abtest::analyze_report(&inputs, &cfg, extras)?;
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| reelkit_abtest::Error::Invalid {
                what: "report".into(),
                reason: e.to_string(),
            })?;
        Ok((
            json,
            reelkit_abtest::markdown(&report),
            reelkit_abtest::html(&report),
        ))
    })?
    .map_err(to_py)
}

/// Estimates what a candidate model would earn on an exploring policy's log,
/// as `reelkit ope` does: `events`, `model` and `videos` are files. Returns
/// the report as (JSON, Markdown, HTML); with `impressions`, also writes
/// there the rows every estimate sums over (Parquet).
#[pyfunction]
#[pyo3(signature = (events, model, videos, metrics, estimators, page_size, bootstrap, level, max_weight, seed, retrieval, value_model, impressions=None))]
#[allow(clippy::too_many_arguments)]
fn ope(
    py: Python<'_>,
    events: PathBuf,
    model: PathBuf,
    videos: Option<PathBuf>,
    metrics: Vec<String>,
    estimators: Vec<String>,
    page_size: usize,
    bootstrap: usize,
    level: f64,
    max_weight: Option<f64>,
    seed: u64,
    retrieval: &str,
    value_model: bool,
    impressions: Option<PathBuf>,
) -> PyResult<(String, String, String)> {
    use reelkit_lab::offpolicy::{evaluate_with_weights, OpeSettings, ServedCandidate, Videos};
    let retrieval: Retrieval = retrieval
        .parse()
        .map_err(|e: reelkit_ranker::retrieval::UnknownRetrieval| value_err(e.to_string()))?;
    let estimators = estimators
        .iter()
        .map(|e| e.parse::<reelkit_ope::Estimator>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| value_err(e.to_string()))?;
    let settings = OpeSettings {
        metrics,
        estimators,
        page_size,
        options: reelkit_ope::Options {
            bootstrap,
            level,
            seed,
            max_weight,
        },
    };
    blocking(py, None, move || -> reelkit_lab::Result<_> {
        let log = reelkit_logs::read_events(&events)?;
        let ranker = reelkit_ranker::Ranker::open(&model)?.with_retrieval(retrieval);
        let videos = videos.as_deref().map(Videos::read).transpose()?;
        let cand = ServedCandidate::new(
            ranker,
            videos.as_ref().map(Videos::as_catalogue),
            value_model,
        )?;
        let (report, weights) = evaluate_with_weights(
            &log,
            &cand,
            &events.display().to_string(),
            &model.display().to_string(),
            &settings,
        )?;
        if let Some(path) = &impressions {
            reelkit_logs::write_frame(path, &mut weights.to_frame(&log)?)?;
        }
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| reelkit_lab::Error::Input(e.to_string()))?;
        Ok((
            json,
            reelkit_ope::markdown(&report),
            reelkit_ope::html(&report),
        ))
    })?
    .map_err(to_py)
}

/// Power, MDE and duration of every metric from a pre-period's events
/// (a file), as `reelkit ab power` does. Returns JSON rows.
#[pyfunction]
#[pyo3(signature = (events, metrics_toml, mde, alpha, power, treatment_share))]
fn ab_power(
    py: Python<'_>,
    events: PathBuf,
    metrics_toml: Option<&str>,
    mde: f64,
    alpha: f64,
    power: f64,
    treatment_share: f64,
) -> PyResult<String> {
    let metrics = metrics(metrics_toml)?;
    let rows = blocking(py, None, move || {
        reelkit_abtest::statistics::pre_period_power(
            &events,
            &metrics,
            mde,
            alpha,
            power,
            treatment_share,
        )
    })?
    .map_err(to_py)?;
    serde_json::to_string(&rows).map_err(value_err)
}

/// Each user's arm under `arms` (`control=0.5,treatment=0.5`) and `salt`:
/// the hash the server and `reelkit ab assign` use.
#[pyfunction]
fn ab_assign(users: Vec<u64>, arms: &str, salt: &str) -> PyResult<Vec<String>> {
    let split = reelkit_assign::Allocation::parse(arms)
        .map_err(|e| value_err(format!("arms {arms:?}: {e}")))?;
    Ok(users
        .iter()
        .map(|&u| split.names()[split.arm(salt, u)].clone())
        .collect())
}

/// The warehouse SQL of the per-arm sums, as `reelkit ab sql` prints it.
#[pyfunction]
#[pyo3(signature = (metrics_toml, dialect, events_table, assignments_table, pre_events_table))]
fn ab_sql(
    metrics_toml: Option<&str>,
    dialect: &str,
    events_table: String,
    assignments_table: String,
    pre_events_table: Option<String>,
) -> PyResult<String> {
    let metrics = metrics(metrics_toml)?;
    let dialect = match dialect {
        "ansi" => reelkit_abtest::warehouse::Dialect::Ansi,
        "bigquery" => reelkit_abtest::warehouse::Dialect::Bigquery,
        "spark" => reelkit_abtest::warehouse::Dialect::Spark,
        other => {
            return Err(value_err(format!(
                "dialect must be ansi, bigquery or spark; got {other:?}"
            )))
        }
    };
    let tables = reelkit_abtest::warehouse::SqlTables {
        events: events_table,
        assignments: assignments_table,
        pre_events: pre_events_table,
    };
    reelkit_abtest::warehouse::warehouse_sql(&metrics, dialect, &tables).map_err(to_py)
}

/// A spec from TOML text (`base`: the directory relative paths in it are
/// read from) with `KEY=VALUE` settings applied.
fn spec(toml_text: &str, base: PathBuf, set: Vec<(String, String)>) -> PyResult<ExperimentSpec> {
    let mut spec = ExperimentSpec::from_toml(toml_text, &base).map_err(to_py)?;
    for (k, v) in set {
        spec.set(k.trim(), parse_value(&v)).map_err(to_py)?;
    }
    Ok(spec)
}

/// Runs an experiment spec and writes everything under `out`, as
/// `reelkit experiment run` does. Returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (toml_text, base, set, out))]
fn lab_run(
    py: Python<'_>,
    toml_text: &str,
    base: PathBuf,
    set: Vec<(String, String)>,
    out: PathBuf,
) -> PyResult<String> {
    let spec = spec(toml_text, base, set)?;
    let valid = spec.check().map_err(to_py)?;
    blocking(py, None, move || -> reelkit_lab::Result<String> {
        let outcome = reelkit_lab::run(&valid, &|_| {})?;
        outcome.write(&out, &spec.to_toml())?;
        Ok(serde_json::to_string(&outcome.summary).unwrap_or_default())
    })?
    .map_err(to_py)
}

/// Reruns a spec over `param`'s values and writes the sweep under `out`,
/// as `reelkit experiment sweep` does. Returns the sweep as JSON.
#[pyfunction]
#[pyo3(signature = (toml_text, base, set, param, values, out))]
fn lab_sweep(
    py: Python<'_>,
    toml_text: &str,
    base: PathBuf,
    set: Vec<(String, String)>,
    param: String,
    values: Vec<String>,
    out: PathBuf,
) -> PyResult<String> {
    let spec = spec(toml_text, base, set)?;
    let specs = reelkit_lab::outcomes::sweep_specs(&spec, &param, &values).map_err(to_py)?;
    blocking(py, None, move || -> reelkit_lab::Result<String> {
        let s = reelkit_lab::sweep(&param, &values, &specs, &|_| {})?;
        reelkit_lab::write_sweep(&out, &s)?;
        Ok(serde_json::to_string(&s).unwrap_or_default())
    })?
    .map_err(to_py)
}

/// Holds off-policy estimates against the simulator's truth and writes the
/// study under `out`, as `reelkit experiment ope` does. Returns it as JSON.
#[pyfunction]
#[pyo3(signature = (toml_text, base, set, logger, candidates, explore, unit, replay, runs, bootstrap, level, out))]
#[allow(clippy::too_many_arguments)]
fn lab_ope_study(
    py: Python<'_>,
    toml_text: &str,
    base: PathBuf,
    set: Vec<(String, String)>,
    logger: Option<String>,
    candidates: Vec<String>,
    explore: f64,
    unit: &str,
    replay: &str,
    runs: usize,
    bootstrap: usize,
    level: f64,
    out: PathBuf,
) -> PyResult<String> {
    let valid = spec(toml_text, base, set)?.check().map_err(to_py)?;
    let design = reelkit_lab::offpolicy::OpeDesign {
        logger,
        candidates,
        explore,
        unit: unit.parse().map_err(value_err)?,
        replay: replay.parse().map_err(value_err)?,
        runs,
        bootstrap,
        level,
    };
    blocking(py, None, move || -> reelkit_lab::Result<String> {
        let study = reelkit_lab::offpolicy::ope_study(&valid, &design, &|_| {})?;
        reelkit_lab::offpolicy::write_ope_study(&out, &study)?;
        Ok(serde_json::to_string(&study).unwrap_or_default())
    })?
    .map_err(to_py)
}

/// The native module.
#[pymodule]
fn _reelkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    m.add_class::<model::FactorView>()?;
    m.add_class::<stream::ArrowStream>()?;
    for f in [
        wrap_pyfunction!(write_frame, m)?,
        wrap_pyfunction!(default_world_config, m)?,
        wrap_pyfunction!(world_params, m)?,
        wrap_pyfunction!(simulate, m)?,
        wrap_pyfunction!(train, m)?,
        wrap_pyfunction!(tune, m)?,
        wrap_pyfunction!(ab_analyze, m)?,
        wrap_pyfunction!(ab_power, m)?,
        wrap_pyfunction!(ab_assign, m)?,
        wrap_pyfunction!(ab_sql, m)?,
        wrap_pyfunction!(ope, m)?,
        wrap_pyfunction!(lab_run, m)?,
        wrap_pyfunction!(lab_sweep, m)?,
        wrap_pyfunction!(lab_ope_study, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
