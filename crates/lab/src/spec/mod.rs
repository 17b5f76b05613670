//! Experiment specs: one TOML file describing the world, the pre-period, the
//! experiment, its arms (ranker recipes), the split and the analysis.
//!
//! ```toml
//! name = "unified-vs-siloed"
//! seed = 42                       # world, behaviour and training seeds derive from it
//! scale = "small"                 # small (2,000 users) | medium (20,000 users)
//! world_file = "world.toml"       # optional, relative to the spec; any simulator parameter
//!
//! [world]                         # inline overrides (win over scale and world_file)
//! surface_taste_divergence = 0.3
//!
//! [pre_period]                    # everyone on one policy: training data, CUPED covariates
//! days = 7
//! policy = "popular"              # random | popular | oracle
//!
//! [experiment]
//! days = 7
//! salt = "reelkit-demo"           # the user → arm hash
//! control = "popular"             # default: the first arm
//!
//! [[arms]]
//! name = "popular"
//! recipe = "popular"              # random | popular | oracle | siloed | unified
//!
//! [[arms]]
//! name = "unified"
//! recipe = "unified"
//! share = 0.5                     # optional; all arms or none (then equal shares)
//! retrain = "daily"               # daily | never
//! window_days = 7                 # trailing days of training data
//! factors = 32                    # and epochs, refresh_epochs, reg, alpha,
//! ranking = "value"               # reg_exponent, cg_steps, explore: see `Trained`
//! user_vectors = "hierarchical"   # unified only: hierarchical (default) | shared |
//!                                 # per_surface (the two ablations: φ = 0 and φ = 1)
//! specific = "auto"               # hierarchical only: each surface's specific share φ,
//!                                 # "auto" (chosen daily on the window's held-out
//!                                 # impressions of the control), a
//!                                 # share in [0, 1], or { reels = 0.1, feed = 0, watch = 0.8 }
//! specific_grid = [0, 0.1, 0.25, 0.5, 1]  # the shares "auto" tries
//! item_vectors = "per_surface"    # hierarchical only: per_surface (default: a video's
//!                                 # vector mixes a shared part and one of each surface's
//!                                 # own, ψ) | shared (ablation: one per video)
//! item_specific = "auto"          # per_surface videos only: each surface's video share ψ,
//!                                 # as `specific` (auto: chosen daily from 0, 0.5, 1)
//! shares_judged_on = "control"    # hierarchical only: whose held-out impressions choose
//!                                 # the "auto" shares: control (the control's, default)
//!                                 # | own (the arm's own log of the day; an ablation,
//!                                 # behind the default at medium scale: ARCHITECTURE.md)
//!
//! [analysis]
//! metrics = "metrics.toml"        # default: the built-in Reels metrics
//! alpha = 0.05
//! correction = "holm"             # holm | bh | none
//! cuped = true                    # the same metric over the pre-period as covariate
//! compare = ["unified vs siloed"] # named pairs, besides every arm against the control
//! daily = true                    # cumulative lift by day
//! segments = true                 # by surface and new vs returning users
//! ```
//!
//! [`ExperimentSpec`] holds the TOML as written (so a sweep can set any key);
//! [`ExperimentSpec::check`] validates every key before anything runs and
//! gives a [`ValidSpec`], the only thing the loop accepts.

use std::path::{Path, PathBuf};

use reelkit_abtest::{builtin_metrics, parse_metrics, Correction, Metric};
use reelkit_sim::{SimParams, ValidSimParams};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::recipe::{cut, Recipe};

mod arms;
#[cfg(test)]
mod tests;

use arms::{check_arms, check_name};

/// Preset world sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// The committed sample's world: 2,000 users, 10,000 videos, 1,000
    /// creators, 150 uploads a day.
    Small,
    /// 20,000 users, 50,000 videos, 5,000 creators, 500 uploads a day.
    Medium,
}

impl Scale {
    /// The names the spec accepts.
    pub const NAMES: &'static str = "small, medium";

    /// The scale called `name`.
    pub fn parse(name: &str) -> Option<Scale> {
        match name {
            "small" => Some(Scale::Small),
            "medium" => Some(Scale::Medium),
            _ => None,
        }
    }

