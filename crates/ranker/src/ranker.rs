//! `Ranker`: a loaded model that answers recommendation and scoring requests.
//! `Send + Sync`: share one behind an `Arc` across a service's threads.

use std::path::{Path, PathBuf};

use arrow_buffer::ScalarBuffer;

use crate::als::fold_in;
use crate::error::{Error, Result};
use crate::half::HalfTable;
use crate::int8::Int8Table;
use crate::isa::Isa;
use crate::ivf::{IvfFilter, IvfIndex, IvfParams, IvfQuery};
use crate::linalg::gram;
use crate::model::{MappedModel, Model, FORMAT_VERSION};
use crate::topk::{ItemTable, Scored, TableBound};

/// Options of one recommendation request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Videos that must not be returned (e.g. already seen).
    pub exclude: Vec<u64>,
    /// Fresh history: when it holds videos the model knows, the user's
    /// embedding is folded in from them (exact least squares for iALS) instead
    /// of read from the model; this is how a user unseen in training gets
    /// personalised results. Videos the model does not know are ignored (a
    /// history of only those leaves a known user's trained profile in place).
    /// History videos are excluded too.
    pub history: Vec<u64>,
    /// Re-rank the retrieved candidates with the value model, when the model has one.
    pub use_value_model: bool,
    /// The surface the feed is for. A per-surface model answers with the
    /// user's vector there (a model without surfaces, with their one
    /// vector); with a catalogue ([`Ranker::with_catalog`]) only videos
    /// eligible there are returned (reels: short, watch: long, feed: all).
    pub surface: Option<Surface>,
    /// At most this many videos per creator. Needs a catalogue; ignored
    /// without one.
    pub max_per_creator: Option<usize>,
}

/// Where a feed is shown: which video formats are eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    /// Short videos only.
    Reels,
    /// Every video.
    Feed,
    /// Long videos only.
    Watch,
}

impl Surface {
    /// Its name in requests and model files.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Reels => "reels",
            Surface::Feed => "feed",
            Surface::Watch => "watch",
        }
    }
}

impl std::str::FromStr for Surface {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Surface, String> {
        match s {
            "reels" => Ok(Surface::Reels),
            "feed" => Ok(Surface::Feed),
            "watch" => Ok(Surface::Watch),
            other => Err(format!("unknown surface `{other}` (reels, feed, watch)")),
        }
    }
}

/// Video metadata the model file does not hold: creator and format per item.
#[derive(Debug, Clone, Default)]
struct Catalog {
    /// Creator id per item index.
    creator: Vec<u64>,
    /// Sorted item indices of long videos (excluded on reels) and of short
    /// videos (excluded on watch).
    long: Vec<u32>,
    short: Vec<u32>,
}

/// One request of a batch ([`Ranker::recommend_batch`]): the same three
/// things [`Ranker::recommend`] takes.
#[derive(Debug, Clone, Copy)]
pub struct BatchRequest<'a> {
    /// The user to recommend for.
    pub user_id: u64,
    /// How many videos.
    pub k: usize,
    /// Exclusions, fresh history, surface, creator cap, value model.
    pub request: &'a Request,
}

/// One recommended item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// The item's external id.
    pub item_id: u64,
    /// Its score (exact f32, whatever the retrieval).
    pub score: f32,
}

/// A response: items best first, and whether the popularity fallback was used
/// (unknown user without history).
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    /// Items, best first.
    pub items: Vec<Recommendation>,
    /// Whether the popularity fallback answered (unknown user, no usable history).
    pub fallback: bool,
}

/// Users per batch of [`Ranker::recommend_users`].
pub const USERS_PER_BATCH: usize = 4096;

/// Candidates per requested item taken from a reduced (f16 or int8) copy for
/// exact rescoring.
const OVERSAMPLE: usize = 4;

/// A batch retrieves through the approximate table only when the catalogue
/// holds at least this many times the candidate pool: below, the exact f32
/// batch kernel is faster (`reelkit bench topk --int8`, 2-core AVX2, k = 100:
/// exact 10.4k vs int8 5.5k queries/s at 20k items, 477 vs 531 at 1M; the
/// lines cross near 300k items, 650 pools of 464; 512 pools, 238k items at
/// k = 100, is a little before, where the two are within a few percent).
const BATCH_APPROX_MIN_RATIO: usize = 512;

/// Candidates retrieved per requested item before the value model re-ranks.
const VALUE_MODEL_OVERSAMPLE: usize = 4;

/// A model ready to serve.
#[derive(Debug)]
pub struct Ranker {
    model: MappedModel,
    item_gram: Vec<f32>,
    popular: Vec<u32>,
    isa: Isa,
    /// The item table's norm and bias bound (one pass at load).
    bound: TableBound,
    catalog: Option<Catalog>,
    approx: Option<Approx>,
    /// The model file, when opened from one (its IVF index file lies beside it).
    file: Option<PathBuf>,
}

/// Where candidates are retrieved before exact scoring.
///
/// The default, everywhere (a new [`Ranker`], `reelkit_serve::ServeConfig`,
/// `reelkit serve` and `reelkit recommend`), is [`Retrieval::Int8`]: a
/// quarter of the bytes to stream per scan, and the answer is the exact
/// top-k whenever the exact top-k lies among the `4k + 64` int8 candidates,
/// which it did for every query measured (recall@100 = 1.000 on a million
/// items, BENCHMARKS.md). Choose [`Retrieval::Exact`] where no miss can be
/// tolerated or memory is tight (the int8 copy adds a quarter of the item
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retrieval {
    /// Scan the f32 table (every score exact).
    Exact,
    /// Scan an f16 copy (half the bytes), rescore candidates exactly.
    Half,
    /// Scan an int8 copy (a quarter of the bytes), rescore candidates exactly.
    #[default]
    Int8,
    /// An inverted file ([`crate::IvfIndex`]): a query scans only the int8
    /// lists nearest it, and its candidates are rescored exactly; `nprobe` is
    /// tuned to recall@100 ≥ 0.95 on a sample of the model's user
    /// embeddings. Sub-linear in the catalogue (for millions of videos);
    /// surface filters are applied inside the scan. Loaded from the index
    /// file beside the model ([`Ranker::ivf_path`], written by
    /// [`Ranker::save_ivf`] or `reelkit index`) when that file was built
    /// from this model; built and tuned when the ranker is made otherwise
    /// (a missing, stale or corrupt file is logged and rebuilt, never used).
    Ivf,
}

