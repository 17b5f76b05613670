//! The served model and its hot reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reelkit_assign::Allocation;
use reelkit_ranker::{Ranker, Retrieval};

use crate::batcher::Batcher;
use crate::exposures::ExposureLog;
use crate::metrics::Metrics;

/// Limits of the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest list of video ids in one request (`exclude`, `history`, `video_ids`).
    pub max_ids: usize,
    /// Time allowed to one request's scoring.
    pub timeout: Duration,
    /// Most recommendation requests scored in one pass over the catalogue.
    pub max_batch: usize,
    /// Batch workers each scanning alone (0: one worker scanning across all
    /// of rayon's threads).
    pub scan_workers: usize,
    /// Where candidates are retrieved: the f32 table, or an f16 or int8 copy
    /// whose candidates are rescored exactly (see `Ranker::with_retrieval`);
    /// the default is `Retrieval::default()` (int8).
    pub retrieval: Retrieval,
    /// When set, admin requests need `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// A connection must send a whole request head within this time, and
    /// one idle between requests is closed after it (slow or idle clients).
    pub header_read_timeout: Duration,
    /// A request body must arrive within this time (408 otherwise).
    pub body_read_timeout: Duration,
    /// Connections open at once; past it a new one gets a 503 and is closed.
    pub max_connections: usize,
    /// On SIGTERM, requests already accepted have this long to finish.
    pub shutdown_grace: Duration,
    /// ε-uniform exploration of every recommendation (`serve --explore`):
    /// each slot, with probability ε in (0, 1), shows a video drawn
    /// uniformly from those the request could have been shown, and every
    /// video's probability goes to the response and the exposure log
    /// (`Ranker::explore`). Not with interleaving.
    pub explore: Option<f64>,
    /// Seed of the exploration's draws, mixed with each request's user and
    /// id: the same seed and request, the same list.
    pub explore_seed: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_k: 1_000,
            max_body_bytes: 1 << 20,
            max_ids: 10_000,
            timeout: Duration::from_secs(2),
            max_batch: 64,
            scan_workers: 0,
            retrieval: Retrieval::default(),
            admin_token: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(30),
            explore: None,
            explore_seed: 0,
        }
    }
}

/// Video metadata re-attached to every loaded model (surface filter, creator cap).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every catalogued video.
    pub video_id: Vec<u64>,
    /// Its creator (same order).
    pub creator_id: Vec<u64>,
    /// Whether it is a long video (not on reels; the only kind on watch).
    pub long: Vec<bool>,
}

pub use crate::loaded::Loaded;

/// Why a model could not be (re)loaded, or a service not started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model file is missing, truncated, foreign or of another version.
    #[error(transparent)]
    Model(#[from] reelkit_ranker::Error),
    /// A file could not be read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A model of string ids where the service needs numeric ones: the video
    /// catalogue and exposure logs are keyed by numeric ids.
    #[error("{0}")]
    StringIds(String),
    /// Reload asked of a service built from in-memory rankers.
    #[error("this service was started from an in-memory model: there is no file to reload")]
    NoFile,
    /// No model of that name is loaded.
    #[error("no model named `{name}` is loaded (loaded: {loaded})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names that are loaded, comma-separated.
        loaded: String,
    },
    /// The models and the experiment design do not fit together.
    #[error("{0}")]
    Experiment(String),
    /// The exposure log could not be opened.
    #[error(transparent)]
    Exposures(#[from] crate::exposures::ExposureError),
}

/// The outcome of one model's reload: (previous version, new version).
pub type Reloaded = Result<(String, String), LoadError>;

/// How requests are shared between the loaded models.
#[derive(Debug, Clone, PartialEq)]
pub enum Design {
    /// One model serves every request (the only design with one model).
    Single,
    /// An A/B test: each user is served by the model their arm names, the arm
    /// drawn by `reelkit_assign::Allocation::arm(salt, user_id)`.
    Ab {
        /// Arms, each named after a loaded model.
        split: Allocation,
        /// The experiment's salt.
        salt: String,
    },
    /// Team-draft interleaving of the first model's list (team A) with the
    /// second's (team B), coin flips seeded by (salt, user, request id).
    Interleave {
        /// The experiment's salt.
        salt: String,
    },
}