    /// The world parameters of this scale (everything else at its default).
    pub fn params(self) -> SimParams {
        let base = SimParams::default();
        match self {
            Scale::Small => SimParams {
                users: 2_000,
                videos: 10_000,
                creators: 1_000,
                new_videos_per_day: 150,
                ..base
            },
            Scale::Medium => SimParams {
                users: 20_000,
                videos: 50_000,
                creators: 5_000,
                new_videos_per_day: 500,
                ..base
            },
        }
    }
}

/// Built-in recipes, as named in specs.
pub(crate) const RECIPES: &str = "random, popular, oracle, siloed, unified";

/// An experiment spec as written: a TOML table and the directory its
/// relative paths start from.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    table: toml::Table,
    base: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    scale: Option<String>,
    #[serde(default)]
    world_file: Option<PathBuf>,
    #[serde(default)]
    world: toml::Table,
    #[serde(default)]
    pre_period: RawPre,
    #[serde(default)]
    experiment: RawExperiment,
    #[serde(default)]
    arms: Vec<RawArm>,
    #[serde(default)]
    analysis: RawAnalysis,
}

fn default_name() -> String {
    "experiment".into()
}

fn default_seed() -> u64 {
    42
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPre {
    #[serde(default = "seven")]
    days: u32,
    #[serde(default = "popular")]
    policy: String,
}

impl Default for RawPre {
    fn default() -> Self {
        RawPre {
            days: 7,
            policy: "popular".into(),
        }
    }
}

fn seven() -> u32 {
    7
}

fn popular() -> String {
    "popular".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    #[serde(default = "seven")]
    days: u32,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    control: Option<String>,
}

impl Default for RawExperiment {
    fn default() -> Self {
        RawExperiment {
            days: 7,
            salt: None,
            control: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    name: String,
    recipe: String,
    share: Option<f64>,
    retrain: Option<String>,
    window_days: Option<u32>,
    factors: Option<usize>,
    epochs: Option<usize>,
    refresh_epochs: Option<usize>,
    reg: Option<f32>,
    alpha: Option<f32>,
    reg_exponent: Option<f32>,
    cg_steps: Option<usize>,
    ranking: Option<String>,
    user_vectors: Option<String>,
    item_vectors: Option<String>,
    item_specific: Option<toml::Value>,
    specific: Option<toml::Value>,
    specific_grid: Option<Vec<f64>>,
    shares_judged_on: Option<String>,
    explore: Option<f64>,
    explore_uniform: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    #[serde(default)]
    metrics: Option<PathBuf>,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default = "holm")]
    correction: String,
    #[serde(default = "yes")]
    cuped: bool,
    #[serde(default)]
    compare: Vec<String>,
    #[serde(default = "yes")]
    daily: bool,
    #[serde(default = "yes")]
    segments: bool,
}

impl Default for RawAnalysis {
    fn default() -> Self {
        RawAnalysis {
            metrics: None,
            alpha: 0.05,
            correction: "holm".into(),
            cuped: true,
            compare: Vec::new(),
            daily: true,
            segments: true,
        }
    }
}

fn default_alpha() -> f64 {
    0.05
}

fn holm() -> String {
    "holm".into()
}

fn yes() -> bool {
    true
}

/// One arm of a checked spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    /// The arm's name (its `variant` in the events and reports).
    pub name: String,
    /// How the arm ranks.
    pub recipe: Recipe,
    /// Share of the users hashed into this arm.
    pub share: f64,
    /// Uniform exploration (`explore_uniform`): each slot of the arm's pages,
    /// with this probability, shows an unseen eligible video drawn uniformly,
    /// and the arm's impressions carry their propensities (a logging policy
    /// for off-policy evaluation; `reelkit_sim::policies::Explore`).
    pub explore_uniform: Option<f64>,
}

/// A spec whose every key was checked: what [`crate::run`] accepts.
#[derive(Debug, Clone)]
pub struct ValidSpec {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) world: ValidSimParams,
    pub(crate) pre_days: u32,
    pub(crate) pre_policy: String,
    pub(crate) days: u32,
    pub(crate) salt: String,
    pub(crate) arms: Vec<Arm>,
    pub(crate) control: usize,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) alpha: f64,
    pub(crate) correction: Correction,
    pub(crate) cuped: bool,
    pub(crate) daily: bool,
    pub(crate) segments: bool,
    /// `(variant, baseline)` arm indices: every arm against the control,
    /// then the named pairs.
    pub(crate) comparisons: Vec<(usize, usize)>,
}