/// A reduced-precision copy of the item table for candidate retrieval.
#[derive(Debug)]
enum Approx {
    Half(HalfTable),
    Int8(Int8Table),
    Ivf(Box<IvfState>),
}

/// The inverted file and, once a catalogue is attached, the surfaces as
/// allowed sets (reels: short videos; watch: long ones).
#[derive(Debug)]
struct IvfState {
    index: IvfIndex,
    surfaces: Option<[IvfFilter; 2]>,
    /// The index file it was loaded from (none: built here).
    from_file: Option<PathBuf>,
}

/// Recall@100 the IVF's nprobe is tuned to.
const IVF_TARGET_RECALL: f64 = 0.95;

/// User embeddings the IVF's nprobe is tuned on.
const IVF_TUNING_USERS: usize = 256;

impl Approx {
    fn top_k_batch(&self, queries: &[&[f32]], k: &[usize], exclude: &[&[u32]]) -> Vec<Vec<Scored>> {
        match self {
            Approx::Half(h) => h.top_k_batch(queries, k, exclude),
            Approx::Int8(t) => t.top_k_batch(queries, k, exclude),
            Approx::Ivf(_) => unreachable!("the IVF retrieves through IvfIndex::search"),
        }
    }
}

impl Ranker {
    /// Reads and validates a model file ([`MappedModel::open`]); retrieval is the default
    /// ([`Retrieval::Int8`], see [`Ranker::with_retrieval`]).
    pub fn open(path: &Path) -> Result<Ranker> {
        let mut r = Ranker::from_mapped(MappedModel::open(path)?);
        r.file = Some(path.to_path_buf());
        Ok(r)
    }

    /// Where the IVF index of the model file `model` is kept: beside it,
    /// named after it (`model.arrow` → `model.arrow.ivf`).
    pub fn ivf_path(model: &Path) -> PathBuf {
        let mut name = model.file_name().unwrap_or_default().to_os_string();
        name.push(".ivf");
        model.with_file_name(name)
    }

    /// Serves an in-memory model (e.g. right after training), with the
    /// default retrieval.
    pub fn from_model(m: Model) -> Ranker {
        // No file: the hash of the embeddings and biases stands in for it.
        let mut h = twox_hash::XxHash3_64::new();
        for part in [&m.factors.users, &m.factors.items, &m.factors.item_bias] {
            for x in part {
                std::hash::Hasher::write(&mut h, &x.to_le_bytes());
            }
        }
        let content_hash = std::hash::Hasher::finish(&h);
        let surfaces = m.surfaces.map(|sv| {
            let (dim, ns) = (m.factors.dim, sv.names.len());
            let per = |s: usize| -> Vec<f32> {
                sv.vectors
                    .chunks_exact(dim.max(1))
                    .skip(s)
                    .step_by(ns.max(1))
                    .flatten()
                    .copied()
                    .collect()
            };
            crate::model::MappedSurfaces {
                vectors: (0..ns).map(|s| ScalarBuffer::from(per(s))).collect(),
                counts: (0..ns)
                    .map(|s| {
                        ScalarBuffer::from(
                            sv.counts
                                .iter()
                                .skip(s)
                                .step_by(ns)
                                .copied()
                                .collect::<Vec<u32>>(),
                        )
                    })
                    .collect(),
                names: sv.names,
            }
        });
        Ranker::from_mapped(MappedModel {
            users: m.users,
            items: m.items,
            dim: m.factors.dim,
            user_factors: ScalarBuffer::from(m.factors.users),
            item_factors: ScalarBuffer::from(m.factors.items),
            item_bias: ScalarBuffer::from(m.factors.item_bias),
            user_counts: ScalarBuffer::from(m.user_counts),
            item_counts: ScalarBuffer::from(m.item_counts),
            surfaces,
            user_keys: m.user_keys.and_then(crate::model::Keys::new),
            item_keys: m.item_keys.and_then(crate::model::Keys::new),
            meta: m.meta,
            format_version: FORMAT_VERSION,
            content_hash,
        })
    }

    /// A ranker over `model` with the default retrieval.
    fn from_mapped(model: MappedModel) -> Ranker {
        let item_gram = gram(&model.item_factors, model.dim);
        let popular = crate::eval::popularity_order(&model.item_counts);
        let bound = TableBound::of(model.dim, &model.item_factors, Some(&model.item_bias));
        Ranker {
            model,
            item_gram,
            popular,
            isa: Isa::detect(),
            bound,
            catalog: None,
            approx: None,
            file: None,
        }
        .with_retrieval(Retrieval::default())
    }

    /// Chooses where candidates are retrieved ([`Retrieval`]). The reduced
    /// copies (f16: half the bytes to stream per scan; int8: a quarter) give
    /// `OVERSAMPLE · k + 64` candidates that are rescored exactly in f32: the
    /// result is the exact top-k whenever the exact top-k lies among them.
    pub fn with_retrieval(mut self, r: Retrieval) -> Ranker {
        if self.retrieval() == r {
            return self;
        }
        let (dim, items, bias) = (
            self.model.dim,
            &self.model.item_factors,
            &self.model.item_bias,
        );
        self.approx = match r {
            Retrieval::Exact => None,
            Retrieval::Half => Some(Approx::Half(HalfTable::new(dim, items, Some(bias)))),
            Retrieval::Int8 => Some(Approx::Int8(Int8Table::new(dim, items, Some(bias)))),
            Retrieval::Ivf => {
                self.items_in_huge_pages();
                self.load_or_build_ivf()
            }
        };
        self.ivf_surfaces();
        self
    }

    /// Where candidates are retrieved now (an IVF asked of an empty
    /// catalogue falls back to [`Retrieval::Exact`]).
    pub fn retrieval(&self) -> Retrieval {
        match self.approx {
            None => Retrieval::Exact,
            Some(Approx::Half(_)) => Retrieval::Half,
            Some(Approx::Int8(_)) => Retrieval::Int8,
            Some(Approx::Ivf(_)) => Retrieval::Ivf,
        }
    }

    /// IVF retrieval over an index built and tuned now, whatever index file
    /// lies beside the model (what `reelkit index` writes).
    pub fn with_built_ivf(mut self) -> Ranker {
        if self.retrieval() != Retrieval::Ivf {
            self.items_in_huge_pages();
        }
        self.approx = self.built_ivf();
        self.ivf_surfaces();
        self
    }

