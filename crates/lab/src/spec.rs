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
use reelkit_ranker::TrainParams;
use reelkit_sim::{SimParams, ValidSimParams};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::recipe::{cut, Ranking, Recipe, Retrain, Specific, Trained, UserVectors};

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
    specific: Option<toml::Value>,
    specific_grid: Option<Vec<f64>>,
    explore: Option<f64>,
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

impl ExperimentSpec {
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
        let text =
            reelkit_logs::read_text_capped(path, reelkit_logs::TEXT_CAP).map_err(|source| {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
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
                    reelkit_logs::read_text_capped(&path, reelkit_logs::TEXT_CAP).map_err(|e| {
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
            let text =
                reelkit_logs::read_text_capped(&path, reelkit_logs::TEXT_CAP).map_err(|e| {
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

/// Names go into reports, file names and JSON: letters, digits, `_`, `-`, `.`.
fn check_name(key: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::spec(
            key,
            format!(
                "must be 1 to 64 letters, digits, `_`, `-` or `.`; got `{}`",
                name.escape_debug()
            ),
        ))
    }
}

fn check_arms(raw: &[RawArm], seed: u64) -> Result<Vec<Arm>> {
    if !(2..=8).contains(&raw.len()) {
        return Err(Error::spec(
            "arms",
            format!("an experiment needs 2 to 8 [[arms]], got {}", raw.len()),
        ));
    }
    let mut arms: Vec<Arm> = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        let name = check_name(&format!("arms[{i}].name"), &a.name)?;
        if arms.iter().any(|x| x.name == name) {
            return Err(Error::spec(
                format!("arms.{name}.name"),
                format!("arm `{name}` is named twice; arm names must be unique"),
            ));
        }
        let key = |k: &str| format!("arms.{name}.{k}");
        let recipe = match a.recipe.as_str() {
            "random" => Recipe::Random,
            "popular" => Recipe::Popular,
            "oracle" => Recipe::Oracle,
            "siloed" | "unified" => {
                if a.recipe == "siloed" {
                    let set = [
                        ("user_vectors", a.user_vectors.is_some()),
                        ("specific", a.specific.is_some()),
                        ("specific_grid", a.specific_grid.is_some()),
                    ];
                    if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                        return Err(Error::spec(
                            key(k),
                            format!("only the unified recipe takes `{k}` (siloed models are per surface)"),
                        ));
                    }
                }
                let t = trained(a, &key, seed.wrapping_add(i as u64))?;
                if a.recipe == "siloed" {
                    Recipe::Siloed(t)
                } else {
                    Recipe::Unified(t)
                }
            }
            other => {
                return Err(Error::spec(
                    key("recipe"),
                    format!("must be one of {RECIPES}; got `{other}`"),
                ))
            }
        };
        if !matches!(recipe, Recipe::Siloed(_) | Recipe::Unified(_)) {
            let set = [
                ("retrain", a.retrain.is_some()),
                ("window_days", a.window_days.is_some()),
                ("factors", a.factors.is_some()),
                ("epochs", a.epochs.is_some()),
                ("refresh_epochs", a.refresh_epochs.is_some()),
                ("reg", a.reg.is_some()),
                ("alpha", a.alpha.is_some()),
                ("reg_exponent", a.reg_exponent.is_some()),
                ("cg_steps", a.cg_steps.is_some()),
                ("ranking", a.ranking.is_some()),
                ("user_vectors", a.user_vectors.is_some()),
                ("specific", a.specific.is_some()),
                ("specific_grid", a.specific_grid.is_some()),
                ("explore", a.explore.is_some()),
            ];
            if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                return Err(Error::spec(
                    key(k),
                    format!(
                        "only trained recipes (siloed, unified) take `{k}`; `{}` is built in",
                        a.recipe
                    ),
                ));
            }
        }
        if let Some(s) = a.share {
            if !(s.is_finite() && s > 0.0 && s < 1.0) {
                return Err(Error::spec(
                    key("share"),
                    format!("must be in (0, 1), got {s}"),
                ));
            }
        }
        arms.push(Arm {
            name,
            recipe,
            share: a.share.unwrap_or(0.0),
        });
    }
    let given = raw.iter().filter(|a| a.share.is_some()).count();
    if given == 0 {
        let n = arms.len() as f64;
        arms.iter_mut().for_each(|a| a.share = 1.0 / n);
    } else if given < arms.len() {
        let missing: Vec<&str> = raw
            .iter()
            .filter(|a| a.share.is_none())
            .map(|a| a.name.as_str())
            .collect();
        return Err(Error::spec(
            "arms.*.share",
            format!(
                "give every arm a share or none (then they are equal); missing for {}",
                missing.join(", ")
            ),
        ));
    } else {
        let total: f64 = arms.iter().map(|a| a.share).sum();
        if (total - 1.0).abs() > 1e-6 {
            let listed: Vec<String> = arms
                .iter()
                .map(|a| format!("{} {}", a.name, a.share))
                .collect();
            return Err(Error::spec(
                "arms.*.share",
                format!("shares must sum to 1, got {total} ({})", listed.join(", ")),
            ));
        }
    }
    Ok(arms)
}

fn trained(a: &RawArm, key: &dyn Fn(&str) -> String, seed: u64) -> Result<Trained> {
    let d = Trained::default();
    let retrain = match a.retrain.as_deref() {
        None => d.retrain,
        Some("daily") => Retrain::Daily,
        Some("never") => Retrain::Never,
        Some(other) => {
            return Err(Error::spec(
                key("retrain"),
                format!("must be one of daily, never; got `{other}`"),
            ))
        }
    };
    let ranking = match a.ranking.as_deref() {
        None => d.ranking,
        Some("dot") => Ranking::Dot,
        Some("surface") => Ranking::Surface,
        Some("value") => Ranking::Value,
        Some(other) => {
            return Err(Error::spec(
                key("ranking"),
                format!("must be one of {}; got `{other}`", Ranking::NAMES),
            ))
        }
    };
    let user_vectors = match a.user_vectors.as_deref() {
        None => d.user_vectors,
        Some("hierarchical") => UserVectors::Hierarchical,
        Some("shared") => UserVectors::Shared,
        Some("per_surface") => UserVectors::PerSurface,
        Some(other) => {
            return Err(Error::spec(
                key("user_vectors"),
                format!("must be one of {}; got `{other}`", UserVectors::NAMES),
            ))
        }
    };
    let specific = specific(a, user_vectors, key)?;
    let window_days = a.window_days.unwrap_or(d.window_days);
    if !(1..=365).contains(&window_days) {
        return Err(Error::spec(
            key("window_days"),
            format!("must be in 1 ..= 365, got {window_days}"),
        ));
    }
    let refresh_epochs = a.refresh_epochs.unwrap_or(d.refresh_epochs);
    if !(1..=1000).contains(&refresh_epochs) {
        return Err(Error::spec(
            key("refresh_epochs"),
            format!("must be in 1 ..= 1000, got {refresh_epochs}"),
        ));
    }
    let explore = a.explore.unwrap_or(d.explore);
    if !(0.0..=0.5).contains(&explore) {
        return Err(Error::spec(
            key("explore"),
            format!("must be in 0 ..= 0.5, got {explore}"),
        ));
    }
    let train = TrainParams {
        factors: a.factors.unwrap_or(d.train.factors),
        epochs: a.epochs.unwrap_or(d.train.epochs),
        reg: a.reg.unwrap_or(d.train.reg),
        alpha: a.alpha.unwrap_or(d.train.alpha),
        reg_exponent: a.reg_exponent.unwrap_or(d.train.reg_exponent),
        cg_steps: a.cg_steps.unwrap_or(d.train.cg_steps),
        seed,
        ..d.train.clone()
    };
    train.clone().check().map_err(|e| match e {
        reelkit_ranker::Error::InvalidParam {
            field,
            allowed,
            got,
        } => Error::spec(key(field), format!("must be in {allowed}, got {got}")),
        other => other.into(),
    })?;
    Ok(Trained {
        train,
        refresh_epochs,
        window_days,
        retrain,
        ranking,
        user_vectors,
        specific,
        explore,
    })
}

/// A share in [0, 1] at `key`.
fn share(key: &str, v: &toml::Value) -> Result<f32> {
    let x = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(Error::spec(
                key,
                format!("must be a number in [0, 1], got {}", short_value(other)),
            ))
        }
    };
    if !(0.0..=1.0).contains(&x) {
        return Err(Error::spec(key, format!("must be in [0, 1], got {x}")));
    }
    Ok(x as f32)
}