impl Design {
    /// `single`, `ab` or `interleave`: the `experiment` column of exposures.
    pub fn kind(&self) -> &'static str {
        match self {
            Design::Single => "single",
            Design::Ab { .. } => "ab",
            Design::Interleave { .. } => "interleave",
        }
    }
}

/// One named model and its reload state.
#[derive(Debug)]
struct Slot {
    name: String,
    path: Option<PathBuf>,
    current: RwLock<Arc<Loaded>>,
    reloading: Mutex<()>,
    reloads: AtomicU64,
}

impl Slot {
    fn new(name: &str, loaded: Loaded, path: Option<PathBuf>) -> Slot {
        Slot {
            name: name.to_string(),
            path,
            current: RwLock::new(Arc::new(loaded)),
            reloading: Mutex::new(()),
            reloads: AtomicU64::new(0),
        }
    }

    fn model(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    slots: Vec<Slot>,
    design: Design,
    catalog: Option<Catalog>,
    /// Creator of each catalogued video (creator caps of interleaved lists).
    creators: HashMap<u64, u64>,
    /// Limits and retrieval, as started.
    pub config: ServeConfig,
    /// Request counters and latency histograms (`/metrics`).
    pub metrics: Metrics,
    /// Connections refused at the connection cap.
    pub(crate) connections_refused: Arc<std::sync::atomic::AtomicU64>,
    exposures: Option<ExposureLog>,
    requests: AtomicU64,
    started_ms: u64,
    pub(crate) batcher: Arc<Batcher>,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn load(path: &Path, catalog: Option<&Catalog>, retrieval: Retrieval) -> Result<Loaded, LoadError> {
    let t = Instant::now();
    // Whether the IVF index was loaded or built is logged by the ranker.
    let mut ranker = Ranker::open(path)?.with_retrieval(retrieval);
    // The model version: a stable hash of the bytes mapped (not re-read).
    let version = format!("{:016x}", ranker.model().content_hash);
    if let Some(c) = catalog {
        if ranker.keyed().1 {
            return Err(LoadError::StringIds(
                "the model was trained on string video ids; the catalogue (--videos) holds \
                 numeric ones (serve it without --videos)"
                    .to_string(),
            ));
        }
        ranker = ranker.with_catalog(&c.video_id, &c.creator_id, &c.long)?;
    }
    Ok(Loaded {
        ranker,
        version,
        loaded_at: now_unix(),
        load_seconds: t.elapsed().as_secs_f64(),
    })
}

/// Exposure logs hold numeric user and video ids: a model of string ids
/// cannot be logged.
fn exposable(name: &str, model: &Loaded) -> Result<(), LoadError> {
    if model.ranker.keyed() != (false, false) {
        return Err(LoadError::StringIds(format!(
            "model `{name}` was trained on string ids; exposure logs (--exposures) hold numeric \
             user and video ids"
        )));
    }
    Ok(())
}

/// Checks that `names` are distinct and fit `design`.
fn check_design(names: &[&str], design: &Design, config: &ServeConfig) -> Result<(), LoadError> {
    if let Some(e) = config.explore {
        if !(e > 0.0 && e < 1.0) {
            return Err(LoadError::Experiment(format!(
                "explore: the share of slots explored must be in (0, 1), got {e}"
            )));
        }
        if matches!(design, Design::Interleave { .. }) {
            return Err(LoadError::Experiment(
                "explore: an interleaved list's propensities are not logged; explore under a \
                 single model or an A/B test"
                    .into(),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(**n)) {
        return Err(LoadError::Experiment(format!(
            "model `{dup}` is given twice; give each model a distinct name (name=path)"
        )));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.contains([',', '=', ':']))
    {
        return Err(LoadError::Experiment(format!(
            "model name `{bad}` must be non-empty and hold no `,`, `=` or `:`"
        )));
    }
    match design {
        Design::Single if names.len() != 1 => Err(LoadError::Experiment(format!(
            "{} models are loaded: choose an experiment design (ab or interleave)",
            names.len()
        ))),
        Design::Ab { split, .. } => {
            if let Some(arm) = split.names().iter().find(|a| !names.contains(&a.as_str())) {
                return Err(LoadError::Experiment(format!(
                    "arm `{arm}` names no loaded model (loaded: {})",
                    names.join(", ")
                )));
            }
            if let Some(m) = names
                .iter()
                .find(|m| !split.names().iter().any(|a| a == *m))
            {
                return Err(LoadError::Experiment(format!(
                    "model `{m}` is in no arm (arms: {})",
                    split.names().join(", ")
                )));
            }
            Ok(())
        }
        Design::Interleave { .. } if names.len() != 2 => Err(LoadError::Experiment(format!(
            "interleaving needs exactly two models, got {}",
            names.len()
        ))),
        _ => Ok(()),
    }
}

impl Drop for AppState {
    /// The micro-batching threads end with the service.
    fn drop(&mut self) {
        self.batcher.shut_down();
    }
}

impl AppState {
    /// Serves the model file at `path` (memory-mapped), with an optional
    /// catalogue; `POST /admin/reload` and SIGHUP load it again.
    pub fn open(
        path: &Path,
        catalog: Option<Catalog>,
        config: ServeConfig,
    ) -> Result<AppState, LoadError> {
        AppState::open_models(
            &[("default".to_string(), path.to_path_buf())],
            Design::Single,
            catalog,
            config,
        )
    }

    /// Serves several named model files under an experiment `design` (one
    /// model: [`Design::Single`]). Each reloads on its own
    /// (`POST /admin/reload?model=NAME`); SIGHUP reloads them all.
    pub fn open_models(
        models: &[(String, PathBuf)],
        design: Design,
        catalog: Option<Catalog>,
        config: ServeConfig,
    ) -> Result<AppState, LoadError> {
        let names: Vec<&str> = models.iter().map(|m| m.0.as_str()).collect();
        check_design(&names, &design, &config)?;
        let mut slots = Vec::with_capacity(models.len());
        for (name, path) in models {
            let loaded = load(path, catalog.as_ref(), config.retrieval)?;
            slots.push(Slot::new(name, loaded, Some(path.clone())));
        }
        Ok(AppState::serving(slots, design, catalog, config))
    }

    fn serving(
        slots: Vec<Slot>,
        design: Design,
        catalog: Option<Catalog>,
        config: ServeConfig,
    ) -> AppState {
        let creators = catalog
            .as_ref()
            .map(|c| {
                c.video_id
                    .iter()
                    .copied()
                    .zip(c.creator_id.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        AppState {
            slots,
            design,
            catalog,
            creators,
            metrics: Metrics::default(),
            connections_refused: Arc::default(),
            exposures: None,
            requests: AtomicU64::new(0),
            started_ms: (now_unix() * 1e3) as u64,
            batcher: Batcher::start(config.max_batch, config.scan_workers),
            config,
        }
    }

    /// Serves an in-memory ranker under the given version name (no reload;
    /// `config.retrieval` applies).
    pub fn from_ranker(ranker: Ranker, version: &str, config: ServeConfig) -> AppState {
        AppState::from_rankers(
            vec![("default".into(), ranker, version.into())],
            Design::Single,
            config,
        )
        .expect("one model always fits the single design")
    }

    /// Serves in-memory rankers `(name, ranker, version)` under `design` (no
    /// reload; `config.retrieval` applies).
    pub fn from_rankers(
        rankers: Vec<(String, Ranker, String)>,
        design: Design,
        config: ServeConfig,
    ) -> Result<AppState, LoadError> {
        let names: Vec<&str> = rankers.iter().map(|m| m.0.as_str()).collect();
        check_design(&names, &design, &config)?;
        let slots = rankers
            .into_iter()
            .map(|(name, ranker, version)| {
                let loaded = Loaded {
                    ranker: ranker.with_retrieval(config.retrieval),
                    version,
                    loaded_at: now_unix(),
                    load_seconds: 0.0,
                };
                Slot::new(&name, loaded, None)
            })
            .collect();
        Ok(AppState::serving(slots, design, None, config))
    }

    /// The same service, appending every recommendation it serves to `log`;
    /// refused when a model has string ids (the log's ids are numbers).
    pub fn with_exposures(mut self, log: ExposureLog) -> Result<AppState, LoadError> {
        for s in &self.slots {
            exposable(&s.name, &s.model())?;
        }
        self.exposures = Some(log);
        Ok(self)
    }

    /// The exposure log, when the service keeps one.
    pub fn exposures(&self) -> Option<&ExposureLog> {
        self.exposures.as_ref()
    }

    /// The exploration share and seed, when `serve --explore` asked for one.
    pub(crate) fn explore(&self) -> Option<(f64, u64)> {
        self.config.explore.map(|e| (e, self.config.explore_seed))
    }

    /// The experiment design.
    pub fn design(&self) -> &Design {
        &self.design
    }

    /// The loaded models' names, in the order given.
    pub fn model_names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// The (first) model now being served. Requests hold this `Arc` until
    /// they finish, so a reload never pulls a model from under them.
    pub fn model(&self) -> Arc<Loaded> {
        self.slots[0].model()
    }

    /// The model named `name` now being served.
    pub fn model_named(&self, name: &str) -> Option<Arc<Loaded>> {
        self.slots.iter().find(|s| s.name == name).map(Slot::model)
    }

    /// Model `i` (in the order given) and its name.
    pub(crate) fn slot_model(&self, i: usize) -> (&str, Arc<Loaded>) {
        (&self.slots[i].name, self.slots[i].model())
    }

    /// Whether every served model has user vectors for surface `name`
    /// (per-surface models, `reelkit train --per-surface`).
    pub(crate) fn all_have_surface(&self, name: &str) -> bool {
        self.slots
            .iter()
            .all(|s| s.model().ranker.surfaces().iter().any(|n| n == name))
    }

    /// The index of the model named `name`.
    pub(crate) fn slot_index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    /// Creator of a catalogued video.
    pub(crate) fn creator(&self, video_id: u64) -> Option<u64> {
        self.creators.get(&video_id).copied()
    }

    /// A request id for a request that brought none: unique within this
    /// process and, through the start time, across restarts.
    pub(crate) fn next_request_id(&self) -> u64 {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        (self.started_ms << 20) ^ n
    }

    /// Loads the (first) model file again; see [`AppState::reload_model`].
    pub fn reload(&self) -> Result<(String, String), LoadError> {
        self.reload_slot(&self.slots[0])
    }

    /// Loads model `name`'s file again and swaps it in atomically; on failure
    /// the old model keeps serving. Returns (previous version, new version).
    pub fn reload_model(&self, name: &str) -> Result<(String, String), LoadError> {
        let slot =
            self.slots
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| LoadError::UnknownModel {
                    name: name.to_string(),
                    loaded: self.model_names().join(", "),
                })?;
        self.reload_slot(slot)
    }

    /// Reloads every model (SIGHUP), each on its own: one that fails keeps
    /// its old version and the others still reload. Returns each model's
    /// name and outcome.
    pub fn reload_all(&self) -> Vec<(String, Reloaded)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), self.reload_slot(s)))
            .collect()
    }

    fn reload_slot(&self, slot: &Slot) -> Result<(String, String), LoadError> {
        let path = slot.path.as_deref().ok_or(LoadError::NoFile)?;
        // One reload at a time per model; requests are never blocked by it.
        let _one = slot.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = Arc::new(load(path, self.catalog.as_ref(), self.config.retrieval)?);
        if self.exposures.is_some() {
            exposable(&slot.name, &fresh)?;
        }
        let new_version = fresh.version.clone();
        let old = {
            let mut g = slot.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, fresh)
        };
        slot.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(model = %slot.name, old = %old.version, new = %new_version, "model reloaded");
        Ok((old.version.clone(), new_version))
    }

    /// Successful reloads so far, all models together.
    pub fn reloads(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.reloads.load(Ordering::Relaxed))
            .sum()
    }

    /// Each model's name, version and successful reloads (for /metrics).
    pub(crate) fn models(&self) -> Vec<(String, Arc<Loaded>, u64)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.model(), s.reloads.load(Ordering::Relaxed)))
            .collect()
    }
}