    /// The index file the IVF retrieval was loaded from (none: built when
    /// the ranker was made, or another retrieval).
    pub fn ivf_file(&self) -> Option<&Path> {
        match &self.approx {
            Some(Approx::Ivf(state)) => state.from_file.as_deref(),
            _ => None,
        }
    }

    /// Writes the IVF index to `path` (atomically; see
    /// [`crate::IvfIndex::save`]); an error unless the retrieval is
    /// [`Retrieval::Ivf`].
    pub fn save_ivf(&self, path: &Path) -> Result<()> {
        match &self.approx {
            Some(Approx::Ivf(state)) => state.index.save(path),
            _ => Err(Error::InvalidInput(
                "the ranker has no IVF index to save (choose Retrieval::Ivf)".into(),
            )),
        }
    }

    /// The IVF rescores rows scattered over the item table: unless the model
    /// was read from its file by [`Ranker::open`] (into 2 MiB pages already,
    /// see [`MappedModel::open`]), the table is copied into such pages
    /// ([`crate::in_huge_pages`]).
    fn items_in_huge_pages(&mut self) {
        if self.file.is_none() {
            self.model.item_factors = crate::pages::in_huge_pages(&self.model.item_factors);
        }
    }

    /// The index file beside the model when it was built from this model's
    /// items; otherwise (none, stale, corrupt) one built now. Either way
    /// logged: an operator cannot otherwise tell a 4 s load from a 3-minute
    /// build.
    fn load_or_build_ivf(&self) -> Option<Approx> {
        if let Some(file) = self.file.as_deref().map(Ranker::ivf_path) {
            if file.exists() {
                match IvfIndex::load(&file, &self.items()) {
                    Ok(index) => {
                        tracing::info!(index = %file.display(), lists = index.nlist(), nprobe = index.nprobe(), "IVF index loaded from beside the model");
                        return Some(Approx::Ivf(Box::new(IvfState {
                            index,
                            surfaces: None,
                            from_file: Some(file),
                        })));
                    }
                    // As an error field: the log line carries its causes too
                    // (the reason a file is refused, not only its path).
                    Err(e) => tracing::warn!(
                        error = &e as &(dyn std::error::Error + 'static),
                        "index file not used; building the index instead"
                    ),
                }
            }
            tracing::info!(
                index = %file.display(),
                "IVF index built and tuned here (no usable index file beside the model; `reelkit index` writes one)"
            );
        }
        self.built_ivf()
    }

    /// An IVF built and tuned now (none for an empty catalogue: exact
    /// retrieval).
    fn built_ivf(&self) -> Option<Approx> {
        self.build_ivf().map(|index| {
            Approx::Ivf(Box::new(IvfState {
                index,
                surfaces: None,
                from_file: None,
            }))
        })
    }

    /// The inverted file over the model's items, nprobe tuned on a seeded
    /// sample of its users (or, without users, of its items).
    fn build_ivf(&self) -> Option<IvfIndex> {
        let table = self.items();
        let mut index = IvfIndex::build(&table, &IvfParams::default()).ok()?;
        let d = self.model.dim;
        let (rows, n) = if self.model.users.is_empty() {
            (&self.model.item_factors[..], self.model.items.len())
        } else {
            (&self.model.user_factors[..], self.model.users.len())
        };
        let step = n.div_ceil(IVF_TUNING_USERS).max(1);
        let sample: Vec<&[f32]> = (0..n)
            .step_by(step)
            .map(|u| &rows[u * d..(u + 1) * d])
            .collect();
        let k = 100.min(self.model.items.len());
        if !sample.is_empty() && k > 0 {
            index
                .tune_nprobe(&table, &sample, k, IVF_TARGET_RECALL)
                .ok()?;
        }
        Some(index)
    }

    /// Prepares the surfaces as IVF filters when both an IVF and a catalogue
    /// are present.
    fn ivf_surfaces(&mut self) {
        if let (Some(Approx::Ivf(state)), Some(cat)) = (&mut self.approx, &self.catalog) {
            let reels = state.index.filter(|i| cat.long.binary_search(&i).is_err());
            let watch = state.index.filter(|i| cat.long.binary_search(&i).is_ok());
            state.surfaces = Some([reels, watch]);
        }
    }

    /// The IVF filter of a request's surface (IVF retrieval with a catalogue).
    fn surface_filter(&self, req: &Request) -> Option<&IvfFilter> {
        match (&self.approx, req.surface) {
            (Some(Approx::Ivf(state)), Some(Surface::Reels)) => {
                state.surfaces.as_ref().map(|s| &s[0])
            }
            (Some(Approx::Ivf(state)), Some(Surface::Watch)) => {
                state.surfaces.as_ref().map(|s| &s[1])
            }
            _ => None,
        }
    }

    /// Candidates wanted from a reduced copy for a final `k`.
    fn candidate_pool(&self, k: usize) -> usize {
        k.saturating_mul(OVERSAMPLE)
            .saturating_add(64)
            .min(self.model.items.len())
    }

    /// Exact (or reduced-precision-retrieved, exactly rescored) top-`k` of
    /// one query; `filter` (IVF only) restricts the items.
    fn retrieve(
        &self,
        q: &[f32],
        k: usize,
        exclude: &[u32],
        filter: Option<&IvfFilter>,
    ) -> Vec<Scored> {
        if let Some(Approx::Ivf(state)) = &self.approx {
            let query = IvfQuery {
                vector: q,
                k,
                exclude,
                filter,
            };
            // The index was built from this table, and q has its dimension.
            return state
                .index
                .search_one(&self.items(), &query)
                .unwrap_or_default();
        }
        if let Some(h) = &self.approx {
            let pool = self.candidate_pool(k);
            let cands = h
                .top_k_batch(&[q], &[pool], &[exclude])
                .pop()
                .unwrap_or_default();
            return self.items().rescore(q, k, &cands);
        }
        let items = self.items();
        if rayon::current_thread_index().is_some() {
            items.top_k(q, k, exclude)
        } else {
            items.top_k_parallel(q, k, exclude)
        }
    }

    /// Attaches video metadata (`video_id`, `creator_id`, `long` per row, any
    /// order, any superset of the model's videos) for surface filters and
    /// per-creator caps. A model video missing from it is an error.
    pub fn with_catalog(
        mut self,
        video_id: &[u64],
        creator_id: &[u64],
        long: &[bool],
    ) -> Result<Ranker> {
        if video_id.len() != creator_id.len() || video_id.len() != long.len() {
            return Err(Error::InvalidInput(format!(
                "catalogue columns differ in length: {} video ids, {} creator ids, {} formats",
                video_id.len(),
                creator_id.len(),
                long.len()
            )));
        }
        let n = self.model.items.len();
        let mut creator = vec![None; n];
        let mut is_long = vec![false; n];
        for ((&v, &c), &l) in video_id.iter().zip(creator_id).zip(long) {
            if let Some(i) = self.model.items.get(v) {
                creator[i as usize] = Some(c);
                is_long[i as usize] = l;
            }
        }
        if let Some(i) = creator.iter().position(Option::is_none) {
            return Err(Error::InvalidInput(format!(
                "video {} of the model is missing from the catalogue",
                self.model.items.id(i as u32)
            )));
        }
        let (long, short): (Vec<u32>, Vec<u32>) = (0..n as u32).partition(|&i| is_long[i as usize]);
        self.catalog = Some(Catalog {
            creator: creator.into_iter().map(|c| c.unwrap_or(0)).collect(),
            long,
            short,
        });
        self.ivf_surfaces();
        Ok(self)
    }

    /// Whether surface filters and creator caps are available.
    pub fn has_catalog(&self) -> bool {
        self.catalog.is_some()
    }
    /// The underlying model.
    pub fn model(&self) -> &MappedModel {
        &self.model
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.model.dim
    }

    /// The item table to score against.
    pub fn items(&self) -> ItemTable<'_> {
        ItemTable::with_bound(
            self.model.dim,
            &self.model.item_factors,
            Some(&self.model.item_bias),
            self.bound,
        )
        .with_isa(self.isa)
    }