/// A TOML value for a message, cut to 80 characters.
fn short_value(v: &toml::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The `specific` and `specific_grid` keys of a unified arm.
fn specific(a: &RawArm, vectors: UserVectors, key: &dyn Fn(&str) -> String) -> Result<Specific> {
    if vectors != UserVectors::Hierarchical {
        if let Some(k) = [
            ("specific", a.specific.is_some()),
            ("specific_grid", a.specific_grid.is_some()),
        ]
        .iter()
        .find(|(_, on)| *on)
        .map(|(k, _)| *k)
        {
            return Err(Error::spec(
                key(k),
                "only `user_vectors = \"hierarchical\"` takes it (`shared` is φ = 0, `per_surface` φ = 1)",
            ));
        }
    }
    let grid = match &a.specific_grid {
        None => Specific::GRID.to_vec(),
        Some(g) => {
            if g.is_empty() || g.len() > 16 {
                return Err(Error::spec(
                    key("specific_grid"),
                    format!("must list 1 to 16 shares in [0, 1], got {}", g.len()),
                ));
            }
            g.iter()
                .map(|&x| share(&key("specific_grid"), &toml::Value::Float(x)))
                .collect::<Result<Vec<f32>>>()?
        }
    };
    let surfaces = reelkit_logs::Surface::ALL;
    match &a.specific {
        None => Ok(Specific::Auto { grid }),
        Some(toml::Value::String(s)) if s == "auto" => Ok(Specific::Auto { grid }),
        Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) => {
            if a.specific_grid.is_some() {
                return Err(Error::spec(
                    key("specific_grid"),
                    "is for `specific = \"auto\"`; the shares are fixed here",
                ));
            }
            let x = share(&key("specific"), v)?;
            Ok(Specific::Fixed(vec![x; surfaces.len()]))
        }
        Some(toml::Value::Table(t)) => {
            if a.specific_grid.is_some() {
                return Err(Error::spec(
                    key("specific_grid"),
                    "is for `specific = \"auto\"`; the shares are fixed here",
                ));
            }
            let names: Vec<&str> = surfaces.iter().map(|s| s.as_str()).collect();
            if let Some(k) = t.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(Error::spec(
                    key(&format!("specific.{}", short_key(k))),
                    format!(
                        "the world has no surface `{}` (surfaces: {})",
                        short_key(k),
                        names.join(", ")
                    ),
                ));
            }
            let mut out = Vec::with_capacity(names.len());
            for n in &names {
                let v = t.get(*n).ok_or_else(|| {
                    Error::spec(
                        key("specific"),
                        format!(
                            "give a share for every surface ({}); `{n}` is missing",
                            names.join(", ")
                        ),
                    )
                })?;
                out.push(share(&key(&format!("specific.{n}")), v)?);
            }
            Ok(Specific::Fixed(out))
        }
        Some(other) => Err(Error::spec(
            key("specific"),
            format!(
                "must be \"auto\", a share in [0, 1], or a table of one per surface; got {}",
                short_value(other)
            ),
        )),
    }
}

