//! The served model and its hot reload.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reelkit_ranker::{Ranker, Retrieval};

use crate::batcher::Batcher;
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
    /// whose candidates are rescored exactly (see `Ranker::with_retrieval`).
    pub retrieval: Retrieval,
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
            retrieval: Retrieval::Int8,
        }
    }
}

/// Video metadata re-attached to every loaded model (surface filter, creator cap).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub video_id: Vec<u64>,
    pub creator_id: Vec<u64>,
    pub long: Vec<bool>,
}

/// A model being served.
#[derive(Debug)]
pub struct Loaded {
    pub ranker: Ranker,
    /// Content hash of the model file (or a caller-given name).
    pub version: String,
    /// When it was loaded (seconds since the Unix epoch).
    pub loaded_at: f64,
    /// How long loading took, seconds.
    pub load_seconds: f64,
}

/// Why a model could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Model(#[from] reelkit_ranker::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this service was started from an in-memory model: there is no file to reload")]
    NoFile,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    current: RwLock<Arc<Loaded>>,
    path: Option<PathBuf>,
    catalog: Option<Catalog>,
    pub config: ServeConfig,
    pub metrics: Metrics,
    reloads: AtomicU64,
    reloading: Mutex<()>,
    pub(crate) batcher: Arc<Batcher>,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A short content hash of a file: its version.
fn file_version(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&bytes);
    Ok(format!("{:016x}", h.finish()))
}

fn load(path: &Path, catalog: Option<&Catalog>, retrieval: Retrieval) -> Result<Loaded, LoadError> {
    let t = Instant::now();
    let version = file_version(path)?;
    let mut ranker = Ranker::open(path)?.with_retrieval(retrieval);
    if let Some(c) = catalog {
        ranker = ranker.with_catalog(&c.video_id, &c.creator_id, &c.long)?;
    }
    Ok(Loaded {
        ranker,
        version,
        loaded_at: now_unix(),
        load_seconds: t.elapsed().as_secs_f64(),
    })
}

impl AppState {
    /// Serves the model file at `path` (memory-mapped), with an optional
    /// catalogue; `POST /admin/reload` and SIGHUP load it again.
    pub fn open(
        path: &Path,
        catalog: Option<Catalog>,
        config: ServeConfig,
    ) -> Result<AppState, LoadError> {
        let loaded = load(path, catalog.as_ref(), config.retrieval)?;
        Ok(AppState::serving(
            loaded,
            Some(path.to_path_buf()),
            catalog,
            config,
        ))
    }

    fn serving(
        loaded: Loaded,
        path: Option<PathBuf>,
        catalog: Option<Catalog>,
        config: ServeConfig,
    ) -> AppState {
        AppState {
            current: RwLock::new(Arc::new(loaded)),
            path,
            catalog,
            metrics: Metrics::default(),
            reloads: AtomicU64::new(0),
            reloading: Mutex::new(()),
            batcher: Batcher::start(config.max_batch, config.scan_workers),
            config,
        }
    }

    /// Serves an in-memory ranker under the given version name (no reload;
    /// `config.retrieval` applies).
    pub fn from_ranker(ranker: Ranker, version: &str, config: ServeConfig) -> AppState {
        let ranker = ranker.with_retrieval(config.retrieval);
        let loaded = Loaded {
            ranker,
            version: version.to_string(),
            loaded_at: now_unix(),
            load_seconds: 0.0,
        };
        AppState::serving(loaded, None, None, config)
    }

    /// The model now being served. Requests hold this `Arc` until they finish,
    /// so a reload never pulls a model from under them.
    pub fn model(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the model file again and swaps it in atomically; on failure the
    /// old model keeps serving. Returns (previous version, new version).
    pub fn reload(&self) -> Result<(String, String), LoadError> {
        let path = self.path.as_deref().ok_or(LoadError::NoFile)?;
        // One reload at a time; requests are never blocked by it.
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = Arc::new(load(path, self.catalog.as_ref(), self.config.retrieval)?);
        let new_version = fresh.version.clone();
        let old = {
            let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, fresh)
        };
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(old = %old.version, new = %new_version, "model reloaded");
        Ok((old.version.clone(), new_version))
    }

    /// Successful reloads so far.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }
}