impl ValidSpec {
    /// The experiment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world's checked parameters.
    pub fn world(&self) -> &ValidSimParams {
        &self.world
    }

    /// The arms, in spec order.
    pub fn arms(&self) -> &[Arm] {
        &self.arms
    }

    /// The control arm.
    pub fn control(&self) -> &Arm {
        &self.arms[self.control]
    }

    /// Days of the pre-period and of the experiment.
    pub fn days(&self) -> (u32, u32) {
        (self.pre_days, self.days)
    }

    /// The metrics analysed.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// The comparisons reported, as `(variant, baseline)` arm names.
    pub fn comparisons(&self) -> Vec<(&str, &str)> {
        self.comparisons
            .iter()
            .map(|&(v, b)| (self.arms[v].name.as_str(), self.arms[b].name.as_str()))
            .collect()
    }
}

/// A TOML value written on a command line: an integer, a float, a boolean,
/// a TOML array or inline table (`[0, 0.5, 1]`, `{ reels = 0.1 }`), or else
/// a string.
pub fn parse_value(text: &str) -> toml::Value {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = t.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = t.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Some(v) = t
        .starts_with(['[', '{'])
        .then(|| format!("v = {t}").parse::<toml::Table>().ok())
        .flatten()
        .and_then(|mut table| table.remove("v"))
    {
        // A TOML array or inline table: `specific_grid=[0,0.5,1]`.
        v
    } else {
        toml::Value::String(t.to_string())
    }
}

fn toml_error(what: &str, e: &toml::de::Error) -> Error {
    Error::Parse {
        what: what.to_string(),
        message: e.message().trim().to_string(),
    }
}

/// A type error in the spec as written out (`text`): the message and the
/// line it is on (`days = -3`), which names the key.
fn located_error(what: &str, text: &str, e: &toml::de::Error) -> Error {
    let line = e.span().map(|span| {
        let start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let table = text[..start]
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map(|l| format!(" in {}", l.trim()))
            .unwrap_or_default();
        format!(" at `{}`{table}", text[start..end].trim())
    });
    Error::Parse {
        what: what.to_string(),
        message: format!("{}{}", e.message().trim(), line.unwrap_or_default()),
    }
}

/// A syntax error in `text`, with the line and column it is on.
fn syntax_error(what: &str, text: &str, e: &toml::de::Error) -> Error {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {col})")
        }
        None => String::new(),
    };
    Error::Parse {
        what: what.to_string(),
        message: format!("{}{at}", e.message().trim()),
    }
}

/// The demo's spec, built in (`datasets/experiments/demo.toml`, shipped as a
/// file for users to start from): what `reelkit experiment run` runs without
/// a spec file and what `reelkit demo` sets keys of.
pub const DEMO_SPEC: &str = include_str!("../../../../datasets/experiments/demo.toml");