/// A key for a message, cut to 40 characters.
fn short_key(k: &str) -> String {
    match k.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &k[..at]),
        None => k.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
seed = 3
[world]
users = 200
[pre_period]
days = 3
[experiment]
days = 2
[[arms]]
name = "popular"
recipe = "popular"
[[arms]]
name = "siloed"
recipe = "siloed"
factors = 8
[[arms]]
name = "unified"
recipe = "unified"
retrain = "never"
[analysis]
compare = ["unified vs siloed"]
"#;

    fn spec(text: &str) -> ExperimentSpec {
        ExperimentSpec::from_toml(text, Path::new(".")).expect("parses")
    }

    fn err(text: &str) -> String {
        spec(text)
            .check()
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn a_good_spec_checks() -> Result<()> {
        let s = spec(GOOD).check()?;
        assert_eq!(s.world.users, 200);
        assert_eq!(s.world.days, 5, "pre-period + experiment");
        assert_eq!(s.world.seed, 3);
        assert_eq!(s.arms.len(), 3);
        assert!((s.arms[1].share - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            s.comparisons(),
            vec![
                ("siloed", "popular"),
                ("unified", "popular"),
                ("unified", "siloed")
            ]
        );
        match &s.arms[1].recipe {
            Recipe::Siloed(t) => assert_eq!(t.train.factors, 8),
            other => panic!("{other:?}"),
        }
        match &s.arms[2].recipe {
            Recipe::Unified(t) => assert_eq!(t.retrain, Retrain::Never),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn bad_specs_name_the_key_and_what_is_allowed() {
        let cases: [(&str, &str, &[&str]); 9] = [
            (
                "recipe = \"siloed\"",
                "recipe = \"silo\"",
                &[
                    "arms.siloed.recipe",
                    "random, popular, oracle, siloed, unified",
                    "silo",
                ],
            ),
            (
                "name = \"unified\"",
                "name = \"siloed\"",
                &["arms.siloed.name", "named twice"],
            ),
            (
                "[analysis]",
                "[analysis]\nalpha = 1.5",
                &["analysis.alpha", "1.5"],
            ),
            (
                "users = 200",
                "users = 200\nsurface_taste_divergence = 2",
                &["world.surface_taste_divergence", "0 ..= 1", "2"],
            ),
            ("users = 200", "userz = 200", &["userz"]),
            (
                "retrain = \"never\"",
                "retrain = \"weekly\"",
                &["arms.unified.retrain", "daily, never", "weekly"],
            ),
            (
                "recipe = \"popular\"",
                "recipe = \"popular\"\nfactors = 8",
                &["arms.popular.factors", "only trained recipes"],
            ),
            (
                "compare = [\"unified vs siloed\"]",
                "compare = [\"unified vs silo\"]",
                &["analysis.compare", "silo", "popular, siloed, unified"],
            ),
            (
                "factors = 8",
                "factors = 0",
                &["arms.siloed.factors", "1 ..= 1024", "0"],
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let msg = err(&GOOD.replacen(from, to, 1));
            for w in want {
                assert!(msg.contains(w), "`{to}`: {msg} lacks {w}");
            }
        }
        // Shares: all or none, summing to 1.
        let shares = GOOD
            .replacen(
                "recipe = \"popular\"",
                "recipe = \"popular\"\nshare = 0.5",
                1,
            )
            .replacen("factors = 8", "factors = 8\nshare = 0.3", 1)
            .replacen("retrain = \"never\"", "retrain = \"never\"\nshare = 0.3", 1);
        let msg = err(&shares);
        assert!(
            msg.contains("arms.*.share") && msg.contains("sum to 1"),
            "{msg}"
        );
        let some = GOOD.replacen(
            "recipe = \"popular\"",
            "recipe = \"popular\"\nshare = 0.5",
            1,
        );
        let msg = err(&some);
        assert!(msg.contains("siloed, unified"), "{msg}");
    }

    #[test]
    fn left_out_sections_keep_their_defaults() -> Result<()> {
        let s = spec("[[arms]]\nname = \"a\"\nrecipe = \"popular\"\n[[arms]]\nname = \"b\"\nrecipe = \"random\"\n")
            .check()?;
        assert_eq!((s.pre_days, s.days), (7, 7));
        assert_eq!(s.world.users, 2_000, "small scale");
        assert_eq!(s.alpha, 0.05);
        // With defaults in place, the real mistake is the one reported.
        let one = "[[arms]]\nname = \"a\"\nrecipe = \"popular\"\n";
        let msg = err(one);
        assert!(msg.contains("arms") && msg.contains("2 to 8"), "{msg}");
        let msg = ExperimentSpec::from_toml("name = \n", Path::new("."))
            .expect_err("syntax")
            .to_string();
        assert!(msg.contains("line 1"), "{msg}");
        Ok(())
    }

    #[test]
    fn set_reaches_world_arms_and_sections() -> Result<()> {
        let mut s = spec(GOOD);
        s.set("world.surface_taste_divergence", parse_value("0.75"))?;
        s.set("arms.unified.factors", parse_value("16"))?;
        s.set("experiment.days", parse_value("3"))?;
        let v = s.check()?;
        assert_eq!(v.world.surface_taste_divergence, 0.75);
        assert_eq!(v.days, 3);
        match &v.arms[2].recipe {
            Recipe::Unified(t) => assert_eq!(t.train.factors, 16),
            other => panic!("{other:?}"),
        }
        // An integer where a float is expected is fine; unknown keys and
        // arms are refused.
        s.set("world.surface_taste_divergence", parse_value("1"))?;
        assert_eq!(s.check()?.world.surface_taste_divergence, 1.0);
        let e = s
            .set("arms.nope.factors", parse_value("1"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no arm named `nope`") && e.contains("popular, siloed, unified"),
            "{e}"
        );
        // Arrays and inline tables, as in the spec file; a malformed one is
        // the string it looks like, which the key's type then refuses.
        s.set("arms.unified.specific_grid", parse_value("[0, 0.5,1]"))?;
        match &s.check()?.arms[2].recipe {
            Recipe::Unified(t) => assert_eq!(
                t.specific,
                Specific::Auto {
                    grid: vec![0.0, 0.5, 1.0]
                }
            ),
            other => panic!("{other:?}"),
        }
        let mut f = spec(GOOD);
        f.set(
            "arms.unified.specific",
            parse_value("{reels=0.1,feed=0,watch=1}"),
        )?;
        match &f.check()?.arms[2].recipe {
            Recipe::Unified(t) => assert_eq!(t.specific, Specific::Fixed(vec![0.1, 0.0, 1.0])),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_value("[0, 0.5"),
            toml::Value::String("[0, 0.5".into())
        );
        s.set("arms.unified.specific_grid", parse_value("[0, 0.5"))?;
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("specific_grid"), "{e}");
        let mut t = spec(GOOD);
        t.set("world.surface_taste_divergenc", parse_value("0.5"))?;
        let e = t.check().unwrap_err().to_string();
        assert!(e.contains("surface_taste_divergenc"), "{e}");
        Ok(())
    }
}
