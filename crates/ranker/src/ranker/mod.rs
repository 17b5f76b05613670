//! `Ranker`: a loaded model that answers recommendation and scoring requests.
//! `Send + Sync`: share one behind an `Arc` across a service's threads.

use std::path::{Path, PathBuf};

use arrow_buffer::ScalarBuffer;

use crate::als::fold_in;
use crate::error::{Error, Result};
use crate::ivf::{IvfFilter, IvfQuery};
use crate::linalg::gram;
use crate::model::{MappedModel, Model, FORMAT_VERSION};
use crate::simd::Isa;
use crate::topk::{ItemTable, Scored, TableBound};

mod explore;
mod retrieval;
#[cfg(test)]
mod tests;

use retrieval::Approx;
pub use retrieval::{Retrieval, UnknownRetrieval};

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

pub use reelkit_assign::{Surface, UnknownSurface};

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
/// batch kernel is faster (the crossing is measured in BENCHMARKS.md, under
/// this constant's name).
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