    /// The stored embedding of a known user (a per-surface model's: their
    /// shared taste).
    pub fn user_embedding(&self, user_id: u64) -> Option<&[f32]> {
        let u = self.model.users.get(user_id)? as usize;
        let d = self.model.dim;
        Some(&self.model.user_factors[u * d..(u + 1) * d])
    }

    /// The embedding a known user is served with on `surface`: their vector
    /// there in a per-surface model, else their one vector.
    pub fn user_embedding_on(&self, user_id: u64, surface: Option<Surface>) -> Option<&[f32]> {
        let u = self.model.users.get(user_id)? as usize;
        let d = self.model.dim;
        match (surface, &self.model.surfaces) {
            (Some(s), Some(sv)) => match sv.index(s.as_str()) {
                Some(k) => Some(&sv.vectors[k][u * d..(u + 1) * d]),
                None => self.user_embedding(user_id),
            },
            _ => self.user_embedding(user_id),
        }
    }

    /// A model trained on string user ids: the user id it gave `key`
    /// (`None`: unknown key, or a model of numeric user ids).
    pub fn user_of_key(&self, key: &str) -> Option<u64> {
        let keys = self.model.user_keys.as_ref()?;
        Some(self.model.users.id(keys.row(key)?))
    }

    /// A model trained on string item ids: the item id it gave `key`.
    pub fn item_of_key(&self, key: &str) -> Option<u64> {
        let keys = self.model.item_keys.as_ref()?;
        Some(self.model.items.id(keys.row(key)?))
    }

    /// The string a model trained on string user ids was given for `user_id`.
    pub fn user_key(&self, user_id: u64) -> Option<&str> {
        let keys = self.model.user_keys.as_ref()?;
        Some(keys.key(self.model.users.get(user_id)?))
    }

    /// The string a model trained on string item ids was given for `item_id`.
    pub fn item_key(&self, item_id: u64) -> Option<&str> {
        let keys = self.model.item_keys.as_ref()?;
        Some(keys.key(self.model.items.get(item_id)?))
    }

    /// Whether the users, and the items, were string ids.
    pub fn keyed(&self) -> (bool, bool) {
        (
            self.model.user_keys.is_some(),
            self.model.item_keys.is_some(),
        )
    }

    /// The surfaces a per-surface model has vectors for (empty otherwise).
    pub fn surfaces(&self) -> &[String] {
        self.model.surfaces.as_ref().map_or(&[], |s| &s.names)
    }

    /// The embedding of a user with this history (unknown videos are
    /// ignored); `None` when the model knows none of the videos.
    pub fn fold_in(&self, history: &[u64]) -> Option<Vec<f32>> {
        let items: Vec<u32> = history
            .iter()
            .filter_map(|&v| self.model.items.get(v))
            .collect();
        if items.is_empty() {
            return None;
        }
        let w = vec![1.0; items.len()];
        Some(fold_in(
            &self.model.item_factors,
            &self.item_gram,
            self.model.dim,
            &items,
            &w,
            &self.model.meta.params,
        ))
    }

    /// The request's excluded item indices, sorted: its exclusions, its
    /// history and, unless the IVF filters the surface inside its scan, the
    /// videos its surface does not show.
    fn exclusion(&self, req: &Request) -> Vec<u32> {
        let mut ex: Vec<u32> = req
            .exclude
            .iter()
            .chain(&req.history)
            .filter_map(|&v| self.model.items.get(v))
            .collect();
        if let (Some(c), Some(s), None) = (&self.catalog, req.surface, self.surface_filter(req)) {
            match s {
                Surface::Reels => ex.extend_from_slice(&c.long),
                Surface::Watch => ex.extend_from_slice(&c.short),
                Surface::Feed => {}
            }
        }
        ex.sort_unstable();
        ex.dedup();
        ex
    }

    /// `rank`, then at most `cap` items per creator: retrieves more candidates
    /// until `k` pass the cap or the catalogue runs out.
    fn rank_capped(&self, q: &[f32], k: usize, exclude: &[u32], req: &Request) -> Vec<Scored> {
        let filter = self.surface_filter(req);
        let (Some(cat), Some(cap)) = (&self.catalog, req.max_per_creator) else {
            return self.rank_in(q, k, exclude, filter, req.use_value_model);
        };
        let available = self.model.items.len().saturating_sub(exclude.len());
        let mut want = k.saturating_mul(4).max(k + 32);
        loop {
            let cands = self.rank_in(q, want, exclude, filter, req.use_value_model);
            let mut per: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
            let mut out = Vec::with_capacity(k);
            for c in &cands {
                let n = per.entry(cat.creator[c.item as usize]).or_default();
                if *n < cap {
                    *n += 1;
                    out.push(*c);
                    if out.len() == k {
                        return out;
                    }
                }
            }
            if cands.len() < want || want >= available {
                return out;
            }
            want = want.saturating_mul(4);
        }
    }