impl ExperimentSpec {
    /// A spec file, or the demo's spec without one, with each `KEY=VALUE`
    /// setting applied in order (a value is TOML: see [`parse_value`]).
    pub fn load(path: Option<&Path>, settings: &[String]) -> Result<ExperimentSpec> {
        let mut spec = match path {
            Some(p) => ExperimentSpec::from_file(p)?,
            None => ExperimentSpec::from_toml(DEMO_SPEC, Path::new("datasets/experiments"))?,
        };
        for kv in settings {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::spec(kv.as_str(), "a setting is KEY=VALUE, e.g. world.users=5000")
            })?;
            spec.set(k.trim(), parse_value(v))?;
        }
        Ok(spec)
    }

    /// Parses a spec; relative paths in it start from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<ExperimentSpec> {
        let table: toml::Table = text.parse().map_err(|e| syntax_error("spec", text, &e))?;
        Ok(ExperimentSpec {
            table,
            base: base.to_path_buf(),
        })
    }

    /// Reads a spec file.
    pub fn from_file(path: &Path) -> Result<ExperimentSpec> {
        let text = reelkit_logs::files::read_text_capped(path, reelkit_logs::files::TEXT_CAP)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| syntax_error(&path.display().to_string(), &text, &e))?;
        Ok(ExperimentSpec {
            table,
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// Sets the key at a dotted path (`world.users`, `experiment.days`,
    /// `arms.unified.factors`, `analysis.alpha`), as a sweep does. Whether
    /// the key exists and the value fits is checked by [`ExperimentSpec::check`].
    pub fn set(&mut self, key: &str, value: toml::Value) -> Result<()> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::spec(key, "not a dotted key such as world.users"));
        }
        let mut table = &mut self.table;
        let mut i = 0;
        while i + 1 < parts.len() {
            let part = parts[i];
            if part == "arms" {
                let name = parts[i + 1];
                let arms = table
                    .get_mut("arms")
                    .and_then(toml::Value::as_array_mut)
                    .ok_or_else(|| Error::spec(key, "the spec has no [[arms]]"))?;
                let names: Vec<String> = arms
                    .iter()
                    .filter_map(|a| a.get("name").and_then(toml::Value::as_str))
                    .map(str::to_string)
                    .collect();
                table = arms
                    .iter_mut()
                    .find(|a| a.get("name").and_then(toml::Value::as_str) == Some(name))
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| {
                        Error::spec(
                            key,
                            format!("no arm named `{name}` (arms: {})", names.join(", ")),
                        )
                    })?;
                i += 2;
                continue;
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                Error::spec(key, format!("`{part}` is a value, not a table of keys"))
            })?;
            i += 1;
        }
        let last = parts
            .get(i)
            .ok_or_else(|| Error::spec(key, "names an arm, not one of its keys"))?;
        table.insert(last.to_string(), value);
        Ok(())
    }

    /// The spec as TOML text (with any keys set by [`ExperimentSpec::set`]).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.table).unwrap_or_default()
    }

    /// Checks every key; errors name the key, the allowed values and what
    /// was found. Reads the world and metrics files the spec names.
    pub fn check(&self) -> Result<ValidSpec> {
        // Read from text, not from the table: a type error then carries its
        // span, and the message names the line and the key's text.
        let text = self.to_toml();
        let raw: RawSpec = toml::from_str(&text).map_err(|e| located_error("spec", &text, &e))?;
        // The days first: the world's length is their sum, and a wrong one
        // is named as the key it was written in, not as `world.days`.
        if !(2..=365).contains(&raw.pre_period.days) {
            return Err(Error::spec(
                "pre_period.days",
                format!(
                    "must be in 2 ..= 365 (training data and its held-out last day), got {}",
                    raw.pre_period.days
                ),
            ));
        }
        if !["random", "popular", "oracle"].contains(&raw.pre_period.policy.as_str()) {
            return Err(Error::spec(
                "pre_period.policy",
                format!(
                    "must be one of random, popular, oracle; got `{}`",
                    raw.pre_period.policy
                ),
            ));
        }
        if !(1..=365).contains(&raw.experiment.days) {
            return Err(Error::spec(
                "experiment.days",
                format!("must be in 1 ..= 365, got {}", raw.experiment.days),
            ));
        }
        let world = self.world(&raw)?;
        let arms = check_arms(&raw.arms, raw.seed)?;
        let control = match &raw.experiment.control {
            None => 0,
            Some(c) => arms.iter().position(|a| &a.name == c).ok_or_else(|| {
                Error::spec(
                    "experiment.control",
                    format!("no arm named `{c}` (arms: {})", names(&arms)),
                )
            })?,
        };
        let metrics = match &raw.analysis.metrics {
            None => builtin_metrics(),
            Some(p) => {
                let path = self.base.join(p);
                let text =
                    reelkit_logs::files::read_text_capped(&path, reelkit_logs::files::TEXT_CAP)
                        .map_err(|e| {
                            Error::spec(
                                "analysis.metrics",
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?;
                parse_metrics(&text).map_err(|e| {
                    Error::spec("analysis.metrics", format!("{}: {e}", path.display()))
                })?
            }
        };
        let a = &raw.analysis;
        if !(a.alpha > 0.0 && a.alpha < 0.5) {
            return Err(Error::spec(
                "analysis.alpha",
                format!("must be in (0, 0.5), got {}", a.alpha),
            ));
        }
        let correction: Correction = a
            .correction
            .parse()
            .map_err(|e: String| Error::spec("analysis.correction", e))?;
        let mut comparisons: Vec<(usize, usize)> = (0..arms.len())
            .filter(|&i| i != control)
            .map(|i| (i, control))
            .collect();
        for pair in &a.compare {
            let (v, b) = pair.split_once(" vs ").ok_or_else(|| {
                Error::spec(
                    "analysis.compare",
                    format!("`{pair}` is not of the form \"variant vs baseline\""),
                )
            })?;
            let find = |n: &str| {
                arms.iter().position(|x| x.name == n.trim()).ok_or_else(|| {
                    Error::spec(
                        "analysis.compare",
                        format!(
                            "`{pair}`: no arm named `{}` (arms: {})",
                            n.trim(),
                            names(&arms)
                        ),
                    )
                })
            };
            let (v, b) = (find(v)?, find(b)?);
            if v == b {
                return Err(Error::spec(
                    "analysis.compare",
                    format!("`{pair}` compares an arm with itself"),
                ));
            }
            if !comparisons.contains(&(v, b)) {
                comparisons.push((v, b));
            }
        }
        Ok(ValidSpec {
            name: check_name("name", &raw.name)?,
            seed: raw.seed,
            world,
            pre_days: raw.pre_period.days,
            pre_policy: raw.pre_period.policy,
            days: raw.experiment.days,
            salt: raw
                .experiment
                .salt
                .unwrap_or_else(|| format!("{}-{}", raw.name, raw.seed)),
            arms,
            control,
            metrics,
            alpha: a.alpha,
            correction,
            cuped: a.cuped,
            daily: a.daily,
            segments: a.segments,
            comparisons,
        })
    }

    /// The world: the scale's preset, then `world_file`, then `[world]`, then
    /// the spec's seed and days (unless `[world]` sets them).
    fn world(&self, raw: &RawSpec) -> Result<ValidSimParams> {
        let scale = match &raw.scale {
            None => Scale::Small,
            Some(s) => Scale::parse(s).ok_or_else(|| {
                Error::spec(
                    "scale",
                    format!("must be one of {}; got `{s}`", Scale::NAMES),
                )
            })?,
        };
        let mut table = toml::Table::try_from(scale.params()).map_err(|e| Error::Parse {
            what: "world preset".into(),
            message: e.to_string(),
        })?;
        if let Some(file) = &raw.world_file {
            let path = self.base.join(file);
            let text = reelkit_logs::files::read_text_capped(&path, reelkit_logs::files::TEXT_CAP)
                .map_err(|e| {
                    Error::spec("world_file", format!("cannot read {}: {e}", path.display()))
                })?;
            let from_file: toml::Table = text
                .parse()
                .map_err(|e| syntax_error(&path.display().to_string(), &text, &e))?;
            merge(&mut table, from_file);
        }
        merge(&mut table, raw.world.clone());
        if !raw.world.contains_key("seed") {
            table.insert("seed".into(), toml::Value::Integer(raw.seed as i64));
        }
        // The world lasts the pre-period and the experiment; a `[world]`
        // days that says otherwise would be silently overridden by the run.
        let days = raw.pre_period.days as i64 + raw.experiment.days as i64;
        if let Some(v) = raw
            .world
            .get("days")
            .filter(|v| v.as_integer() != Some(days))
        {
            return Err(Error::spec(
                "world.days",
                format!(
                    "is pre_period.days + experiment.days ({days}) in a spec, got {}; set those \
                     instead",
                    cut(&v.to_string())
                ),
            ));
        }
        table.insert("days".into(), toml::Value::Integer(days));
        let params: SimParams = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| toml_error("world", &e))?;
        params.check().map_err(|e| match e {
            reelkit_sim::Error::InvalidParam {
                field,
                allowed,
                got,
            } => Error::spec(
                format!("world.{field}"),
                format!("must be in {allowed}, got {got}"),
            ),
            other => other.into(),
        })
    }
}

/// Deep merge: keys of `over` replace those of `base`, tables merge.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn names(arms: &[Arm]) -> String {
    arms.iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