    /// The `k` videos whose embeddings score highest against this video's
    /// (dot product plus bias), the video itself excluded; `None` for an
    /// unknown video.
    pub fn similar(&self, video_id: u64, k: usize) -> Option<Vec<Recommendation>> {
        let i = self.model.items.get(video_id)?;
        let d = self.model.dim;
        let q = &self.model.item_factors[i as usize * d..(i as usize + 1) * d];
        Some(self.to_recommendations(self.rank(q, k, &[i], false)))
    }

    /// Scored item indices as recommendations (external ids).
    fn to_recommendations(&self, scored: Vec<Scored>) -> Vec<Recommendation> {
        scored
            .into_iter()
            .map(|s| Recommendation {
                item_id: self.model.items.id(s.item),
                score: s.score,
            })
            .collect()
    }

    /// Top-`k` item indices for an embedding, `exclude` sorted ascending; with the
    /// value model when asked and available.
    ///
    /// Called from inside a rayon task (a batch over users), the scan stays on
    /// that thread; called from outside, the catalogue is split across threads.
    pub fn rank(&self, q: &[f32], k: usize, exclude: &[u32], use_value_model: bool) -> Vec<Scored> {
        self.rank_in(q, k, exclude, None, use_value_model)
    }

    /// [`Ranker::rank`] among the items `filter` allows.
    fn rank_in(
        &self,
        q: &[f32],
        k: usize,
        exclude: &[u32],
        filter: Option<&IvfFilter>,
        use_value_model: bool,
    ) -> Vec<Scored> {
        let retrieve = |k: usize| self.retrieve(q, k, exclude, filter);
        match (&self.model.meta.value_model, use_value_model) {
            (Some(vm), true) => {
                let cands = retrieve(k.saturating_mul(VALUE_MODEL_OVERSAMPLE));
                let mut rescored: Vec<Scored> = cands
                    .iter()
                    .map(|c| {
                        let i = c.item as usize;
                        let bias = self.model.item_bias[i];
                        Scored {
                            item: c.item,
                            score: vm.score(c.score - bias, self.model.item_counts[i], bias) as f32,
                        }
                    })
                    .collect();
                rescored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                rescored.truncate(k);
                rescored
            }
            _ => retrieve(k),
        }
    }

    /// Recommends `k` items for a user. An unknown user without history gets the
    /// most popular items, flagged as a fallback.
    pub fn recommend(&self, user_id: u64, k: usize, req: &Request) -> Recommendations {
        self.answer(self.query(user_id, req), &self.exclusion(req), k, req)
    }

    /// The answer to a request whose query embedding (`None`: unknown user
    /// without history) and exclusions are known.
    fn answer(
        &self,
        q: Option<Vec<f32>>,
        exclude: &[u32],
        k: usize,
        req: &Request,
    ) -> Recommendations {
        let filter = self.surface_filter(req);
        match q {
            Some(q) => Recommendations {
                items: self.to_recommendations(self.rank_capped(&q, k, exclude, req)),
                fallback: false,
            },
            None => Recommendations {
                items: self
                    .popular
                    .iter()
                    .filter(|&&i| {
                        exclude.binary_search(&i).is_err() && filter.is_none_or(|f| f.allows(i))
                    })
                    .scan(std::collections::HashMap::<u64, usize>::new(), |per, &i| {
                        Some(match (&self.catalog, req.max_per_creator) {
                            (Some(c), Some(cap)) => {
                                let n = per.entry(c.creator[i as usize]).or_default();
                                *n += 1;
                                (*n <= cap).then_some(i)
                            }
                            _ => Some(i),
                        })
                    })
                    .flatten()
                    .take(k)
                    .map(|i| Recommendation {
                        item_id: self.model.items.id(i),
                        score: self.model.item_counts[i as usize] as f32,
                    })
                    .collect(),
                fallback: true,
            },
        }
    }

    /// The user's query embedding: folded in from the fresh history's known
    /// videos when there are any, else the stored one; `None` for an unknown
    /// user without a known video in the history. (A history of videos the
    /// model does not know says nothing: it must not replace a known user's
    /// trained profile with an empty one.)
    fn query(&self, user_id: u64, req: &Request) -> Option<Vec<f32>> {
        self.fold_in(&req.history).or_else(|| {
            self.user_embedding_on(user_id, req.surface)
                .map(|e| e.to_vec())
        })
    }

    /// Recommendations for many users, [`USERS_PER_BATCH`] at a time through
    /// [`Ranker::recommend_batch`] (one pass of the batched kernel serves a
    /// batch; results equal one request at a time). `exclude` maps a user to
    /// the items not to recommend; `each` gets the users in order.
    pub fn recommend_users(
        &self,
        users: &[u64],
        k: usize,
        exclude: &std::collections::HashMap<u64, Vec<u64>>,
        use_value_model: bool,
        surface: Option<Surface>,
        mut each: impl FnMut(u64, Recommendations),
    ) {
        use rayon::prelude::*;
        for chunk in users.chunks(USERS_PER_BATCH) {
            let reqs: Vec<Request> = chunk
                .par_iter()
                .map(|u| Request {
                    exclude: exclude.get(u).cloned().unwrap_or_default(),
                    use_value_model,
                    surface,
                    ..Request::default()
                })
                .collect();
            let jobs: Vec<BatchRequest<'_>> = chunk
                .iter()
                .zip(&reqs)
                .map(|(&user_id, request)| BatchRequest {
                    user_id,
                    k,
                    request,
                })
                .collect();
            for (&u, recs) in chunk.iter().zip(self.recommend_batch(&jobs)) {
                each(u, recs);
            }
        }
    }

    /// [`Ranker::recommend`] for many requests at once: the plain ones (known
    /// or folded-in user, no value model, no creator cap) share one pass over
    /// the item table ([`ItemTable::top_k_batch`]), which turns a
    /// bandwidth-bound scan per request into one per batch. Results equal
    /// `recommend`'s request by request.
    pub fn recommend_batch(&self, jobs: &[BatchRequest<'_>]) -> Vec<Recommendations> {
        let capped = |r: &Request| self.catalog.is_some() && r.max_per_creator.is_some();
        let value = |r: &Request| r.use_value_model && self.model.meta.value_model.is_some();
        let mut out: Vec<Option<Recommendations>> = vec![None; jobs.len()];
        let mut batch: Vec<(usize, Vec<f32>, Vec<u32>)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            let (user, k, req) = (job.user_id, job.k, job.request);
            let exclude = self.exclusion(req);
            match self.query(user, req) {
                Some(q) if !capped(req) && !value(req) => batch.push((j, q, exclude)),
                q => out[j] = Some(self.answer(q, &exclude, k, req)),
            }
        }
        if !batch.is_empty() {
            let qs: Vec<&[f32]> = batch.iter().map(|b| b.1.as_slice()).collect();
            let ks: Vec<usize> = batch.iter().map(|b| jobs[b.0].k).collect();
            let exs: Vec<&[u32]> = batch.iter().map(|b| b.2.as_slice()).collect();
            // In a batch the exact f32 kernel is compute-bound and needs no
            // rescoring; the approximate table pays only where the scan is
            // memory-bound, a catalogue many times the candidate pool.
            if let Some(Approx::Ivf(state)) = &self.approx {
                // The inverted file answers the batch itself, surfaces inside.
                let queries: Vec<IvfQuery<'_>> = batch
                    .iter()
                    .zip(&ks)
                    .map(|((j, q, ex), &k)| IvfQuery {
                        vector: q,
                        k,
                        exclude: ex,
                        filter: self.surface_filter(jobs[*j].request),
                    })
                    .collect();
                // The index was built from this table and the queries have its
                // dimension; were it otherwise, the users would get empty lists.
                let results = state
                    .index
                    .search(&self.items(), &queries)
                    .unwrap_or_else(|_| vec![Vec::new(); queries.len()]);
                for ((j, _, _), scored) in batch.iter().zip(results) {
                    out[*j] = Some(Recommendations {
                        items: self.to_recommendations(scored),
                        fallback: false,
                    });
                }
                return out.into_iter().flatten().collect();
            }
            let pools: Vec<usize> = ks.iter().map(|&k| self.candidate_pool(k)).collect();
            let widest = pools.iter().copied().max().unwrap_or(0);
            let approx = self
                .approx
                .as_ref()
                .filter(|_| self.model.items.len() >= BATCH_APPROX_MIN_RATIO * widest);
            let results = match approx {
                Some(h) => h
                    .top_k_batch(&qs, &pools, &exs)
                    .into_iter()
                    .zip(qs.iter().zip(&ks))
                    .map(|(c, (q, &k))| self.items().rescore(q, k, &c))
                    .collect(),
                None => self.items().top_k_batch(&qs, &ks, &exs),
            };
            for ((j, _, _), scored) in batch.iter().zip(results) {
                out[*j] = Some(Recommendations {
                    items: self.to_recommendations(scored),
                    fallback: false,
                });
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Dot-product scores (plus bias) of a known user for the given videos.
    pub fn score(&self, user_id: u64, videos: &[u64]) -> Result<Vec<f32>> {
        let q = self
            .user_embedding(user_id)
            .ok_or(Error::UnknownUser(user_id))?;
        let idx = videos
            .iter()
            .map(|&v| self.model.items.get(v).ok_or(Error::UnknownItem(v)))
            .collect::<Result<Vec<u32>>>()?;
        // The retrieval arithmetic, so a score equals the one a ranking shows.
        Ok(self.items().scores_of(q, &idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn batch_of<'a>(jobs: &[(u64, usize, &'a Request)]) -> Vec<BatchRequest<'a>> {
        jobs.iter()
            .map(|&(user_id, k, request)| BatchRequest {
                user_id,
                k,
                request,
            })
            .collect()
    }
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    fn ranker() -> Ranker {
        Ranker::from_model(Model {
            users: IdMap::from_ids(vec![100]),
            items: IdMap::from_ids(vec![1, 2, 3, 4]),
            factors: Factors {
                dim: 2,
                users: vec![1.0, 0.0],
                items: vec![0.9, 0.0, 0.5, 0.5, 0.1, 1.0, -1.0, 0.0],
                item_bias: vec![0.0; 4],
            },
            user_counts: vec![2],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![5, 1, 9, 2],
            meta: ModelMeta::default(),
        })
    }

    #[test]
    fn recommend_excludes_and_falls_back() -> Result<()> {
        let r = ranker();
        let rec = r.recommend(
            100,
            2,
            &Request {
                exclude: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let rec = r.recommend(999, 2, &Request::default());
        assert!(rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![3, 1]
        );
        // An unknown user with history is personalised, history excluded.
        let rec = r.recommend(
            999,
            1,
            &Request {
                history: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(rec.items[0].item_id, 2);
        // A history of videos the model does not know leaves a known user's
        // profile in place (it used to fold in an empty history: every score
        // 0, catalogue order) and an unknown user on the fallback.
        let unknown_history = Request {
            history: vec![77, 78],
            ..Request::default()
        };
        let plain = r.recommend(100, 2, &Request::default());
        let rec = r.recommend(100, 2, &unknown_history);
        assert_eq!(rec, plain);
        assert_eq!(rec.items[0].score, 0.9);
        let jobs = [BatchRequest {
            user_id: 100,
            k: 2,
            request: &unknown_history,
        }];
        assert_eq!(r.recommend_batch(&jobs)[0], plain);
        assert!(r.recommend(999, 2, &unknown_history).fallback);
        assert_eq!(r.score(100, &[1, 4])?, vec![0.9, -1.0]);
        assert!(matches!(r.score(100, &[77]), Err(Error::UnknownItem(77))));
        Ok(())
    }

    #[test]
    fn ranker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ranker>();
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::tests::batch_of;
    use super::*;
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    /// Six videos, scores for user 1 falling with the index; creators
    /// 7,7,7,8,8,9; videos 3 and 5 are long.
    fn ranker() -> Result<Ranker> {
        let items: Vec<f32> = (0..6).flat_map(|i| [1.0 - 0.1 * i as f32, 0.0]).collect();
        Ranker::from_model(Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids(vec![10, 11, 12, 13, 14, 15]),
            factors: Factors {
                dim: 2,
                users: vec![1.0, 0.0],
                items,
                item_bias: vec![0.0; 6],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1, 2, 3, 4, 5, 6],
            meta: ModelMeta::default(),
        })
        .with_catalog(
            &[15, 14, 13, 12, 11, 10, 99],
            &[9, 8, 8, 7, 7, 7, 1],
            &[true, false, true, false, false, false, false],
        )
    }

    fn ids(r: &Recommendations) -> Vec<u64> {
        r.items.iter().map(|x| x.item_id).collect()
    }

    #[test]
    fn surface_filter_and_creator_cap() -> Result<()> {
        let r = ranker()?;
        let all = r.recommend(1, 10, &Request::default());
        assert_eq!(ids(&all), vec![10, 11, 12, 13, 14, 15]);
        let reels = Request {
            surface: Some(Surface::Reels),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &reels)), vec![10, 11, 12, 14]);
        let watch = Request {
            surface: Some(Surface::Watch),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &watch)), vec![13, 15]);
        let capped = Request {
            max_per_creator: Some(1),
            ..Request::default()
        };
        assert_eq!(ids(&r.recommend(1, 10, &capped)), vec![10, 13, 15]);
        assert_eq!(ids(&r.recommend(1, 2, &capped)), vec![10, 13]);
        // The popularity fallback honours the cap too.
        let fb = r.recommend(404, 10, &capped);
        assert!(fb.fallback);
        assert_eq!(ids(&fb), vec![15, 14, 12]);
        // A batch answers exactly as one request at a time.
        let fresh = Request {
            history: vec![15],
            ..Request::default()
        };
        let plain = Request::default();
        let jobs: Vec<(u64, usize, &Request)> = vec![
            (1, 3, &reels),
            (1, 10, &capped),
            (404, 2, &plain),
            (404, 2, &fresh),
            (1, 0, &watch),
            (1, 100, &plain),
        ];
        let batch = r.recommend_batch(&batch_of(&jobs));
        for (j, &(u, k, req)) in jobs.iter().enumerate() {
            assert_eq!(batch[j], r.recommend(u, k, req), "job {j}");
        }
        // Similar videos exclude the query video; unknown videos are None.
        let sim = r.similar(10, 2).ok_or(Error::UnknownItem(10))?;
        assert_eq!(
            sim.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![11, 12]
        );
        assert!(r.similar(77, 2).is_none());
        Ok(())
    }

    #[test]
    fn a_per_surface_model_serves_the_users_vector_on_the_surface() -> Result<()> {
        // Items 10–12 lie on axis 0, items 20–22 on axis 1. User 1's shared
        // taste leans to axis 0; on watch they want axis 1.
        let items: Vec<u64> = vec![10, 11, 12, 20, 21, 22];
        let mut item_vecs = Vec::new();
        for (k, _) in items.iter().enumerate() {
            let w = 1.0 - 0.1 * (k % 3) as f32;
            item_vecs.extend(if k < 3 { [w, 0.0] } else { [0.0, w] });
        }
        let m = Model {
            users: crate::ids::IdMap::from_ids(vec![1]),
            items: crate::ids::IdMap::from_ids(items),
            factors: crate::factors::Factors {
                dim: 2,
                users: vec![0.8, 0.2],
                items: item_vecs,
                item_bias: vec![0.0; 6],
            },
            user_counts: vec![5],
            item_counts: vec![1; 6],
            surfaces: Some(crate::model::SurfaceVectors {
                names: vec!["reels".into(), "feed".into(), "watch".into()],
                // reels, feed, watch
                vectors: vec![0.9, 0.1, 0.8, 0.2, 0.1, 0.9],
                counts: vec![3, 2, 1],
            }),
            user_keys: None,
            item_keys: None,
            meta: crate::model::ModelMeta::default(),
        };
        let dir = tempfile::tempdir().map_err(|e| crate::model::io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("m.arrow");
        m.save(&path)?;
        for r in [Ranker::from_model(m), Ranker::open(&path)?] {
            assert_eq!(r.surfaces(), ["reels", "feed", "watch"]);
            let on = |s: Option<Surface>| {
                let req = Request {
                    surface: s,
                    ..Request::default()
                };
                ids(&r.recommend(1, 3, &req))
            };
            assert_eq!(on(None), vec![10, 11, 12]);
            assert_eq!(on(Some(Surface::Reels)), vec![10, 11, 12]);
            assert_eq!(on(Some(Surface::Watch)), vec![20, 21, 22]);
            assert_eq!(
                r.user_embedding_on(1, Some(Surface::Watch)),
                Some(&[0.1f32, 0.9][..])
            );
            assert_eq!(r.user_embedding_on(1, None), Some(&[0.8f32, 0.2][..]));
            // A batch answers as one request at a time, per surface.
            let watch = Request {
                surface: Some(Surface::Watch),
                ..Request::default()
            };
            let plain = Request::default();
            let jobs: Vec<(u64, usize, &Request)> = vec![(1, 2, &watch), (1, 2, &plain)];
            let batch = r.recommend_batch(&batch_of(&jobs));
            for (j, &(u, k, req)) in jobs.iter().enumerate() {
                assert_eq!(batch[j], r.recommend(u, k, req), "job {j}");
            }
        }
        Ok(())
    }

    #[test]
    fn catalogue_must_cover_the_model() {
        let base = ranker().map(|r| r.has_catalog());
        assert!(matches!(base, Ok(true)));
        let r = Ranker::from_model(Model {
            users: IdMap::from_ids(vec![1]),
            items: IdMap::from_ids(vec![10, 11]),
            factors: Factors {
                dim: 1,
                users: vec![1.0],
                items: vec![1.0, 0.5],
                item_bias: vec![0.0; 2],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1, 1],
            meta: ModelMeta::default(),
        });
        let err = r
            .with_catalog(&[10], &[1], &[false])
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("video 11")));
    }
}

#[cfg(test)]
mod half_tests {
    use super::tests::batch_of;
    use super::*;
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;

    fn random_model(users: usize, items: usize, dim: usize) -> Model {
        let mut s = 99u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
        };
        Model {
            users: IdMap::from_ids((0..users as u64).collect()),
            items: IdMap::from_ids((1000..1000 + items as u64).collect()),
            factors: Factors {
                dim,
                users: (0..users * dim).map(|_| next()).collect(),
                items: (0..items * dim).map(|_| next()).collect(),
                item_bias: (0..items).map(|_| 0.1 * next()).collect(),
            },
            user_counts: vec![1; users],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; items],
            meta: ModelMeta::default(),
        }
    }

    #[test]
    fn ivf_retrieval_recalls_the_exact_top_k_and_honours_surfaces() {
        let m = random_model(300, 20_000, 16);
        let exact = Ranker::from_model(m.clone());
        let ivf = Ranker::from_model(m.clone()).with_retrieval(Retrieval::Ivf);
        assert!(matches!(ivf.approx, Some(Approx::Ivf(_))));
        let plain = Request::default();
        let ids = |r: &Recommendations| r.items.iter().map(|i| i.item_id).collect::<Vec<u64>>();
        let (mut hit, mut all) = (0, 0);
        let mut jobs = Vec::new();
        for u in 0..300u64 {
            let (got, want) = (
                ivf.recommend(u, 100, &plain),
                exact.recommend(u, 100, &plain),
            );
            let want_ids = ids(&want);
            hit += ids(&got).iter().filter(|i| want_ids.contains(i)).count();
            all += want_ids.len();
            // Scores are exact wherever an item is found.
            for r in &got.items {
                if let Some(w) = want.items.iter().find(|w| w.item_id == r.item_id) {
                    assert_eq!(r.score.to_bits(), w.score.to_bits());
                }
            }
            jobs.push((u, 100, &plain));
        }
        // Tuned on the users themselves, to recall 0.95.
        assert!(
            hit as f64 >= 0.95 * all as f64,
            "recall {}",
            hit as f64 / all as f64
        );
        let batch = ivf.recommend_batch(&batch_of(&jobs));
        for (u, b) in batch.iter().enumerate() {
            assert_eq!(b, &ivf.recommend(u as u64, 100, &plain));
        }
        // Surfaces filter inside the scan: reels never shows a long video.
        let vids: Vec<u64> = (1000..21_000).collect();
        let creators: Vec<u64> = vids.iter().map(|v| v % 97).collect();
        let long: Vec<bool> = vids.iter().map(|v| v % 5 == 0).collect();
        let ivf = ivf
            .with_catalog(&vids, &creators, &long)
            .expect("catalogue");
        let exact = exact
            .with_catalog(&vids, &creators, &long)
            .expect("catalogue");
        for surface in [Surface::Reels, Surface::Watch] {
            let req = Request {
                surface: Some(surface),
                exclude: (1000..1400).collect(),
                ..Request::default()
            };
            let (mut hit, mut all) = (0, 0);
            for u in 0..100u64 {
                let got = ivf.recommend(u, 50, &req);
                assert_eq!(got.items.len(), 50);
                for r in &got.items {
                    assert_eq!(r.item_id % 5 == 0, surface == Surface::Watch, "{surface:?}");
                    assert!(r.item_id >= 1400);
                }
                let want = ids(&exact.recommend(u, 50, &req));
                hit += ids(&got).iter().filter(|i| want.contains(i)).count();
                all += want.len();
            }
            assert!(
                hit as f64 >= 0.9 * all as f64,
                "{surface:?} recall {}",
                hit as f64 / all as f64
            );
        }
    }

    #[test]
    fn the_ivf_index_beside_the_model_is_used_only_for_that_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.arrow");
        let m = random_model(50, 8_000, 8);
        m.save(&path).expect("save");
        let ivf_path = Ranker::ivf_path(&path);
        assert_eq!(ivf_path, dir.path().join("model.arrow.ivf"));
        let open_ivf = || {
            Ranker::open(&path)
                .expect("open")
                .with_retrieval(Retrieval::Ivf)
        };
        // Built here, not loaded from a file.
        let built_here = |r: &Ranker| (r.retrieval(), r.ivf_file()) == (Retrieval::Ivf, None);
        // No index file: built here.
        let built = open_ivf();
        assert!(built_here(&built));
        assert!(
            Ranker::open(&path)
                .expect("open")
                .save_ivf(&ivf_path)
                .is_err(),
            "int8 has no index"
        );
        built.save_ivf(&ivf_path).expect("save index");
        // Beside the model: loaded, and it answers as the built one.
        let loaded = open_ivf();
        assert_eq!(loaded.ivf_file(), Some(ivf_path.as_path()));
        let plain = Request::default();
        for u in 0..50u64 {
            assert_eq!(
                loaded.recommend(u, 30, &plain),
                built.recommend(u, 30, &plain)
            );
        }
        // A new model under the same name: the old index is stale, rebuilt.
        random_model(50, 8_001, 8).save(&path).expect("save");
        let fresh = open_ivf();
        assert!(built_here(&fresh));
        assert_eq!(fresh.recommend(3, 10, &plain).items.len(), 10);
        // A corrupt index file: rebuilt, never used.
        std::fs::write(&ivf_path, b"ARROW1 not really").expect("write");
        let fresh = open_ivf();
        assert!(built_here(&fresh));
        // with_built_ivf ignores a good file.
        fresh.save_ivf(&ivf_path).expect("save index");
        let again = Ranker::open(&path).expect("open").with_built_ivf();
        assert!(built_here(&again));
    }

    #[test]
    fn reduced_precision_retrieval_returns_the_exact_top_k() {
        let m = random_model(40, 6_000, 37);
        let exact = Ranker::from_model(m.clone());
        for retrieval in [Retrieval::Half, Retrieval::Int8] {
            let approx = Ranker::from_model(m.clone()).with_retrieval(retrieval);
            let ex = Request {
                exclude: (1000..1300).collect(),
                ..Request::default()
            };
            let plain = Request::default();
            let mut jobs: Vec<(u64, usize, &Request)> = Vec::new();
            for u in 0..40u64 {
                let req = if u % 2 == 0 { &plain } else { &ex };
                for k in [1usize, 20, 100] {
                    assert_eq!(
                        approx.recommend(u, k, req),
                        exact.recommend(u, k, req),
                        "{retrieval:?} user {u} k {k}"
                    );
                    jobs.push((u, k, req));
                }
            }
            assert_eq!(
                approx.recommend_batch(&batch_of(&jobs)),
                exact.recommend_batch(&batch_of(&jobs))
            );
            // More than the catalogue: everything not excluded, exactly ranked.
            assert_eq!(
                approx.recommend(3, 10_000, &ex),
                exact.recommend(3, 10_000, &ex)
            );
        }
    }
}
